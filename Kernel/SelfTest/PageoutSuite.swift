// PageoutSuite: the pageout daemon under memory pressure, with swap on the test disk's
// window and the VM's page frames limited by the daemon's `residentLimit` (the kernel boots
// with more RAM than the swap window could hold, so "memory" is the limit, not the machine).
// Working sets larger than that limit are written and read back through real MMU faults;
// every byte is checked. The laundry is asynchronous: a run returns with cluster writes on
// the virtio disk, and the tests check what happens to pages in flight (collected by the
// next run, kept by a fault, freed by an unmap). The auditor runs after each test (vmTest)
// and, in the laundry tests, while writes are in flight.

let pageoutSuite = SelfTestSuite("pageout", [
    swapVMTest("pressure_working_set_four_times_memory_round_trips", limit: 64, pressureWorkingSetRoundTrips),
    swapVMTest("pressure_dirty_pages_laundered_in_clusters_of_at_most_16", limit: 48, pressureLaundersInClusters),
    swapVMTest("low_memory_second_chance_keeps_referenced_page", limit: nil, lowMemorySecondChance),
    swapVMTest("low_memory_clean_pages_freed_without_io", limit: 64, lowMemoryCleanPagesFreedWithoutIO),
    swapVMTest("low_memory_swap_full_fault_returns_out_of_memory", limit: 16, lowMemorySwapFullIsTypedError),
    swapVMTest("laundry_writes_in_flight_collected_later", limit: nil, laundryCollectedLater),
    swapVMTest("laundry_fault_on_page_in_flight_keeps_it_without_pagein", limit: nil, laundryFaultKeepsPage),
    swapVMTest("laundry_unmap_with_writes_in_flight_frees_pages_and_slots", limit: nil, laundryUnmapInFlight),
    swapVMTest("pressure_allocations_wait_for_the_laundry_cap", limit: 32, pressureLaundryCap),
])

/// Resident pages of the VM's objects whose laundry write is in flight.
private func launderingPageCount(_ system: VMSystem) -> Int {
    var count = 0
    for object in system.objects {
        object.residentPages.forEach { _, page in
            if page.isLaundering { count += 1 }
            return true
        }
    }
    return count
}

private func laundryCollectedLater(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    let pages = 64
    guard swapTestMap(&t, bed, pages: pages) != nil else { return }
    writePattern(base: vmTestBase, pages: pages, generation: 7)
    let system = bed.system
    let daemon = system.pageout
    let before = daemon.statistics
    startPageOutEverything(system)
    t.expectEqual(daemon.pagesInLaundry, pages, "the run started a write for every page")
    t.expectEqual(launderingPageCount(system), pages, "every page is in flight, still resident")
    t.expect(daemon.laundryWrites > 0 && daemon.laundryWrites <= daemon.maxLaundryWrites, "writes in flight, within the cap")
    bed.audit(&t, "with writes in flight")
    let inFlight = daemon.laundryWrites
    // Poll as the next runs would, until the disk has finished them all.
    var polls = 0
    while daemon.laundryWrites > 0 && polls < 1_000_000 {
        daemon.collectLaundry()
        polls += 1
    }
    t.expectEqual(daemon.laundryWrites, 0, "polling collected every write")
    t.expectEqual(daemon.pagesInLaundry, 0, "nothing left in flight")
    t.expectEqual(system.residentPageTotal, 0, "every written page freed")
    t.expectEqual(daemon.statistics.laundryFinishedLater - before.laundryFinishedLater, pages / SwapPager.clusterPages,
                  "each cluster collected after its run")
    t.expectEqual(space.usedBlocks, UInt64(pages), "one block per page")
    t.expectEqual(patternMismatches(base: vmTestBase, pages: pages, generation: 7), 0, "every page reads back")
    t.note("laundry: \(inFlight) cluster writes still on the disk when the run returned, collected after \(polls) polls")
}

private func laundryFaultKeepsPage(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    let pages = 16
    guard swapTestMap(&t, bed, pages: pages) != nil else { return }
    writePattern(base: vmTestBase, pages: pages, generation: 8)
    let system = bed.system
    startPageOutEverything(system)
    t.expectEqual(launderingPageCount(system), pages, "the cluster is in flight")
    let readsBefore = space.reads
    let keptBefore = system.pageout.statistics.laundryPagesKept
    let hot = vmTestBase + (5 << pageShift)
    t.expectEqual(userLoad(hot), patternWord(hot, 8, 0), "the faulting access sees its data")
    t.expectEqual(space.reads, readsBefore, "no pagein: the page never left memory")
    t.expectEqual(system.pageout.statistics.laundryPagesKept - keptBefore, 1, "the wanted page was kept")
    t.expectEqual(launderingPageCount(system), 0, "its object's laundry was settled")
    t.expectEqual(system.residentPageTotal, 1, "the other pages were freed")
    t.expectEqual(space.usedBlocks, UInt64(pages), "every page has its swap copy")
    userStore(hot, 0x1234)
    t.expectEqual(space.usedBlocks, UInt64(pages - 1), "the store dropped the kept page's stale slot")
    t.expectEqual(userLoad(hot), 0x1234, "the store landed")
    t.expectEqual(patternMismatches(base: vmTestBase + (6 << pageShift), pages: pages - 6, generation: 8), 0, "the rest reads back")
}

private func laundryUnmapInFlight(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    let pages = 48
    guard let map = swapTestMap(&t, bed, pages: pages) else { return }
    writePattern(base: vmTestBase, pages: pages, generation: 9)
    let system = bed.system
    let framesBefore = system.pages.count(of: .free)
    startPageOutEverything(system)
    t.expect(system.pageout.laundryWrites > 0, "writes in flight")
    _ = t.vmSucceeds("unmap with writes in flight") { () throws(MapError) in
        try map.unmap(start: vmTestBase, length: UInt64(pages) << pageShift)
    }
    t.expectEqual(system.pageout.laundryWrites, 0, "the unmap waited for the writes")
    t.expectEqual(system.pageout.pagesInLaundry, 0, "nothing left in flight")
    t.expectEqual(system.residentPageTotal, 0, "every page freed")
    t.expectEqual(space.usedBlocks, 0, "every slot freed")
    t.expect(system.pages.count(of: .free) >= framesBefore, "the frames came back")
}

private func pressureLaundryCap(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    let pages = 256
    guard swapTestMap(&t, bed, pages: pages) != nil else { return }
    let daemon = bed.system.pageout
    let savedCap = daemon.maxLaundryWrites
    daemon.maxLaundryWrites = 2
    daemon.statistics.peakLaundryWrites = 0
    let before = daemon.statistics
    writePattern(base: vmTestBase, pages: pages, generation: 10)
    let stats = daemon.statistics
    t.expect(stats.peakLaundryWrites >= 1 && stats.peakLaundryWrites <= 2, "writes overlapped, never more than the cap")
    t.expect(daemon.laundryWrites <= 2, "within the cap now")
    t.expect(stats.laundered - before.laundered >= pages - 32, "the working set went through swap")
    t.expectEqual(patternMismatches(base: vmTestBase, pages: pages, generation: 10), 0, "every page reads back")
    t.note("laundry: peak \(stats.peakLaundryWrites) writes, \(stats.laundryWaits - before.laundryWaits) waits, \(stats.laundryFinishedLater - before.laundryFinishedLater) collected later")
    daemon.maxLaundryWrites = savedCap
}

private func pressureWorkingSetRoundTrips(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    let pages = 256
    guard let map = swapTestMap(&t, bed, pages: pages) else { return }
    let limit = bed.system.pageout.residentLimit ?? 0
    let before = bed.system.pageout.statistics
    let writesBefore = space.writes
    let start = Platform.cycles()
    writePattern(base: vmTestBase, pages: pages, generation: 1)
    let written = Platform.cycles() - start
    t.expect(bed.system.residentPageTotal <= limit, "resident pages stay within the limit")
    t.expectEqual(patternMismatches(base: vmTestBase, pages: pages, generation: 1), 0, "every page reads back (generation 1)")
    writePattern(base: vmTestBase, pages: pages, generation: 2)
    t.expectEqual(patternMismatches(base: vmTestBase, pages: pages, generation: 2), 0, "every page reads back (generation 2)")
    // A fork of the swapped working set: the child writes, the parent keeps its bytes.
    if let child = t.vmSucceeds("fork", { () throws(MapError) in try map.fork() }) {
        bed.adopt(child)
        bed.activate(&t, child)
        writePattern(base: vmTestBase, pages: pages / 2, generation: 3)
        t.expectEqual(patternMismatches(base: vmTestBase, pages: pages / 2, generation: 3), 0, "the child sees its writes")
        bed.activate(&t, map)
        t.expectEqual(patternMismatches(base: vmTestBase, pages: pages, generation: 2), 0, "the parent keeps generation 2")
    }
    let stats = bed.system.pageout.statistics
    let laundered = stats.laundered - before.laundered
    let clusters = stats.launderClusters - before.launderClusters
    t.expect(laundered >= 2 * (pages - 64), "both generations went through swap")
    t.expect(bed.system.residentPageTotal <= limit, "still within the limit")
    t.note("pageout: \(laundered) pages laundered in \(clusters) clusters, \(space.writes - writesBefore) writes; first pass \(written / UInt64(pages)) cycles/page")
}

private func pressureLaundersInClusters(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    let pages = 128
    guard swapTestMap(&t, bed, pages: pages) != nil else { return }
    let before = bed.system.pageout.statistics
    let writesBefore = space.writes
    writePattern(base: vmTestBase, pages: pages, generation: 4)
    let stats = bed.system.pageout.statistics
    let laundered = stats.laundered - before.laundered
    let clusters = stats.launderClusters - before.launderClusters
    let writes = space.writes - writesBefore
    t.expect(laundered > 0 && clusters > 0, "pressure laundered pages")
    t.expect(laundered <= clusters * SwapPager.clusterPages, "no cluster above 16 pages")
    t.expect(laundered >= 4 * clusters, "sequential dirty pages go out several per I/O")
    t.expect(UInt64(clusters) <= writes, "at least one device write per cluster")
    t.note("pageout: \(laundered) pages in \(clusters) clusters, \(writes) device writes")
    t.expectEqual(patternMismatches(base: vmTestBase, pages: pages, generation: 4), 0, "every page reads back")
}

private func lowMemorySecondChance(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    let pages = 16
    guard swapTestMap(&t, bed, pages: pages) != nil else { return }
    writePattern(base: vmTestBase, pages: pages, generation: 5)
    let system = bed.system
    // Every page inactive and unreferenced; then page 9 is touched again.
    var resident: [Page] = []
    for object in system.objects { for (_, page) in object.sortedResidentPages { resident.append(page) } }
    t.expectEqual(resident.count, pages, "the working set is resident")
    for page in resident {
        system.mappings.clearReferenced(page)
        try? system.pages.deactivate(page)
    }
    let hot = vmTestBase + (9 << pageShift)
    _ = userLoad(hot)
    let daemon = system.pageout
    daemon.residentLimit = system.residentPageTotal
    daemon.freeTarget = pages - 1
    let before = daemon.statistics
    daemon.run(urgent: true)
    daemon.settle(nil)
    daemon.residentLimit = nil
    daemon.freeTarget = 16
    t.expectEqual(daemon.statistics.reactivated - before.reactivated, 1, "one referenced page got its second chance")
    t.expectEqual(system.residentPageTotal, 1, "the others were paged out")
    let stillMapped = (try? bed.maps[0].pmap.extract(VirtualAddress(hot))) ?? nil
    t.expect(stillMapped != nil, "the referenced page stayed mapped")
    t.expectEqual(patternMismatches(base: vmTestBase, pages: pages, generation: 5), 0, "every page reads back")
}

private func lowMemoryCleanPagesFreedWithoutIO(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    let pages = 48
    guard swapTestMap(&t, bed, pages: pages) != nil else { return }
    writePattern(base: vmTestBase, pages: pages, generation: 6)
    pageOutEverything(bed.system)
    t.expectEqual(bed.system.residentPageTotal, 0, "everything paged out")
    // Read it all back: clean pages whose swap copies stay valid.
    t.expectEqual(patternMismatches(base: vmTestBase, pages: pages, generation: 6), 0, "every page reads back")
    let before = bed.system.pageout.statistics
    let writesBefore = space.writes
    let usedBefore = space.usedBlocks
    pageOutEverything(bed.system)
    let stats = bed.system.pageout.statistics
    t.expectEqual(stats.freedClean - before.freedClean, pages, "every clean page freed")
    t.expectEqual(stats.laundered - before.laundered, 0, "none written")
    t.expectEqual(space.writes - writesBefore, 0, "no device write")
    t.expectEqual(space.usedBlocks, usedBefore, "the swap copies stay")
    t.expectEqual(patternMismatches(base: vmTestBase, pages: pages, generation: 6), 0, "every page reads back again")
}

private func lowMemorySwapFullIsTypedError(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    guard let map = swapTestMap(&t, bed, pages: 64) else { return }
    // Fill swap behind the VM's back.
    var taken: [BlockRun] = []
    while let run = try? space.allocate(upTo: space.totalBlocks) { taken.append(run) }
    t.expectEqual(space.freeBlocks, 0, "swap full")
    var resolved = 0
    var failure: FaultError? = nil
    for page in 0..<64 {
        do {
            try map.fault(at: vmTestBase + (UInt64(page) << pageShift), access: .write)
            resolved += 1
        } catch {
            failure = error
            break
        }
    }
    t.expect(failure == .outOfMemory, "the fault past memory and swap returns outOfMemory")
    t.expect(resolved <= 16 && resolved > 0, "faults within the limit succeeded")
    t.expect(bed.system.pageout.statistics.launderFailures > 0, "pageout tried and kept the pages")
    for run in taken { try? space.free(start: run.start, count: run.count) }
    // With swap back the same fault succeeds.
    do { try map.fault(at: vmTestBase + (UInt64(resolved) << pageShift), access: .write) } catch {
        t.expect(false, "the fault succeeds once swap has room")
    }
}
