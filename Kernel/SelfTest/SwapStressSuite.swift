// SwapStressSuite: swap under real memory pressure. Runs only in the low-memory boot
// (`selftest.lowmem`: QEMU with little RAM and two blank 64 MiB swap disks, see the
// Makefile's test-lowmem). Both disks are swapped on whole (minus their headers,
// interleaved); an anonymous working set at least twice the real free page frames (no
// artificial resident limit) is written, read back, forked, written again in the child, and
// every byte of parent and child checked; one disk is swapped off while pages are on it.
// Self-contained: it shares nothing with the swap_pager / pageout suites' test support.
// Invariants: every test leaves the VMSystem without swap and with the daemon's targets as
// they were; the suite's swap space lives from the first test to the last.

let swapStressSuite = SelfTestSuite("swap_stress", [
    SelfTest("swapon_two_whole_disks_minus_headers_interleaved", stressSwapOnBothDisks),
    vmTest("working_set_twice_free_memory_forked_every_byte_checked", stressWorkingSetTwiceFreeMemory),
    vmTest("swapoff_of_one_disk_in_use_keeps_every_byte", stressSwapOffOneDiskInUse),
    SelfTest("swapoff_both_disks_after_the_working_set_died", stressSwapOffBothDisks),
])

/// The two 64 MiB swap disks of the low-memory boot, swapped on by the first test.
private nonisolated(unsafe) var stressSpace: SwapSpace? = nil
private let stressIdentifiers: [UInt64] = [0x5354_5253_0001, 0x5354_5253_0002]
/// Size of each swap disk the Makefile attaches (blank, 64 MiB).
private let stressDiskBytes: UInt64 = 64 << 20
/// Platform block-device indices of the two swap disks.
private nonisolated(unsafe) var stressDiskIndices: [Int] = []

private func stressDisk(_ which: Int) -> PlatformBlockDevice? {
    guard which < stressDiskIndices.count else { return nil }
    return try? Platform.blockDevice(at: stressDiskIndices[which])
}

private func stressSwapOnBothDisks(_ t: inout TestContext) {
    let space = SwapSpace()
    var found = 0
    var expectedBlocks: UInt64 = 0
    var index = 0
    while found < 2 {
        let disk: PlatformBlockDevice
        do { disk = try Platform.blockDevice(at: index) } catch { break }
        index += 1
        let geometry = disk.geometry
        guard geometry.blockCount * UInt64(geometry.blockSize) == stressDiskBytes else { continue }
        do throws(SwapError) {
            let whole = try SwapDisk.over(disk)
            try space.swapOn(whole, identifier: stressIdentifiers[found])
            expectedBlocks += whole.pageCount - SwapSpace.headerPages
            stressDiskIndices.append(index - 1)
            found += 1
        } catch {
            t.expect(false, "swapon of a whole disk")
            return
        }
    }
    guard found == 2 else {
        t.expect(false, "two 64 MiB swap disks attached (boot with make test-lowmem)")
        return
    }
    t.expectEqual(space.statistics.devices, 2, "two devices on")
    t.expectEqual(space.totalBlocks, expectedBlocks, "whole disks minus one header page each")
    t.expectEqual(space.freeBlocks, expectedBlocks, "every block free")
    // Interleaving: a run that fills a stripe of one device is followed by the other's.
    var slots = Set<Int>()
    var taken: [BlockRun] = []
    for _ in 0..<4 {
        guard let run = try? space.allocate(upTo: SwapSpace.stripeBlocks) else { break }
        taken.append(run)
        slots.insert(SwapSpace.location(of: run.start).slot)
    }
    t.expectEqual(slots.count, 2, "allocations land on both devices")
    for run in taken { try? space.free(start: run.start, count: run.count) }
    t.expectEqual(space.usedBlocks, 0, "freed again")
    stressSpace = space
}

/// The word `word` of the page at `address` in generation `generation`: the page's checksum
/// of (address, generation) spread over every word.
private func stressWord(_ address: UInt64, _ generation: UInt64, _ word: Int) -> UInt64 {
    var x = address ^ (generation &* 0xD6E8_FEB8_6659_FD93) ^ (UInt64(word) << 48)
    x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
    x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
    return x ^ (x >> 31)
}

/// The address of working-set page `page`.
private func stressAddress(_ base: UInt64, _ page: Int) -> UInt64 { base + UInt64(page) << pageShift }

/// Maps `pages` working-set pages at vmTestBase as one anonymous object (one large resident-page
/// index and swap metadata growing while memory is at its floor); false after a failure.
private func stressMap(_ t: inout TestContext, _ map: VMMap, pages: Int) -> Bool {
    let mapped = t.vmSucceeds("map the working set") { () throws(MapError) in
        try map.map(nil, at: vmTestBase, length: UInt64(pages) << pageShift, protection: .readWrite,
                    inheritance: .copy, copyStrategy: .symmetric)
    }
    return mapped != nil
}

private func stressWrite(base: UInt64, pages: Range<Int>, generation: UInt64) {
    for page in pages {
        let address = stressAddress(base, page)
        for word in 0..<Int(pageSize / 8) { userStore(address + UInt64(word * 8), stressWord(address, generation, word)) }
    }
}

/// Pages in `pages` whose contents differ from generation `generation` (every word read).
private func stressMismatches(base: UInt64, pages: Range<Int>, generation: UInt64) -> Int {
    var bad = 0
    for page in pages {
        let address = stressAddress(base, page)
        var differs = false
        for word in 0..<Int(pageSize / 8) where userLoad(address + UInt64(word * 8)) != stressWord(address, generation, word) {
            differs = true
        }
        if differs { bad += 1 }
    }
    return bad
}

private func noteCount(_ t: inout TestContext, _ label: String, _ value: Int) {
    t.note(label + " " + formatted(value))
}

/// Runs `body` with the suite's swap space attached to the VM, no resident limit and the
/// stress free targets; restores the daemon's settings and detaches swap afterwards.
private func withStressSwap(_ t: inout TestContext, _ bed: VMTestBed,
                            _ body: (inout TestContext, SwapSpace, VMSystem, PageoutDaemon) -> Void) {
    guard let space = stressSpace else {
        t.expect(false, "swap is on (first test)")
        return
    }
    let system = bed.system
    let daemon = system.pageout
    let saved = (daemon.freeMinimum, daemon.freeTarget, daemon.residentLimit)
    daemon.residentLimit = nil
    // The daemon's own defaults: the heap lives on `freeReserved` while the VM is at its floor.
    system.swapSpace = space
    defer {
        bed.releaseAll()
        (daemon.freeMinimum, daemon.freeTarget, daemon.residentLimit) = saved
        system.swapSpace = nil
    }
    body(&t, space, system, daemon)
}

private func stressWorkingSetTwiceFreeMemory(_ t: inout TestContext, _ bed: VMTestBed) {
    withStressSwap(&t, bed) { t, space, system, daemon in
        let free = daemon.freePages
        let pages = 2 * free + 256
        noteCount(&t, "free page frames at start", free)
        noteCount(&t, "working set pages", pages)
        guard UInt64(pages + pages / 2) < space.totalBlocks else {
            t.expect(false, "swap holds the working set and the child's copies")
            return
        }
        guard let map = bed.newMap(&t) else { return }
        guard stressMap(&t, map, pages: pages) else { return }
        bed.activate(&t, map)
        let vmBefore = system.statistics
        let pageoutBefore = daemon.statistics
        let readsBefore = space.reads, writesBefore = space.writes
        let all = 0..<pages
        stressWrite(base: vmTestBase, pages: all, generation: 1)
        t.expect(space.usedBlocks > 0, "pages went to swap")
        t.expect(system.residentPageTotal < pages, "the working set is not all resident")
        t.expectEqual(stressMismatches(base: vmTestBase, pages: all, generation: 1), 0, "every byte reads back (generation 1)")
        stressWrite(base: vmTestBase, pages: all, generation: 2)
        t.expectEqual(stressMismatches(base: vmTestBase, pages: all, generation: 2), 0, "every byte reads back (generation 2)")
        guard let child = t.vmSucceeds("fork", { () throws(MapError) in try map.fork() }) else { return }
        bed.adopt(child)
        bed.activate(&t, child)
        let half = 0..<(pages / 2)
        stressWrite(base: vmTestBase, pages: half, generation: 3)
        t.expectEqual(stressMismatches(base: vmTestBase, pages: half, generation: 3), 0, "the child sees its writes")
        t.expectEqual(stressMismatches(base: vmTestBase, pages: (pages / 2)..<pages, generation: 2), 0,
                      "the child sees the parent's other half")
        bed.activate(&t, map)
        t.expectEqual(stressMismatches(base: vmTestBase, pages: all, generation: 2), 0, "the parent keeps generation 2")
        bed.activate(&t, child)
        t.expectEqual(stressMismatches(base: vmTestBase, pages: half, generation: 3), 0, "the child keeps generation 3")
        t.expectEqual(bed.takeUnresolvedFaults(), 0, "every fault was resolved")
        bed.audit(&t, "after the forked working set")

        let vm = system.statistics, out = daemon.statistics
        noteCount(&t, "pages swapped out", out.laundered - pageoutBefore.laundered)
        noteCount(&t, "pageout clusters", out.launderClusters - pageoutBefore.launderClusters)
        noteCount(&t, "pages swapped in", vm.pageIns - vmBefore.pageIns)
        noteCount(&t, "pages read ahead", vm.pagesReadAhead - vmBefore.pagesReadAhead)
        noteCount(&t, "pagein operations", vm.pageInOperations - vmBefore.pageInOperations)
        noteCount(&t, "swap device reads", Int(space.reads - readsBefore))
        noteCount(&t, "swap device writes", Int(space.writes - writesBefore))
        t.expect(out.laundered - pageoutBefore.laundered >= pages, "at least the working set went out")
        t.expect(vm.pageIns - vmBefore.pageIns > 0, "pages came back in")
    }
}

private func stressSwapOffOneDiskInUse(_ t: inout TestContext, _ bed: VMTestBed) {
    withStressSwap(&t, bed) { t, space, system, daemon in
        // As many pages as are free: more than fit above the minimum, so they page out, and
        // the half on one disk fits back in at swapoff.
        let pages = daemon.freePages
        guard let map = bed.newMap(&t) else { return }
        guard stressMap(&t, map, pages: pages) else { return }
        bed.activate(&t, map)
        let all = 0..<pages
        stressWrite(base: vmTestBase, pages: all, generation: 4)
        pageOutAll(system)
        let onFirst = space.blocksInUse(onDevice: stressIdentifiers[0]).count
        let onSecond = space.blocksInUse(onDevice: stressIdentifiers[1]).count
        noteCount(&t, "working set pages", pages)
        noteCount(&t, "blocks on the first disk before its swapoff", onFirst)
        noteCount(&t, "blocks on the second disk", onSecond)
        t.expect(onFirst > 0 && onSecond > 0, "pages are on both disks")
        let pageInsBefore = system.statistics.pageIns
        do throws(SwapOffError) { try system.swapOff(identifier: stressIdentifiers[0]) } catch { t.expect(false, "swapoff of the first disk in use") }
        t.expectEqual(space.statistics.devices, 1, "one device left")
        t.expectEqual(space.blocksInUse(onDevice: stressIdentifiers[1]).count, onSecond, "the other disk's blocks untouched")
        t.expectEqual(stressMismatches(base: vmTestBase, pages: all, generation: 4), 0, "every byte reads back after swapoff")
        pageOutAll(system)
        t.expect(space.usedBlocks >= UInt64(onFirst), "the evacuated pages went out to the other disk")
        t.expectEqual(stressMismatches(base: vmTestBase, pages: all, generation: 4), 0, "and every byte reads back from it")
        noteCount(&t, "pages swapped in after swapoff", system.statistics.pageIns - pageInsBefore)
        t.expectEqual(bed.takeUnresolvedFaults(), 0, "every fault was resolved")
        // Swap the first disk back on for the last test's cleanup.
        if let disk = stressDisk(0) {
            do throws(SwapError) { try space.swapOn(try SwapDisk.over(disk), identifier: stressIdentifiers[0]) } catch {
                t.expect(false, "swapon again")
            }
        }
    }
}

/// Pages out everything the daemon can take (a full pressure run with real free memory).
private func pageOutAll(_ system: VMSystem) {
    let daemon = system.pageout
    let saved = daemon.freeTarget
    daemon.freeTarget = Int.max / 2
    daemon.run(urgent: true)
    daemon.freeTarget = saved
}

private func stressSwapOffBothDisks(_ t: inout TestContext) {
    guard let space = stressSpace else {
        t.expect(false, "swap is on (first test)")
        return
    }
    stressSpace = nil
    t.expectEqual(space.usedBlocks, 0, "no block in use once the working set died")
    t.expectEqual(space.reservedPages, 0, "no reservation left")
    for identifier in space.deviceIdentifiers {
        do throws(SwapError) { try space.swapOff(identifier: identifier) } catch { t.expect(false, "swapoff") }
    }
    t.expectEqual(space.statistics.devices, 0, "no device left")
}
