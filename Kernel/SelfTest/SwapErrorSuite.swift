// SwapErrorSuite: swap I/O errors from a real device. Runs only in the low-memory boot
// (`selftest.lowmem`), whose third virtio-blk drive (4 MiB) sits on QEMU's blkdebug driver:
// writes to device pages 1-3 and reads of device page 40 fail with EIO (the Makefile's
// test-lowmem writes the rules). Every other block of the disk works.
// Blocks are steered onto the failing pages by holding every other block of the swap space
// behind the VM's back, so the tests do not depend on the allocator's placement policy.
// Page 0 (the swap header) is writable, so quarantines reach the disk's header.
// Invariants: every test leaves the VMSystem without swap, with the daemon's targets as they
// were, no block of its own allocated and the disk swapped off. Each test's first swapon
// initialises the header, so no earlier test's quarantine carries over.

let swapErrorSuite = SelfTestSuite("swap_error", [
    vmTest("write_eio_keeps_page_dirty_resident_quarantines_and_retries_elsewhere", swapWriteErrorTest),
    vmTest("read_eio_returns_typed_error_and_affects_no_other_page", swapReadErrorTest),
    vmTest("write_eio_quarantine_survives_swapoff_and_swapon", swapQuarantineSurvivesSwapOnTest),
])

/// Size of the blkdebug disk the Makefile attaches (4 MiB).
private let errorDiskBytes: UInt64 = 4 << 20
/// Device pages whose writes fail (blkdebug write rules) and the one whose reads fail.
private let writeErrorPages: [UInt64] = [1, 2, 3]
private let readErrorPage: UInt64 = 40
/// The swap identifier of the blkdebug disk.
private let errorDiskIdentifier: UInt64 = 0x4552_5230_0001

/// A swap space over the whole blkdebug disk (slot 0), or nil with a failure. `header`:
/// `.initialise` starts from a fresh header, `.keepQuarantine` takes the one on the disk.
private func errorSwapSpace(_ t: inout TestContext, header: SwapSpace.HeaderPolicy = .initialise) -> SwapSpace? {
    var index = 0
    while true {
        let disk: PlatformBlockDevice
        do { disk = try Platform.blockDevice(at: index) } catch { break }
        index += 1
        guard disk.geometry.blockCount * UInt64(disk.geometry.blockSize) == errorDiskBytes else { continue }
        let space = SwapSpace()
        do throws(SwapError) {
            try space.swapOn(try SwapDisk.over(disk), identifier: errorDiskIdentifier, header: header)
        } catch {
            t.expect(false, "swapon of the blkdebug disk")
            return nil
        }
        return space
    }
    t.expect(false, "the 4 MiB blkdebug disk is attached (boot with make test-lowmem)")
    return nil
}

private func swapOffErrorDisk(_ t: inout TestContext, _ space: SwapSpace) {
    do throws(SwapError) { try space.swapOff(identifier: errorDiskIdentifier) } catch {
        t.expect(false, "swapoff of the blkdebug disk")
    }
}

/// Holds every free block of `space` except `keep` (global blocks); returns what it took.
private func holdAllBut(_ space: SwapSpace, _ keep: [UInt64]) -> [BlockRun] {
    var taken: [BlockRun] = []
    while let run = try? space.allocate(upTo: space.totalBlocks) { taken.append(run) }
    var kept: [BlockRun] = []
    for run in taken {
        var start = run.start
        for block in run.start..<run.end where keep.contains(block) {
            if block > start { kept.append(BlockRun(start: start, count: block - start)) }
            try? space.free(start: block, count: 1)
            start = block + 1
        }
        if start < run.end { kept.append(BlockRun(start: start, count: run.end - start)) }
    }
    return kept
}

private func releaseHeld(_ space: SwapSpace, _ runs: [BlockRun]) {
    for run in runs { try? space.free(start: run.start, count: run.count) }
}

/// Runs `body` with swap on the blkdebug disk attached to the VM; tears it down after.
private func withErrorSwap(_ t: inout TestContext, _ bed: VMTestBed,
                           _ body: (inout TestContext, SwapSpace) -> Void) {
    guard let space = errorSwapSpace(&t) else { return }
    let system = bed.system
    let daemon = system.pageout
    let saved = (daemon.freeMinimum, daemon.freeTarget, daemon.residentLimit)
    daemon.residentLimit = nil
    system.swapSpace = space
    body(&t, space)
    bed.releaseAll()
    (daemon.freeMinimum, daemon.freeTarget, daemon.residentLimit) = saved
    system.swapSpace = nil
    t.expectEqual(space.usedBlocks, 0, "no block left in use")
    t.expectEqual(space.reservedPages, 0, "no reservation left")
    swapOffErrorDisk(&t, space)
}

/// One anonymous page-sized mapping of `pages` pages at vmTestBase, active.
private func errorTestMap(_ t: inout TestContext, _ bed: VMTestBed, pages: Int) -> VMMap? {
    guard let map = bed.newMap(&t) else { return nil }
    let mapped = t.vmSucceeds("map anonymous memory") { () throws(MapError) in
        try map.map(nil, at: vmTestBase, length: UInt64(pages) << pageShift, protection: .readWrite,
                    inheritance: .copy, copyStrategy: .symmetric)
    }
    guard mapped != nil else { return nil }
    bed.activate(&t, map)
    return map
}

private func errorWord(_ page: Int, _ word: Int) -> UInt64 { 0xE10_0000_0000 &+ UInt64(page) << 20 &+ UInt64(word) }

private func fillErrorPage(_ page: Int) {
    let address = vmTestBase + (UInt64(page) << pageShift)
    for word in 0..<Int(pageSize / 8) { userStore(address + UInt64(word * 8), errorWord(page, word)) }
}

private func errorPageIntact(_ page: Int) -> Bool {
    let address = vmTestBase + (UInt64(page) << pageShift)
    for word in 0..<Int(pageSize / 8) where userLoad(address + UInt64(word * 8)) != errorWord(page, word) { return false }
    return true
}

private func pageOutEverythingReal(_ system: VMSystem) {
    let daemon = system.pageout
    let saved = daemon.freeTarget
    daemon.freeTarget = Int.max / 2
    daemon.run(urgent: true)
    daemon.run(urgent: true)
    daemon.settle(nil)
    daemon.freeTarget = saved
}

private func swapWriteErrorTest(_ t: inout TestContext, _ bed: VMTestBed) {
    withErrorSwap(&t, bed) { t, space in
        let bad = writeErrorPages.map { SwapSpace.globalBlock(slot: 0, page: $0) }
        var held = holdAllBut(space, bad)
        t.expectEqual(space.freeBlocks, UInt64(bad.count), "only the failing blocks are free")
        guard let map = errorTestMap(&t, bed, pages: 1) else { releaseHeld(space, held); return }
        fillErrorPage(0)
        let failuresBefore = bed.system.pageout.statistics.launderFailures
        let writeErrorsBefore = space.writeErrors
        pageOutEverythingReal(bed.system)
        t.expect(space.writeErrors > writeErrorsBefore, "the device reported write errors")
        t.expect(bed.system.pageout.statistics.launderFailures > failuresBefore, "the pageout failed")
        t.expectEqual(bed.system.residentPageTotal, 1, "the page stays resident")
        let page = map.entry(containing: vmTestBase)?.object?.residentPages[0]
        t.expect(page?.isDirty == true, "and dirty")
        for block in bad { t.expect(space.isQuarantined(block), "each failing block is quarantined") }
        t.expectEqual(space.badBlocks, UInt64(bad.count), "three bad blocks")
        t.expect(errorPageIntact(0), "the data is intact in memory")
        // A good block: the retry goes there and the page leaves memory.
        let good = SwapSpace.globalBlock(slot: 0, page: 8)
        if let index = held.firstIndex(where: { $0.start <= good && good < $0.end }) {
            let run = held.remove(at: index)
            if good > run.start { held.append(BlockRun(start: run.start, count: good - run.start)) }
            if good + 1 < run.end { held.append(BlockRun(start: good + 1, count: run.end - good - 1)) }
            try? space.free(start: good, count: 1)
        }
        pageOutEverythingReal(bed.system)
        t.expectEqual(bed.system.residentPageTotal, 0, "the retry elsewhere paged it out")
        for block in bad { t.expect(!space.isInUse(block) || space.isQuarantined(block), "no bad block holds data") }
        t.expect(errorPageIntact(0), "every byte comes back from the good block")
        releaseHeld(space, held)
        bed.releaseAll()
        noteErrorCounts(&t, space)
    }
}

private func swapReadErrorTest(_ t: inout TestContext, _ bed: VMTestBed) {
    withErrorSwap(&t, bed) { t, space in
        let first = SwapSpace.globalBlock(slot: 0, page: readErrorPage)
        let held = holdAllBut(space, [first, first + 1])
        guard let map = errorTestMap(&t, bed, pages: 2) else { releaseHeld(space, held); return }
        fillErrorPage(0)
        fillErrorPage(1)
        pageOutEverythingReal(bed.system)
        t.expectEqual(bed.system.residentPageTotal, 0, "both pages went to the blocks over the bad sectors")
        t.expectEqual(space.usedBlocks, UInt64(held.reduce(0) { $0 + $1.count }) + 2, "on the two kept blocks")
        let readErrorsBefore = space.readErrors
        // Page 1's read-ahead takes in page 0's failing block: the I/O fails, each page is
        // retried alone, page 1 arrives.
        do throws(FaultError) { try map.fault(at: vmTestBase + pageSize, access: .read) } catch {
            t.expect(false, "the fault on the good page succeeds")
        }
        t.expect(errorPageIntact(1), "the good page is intact")
        var failure: FaultError? = nil
        do throws(FaultError) { try map.fault(at: vmTestBase, access: .read) } catch { failure = error }
        t.expect(failure == .pager(.ioError), "the bad page's fault returns a typed I/O error")
        t.expect(space.readErrors > readErrorsBefore, "the device reported read errors")
        t.expect(errorPageIntact(1), "the other page is unaffected")
        t.expectEqual(bed.takeUnresolvedFaults(), 0, "no access went unresolved")
        releaseHeld(space, held)
        bed.releaseAll()
        noteErrorCounts(&t, space)
    }
}

private func noteErrorCounts(_ t: inout TestContext, _ space: SwapSpace) {
    t.note("device write errors " + formatted(space.writeErrors) + ", read errors " + formatted(space.readErrors)
           + ", bad blocks " + formatted(space.badBlocks))
}

/// The write errors of the first test, then swapoff and a swapon that keeps the header's
/// quarantine (what a reboot would find): the three failing blocks are quarantined again and
/// never handed out.
private func swapQuarantineSurvivesSwapOnTest(_ t: inout TestContext, _ bed: VMTestBed) {
    let bad = writeErrorPages.map { SwapSpace.globalBlock(slot: 0, page: $0) }
    withErrorSwap(&t, bed) { t, space in
        t.expectEqual(space.badBlocks, 0, "a fresh header: nothing quarantined yet")
        let held = holdAllBut(space, bad)
        guard errorTestMap(&t, bed, pages: 1) != nil else { releaseHeld(space, held); return }
        fillErrorPage(0)
        pageOutEverythingReal(bed.system)
        for block in bad { t.expect(space.isQuarantined(block), "the write errors quarantined each failing block") }
        t.expect(!space.isHeaderStale(onDevice: errorDiskIdentifier), "and the header on the disk lists them")
        t.expect(errorPageIntact(0), "the page is intact in memory")
        releaseHeld(space, held)
        bed.releaseAll()
    }
    guard let space = errorSwapSpace(&t, header: .keepQuarantine) else { return }
    let statistics = space.statistics
    t.expectEqual(statistics.badBlocks, UInt64(bad.count), "swapon re-quarantined the three blocks from the header")
    for block in bad { t.expect(space.isQuarantined(block), "each failing block is quarantined again") }
    t.expectEqual(statistics.usedBlocks, 0, "none in use")
    t.expectEqual(statistics.freeBlocks, statistics.totalBlocks, "every other block free")
    t.expectEqual(statistics.totalBlocks + statistics.badBlocks + SwapSpace.headerPages,
                  errorDiskBytes / pageSize, "usable = pages - header - bad")
    var handedOut: [BlockRun] = []
    var reissued = false
    var count: UInt64 = 0
    while let run = try? space.allocate(upTo: 16) {
        for block in run.start..<run.end where bad.contains(block) { reissued = true }
        count += run.count
        handedOut.append(run)
    }
    t.expect(!reissued, "a quarantined block is never handed out again")
    t.expectEqual(count, statistics.totalBlocks, "every other block is")
    releaseHeld(space, handedOut)
    noteErrorCounts(&t, space)
    swapOffErrorDisk(&t, space)
}
