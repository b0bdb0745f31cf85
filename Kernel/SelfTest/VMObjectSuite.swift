// VMObjectSuite: vm_object on the real machine: resident pages and their ownership,
// iterative termination of a long chain on the kernel stack, shadow chains read and written
// through real user virtual addresses, collapse and bypass (with and without pagers, and the
// cases both seeds got wrong), the object cache and coalesce. Every test runs in a VMTestBed:
// the auditor checks objects, maps, page tables and pv entries afterwards, then leaks.

let vmObjectSuite = SelfTestSuite("vm_object", [
    vmTest("object_insert_lookup_rename_one_owner", insertLookupRenameKeepOneOwner),
    vmTest("object_bad_arguments_typed_errors", badObjectArgumentsAreTypedErrors),
    vmTest("shadow_chain_of_5000_terminates_iteratively", longShadowChainTerminatesIteratively),
    vmTest("shadow_reads_through_until_written_via_va", shadowReadsThroughUntilWritten),
    vmTest("shadow_write_via_va_leaves_backing_intact", shadowWriteLeavesBackingIntact),
    vmTest("collapse_moves_missing_pages_frees_hidden", collapseMovesMissingPagesFreesHidden),
    vmTest("collapse_after_child_exit_shrinks_chain", collapseAfterChildExitShrinksChain),
    vmTest("collapse_adopts_backing_pager_data", collapseAdoptsBackingPagerData),
    vmTest("collapse_merges_two_pagers_newer_wins", collapseMergesTwoPagers),
    vmTest("bypass_skips_fully_covered_backing", bypassSkipsFullyCoveredBacking),
    vmTest("bypass_refused_for_paged_out_backing_page", bypassRefusedForPagedOutBackingPage),
    vmTest("bypass_refused_for_copy_object_push_target", bypassRefusedForCopyObject),
    vmTest("cache_keeps_and_revives_unreferenced_object", cacheKeepsAndRevivesObject),
    vmTest("cache_evicts_least_recently_used", cacheEvictsLeastRecentlyUsed),
    vmTest("cache_trimmed_under_memory_pressure", cacheTrimmedUnderPressure),
    vmTest("coalesce_grows_anonymous_entry_in_place", coalesceGrowsEntryInPlace),
    vmTest("coalesce_refused_for_shared_object", coalesceRefusedForSharedObject),
    vmTest("remove_range_unmaps_from_every_map", removeRangeUnmapsEverywhere),
    vmTest("protect_range_write_protects_every_mapping", protectRangeWriteProtectsEverywhere),
    vmTest("clean_pages_out_only_hardware_dirty_pages", cleanPagesOutOnlyDirtyPages),
    vmTest("resident_index_walks_in_order_and_returns_every_node", residentIndexWalksInOrderAndReturnsNodes),
])

private func offset(_ page: Int) -> UInt64 { UInt64(page) << pageShift }

private func insertLookupRenameKeepOneOwner(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let a = bed.newObject(&t, pages: 8), let b = bed.newObject(&t, pages: 8),
          let page = bed.put(0x77, in: a, page: 3) else { return }
    t.expect(a.page(at: offset(3)) == page, "lookup finds the inserted page")
    t.expect(a.page(at: offset(2)) == nil, "lookup of an empty offset")
    t.vmSucceeds("rename") { () throws(ObjectError) in try a.rename(at: offset(3), to: b, at: offset(5)) }
    t.expect(a.page(at: offset(3)) == nil && b.page(at: offset(5)) == page, "rename moved the page")
    t.expectEqual(page.offset, offset(5), "page record names its new offset")
    t.expect(page.object == Unmanaged.passUnretained(b).toOpaque(), "page record names its new object")
    t.expectEqual(page.contents.load(as: UInt64.self), 0x77, "contents kept")
    guard let removed = t.vmSucceeds("remove", { () throws(ObjectError) in try b.remove(at: offset(5)) }) else { return }
    t.expect(removed.object == nil, "removed page belongs to no object")
    t.vmSucceeds("insert again") { () throws(ObjectError) in try a.insert(removed, at: 0) }
    t.expectEqual(a.residentPageCount, 1, "resident pages of a")
}

private func badObjectArgumentsAreTypedErrors(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let a = bed.newObject(&t, pages: 4), let b = bed.newObject(&t, pages: 4),
          let page = bed.put(1, in: a, page: 0), let loose = try? pageFrames.allocate(zeroed: true) else { return }
    func check(_ expected: ObjectError, _ what: StaticString, _ t: inout TestContext, _ body: () throws(ObjectError) -> Void) {
        do {
            try body()
            t.expect(false, what)
        } catch {
            t.expect(error == expected, what)
        }
    }
    check(.unaligned, "unaligned insert", &t) { () throws(ObjectError) in try a.insert(loose, at: 12) }
    check(.outOfRange, "insert past the end", &t) { () throws(ObjectError) in try a.insert(loose, at: offset(4)) }
    check(.offsetOccupied, "insert over a page", &t) { () throws(ObjectError) in try a.insert(loose, at: 0) }
    check(.pageNotAvailable, "insert a page another object owns", &t) { () throws(ObjectError) in try b.insert(page, at: 0) }
    check(.notResident, "remove an empty offset", &t) { () throws(ObjectError) in _ = try a.remove(at: offset(1)) }
    check(.outOfRange, "removeRange past the end", &t) { () throws(ObjectError) in try a.removeRange(offset: offset(2), length: offset(3)) }
    check(.noPager, "clean without a pager", &t) { () throws(ObjectError) in try a.clean(offset: 0, length: offset(4)) }
    check(.unaligned, "object of an unaligned size", &t) { () throws(ObjectError) in _ = try VMObject(system: bed.system, size: 100) }
    t.expectEqual(a.residentPageCount, 1, "a unchanged")
    t.expectEqual(b.residentPageCount, 0, "b unchanged")
    try? pageFrames.free(loose)
}

private func longShadowChainTerminatesIteratively(_ t: inout TestContext, _ bed: VMTestBed) {
    guard var top = bed.newObject(&t, pages: 1) else { return }
    bed.put(1, in: top, page: 0)
    let objectsBefore = bed.system.objects.count - 1
    bed.forget(top)   // the test's reference moves into the chain
    for index in 0..<5000 {
        guard let next = t.vmSucceeds("shadow", { () throws(ObjectError) in try top.shadow(offset: 0, length: pageSize) }) else { return }
        top = next
        if index % 500 == 0 { bed.put(UInt64(index), in: top, page: 0) }
    }
    t.expectEqual(top.chainDepth, 5000, "chain depth")
    t.expectEqual(bed.visible(top, page: 0), 4500, "newest page wins")
    top.deallocate()   // 5001 objects terminate in a loop: recursion would overflow the kernel stack
    t.expectEqual(bed.system.objects.count, objectsBefore, "every object of the chain terminated")
}

private func shadowReadsThroughUntilWritten(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let backing = bed.newObject(&t, pages: 4), let map = bed.newMap(&t) else { return }
    bed.put(0xB0, in: backing, page: 1)
    backing.reference()
    guard let shadow = t.vmSucceeds("shadow", { () throws(ObjectError) in try backing.shadow(offset: 0, length: offset(4)) }) else { return }
    bed.hold(shadow)
    t.vmSucceeds("map") { () throws(MapError) in try map.map(shadow, at: vmTestBase, length: offset(4), protection: .readWrite) }
    bed.activate(&t, map)
    t.expectEqual(userLoad(vmTestBase + offset(1)), 0xB0, "read through to the backing page")
    t.expectEqual(shadow.residentPageCount, 0, "a read copies nothing")
    userStore(vmTestBase + offset(1), 0x51)
    t.expectEqual(userLoad(vmTestBase + offset(1)), 0x51, "own page after the write")
    t.expectEqual(shadow.residentPageCount, 1, "the write copied one page up")
    t.expectEqual(bed.visible(backing, page: 1), 0xB0, "backing page unchanged")
}

private func shadowWriteLeavesBackingIntact(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = bed.newMap(&t), let other = bed.newMap(&t), let backing = bed.newObject(&t, pages: 2) else { return }
    bed.put(0xAA, in: backing, page: 0)
    // Two maps share the backing object copy-on-write (as after a fork).
    t.vmSucceeds("map a") { () throws(MapError) in try map.map(backing, at: vmTestBase, length: offset(2), protection: .readWrite, copyOnWrite: true) }
    t.vmSucceeds("map b") { () throws(MapError) in try other.map(backing, at: vmTestBase, length: offset(2), protection: .readWrite, copyOnWrite: true) }
    bed.activate(&t, map)
    userStore(vmTestBase, 0x1)
    bed.activate(&t, other)
    t.expectEqual(userLoad(vmTestBase), 0xAA, "the other map still sees the backing page")
    userStore(vmTestBase, 0x2)
    bed.activate(&t, map)
    t.expectEqual(userLoad(vmTestBase), 0x1, "first map keeps its write")
    t.expectEqual(bed.visible(backing, page: 0), 0xAA, "backing object never written")
    t.expect(map.entries[0].object !== backing && other.entries[0].object !== backing, "both wrote into shadows")
}

private func collapseMovesMissingPagesFreesHidden(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let backing = bed.newObject(&t, pages: 8) else { return }
    for index in 0..<8 { bed.put(0x100 + UInt64(index), in: backing, page: index) }
    bed.forget(backing)   // the test's reference moves into the shadow
    guard let shadow = t.vmSucceeds("shadow", { () throws(ObjectError) in try backing.shadow(offset: offset(2), length: offset(4)) }) else { return }
    bed.hold(shadow)
    bed.put(0x7, in: shadow, page: 1)
    let expected = (0..<4).map { bed.visible(shadow, page: $0) }
    shadow.collapse()
    t.expect(shadow.shadow == nil, "backing object spliced out")
    t.expect(backing.isTerminated, "backing object terminated")
    t.expectEqual(bed.statistics.pagesMovedByCollapse, 3, "pages moved up")
    t.expectEqual(bed.statistics.pagesFreedByCollapse, 5, "hidden or outside pages freed")
    var same = true
    for index in 0..<4 where bed.visible(shadow, page: index) != expected[index] { same = false }
    t.expect(same, "the shadow shows the same data after collapse")
}

private func collapseAfterChildExitShrinksChain(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let parent = bed.newMap(&t) else { return }
    t.vmSucceeds("map") { () throws(MapError) in try parent.map(nil, at: vmTestBase, length: offset(8), protection: .readWrite) }
    bed.activate(&t, parent)
    for index in 0..<8 { userStore(vmTestBase + offset(index), UInt64(index)) }
    var deepest = 0
    for round in 0..<10 {
        guard let child = t.vmSucceeds("fork", { () throws(MapError) in try parent.fork() }) else { return }
        bed.activate(&t, child)
        userStore(vmTestBase, 0x1000 + UInt64(round))
        bed.activate(&t, parent)
        userStore(vmTestBase + offset(1), 0x2000 + UInt64(round))
        deepest = max(deepest, parent.maximumChainDepth, child.maximumChainDepth)
        child.destroy()
    }
    t.note("deepest chain while forking: \(deepest), after the children exited: \(parent.maximumChainDepth)")
    t.expect(deepest <= 2, "chains stay short while children live")
    t.expectEqual(parent.maximumChainDepth, 0, "chain collapsed after the children exited")
    t.expect(bed.statistics.collapses > 0, "collapse ran")
    t.expectEqual(userLoad(vmTestBase + offset(1)), 0x2009, "parent data intact")
    t.expectEqual(userLoad(vmTestBase), 0, "child writes never reached the parent")
}

private func collapseAdoptsBackingPagerData(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let backing = bed.newObject(&t, pages: 8) else { return }
    let pager = KernelTestPager()
    t.vmSucceeds("set pager") { () throws(ObjectError) in try backing.setPager(pager) }
    for index in 0..<8 { pager.put(0x200 + UInt64(index), at: offset(index)) }
    bed.forget(backing)   // the test's reference moves into the shadow
    guard let shadow = t.vmSucceeds("shadow", { () throws(ObjectError) in try backing.shadow(offset: offset(4), length: offset(4)) }) else { return }
    bed.hold(shadow)
    bed.put(0x5, in: shadow, page: 0)
    shadow.collapse()
    t.expect(shadow.shadow == nil, "collapsed")
    t.expect(shadow.pager === pager, "the shadow adopted the backing pager")
    t.expectEqual(pager.offsetsWithData(in: 0..<UInt64.max).count, 3, "data the shadow hides or cannot see was dropped")
    t.expectEqual(bed.visible(shadow, page: 0), 0x5, "resident page kept")
    t.expectEqual(bed.visible(shadow, page: 2), 0x206, "paged-out data reachable at the shifted offset")
    t.expect(bed.statistics.pageIns > 0, "the lookup paged in")
}

private func collapseMergesTwoPagers(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let backing = bed.newObject(&t, pages: 4) else { return }
    let backingPager = KernelTestPager(), shadowPager = KernelTestPager()
    t.vmSucceeds("set pager") { () throws(ObjectError) in try backing.setPager(backingPager) }
    for index in 0..<4 { backingPager.put(0x10 + UInt64(index), at: offset(index)) }
    bed.forget(backing)   // the test's reference moves into the shadow
    guard let shadow = t.vmSucceeds("shadow", { () throws(ObjectError) in try backing.shadow(offset: 0, length: offset(4)) }) else { return }
    bed.hold(shadow)
    t.vmSucceeds("set pager") { () throws(ObjectError) in try shadow.setPager(shadowPager) }
    shadowPager.put(0x77, at: offset(1))
    shadow.collapse()
    t.expect(shadow.shadow == nil, "collapsed although both had pagers")
    t.expect(backingPager.terminated, "backing pager terminated")
    t.expectEqual(bed.visible(shadow, page: 1), 0x77, "the shadow's newer data wins")
    t.expectEqual(bed.visible(shadow, page: 3), 0x13, "backing data moved")
}

private func bypassSkipsFullyCoveredBacking(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let bottom = bed.newObject(&t, pages: 4) else { return }
    bed.put(1, in: bottom, page: 0)
    bed.put(2, in: bottom, page: 3)
    bed.forget(bottom)
    guard let middle = t.vmSucceeds("shadow", { () throws(ObjectError) in try bottom.shadow(offset: 0, length: offset(4)) }) else { return }
    bed.hold(middle)
    bed.put(3, in: middle, page: 1)
    middle.reference()   // a second user: no collapse, but bypass
    guard let top = t.vmSucceeds("shadow", { () throws(ObjectError) in try middle.shadow(offset: 0, length: offset(4)) }) else { return }
    bed.hold(top)
    bed.put(4, in: top, page: 1)
    let before = (0..<4).map { bed.visible(top, page: $0) }
    top.collapse()
    t.expect(top.shadow === bottom, "top now shadows the bottom object")
    t.expectEqual(bed.statistics.bypasses, 1, "one bypass")
    var same = true
    for index in 0..<4 where bed.visible(top, page: index) != before[index] { same = false }
    t.expect(same, "same data after bypass")
    t.expectEqual(middle.referenceCount, 1, "middle lost the top's reference")
}

private func bypassRefusedForPagedOutBackingPage(_ t: inout TestContext, _ bed: VMTestBed) {
    // 4.4BSD's bypass looked at resident pages only and lost a paged-out one.
    guard let bottom = bed.newObject(&t, pages: 2) else { return }
    bed.forget(bottom)
    guard let middle = t.vmSucceeds("shadow", { () throws(ObjectError) in try bottom.shadow(offset: 0, length: offset(2)) }) else { return }
    bed.hold(middle)
    let pager = KernelTestPager()
    t.vmSucceeds("set pager") { () throws(ObjectError) in try middle.setPager(pager) }
    pager.put(0x42, at: offset(1))
    middle.reference()
    guard let top = t.vmSucceeds("shadow", { () throws(ObjectError) in try middle.shadow(offset: 0, length: offset(2)) }) else { return }
    bed.hold(top)
    top.collapse()
    t.expect(top.shadow === middle, "no bypass over paged-out data")
    t.expectEqual(bed.visible(top, page: 1), 0x42, "paged-out page still visible")
}

private func bypassRefusedForCopyObject(_ t: inout TestContext, _ bed: VMTestBed) {
    // A delayed-copy object receives pushes later: skipping it would lose them.
    guard let parent = bed.newMap(&t) else { return }
    t.vmSucceeds("map") { () throws(MapError) in
        try parent.map(nil, at: vmTestBase, length: offset(4), protection: .readWrite, copyStrategy: .delayed)
    }
    bed.activate(&t, parent)
    userStore(vmTestBase, 0xA)
    guard let child = t.vmSucceeds("fork", { () throws(MapError) in try parent.fork() }) else { return }
    bed.adopt(child)
    bed.activate(&t, child)
    userStore(vmTestBase + offset(1), 0xC)     // child's shadow over the (still empty) copy object
    bed.activate(&t, parent)
    userStore(vmTestBase, 0xB)                 // pushes 0xA into the copy object
    bed.activate(&t, child)
    t.expectEqual(userLoad(vmTestBase), 0xA, "child keeps its snapshot")
    t.expect(bed.statistics.copyPushes >= 1, "the parent's write pushed the old page")
}

private func cacheKeepsAndRevivesObject(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let object = bed.newObject(&t, pages: 2) else { return }
    bed.put(0xCA, in: object, page: 1)
    object.isCacheable = true
    object.cacheKey = 0xC0FFEE
    bed.release(object)
    t.expect(object.isCached && !object.isTerminated, "unreferenced cacheable object cached")
    let revived = bed.system.cache.lookup(key: 0xC0FFEE)
    t.expect(revived === object, "lookup revives it")
    t.expectEqual(object.referenceCount, 1, "one reference after revival")
    t.expectEqual(bed.visible(object, page: 1), 0xCA, "pages survived in the cache")
    bed.hold(object)
}

private func cacheEvictsLeastRecentlyUsed(_ t: inout TestContext, _ bed: VMTestBed) {
    let limit = bed.system.cache.limit
    bed.system.cache.limit = 2
    var objects: [VMObject] = []
    for key in 1...3 {
        guard let object = bed.newObject(&t, pages: 1) else { return }
        object.isCacheable = true
        object.cacheKey = 0xCA00 + UInt64(key)
        objects.append(object)
    }
    bed.release(objects[0])
    bed.release(objects[1])
    _ = bed.system.cache.lookup(key: 0xCA01).map { bed.release($0) }    // 1 becomes the newest
    bed.release(objects[2])                                            // over the limit: 2 goes
    t.expect(objects[1].isTerminated, "least recently used evicted")
    t.expect(!objects[0].isTerminated && !objects[2].isTerminated, "recent ones kept")
    t.expectEqual(bed.system.cache.count, 2, "cache at its limit")
    bed.system.cache.limit = limit
}

private func cacheTrimmedUnderPressure(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let object = bed.newObject(&t, pages: 4) else { return }
    for index in 0..<4 { bed.put(UInt64(index), in: object, page: index) }
    object.isCacheable = true
    object.cacheKey = 0x7777
    bed.release(object)
    let freed = bed.system.cache.trim(freeingPages: 1, in: bed.system)
    t.expectEqual(freed, 4, "trim freed the cached object's pages")
    t.expect(object.isTerminated, "trimmed object terminated")
    t.expect(bed.system.cache.lookup(key: 0x7777) == nil, "gone from the cache")
}

private func coalesceGrowsEntryInPlace(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = bed.newMap(&t) else { return }
    t.vmSucceeds("map") { () throws(MapError) in try map.map(nil, at: vmTestBase, length: offset(2), protection: .readWrite) }
    bed.activate(&t, map)
    userStore(vmTestBase, 0x11)
    t.vmSucceeds("map adjacent") { () throws(MapError) in try map.map(nil, at: vmTestBase + offset(2), length: offset(3), protection: .readWrite) }
    t.expectEqual(map.entries.count, 1, "one entry after coalesce")
    t.expectEqual(map.entries[0].object?.size ?? 0, offset(5), "object grown in place")
    userStore(vmTestBase + offset(4), 0x44)
    t.expectEqual(userLoad(vmTestBase), 0x11, "old data kept")
    t.expectEqual(userLoad(vmTestBase + offset(4)), 0x44, "new range usable")
}

private func coalesceRefusedForSharedObject(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = bed.newMap(&t) else { return }
    t.vmSucceeds("map") { () throws(MapError) in
        try map.map(nil, at: vmTestBase, length: offset(2), protection: .readWrite, inheritance: .share)
    }
    bed.activate(&t, map)
    userStore(vmTestBase, 0x11)
    guard let child = t.vmSucceeds("fork", { () throws(MapError) in try map.fork() }) else { return }
    bed.adopt(child)
    t.vmSucceeds("map adjacent") { () throws(MapError) in
        try map.map(nil, at: vmTestBase + offset(2), length: offset(1), protection: .readWrite, inheritance: .share)
    }
    t.expectEqual(map.entries.count, 2, "a shared object is not grown")
    t.expectEqual(map.entries[0].object?.size ?? 0, offset(2), "size unchanged")
}

private func removeRangeUnmapsEverywhere(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let first = bed.newMap(&t), let second = bed.newMap(&t), let object = bed.newObject(&t, pages: 4) else { return }
    t.vmSucceeds("map 1") { () throws(MapError) in try first.map(object, at: vmTestBase, length: offset(4), protection: .readWrite) }
    t.vmSucceeds("map 2") { () throws(MapError) in try second.map(object, at: vmTestBase + offset(16), length: offset(4), protection: .readWrite) }
    bed.activate(&t, first)
    userStore(vmTestBase, 0x1)
    bed.activate(&t, second)
    t.expectEqual(userLoad(vmTestBase + offset(16)), 0x1, "shared page seen by the second map")
    t.vmSucceeds("removeRange") { () throws(ObjectError) in try object.removeRange(offset: 0, length: offset(2)) }
    let gone1 = (try? first.pmap.extract(VirtualAddress(vmTestBase))) == nil
    let gone2 = (try? second.pmap.extract(VirtualAddress(vmTestBase + offset(16)))) == nil
    t.expect(gone1 && gone2, "the page is unmapped from both maps")
    t.expectEqual(userLoad(vmTestBase + offset(16)), 0, "a removed page zero-fills again")
}

private func protectRangeWriteProtectsEverywhere(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let first = bed.newMap(&t), let second = bed.newMap(&t), let object = bed.newObject(&t, pages: 2) else { return }
    t.vmSucceeds("map 1") { () throws(MapError) in try first.map(object, at: vmTestBase, length: offset(2), protection: .readWrite) }
    t.vmSucceeds("map 2") { () throws(MapError) in try second.map(object, at: vmTestBase, length: offset(2), protection: .readWrite) }
    bed.activate(&t, first)
    userStore(vmTestBase, 0x1)
    bed.activate(&t, second)
    userStore(vmTestBase, 0x2)
    t.vmSucceeds("protectRange") { () throws(ObjectError) in try object.protectRange(offset: 0, length: offset(2), to: .readOnly) }
    let faults = PageFaultDispatcher.faultCount
    t.expectEqual(userLoad(vmTestBase), 0x2, "reads still work")
    userStore(vmTestBase, 0x3)
    t.expect(PageFaultDispatcher.faultCount > faults, "the write faulted")
    bed.activate(&t, first)
    let writable = (try? first.pmap.extract(VirtualAddress(vmTestBase)))?.protection.contains(.write) ?? true
    t.expect(!writable, "the other map's mapping was write-protected too")
    t.expectEqual(userLoad(vmTestBase), 0x3, "shared page shows the last write")
}

private func cleanPagesOutOnlyDirtyPages(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = bed.newMap(&t), let object = bed.newObject(&t, pages: 4) else { return }
    let pager = KernelTestPager()
    t.vmSucceeds("set pager") { () throws(ObjectError) in try object.setPager(pager) }
    t.vmSucceeds("map") { () throws(MapError) in try map.map(object, at: vmTestBase, length: offset(4), protection: .readWrite) }
    bed.activate(&t, map)
    userStore(vmTestBase, 0x5)
    _ = userLoad(vmTestBase + offset(1))
    userStore(vmTestBase + offset(2), 0x6)
    let written = t.vmSucceeds("clean", { () throws(ObjectError) in try object.clean(offset: 0, length: offset(4)) }) ?? -1
    t.expectEqual(written, 2, "two dirty pages written")
    t.expectEqual(pager.word(at: 0) ?? 0, 0x5, "first page's data")
    t.expect(pager.word(at: offset(1)) == nil, "clean page not written")
    let again = t.vmSucceeds("clean again", { () throws(ObjectError) in try object.clean(offset: 0, length: offset(4)) }) ?? -1
    t.expectEqual(again, 0, "nothing dirty after clean")
    userStore(vmTestBase, 0x8)
    let third = t.vmSucceeds("clean after a write", { () throws(ObjectError) in try object.clean(offset: 0, length: offset(4)) }) ?? -1
    t.expectEqual(third, 1, "the hardware dirty bit of the new write was seen")
    t.expectEqual(pager.word(at: 0) ?? 0, 0x8, "new data written")
}

private func residentIndexWalksInOrderAndReturnsNodes(_ t: inout TestContext, _ bed: VMTestBed) {
    let blocksBefore = MetadataMemory.blocksInUse
    // 2^20 pages (4 GiB) of object, touched sparsely: no resident-page table sized by the object.
    guard let object = bed.newObject(&t, pages: 1 << 20) else { return }
    let indices = [(1 << 20) - 1, 0, 4095, 63, 64, 1 << 18]
    for index in indices {
        guard bed.put(UInt64(index), in: object, page: index) != nil else {
            t.expect(false, "insert a page")
            return
        }
    }
    t.expectEqual(object.residentPageCount, indices.count, "pages resident")
    let walked = object.sortedResidentPages
    t.expect(walked.map { $0.offset } == indices.sorted().map { offset($0) }, "the walk is in offset order")
    t.expect(walked.allSatisfy { $0.page.contents.load(as: UInt64.self) == $0.offset >> pageShift }, "each offset's own page")
    t.expect(object.residentIndexBytes > 0 && object.residentIndexBytes <= 16 * RadixTree.nodeBytes,
             "a few 512-byte nodes for a sparse 4 GiB object")
    t.note("resident index: \(object.residentIndexBytes) bytes for \(indices.count) pages of a 4 GiB object")
    t.vmSucceeds("removeRange") { () throws(ObjectError) in try object.removeRange(offset: offset(64), length: offset(1 << 19)) }
    t.expectEqual(object.residentPageCount, 3, "pages 64, 4095 and 2^18 freed, the others kept")
    t.expect(object.page(at: offset(63)) != nil && object.page(at: offset((1 << 20) - 1)) != nil
             && object.page(at: offset(4095)) == nil, "exactly the range went")
    bed.releaseAll()
    t.expectEqual(MetadataMemory.blocksInUse, blocksBefore, "termination returned every index node")
}
