// VMFaultSuite: vm_fault driven by real MMU faults. Tests map anonymous memory in real user
// address spaces, load them into the MMU, and touch user virtual addresses from the kernel:
// the CPU faults, the trap code hands the decoded fault to vm_fault through the test bed's
// handler, which zero-fills, copies on write or maps the page, and the instruction restarts.
// Bad accesses are exercised both through VMMap.fault, which returns the typed error, and
// through real MMU faults with probe accesses (Kernel/Core/Probe.swift), which come back as
// an error instead of a panic, the way a user access would become a signal. The auditor runs
// after every test.

let vmFaultSuite = SelfTestSuite("vm_fault", [
    vmTest("zero_fill_fault_maps_zeroed_page", zeroFillFaultMapsZeroedPage),
    vmTest("zero_fill_read_then_write_upgrades_in_place", zeroFillReadThenWriteUpgrades),
    vmTest("cow_write_after_fork_copies_page_keeps_parent", cowWriteAfterForkCopiesPage),
    vmTest("copy_on_write_child_write_invisible_to_parent", copyOnWriteChildWriteInvisible),
    vmTest("fork_share_inheritance_shares_writes", forkShareInheritanceSharesWrites),
    vmTest("fork_none_inheritance_leaves_hole", forkNoneInheritanceLeavesHole),
    vmTest("fork_delayed_copy_pushes_old_page", forkDelayedCopyPushesOldPage),
    vmTest("fault_outside_entries_returns_not_mapped", faultOutsideEntriesReturnsNotMapped),
    vmTest("fault_write_read_only_returns_protection_error", faultWriteReadOnlyReturnsProtectionError),
    vmTest("protect_read_only_write_faults_and_is_refused", protectReadOnlyWriteIsRefused),
    vmTest("wire_prefaults_no_fault_on_access", wirePrefaultsNoFaultOnAccess),
    vmTest("fork_nested_100_chain_depth_bounded", nestedForksChainDepthBounded),
    vmTest("unmap_then_access_returns_not_mapped", unmapThenAccessReturnsNotMapped),
    vmTest("physical_object_maps_its_frame", physicalObjectMapsItsFrame),
    vmTest("bad_map_arguments_typed_errors_no_change", badMapArgumentsAreTypedErrors),
    vmTest("bad_access_through_mmu_fault_returns_error_not_panic", badAccessThroughMMUReturnsError),
    vmTest("index_memory_exhausted_fault_is_out_of_memory_page_not_lost", indexExhaustionFailsFaultCleanly),
])

private func offset(_ page: Int) -> UInt64 { UInt64(page) << pageShift }

/// A map with `pages` pages of anonymous memory at vmTestBase, loaded into the MMU.
private func anonymousMap(_ t: inout TestContext, _ bed: VMTestBed, pages: Int, protection: Protection = .readWrite,
                          inheritance: Inheritance = .copy, strategy: CopyStrategy = .symmetric) -> VMMap? {
    guard let map = bed.newMap(&t) else { return nil }
    let mapped = t.vmSucceeds("map anonymous memory") { () throws(MapError) in
        try map.map(nil, at: vmTestBase, length: offset(pages), protection: protection, inheritance: inheritance,
                    copyStrategy: strategy)
    }
    guard mapped != nil else { return nil }
    bed.activate(&t, map)
    return map
}

private func fork(_ t: inout TestContext, _ bed: VMTestBed, _ map: VMMap) -> VMMap? {
    guard let child = t.vmSucceeds("fork", { () throws(MapError) in try map.fork() }) else { return nil }
    bed.adopt(child)
    return child
}

private func zeroFillFaultMapsZeroedPage(_ t: inout TestContext, _ bed: VMTestBed) {
    guard anonymousMap(&t, bed, pages: 4) != nil else { return }
    let faults = PageFaultDispatcher.faultCount
    t.expectEqual(userLoad(vmTestBase + offset(2) + 8), 0, "first touch reads zero")
    t.expectEqual(userLoad(vmTestBase + offset(2) + 4088), 0, "whole page zeroed")
    t.expectEqual(PageFaultDispatcher.faultCount - faults, 1, "one real fault")
    t.expectEqual(bed.statistics.zeroFillFaults, 1, "one zero-fill")
}

private func zeroFillReadThenWriteUpgrades(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = anonymousMap(&t, bed, pages: 1) else { return }
    _ = userLoad(vmTestBase)
    let frame = (try? map.pmap.extract(VirtualAddress(vmTestBase)))?.physicalAddress
    userStore(vmTestBase, 0x1234)
    t.expectEqual(userLoad(vmTestBase), 0x1234, "write then read")
    let after = (try? map.pmap.extract(VirtualAddress(vmTestBase)))?.physicalAddress
    t.expect(frame != nil && frame == after, "the same page, now writable: no copy")
    t.expectEqual(bed.statistics.copyOnWriteFaults, 0, "no copy-on-write")
}

private func cowWriteAfterForkCopiesPage(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let parent = anonymousMap(&t, bed, pages: 4) else { return }
    userStore(vmTestBase, 0xA)
    guard let child = fork(&t, bed, parent) else { return }
    let before = (try? parent.pmap.extract(VirtualAddress(vmTestBase)))
    t.expect(before?.protection.contains(.write) == false, "fork write-protected the parent's page")
    let faults = PageFaultDispatcher.faultCount
    userStore(vmTestBase, 0xB)
    t.expectEqual(PageFaultDispatcher.faultCount - faults, 1, "the parent's write faulted")
    bed.activate(&t, child)
    t.expectEqual(userLoad(vmTestBase), 0xA, "child keeps the old contents")
    bed.activate(&t, parent)
    t.expectEqual(userLoad(vmTestBase), 0xB, "parent sees its write")
    t.expect(bed.statistics.copyOnWriteFaults >= 1, "copy-on-write happened")
}

private func copyOnWriteChildWriteInvisible(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let parent = anonymousMap(&t, bed, pages: 2) else { return }
    userStore(vmTestBase, 0x1)
    userStore(vmTestBase + offset(1), 0x2)
    guard let child = fork(&t, bed, parent) else { return }
    bed.activate(&t, child)
    t.expectEqual(userLoad(vmTestBase + offset(1)), 0x2, "child reads the parent's data")
    userStore(vmTestBase + offset(1), 0x22)
    bed.activate(&t, parent)
    t.expectEqual(userLoad(vmTestBase + offset(1)), 0x2, "parent does not see the child's write")
    userStore(vmTestBase, 0x11)
    bed.activate(&t, child)
    t.expectEqual(userLoad(vmTestBase), 0x1, "child does not see the parent's later write")
}

private func forkShareInheritanceSharesWrites(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let parent = anonymousMap(&t, bed, pages: 2, inheritance: .share) else { return }
    userStore(vmTestBase, 0x5)
    guard let child = fork(&t, bed, parent) else { return }
    bed.activate(&t, child)
    t.expectEqual(userLoad(vmTestBase), 0x5, "child reads the shared page")
    userStore(vmTestBase + offset(1), 0x6)
    bed.activate(&t, parent)
    t.expectEqual(userLoad(vmTestBase + offset(1)), 0x6, "parent sees the child's write")
    t.expect(parent.entries[0].object === child.entries[0].object, "one object for both")
}

private func forkNoneInheritanceLeavesHole(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let parent = anonymousMap(&t, bed, pages: 2, inheritance: .none) else { return }
    userStore(vmTestBase, 0x5)
    guard let child = fork(&t, bed, parent) else { return }
    t.expectEqual(child.entries.count, 0, "nothing inherited")
    do {
        try child.fault(at: vmTestBase, access: .read)
        t.expect(false, "a fault in the hole must fail")
    } catch {
        t.expect(error == .notMapped, "notMapped")
    }
}

private func forkDelayedCopyPushesOldPage(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let parent = anonymousMap(&t, bed, pages: 4, strategy: .delayed) else { return }
    userStore(vmTestBase, 0x1)
    guard let child = fork(&t, bed, parent) else { return }
    t.expect(!parent.entries[0].needsCopy, "parent keeps writing its own object")
    userStore(vmTestBase, 0x2)            // resident page: pushed into the copy object first
    userStore(vmTestBase + offset(1), 0x3)   // never touched: zeros pushed first
    t.expectEqual(bed.statistics.copyPushes, 2, "two pushes")
    bed.activate(&t, child)
    t.expectEqual(userLoad(vmTestBase), 0x1, "child sees the contents at fork time")
    t.expectEqual(userLoad(vmTestBase + offset(1)), 0, "and zeros where nothing was written")
    userStore(vmTestBase + offset(2), 0x9)
    bed.activate(&t, parent)
    t.expectEqual(userLoad(vmTestBase + offset(2)), 0, "child's write stays private")
}

private func faultOutsideEntriesReturnsNotMapped(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = anonymousMap(&t, bed, pages: 1) else { return }
    do {
        try map.fault(at: vmTestBase + offset(1), access: .read)
        t.expect(false, "fault past the entry must fail")
    } catch {
        t.expect(error == .notMapped, "notMapped")
    }
    do {
        try map.fault(at: 0, access: .write)
        t.expect(false, "fault at null must fail")
    } catch {
        t.expect(error == .notMapped, "null is never mapped")
    }
    t.expect((try? map.pmap.extract(VirtualAddress(vmTestBase + offset(1)))) == nil, "nothing was mapped")
}

private func faultWriteReadOnlyReturnsProtectionError(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = anonymousMap(&t, bed, pages: 1, protection: .readOnly) else { return }
    t.expectEqual(userLoad(vmTestBase), 0, "read of a read-only page")
    do {
        try map.fault(at: vmTestBase, access: .write)
        t.expect(false, "a write fault on a read-only entry must fail")
    } catch {
        t.expect(error == .protectionViolation, "protectionViolation")
    }
    do {
        try map.fault(at: vmTestBase, access: .execute)
        t.expect(false, "an execute fault on a non-executable entry must fail")
    } catch {
        t.expect(error == .protectionViolation, "protectionViolation")
    }
}

private func protectReadOnlyWriteIsRefused(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = anonymousMap(&t, bed, pages: 2) else { return }
    userStore(vmTestBase, 0x77)
    t.vmSucceeds("protect") { () throws(MapError) in try map.protect(start: vmTestBase, length: offset(2), to: .readOnly) }
    let writable = (try? map.pmap.extract(VirtualAddress(vmTestBase)))?.protection.contains(.write) ?? true
    t.expect(!writable, "the pmap lost write permission at once")
    do {
        try map.fault(at: vmTestBase, access: .write)
        t.expect(false, "write after protect must fail")
    } catch {
        t.expect(error == .protectionViolation, "protectionViolation")
    }
    t.expectEqual(userLoad(vmTestBase), 0x77, "reads still work")
    do {
        try map.protect(start: vmTestBase, length: offset(2), to: .readOnly, setMaximum: true)
        try map.protect(start: vmTestBase, length: offset(2), to: .readWrite)
        t.expect(false, "raising above the maximum must fail")
    } catch {
        t.expect(error == .protectionExceedsMaximum, "protectionExceedsMaximum")
    }
}

private func wirePrefaultsNoFaultOnAccess(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = anonymousMap(&t, bed, pages: 8) else { return }
    t.vmSucceeds("wire") { () throws(MapError) in try map.wire(start: vmTestBase, length: offset(8)) }
    let faults = PageFaultDispatcher.faultCount
    for index in 0..<8 { userStore(vmTestBase + offset(index), UInt64(index)) }
    t.expectEqual(PageFaultDispatcher.faultCount, faults, "no fault on wired memory")
    var wired = 0
    for index in 0..<8 {
        if let translation = try? map.pmap.extract(VirtualAddress(vmTestBase + offset(index))),
           let page = pageFrames.page(at: translation.physicalAddress), translation.isWired, page.wireCount == 1 { wired += 1 }
    }
    t.expectEqual(wired, 8, "every page wired in the pmap and the page queues")
    t.vmSucceeds("unwire") { () throws(MapError) in try map.unwire(start: vmTestBase, length: offset(8)) }
    do {
        try map.unwire(start: vmTestBase, length: offset(8))
        t.expect(false, "a second unwire must fail")
    } catch {
        t.expect(error == .notWired, "notWired")
    }
}

private func nestedForksChainDepthBounded(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let first = anonymousMap(&t, bed, pages: 128) else { return }
    userStore(vmTestBase, 0x1000)
    var current = first
    var deepest = 0
    for generation in 1...100 {
        guard let child = fork(&t, bed, current) else { return }
        bed.activate(&t, child)
        userStore(vmTestBase + offset(generation), 0x1000 + UInt64(generation))   // never bypassable
        deepest = max(deepest, child.maximumChainDepth, current.maximumChainDepth)
        current = child
    }
    t.note("100 nested forks: deepest chain \(deepest), bound \(bed.system.maximumChainDepth), flattens \(bed.statistics.flattens)")
    t.expect(deepest <= bed.system.maximumChainDepth + 1, "chain depth bounded")
    var correct = true
    for index in 0...100 where userLoad(vmTestBase + offset(index)) != 0x1000 + UInt64(index) { correct = false }
    t.expect(correct, "the last generation sees every ancestor's write")
    bed.activate(&t, first)
    t.expectEqual(userLoad(vmTestBase + offset(50)), 0, "the first generation sees none of them")
}

private func unmapThenAccessReturnsNotMapped(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = anonymousMap(&t, bed, pages: 4) else { return }
    for index in 0..<4 { userStore(vmTestBase + offset(index), UInt64(index)) }
    t.vmSucceeds("unmap") { () throws(MapError) in try map.unmap(start: vmTestBase + offset(1), length: offset(2)) }
    t.expectEqual(map.entries.count, 2, "entry clipped in two")
    t.expect((try? map.pmap.extract(VirtualAddress(vmTestBase + offset(1)))) == nil, "translation removed")
    do {
        try map.fault(at: vmTestBase + offset(2), access: .read)
        t.expect(false, "access to the unmapped range must fail")
    } catch {
        t.expect(error == .notMapped, "notMapped")
    }
    t.expectEqual(userLoad(vmTestBase + offset(3)), 3, "the rest keeps its data")
}

private func physicalObjectMapsItsFrame(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = bed.newMap(&t), let frame = try? pageFrames.allocate(zeroed: true) else { return }
    defer { try? pageFrames.free(frame) }
    frame.contents.storeBytes(of: 0xF00D, as: UInt64.self)
    guard let object = t.vmSucceeds("physical object", { () throws(ObjectError) in
        try VMObject(system: bed.system, kind: .physical(frame.physicalAddress), size: pageSize)
    }) else { return }
    bed.hold(object)
    t.vmSucceeds("map") { () throws(MapError) in try map.map(object, at: vmTestBase, length: pageSize, protection: .readWrite) }
    bed.activate(&t, map)
    t.expectEqual(userLoad(vmTestBase), 0xF00D, "reads the frame")
    userStore(vmTestBase + 8, 0xBEEF)
    t.expectEqual(frame.contents.load(fromByteOffset: 8, as: UInt64.self), 0xBEEF, "writes reach the frame")
    t.vmSucceeds("unmap") { () throws(MapError) in try map.unmap(start: vmTestBase, length: pageSize) }
}

private func badMapArgumentsAreTypedErrors(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = anonymousMap(&t, bed, pages: 2) else { return }
    func check(_ expected: MapError, _ what: StaticString, _ t: inout TestContext, _ body: () throws(MapError) -> Void) {
        do {
            try body()
            t.expect(false, what)
        } catch {
            t.expect(error == expected, what)
        }
    }
    check(.unaligned, "unaligned address", &t) { () throws(MapError) in try map.map(nil, at: vmTestBase + 1, length: pageSize, protection: .readWrite) }
    check(.outOfRange, "zero length", &t) { () throws(MapError) in try map.map(nil, at: vmTestBase + offset(8), length: 0, protection: .readWrite) }
    check(.outOfRange, "kernel address in a user map", &t) { () throws(MapError) in
        try map.map(nil, at: AddressSpaceLayout.kernelStart, length: pageSize, protection: .readWrite)
    }
    check(.outOfRange, "wrapping range", &t) { () throws(MapError) in
        try map.map(nil, at: UInt64.max & ~(pageSize - 1), length: offset(2), protection: .readWrite)
    }
    check(.overlapping, "overlapping range", &t) { () throws(MapError) in try map.map(nil, at: vmTestBase + offset(1), length: offset(2), protection: .readWrite) }
    check(.protectionExceedsMaximum, "protection above maximum", &t) { () throws(MapError) in
        try map.map(nil, at: vmTestBase + offset(8), length: pageSize, protection: .all, maxProtection: .readWrite)
    }
    check(.notMapped, "protect over a hole", &t) { () throws(MapError) in try map.protect(start: vmTestBase, length: offset(4), to: .readOnly) }
    check(.notMapped, "wire over a hole", &t) { () throws(MapError) in try map.wire(start: vmTestBase, length: offset(4)) }
    t.expectEqual(map.entries.count, 1, "map unchanged")
    t.expect(map.entries[0].protection == .readWrite, "protection unchanged")
}

private func badAccessThroughMMUReturnsError(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = anonymousMap(&t, bed, pages: 2, protection: .readOnly) else { return }
    let faults = PageFaultDispatcher.faultCount
    t.expectEqual(probeLoad(vmTestBase) ?? 1, 0, "a good read through a zero-fill fault succeeds")
    t.expect(!probeStore(vmTestBase, 0xBAD), "a write to a read-only page comes back as an error")
    t.expectEqual(probeLoad(vmTestBase) ?? 1, 0, "and changed nothing")
    t.expect(probeLoad(vmTestBase + offset(64)) == nil, "a read outside every entry comes back as an error")
    t.expect(probeLoad(0) == nil, "a null read comes back as an error")
    t.expect(PageFaultDispatcher.faultCount - faults >= 4, "every bad access was a real MMU fault")
    t.expectEqual(bed.takeUnresolvedFaults(), 3, "vm_fault refused exactly the three bad accesses")
    t.expect((try? map.pmap.extract(VirtualAddress(vmTestBase + offset(64)))) == nil, "nothing was mapped")
}

/// Pages handed out by PageFrames and not on its free queue.
private var framesInUse: Int { pageFrames.ownedPages - pageFrames.count(of: .free) }

private func indexExhaustionFailsFaultCleanly(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let map = anonymousMap(&t, bed, pages: 128) else { return }
    t.expect(probeStore(vmTestBase, 1), "page 0 faults in (its object's index gets its first leaf)")
    let saved = MetadataMemory.allocate
    MetadataMemory.allocate = { _ in nil }   // Every index node allocation fails from here.
    let before = framesInUse
    t.expect(!probeStore(vmTestBase + offset(64), 2), "a write whose page needs a new index node comes back as an error")
    do throws(FaultError) {
        try map.fault(at: vmTestBase + offset(100), access: .write)
        t.expect(false, "vm_fault refuses the page")
    } catch {
        t.expect(error == .outOfMemory, "vm_fault says outOfMemory")
    }
    t.expectEqual(framesInUse, before, "the frames those faults took went back")
    t.expect(probeStore(vmTestBase + offset(1), 3), "a page in the existing leaf still faults in")
    MetadataMemory.allocate = saved
    t.expect(probeStore(vmTestBase + offset(64), 4), "with memory back the same access succeeds")
    t.expectEqual(probeLoad(vmTestBase) ?? 0, 1, "page 0 kept its data")
    t.expectEqual(probeLoad(vmTestBase + offset(1)) ?? 0, 3, "page 1 kept its data")
    t.expectEqual(probeLoad(vmTestBase + offset(64)) ?? 0, 4, "page 64 holds the retried write")
    t.expectEqual(bed.takeUnresolvedFaults(), 1, "only the access during exhaustion was refused")
}
