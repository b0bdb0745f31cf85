// SwapPagerSuite: swap space and the swap pager against the machine's real test disk: the
// virtio-blk disk on x86_64 and aarch64 virt, the SD card's swap partition on the Raspberry Pi
// (`Platform.swapTestDisk`, SwapVMTestSupport.swift).
// Invariants: swap lives only in the window the platform hands out (the virtio disk's
// benchmark scratch region, sectors 8192..16383, which check-disk-image.py leaves free; on the
// Pi blocks 1024..9215 of the swap partition, above the host pattern and the sdhci suite's
// scratch blocks); nothing else on the disk is written. Every test swaps on, leaves no block
// in use, swaps off and gives every page back. Without a disk every test is skipped.
// Write-error injection needs QEMU blkdebug (not attached yet); the error paths run in the
// host tests (Tests/KernelTests/SwapPagerTests.swift) over a RAM disk.

let swapPagerSuite = SelfTestSuite("swap_pager", [
    SelfTest("swapon_writes_header_and_swapoff_removes_device", swapOnWritesHeaderAndSwapOffRemovesDevice),
    SelfTest("cluster_pageout_uses_consecutive_blocks", clusterPageOutUsesConsecutiveBlocks),
    SelfTest("read_ahead_pagein_round_trips_cluster", readAheadPageInRoundTripsCluster),
    SelfTest("checksum_error_reports_corrupted_block_only", corruptionOnDiskIsDetectedOnPageIn),
    SelfTest("swapoff_refuses_in_use_blocks_then_evacuates", swapOffRefusesInUseBlocksThenEvacuates),
    SelfTest("collapse_absorb_moves_swap_slots", collapseAbsorbMovesSwapSlots),
    SelfTest("reserve_refuses_overcommit", reserveRefusesOvercommit),
    SelfTest("two_devices_interleave_clusters_in_stripes", twoDevicesInterleaveClustersInStripes),
    SelfTest("swap_full_hysteresis_waits_for_high_watermark", swapFullHysteresisWaitsForHighWatermark),
    SelfTest("quarantined_block_is_never_reissued", quarantinedBlockIsNeverReissued),
    SelfTest("rewrite_and_discard_free_swap_blocks", rewriteAndDiscardFreeSwapBlocks),
    SelfTest("pager_protocol_collapse_through_existential", pagerProtocolCollapseThroughExistential),
    SelfTest("metadata_dense_object_costs_at_most_8_5_bytes_per_page", metadataDenseObjectCostsAtMost85BytesPerPage),
] + swapPagerVMTests)

/// `count` pages, page i filled with a pattern of (i, generation), or nil after a failure.
private func patternPages(_ count: Int, generation: UInt64, _ t: inout TestContext) -> [Page]? {
    var pages: [Page] = []
    for index in 0..<count {
        guard let page = try? pageFrames.allocate(zeroed: false) else {
            t.expect(false, "page frames for the test")
            freePages(pages)
            return nil
        }
        fillPattern(page, index: UInt64(index), generation: generation)
        pages.append(page)
    }
    return pages
}

private func fillPattern(_ page: Page, index: UInt64, generation: UInt64) {
    for word in 0..<Int(pageSize / 8) {
        page.contents.storeBytes(of: (index << 40) ^ (generation << 20) ^ UInt64(word) ^ 0x5357_4150, toByteOffset: word * 8, as: UInt64.self)
    }
}

private func holdsPattern(_ page: Page, index: UInt64, generation: UInt64) -> Bool {
    for word in 0..<Int(pageSize / 8)
    where page.contents.load(fromByteOffset: word * 8, as: UInt64.self) != (index << 40) ^ (generation << 20) ^ UInt64(word) ^ 0x5357_4150 {
        return false
    }
    return true
}

private func scrub(_ pages: [Page]) {
    for page in pages { page.contents.initializeMemory(as: UInt8.self, repeating: 0xA5, count: Int(pageSize)) }
}

private func freePages(_ pages: [Page]) {
    for page in pages { try? pageFrames.free(page) }
}

/// Terminates `pagers`, swaps the test window(s) off and checks nothing is left in use.
private func tearDown(_ space: SwapSpace, _ pagers: [SwapPager], _ t: inout TestContext) {
    for pager in pagers { pager.terminate() }
    t.expectEqual(space.usedBlocks, 0, "no swap block left in use")
    for identifier in space.deviceIdentifiers {
        do { try space.swapOff(identifier: identifier) } catch {
            t.expect(false, "swapoff of the test window")
        }
    }
}

/// The header on `disk`'s first page, or nil when it cannot be read or is not valid.
private func headerOnDisk(_ disk: SwapDisk) -> SwapHeader? {
    guard let buffer = try? physicalPages.allocate() else { return nil }
    defer { try? physicalPages.free(buffer) }
    do { try disk.transfer(.read, page: 0, frames: [buffer]) } catch { return nil }
    return try? SwapHeader.read(from: DirectMap.pointer(to: buffer))
}

private func swapOnWritesHeaderAndSwapOffRemovesDevice(_ t: inout TestContext) {
    guard let (space, disks) = testSwapSpace(&t) else { return }
    let disk = disks[0]
    t.expectEqual(space.totalBlocks, disk.pageCount - SwapSpace.headerPages, "usable blocks")
    t.expect(!space.isNearlyFull, "swap available after swapon")
    t.expect(headerOnDisk(disk) == SwapHeader(pageCount: disk.pageCount, identifier: SwapTestWindow.identifier, slot: 0),
             "the header on the disk is the one swapon wrote")
    tearDown(space, [], &t)
    t.expectEqual(space.statistics.devices, 0, "device removed")
    t.expect(space.isNearlyFull, "no swap: unavailable")
}

private func clusterPageOutUsesConsecutiveBlocks(_ t: inout TestContext) {
    guard let (space, _) = testSwapSpace(&t) else { return }
    let pager = SwapPager(space: space, pageCountHint: 64)
    guard let pages = patternPages(20, generation: 1, &t) else { tearDown(space, [pager], &t); return }
    let results = pager.pageOut(pages.enumerated().map { (UInt64($0.offset), $0.element) })
    t.expect(results.allSatisfy { $0 == nil }, "every page written")
    t.expectEqual(pager.pageOutWrites, 2, "20 consecutive pages: clusters of 16 and 4")
    let first = pager.metadata.slot(at: 0)?.block ?? 0
    var consecutive = true
    for index: UInt64 in 0..<16 where pager.metadata.slot(at: index)?.block != first + UInt32(index) { consecutive = false }
    t.expect(consecutive, "a cluster lands on consecutive blocks")
    t.expectEqual(space.usedBlocks, 20, "one block per page")
    freePages(pages)
    tearDown(space, [pager], &t)
}

private func readAheadPageInRoundTripsCluster(_ t: inout TestContext) {
    guard let (space, _) = testSwapSpace(&t) else { return }
    let pager = SwapPager(space: space, pageCountHint: 64)
    guard let pages = patternPages(16, generation: 2, &t) else { tearDown(space, [pager], &t); return }
    t.expect(pager.pageOut(pages.enumerated().map { (UInt64($0.offset), $0.element) }).allSatisfy { $0 == nil }, "pageout")
    scrub(pages)
    guard let plan = pager.readAheadPlan(around: 8, within: 0..<16, isResident: { _ in false }) else {
        t.expect(false, "a read-ahead plan")
        freePages(pages)
        tearDown(space, [pager], &t)
        return
    }
    t.expectEqual(plan.indices.lowerBound, 1, "7 pages behind")
    t.expectEqual(plan.indices.upperBound, 16, "up to the object's end ahead")
    let targets = Array(pages[Int(plan.indices.lowerBound)..<Int(plan.indices.upperBound)])
    let readsBefore = pager.pageInReads
    let results = pager.pageIn(targets, plan: plan)
    t.expect(results.allSatisfy { $0 == nil }, "every page read and verified")
    t.expectEqual(pager.pageInReads - readsBefore, 1, "one read for the whole plan")
    var intact = true
    for (position, index) in plan.indices.enumerated() where !holdsPattern(targets[position], index: index, generation: 2) { intact = false }
    t.expect(intact, "every byte came back")
    freePages(pages)
    tearDown(space, [pager], &t)
}

private func corruptionOnDiskIsDetectedOnPageIn(_ t: inout TestContext) {
    guard let (space, disks) = testSwapSpace(&t) else { return }
    let pager = SwapPager(space: space, pageCountHint: 8)
    guard let pages = patternPages(4, generation: 3, &t) else { tearDown(space, [pager], &t); return }
    t.expect(pager.pageOut(pages.enumerated().map { (UInt64($0.offset), $0.element) }).allSatisfy { $0 == nil }, "pageout")
    // Overwrite page 2's block behind the pager's back with page 3's data.
    let (_, devicePage) = SwapSpace.location(of: UInt64(pager.metadata.slot(at: 2)?.block ?? 0))
    do {
        try disks[0].transfer(.write, page: devicePage, frames: [pages[3].physicalAddress])
    } catch {
        t.expect(false, "the raw overwrite")
    }
    scrub(pages)
    let results = pager.pageIn(Array(pages[0..<4]), plan: PageInPlan(indices: 0..<4, firstBlock: UInt64(pager.metadata.slot(at: 0)?.block ?? 0)))
    t.expect(results[2] == .corrupted, "the overwritten page is reported corrupted")
    t.expect(results[0] == nil && results[1] == nil && results[3] == nil, "the other pages are unaffected")
    t.expect(holdsPattern(pages[1], index: 1, generation: 3), "page 1 intact")
    freePages(pages)
    tearDown(space, [pager], &t)
}

private func swapOffRefusesInUseBlocksThenEvacuates(_ t: inout TestContext) {
    guard let (space, _) = testSwapSpace(&t) else { return }
    let pager = SwapPager(space: space, pageCountHint: 16)
    guard let pages = patternPages(8, generation: 4, &t) else { tearDown(space, [pager], &t); return }
    t.expect(pager.pageOut(pages.enumerated().map { (UInt64($0.offset), $0.element) }).allSatisfy { $0 == nil }, "pageout")
    scrub(pages)
    do {
        try space.swapOff(identifier: SwapTestWindow.identifier)
        t.expect(false, "swapoff refused while blocks are in use")
    } catch {
        t.expect(error == .deviceBusy(blocksInUse: 8), "deviceBusy with the count")
    }
    t.expectEqual(space.statistics.devices, 1, "the device is still on")
    // Evacuate: page every block back in, then drop the pager's slots.
    var evacuatedIntact = true
    do {
        try space.swapOff(identifier: SwapTestWindow.identifier) { _, blocks in
            for index: UInt64 in 0..<8 {
                do throws(SwapPagerError) { try pager.pageIn(pages[Int(index)], index: index) } catch { evacuatedIntact = false }
                if !holdsPattern(pages[Int(index)], index: index, generation: 4) { evacuatedIntact = false }
            }
            if blocks.count != 8 { evacuatedIntact = false }
            pager.discard(indices: 0..<8)
        }
    } catch {
        t.expect(false, "swapoff after evacuation")
    }
    t.expect(evacuatedIntact, "every evacuated page came back intact")
    t.expectEqual(space.statistics.devices, 0, "device removed")
    t.expect(pager.metadata.isEmpty, "no slot left")
    freePages(pages)
}

private func collapseAbsorbMovesSwapSlots(_ t: inout TestContext) {
    guard let (space, _) = testSwapSpace(&t) else { return }
    let backing = SwapPager(space: space, pageCountHint: 8)
    let survivor = SwapPager(space: space, pageCountHint: 8)
    guard let pages = patternPages(8, generation: 5, &t) else { tearDown(space, [backing, survivor], &t); return }
    t.expect(backing.pageOut(pages.enumerated().map { (UInt64($0.offset), $0.element) }).allSatisfy { $0 == nil }, "pageout")
    // The survivor sees backing pages [4, 8) at its 0; its page 1 is resident (newer).
    let merged = survivor.absorb(backing, range: 4 * pageSize..<8 * pageSize, destinationStart: 0) { $0 == pageSize }
    t.expect(merged, "same swap space: absorbed")
    t.expectEqual(survivor.metadata.count, 3, "three slots moved up")
    t.expectEqual(backing.metadata.count, 4, "the backing object keeps what lies outside the window")
    t.expectEqual(space.usedBlocks, 7, "the shadowed page's block is freed")
    scrub(pages)
    do {
        try survivor.pageIn(pages[0], index: 3)
        t.expect(holdsPattern(pages[0], index: 7, generation: 5), "survivor page 3 is backing page 7")
    } catch {
        t.expect(false, "pagein from the survivor")
    }
    freePages(pages)
    tearDown(space, [backing, survivor], &t)
}

private func reserveRefusesOvercommit(_ t: inout TestContext) {
    guard let (space, _) = testSwapSpace(&t) else { return }
    space.overcommitPages = 16
    let limit = space.totalBlocks + 16
    var refused = false
    do { try space.reserve(limit) } catch { t.expect(false, "reserving up to the limit") }
    do { try space.reserve(1) } catch { refused = error == .overcommitted }
    t.expect(refused, "one page past the limit is refused")
    do { try space.swapOff(identifier: SwapTestWindow.identifier) } catch { refused = error == .overcommitted }
    t.expect(refused, "swapoff that would uncover reservations is refused")
    do { try space.unreserve(limit) } catch { t.expect(false, "unreserve") }
    tearDown(space, [], &t)
}

private func twoDevicesInterleaveClustersInStripes(_ t: inout TestContext) {
    guard let (space, _) = testSwapSpace(&t, devices: 2) else { return }
    t.expectEqual(space.statistics.devices, 2, "two devices")
    let pager = SwapPager(space: space, pageCountHint: 64)
    guard let pages = patternPages(64, generation: 6, &t) else { tearDown(space, [pager], &t); return }
    t.expect(pager.pageOut(pages.enumerated().map { (UInt64($0.offset), $0.element) }).allSatisfy { $0 == nil }, "pageout")
    var perDevice = [0, 0, 0, 0]
    pager.metadata.forEach(in: 0..<SwapMetadata.maximumIndex) { _, slot in perDevice[SwapSpace.location(of: UInt64(slot.block)).slot] += 1 }
    t.expect(perDevice[0] > 0 && perDevice[1] > 0, "clusters land on both devices")
    t.expectEqual(perDevice[0] + perDevice[1], 64, "and only on them")
    scrub(pages)
    var intact = true
    for index: UInt64 in 0..<64 {
        do throws(SwapPagerError) { try pager.pageIn(pages[Int(index)], index: index) } catch { intact = false }
        if !holdsPattern(pages[Int(index)], index: index, generation: 6) { intact = false }
    }
    t.expect(intact, "every page comes back from its device")
    freePages(pages)
    tearDown(space, [pager], &t)
}

private func swapFullHysteresisWaitsForHighWatermark(_ t: inout TestContext) {
    guard let (space, _) = testSwapSpace(&t) else { return }
    var blocks: [UInt64] = []
    while space.freeBlocks >= space.lowWatermark, let run = try? space.allocate(upTo: 1) { blocks.append(run.start) }
    t.expect(space.isNearlyFull, "nearly full below the low watermark")
    var flapped = false
    while space.freeBlocks < space.highWatermark, let block = blocks.popLast() {
        try? space.free(start: block, count: 1)
        if !space.isNearlyFull { flapped = true }
    }
    t.expect(!flapped, "still nearly full up to the high watermark")
    if let block = blocks.popLast() { try? space.free(start: block, count: 1) }
    t.expect(!space.isNearlyFull, "available again above the high watermark")
    for block in blocks { try? space.free(start: block, count: 1) }
    tearDown(space, [], &t)
}

private func quarantinedBlockIsNeverReissued(_ t: inout TestContext) {
    guard let (space, disks) = testSwapSpace(&t) else { return }
    var blocks: [UInt64] = []
    while let run = try? space.allocate(upTo: 1) { blocks.append(run.start) }
    t.expectEqual(UInt64(blocks.count), space.totalBlocks, "every block handed out once")
    let bad = blocks[blocks.count / 2]
    do { t.expect(try space.quarantine(bad) == .persisted, "the header write succeeds") } catch { t.expect(false, "quarantine") }
    let page = UInt32(SwapSpace.location(of: bad).page)
    t.expect(headerOnDisk(disks[0])?.quarantinedPages == [page], "the header on the disk lists the block's page")
    for block in blocks where block != bad { try? space.free(start: block, count: 1) }
    var reissued = false
    var again: [UInt64] = []
    while let run = try? space.allocate(upTo: 16) {
        for block in run.start..<run.end where block == bad { reissued = true }
        again.append(run.start)
        again.append(run.count)
    }
    t.expect(!reissued, "the quarantined block never comes back")
    t.expectEqual(space.statistics.badBlocks, 1, "one bad block counted")
    var index = 0
    while index < again.count {
        try? space.free(start: again[index], count: again[index + 1])
        index += 2
    }
    tearDown(space, [], &t)
}

private func rewriteAndDiscardFreeSwapBlocks(_ t: inout TestContext) {
    guard let (space, _) = testSwapSpace(&t) else { return }
    let pager = SwapPager(space: space, pageCountHint: 32)
    guard let pages = patternPages(8, generation: 7, &t) else { tearDown(space, [pager], &t); return }
    let entries = pages.enumerated().map { (index: UInt64($0.offset), page: $0.element) }
    t.expect(pager.pageOut(entries).allSatisfy { $0 == nil }, "first pageout")
    t.expect(pager.pageOut(entries).allSatisfy { $0 == nil }, "second pageout of the same pages")
    t.expectEqual(space.usedBlocks, 8, "rewriting frees the old blocks")
    pager.discard(2 * pageSize..<5 * pageSize)
    t.expectEqual(space.usedBlocks, 5, "discard frees the range's blocks")
    t.expect(!pager.hasData(at: 3 * pageSize) && pager.hasData(at: 5 * pageSize), "exactly the range")
    freePages(pages)
    tearDown(space, [pager], &t)
}

private func pagerProtocolCollapseThroughExistential(_ t: inout TestContext) {
    guard let (space, _) = testSwapSpace(&t) else { return }
    let backingPager = SwapPager(space: space, pageCountHint: 4)
    let survivorPager = SwapPager(space: space, pageCountHint: 4)
    let backing: any Pager = backingPager
    let survivor: any Pager = survivorPager
    guard let pages = patternPages(2, generation: 8, &t) else { tearDown(space, [backingPager, survivorPager], &t); return }
    do {
        try backing.pageOut(pages[0], at: 0)
        try backing.pageOut(pages[1], at: pageSize)
    } catch {
        t.expect(false, "pageout through the protocol")
    }
    t.expect(survivor.absorb(backing, range: pageSize..<2 * pageSize, destinationStart: 0) { _ in false },
             "a swap pager absorbs a swap pager of the same space")
    t.expect(survivor.offsetsWithData(in: 0..<UInt64.max) == [0], "backing page 1 is survivor page 0")
    scrub(pages)
    do {
        try survivor.pageIn(pages[0], at: 0)
        t.expect(holdsPattern(pages[0], index: 1, generation: 8), "its data")
    } catch {
        t.expect(false, "pagein through the protocol")
    }
    freePages(pages)
    tearDown(space, [backingPager, survivorPager], &t)
}

private func metadataDenseObjectCostsAtMost85BytesPerPage(_ t: inout TestContext) {
    var metadata = SwapMetadata(pageCountHint: 1 << 15)
    for index: UInt64 in 0..<(1 << 15) { _ = try? metadata.insert(SwapSlot(block: UInt32(index), checksum: 0), at: index) }
    t.note("swap metadata: \(metadata.memoryBytes) bytes for \(metadata.count) swapped pages")
    t.expect(metadata.memoryBytes * 2 <= 17 * metadata.count, "at most 8.5 bytes per swapped page")
    t.expect(metadata.invariantViolation() == nil, "structure sound")
    var freed = 0
    metadata.removeAll { _, _ in freed += 1 }
    t.expectEqual(freed, 1 << 15, "every slot handed back")
}
