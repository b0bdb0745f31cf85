// SwapPagerVMTests: the swap pager under the VM (part of the swap_pager suite): anonymous
// objects get a swap pager at their first pageout, faults page in with read-ahead, a write
// drops the stale swap copy, collapse of a paged-out backing object migrates its swap
// metadata, and VM swapoff pages everything back in (or refuses when memory is short,
// changing nothing). Every test runs on the vmTest bed (auditor after each).

let swapPagerVMTests: [SelfTest] = [
    swapVMTest("fault_read_ahead_pages_in_cluster_with_one_io", limit: nil, faultReadAheadPagesInClusterWithOneIO),
    swapVMTest("write_fault_discards_stale_swap_slot", limit: nil, writeFaultDiscardsStaleSwapSlot),
    swapVMTest("collapse_of_paged_out_backing_object_keeps_data", limit: nil, collapseOfPagedOutBackingObjectKeepsData),
    swapVMTest("swapoff_of_device_in_use_pages_everything_back_in", limit: nil, swapOffOfDeviceInUsePagesEverythingBackIn),
    swapVMTest("swapoff_when_memory_short_fails_and_changes_nothing", limit: 4, swapOffWhenMemoryShortChangesNothing),
    swapVMTest("reserve_at_first_pageout_released_when_object_dies", limit: nil, reserveAtFirstPageOutReleasedWhenObjectDies),
]

private func faultReadAheadPagesInClusterWithOneIO(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    guard swapTestMap(&t, bed, pages: 16) != nil else { return }
    writePattern(base: vmTestBase, pages: 16, generation: 10)
    pageOutEverything(bed.system)
    t.expectEqual(bed.system.residentPageTotal, 0, "paged out")
    t.expectEqual(space.usedBlocks, 16, "one block per page")
    let before = bed.system.statistics
    let readsBefore = space.reads
    _ = userLoad(vmTestBase + (8 << pageShift))
    t.expectEqual(bed.system.statistics.pageIns - before.pageIns, 1, "one faulting page")
    t.expectEqual(bed.system.statistics.pageInOperations - before.pageInOperations, 1, "one pager call")
    t.expectEqual(bed.system.statistics.pagesReadAhead - before.pagesReadAhead, 14, "7 behind and 7 ahead came with it")
    t.expectEqual(space.reads - readsBefore, 1, "one device read")
    t.expectEqual(patternMismatches(base: vmTestBase, pages: 16, generation: 10), 0, "every page intact")
    t.expect(bed.system.statistics.pageInOperations - before.pageInOperations <= 2, "page 0 was the only other read")
}

private func writeFaultDiscardsStaleSwapSlot(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    guard let map = swapTestMap(&t, bed, pages: 1) else { return }
    userStore(vmTestBase, 0x1111)
    pageOutEverything(bed.system)
    t.expectEqual(space.usedBlocks, 1, "paged out")
    t.expectEqual(userLoad(vmTestBase), 0x1111, "paged back in")
    t.expectEqual(space.usedBlocks, 1, "a clean page keeps its swap copy")
    let translation = (try? map.pmap.extract(VirtualAddress(vmTestBase))) ?? nil
    t.expect(translation?.protection.contains(.write) == false, "mapped read-only so the first write faults")
    let discarded = bed.system.statistics.swapSlotsDiscardedOnWrite
    userStore(vmTestBase, 0x2222)
    t.expectEqual(space.usedBlocks, 0, "the write freed the stale block")
    t.expectEqual(bed.system.statistics.swapSlotsDiscardedOnWrite - discarded, 1, "counted")
    pageOutEverything(bed.system)
    t.expectEqual(space.usedBlocks, 1, "laundered again")
    t.expectEqual(userLoad(vmTestBase), 0x2222, "the new contents came back")
}

private func collapseOfPagedOutBackingObjectKeepsData(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    guard let backing = bed.newObject(&t, pages: 32) else { return }
    for index in 0..<32 { bed.put(0x100 + UInt64(index), in: backing, page: index) }
    pageOutEverything(bed.system)
    t.expectEqual(backing.residentPageCount, 0, "backing object paged out")
    guard let top = t.vmSucceeds("shadow", { () throws(ObjectError) in try backing.shadow(offset: 0, length: 32 << pageShift) }) else { return }
    bed.forget(backing)
    bed.hold(top)
    bed.put(0x5003, in: top, page: 3)
    bed.put(0x5020, in: top, page: 20)
    pageOutEverything(bed.system)
    t.expect(top.pager is SwapPager && backing.pager is SwapPager, "both objects have swap pagers")
    t.expectEqual(space.usedBlocks, 34, "32 + 2 pages in swap")
    let collapses = bed.system.statistics.collapses
    top.collapse()
    t.expectEqual(bed.system.statistics.collapses - collapses, 1, "the chain collapsed")
    t.expect(top.shadow == nil, "the backing object is gone")
    t.expectEqual(space.usedBlocks, 32, "the two shadowed backing blocks were freed, the rest migrated")
    t.expectEqual(top.residentPageCount, 0, "nothing was paged in to collapse")
    var intact = true
    for index in 0..<32 {
        let expected: UInt64 = index == 3 ? 0x5003 : index == 20 ? 0x5020 : 0x100 + UInt64(index)
        if bed.visible(top, page: index) != expected { intact = false }
    }
    t.expect(intact, "every page reads back from the survivor")
    bed.audit(&t, "after collapse")
}

private func swapOffOfDeviceInUsePagesEverythingBackIn(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    guard let backing = bed.newObject(&t, pages: 16) else { return }
    for index in 0..<16 { bed.put(0x200 + UInt64(index), in: backing, page: index) }
    backing.reference()
    guard let top = t.vmSucceeds("shadow", { () throws(ObjectError) in try backing.shadow(offset: 0, length: 16 << pageShift) }) else { return }
    bed.hold(top)
    bed.put(0x6007, in: top, page: 7)
    pageOutEverything(bed.system)
    t.expectEqual(space.usedBlocks, 17, "shadowed and shadow object paged out")
    space.overcommitPages = 64   // the two objects' reservations must survive the device
    do { try bed.system.swapOff(identifier: space.deviceIdentifiers[0]) } catch {
        t.expect(false, "swapoff with pages in use")
    }
    t.expectEqual(space.statistics.devices, 0, "the device is gone")
    t.expectEqual(backing.residentPageCount, 16, "the shadowed object's pages are back")
    t.expectEqual(top.residentPageCount, 1, "the shadow's page is back")
    var intact = true
    for index in 0..<16 {
        if bed.visible(backing, page: index) != 0x200 + UInt64(index) { intact = false }
        if bed.visible(top, page: index) != (index == 7 ? 0x6007 : 0x200 + UInt64(index)) { intact = false }
    }
    t.expect(intact, "every byte came back")
    t.expect(backing.pager?.offsetsWithData(in: 0..<UInt64.max).isEmpty ?? true, "no slot left")
    bed.audit(&t, "after swapoff")
}

private func swapOffWhenMemoryShortChangesNothing(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    guard let object = bed.newObject(&t, pages: 16) else { return }
    let daemon = bed.system.pageout
    let limit = daemon.residentLimit
    daemon.residentLimit = nil
    for index in 0..<16 { bed.put(0x300 + UInt64(index), in: object, page: index) }
    pageOutEverything(bed.system)
    daemon.residentLimit = limit
    t.expectEqual(space.usedBlocks, 16, "paged out")
    space.overcommitPages = 64
    var refused = false
    do { try bed.system.swapOff(identifier: space.deviceIdentifiers.first ?? 0) } catch { refused = error == .outOfMemory }
    t.expect(refused, "swapoff refused for memory with a typed error")
    t.expectEqual(space.statistics.devices, 1, "the device is still on")
    t.expectEqual(space.usedBlocks, 16, "every block still in use")
    t.expectEqual(object.residentPageCount, 0, "nothing was paged in")
    if let run = try? space.allocate(upTo: 1) {
        try? space.free(start: run.start, count: run.count)
    } else {
        t.expect(false, "the device still hands out blocks")
    }
    daemon.residentLimit = nil
    var intact = true
    for index in 0..<16 where bed.visible(object, page: index) != 0x300 + UInt64(index) { intact = false }
    t.expect(intact, "the data is still in swap")
}

private func reserveAtFirstPageOutReleasedWhenObjectDies(_ t: inout TestContext, _ bed: VMTestBed, _ space: SwapSpace) {
    guard let object = bed.newObject(&t, pages: 24) else { return }
    for index in 0..<4 { bed.put(0x400 + UInt64(index), in: object, page: index) }
    t.expectEqual(space.reservedPages, 0, "no reservation before pageout")
    pageOutEverything(bed.system)
    t.expectEqual(space.reservedPages, 24, "the object's size reserved at its first pageout")
    t.expectEqual(space.usedBlocks, 4, "4 blocks in use")
    bed.release(object)
    t.expectEqual(space.reservedPages, 0, "reservation returned when the object died")
    t.expectEqual(space.usedBlocks, 0, "its blocks freed")
}
