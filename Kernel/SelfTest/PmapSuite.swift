// PmapSuite: proves the pmap drives the real MMU. Every test touches memory through virtual
// addresses (mmu_load64/mmu_store64, real instructions the compiler cannot move), so the MMU
// translates, faults, and sets referenced/modified bits for real; faults the tests expect go
// to a scoped handler that records them and makes the access legal, and the faulting
// instruction restarts. A stale TLB entry would show up as a wrong value or a missing fault.
// On aarch64 without FEAT_HAFDBS the referenced/modified tests also exercise the pmap's fault
// emulation (those faults never reach the handler).

let pmapSuite = SelfTestSuite("pmap", [
    SelfTest("enter_then_read_write_through_va", enterThenReadWriteThroughVirtualAddress),
    SelfTest("extract_reports_frame_offset_and_protection", extractReportsFrameOffsetAndProtection),
    SelfTest("protect_read_only_makes_write_fault_in_hook", protectReadOnlyMakesWriteFault),
    SelfTest("remove_makes_access_fault_in_hook", removeMakesAccessFault),
    SelfTest("remove_512_page_range_unmaps_all_frees_tables", removeRangeUnmapsAllAndFreesTables),
    SelfTest("page_protect_write_protects_every_mapping", pageProtectWriteProtectsEveryMapping),
    SelfTest("remove_all_unmaps_page_from_every_pmap", removeAllUnmapsPageEverywhere),
    SelfTest("referenced_bit_set_by_access_and_cleared", referencedBitSetByAccessAndCleared),
    SelfTest("modified_dirty_bit_set_by_write_not_read_and_cleared", modifiedBitSetByWriteAndCleared),
    SelfTest("tlb_invalidated_on_remap_no_stale_read", tlbInvalidatedOnRemap),
    SelfTest("tlb_invalidated_on_kernel_remap_global_entry", tlbInvalidatedOnKernelRemap),
    SelfTest("address_spaces_switched_each_sees_own_page", addressSpacesSwitched),
    SelfTest("kernel_image_mapped_wx_text_rx_data_nx", kernelImageMappedWX),
    SelfTest("kernel_text_and_rodata_write_faults_wx", kernelTextAndReadOnlyDataWritesFault),
    SelfTest("execute_nx_page_faults_runs_after_protect_rx", executeNonExecutableFaults),
    SelfTest("kernel_stack_guard_page_faults", kernelStackGuardPageFaults),
    SelfTest("bad_arguments_typed_errors_no_change", badArgumentsReturnTypedErrors),
    SelfTest("destroy_frees_tables_and_pv_entries", destroyFreesTablesAndEntries),
    SelfTest("wired_mappings_counted_and_unwired", wiredMappingsCounted),
])

private let patternA: UInt64 = 0xA1A1_A1A1_0000_0001
private let patternB: UInt64 = 0xB2B2_B2B2_0000_0002
private let patternC: UInt64 = 0xC3C3_C3C3_0000_0003

private func userAddress(_ page: Int) -> VirtualAddress { VirtualAddress(testUserBase + UInt64(page) << pageShift) }

private func enterThenReadWriteThroughVirtualAddress(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let user = fixture.newUser(&t), let page = fixture.newPage(&t, filledWith: patternA) else { return }
    let va = userAddress(0)
    t.succeeds("activate") { () throws(PmapError) in try user.activate() }
    t.succeeds("enter") { () throws(PmapError) in try user.enter(page, at: va, protection: .readWrite) }
    let faultsBefore = PageFaultDispatcher.faultCount
    t.expectEqual(volatileLoad(va.pointer), patternA, "word read through the new mapping")
    t.expectEqual(volatileLoad(va.pointer + 4088), patternA, "last word of the page")
    volatileStore(va.pointer + 8, 0x5EED)
    t.expectEqual(page.contents.load(fromByteOffset: 8, as: UInt64.self), 0x5EED, "write through the VA seen in the frame")
    t.expectEqual(PageFaultDispatcher.faultCount, faultsBefore, "faults reaching the handler")
    t.expectEqual(user.residentPages, 1, "resident pages")
    t.expectEqual(fixture.reverseMap.mappingCount(of: page), 1, "pv entries of the page")
}

private func extractReportsFrameOffsetAndProtection(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let user = fixture.newUser(&t), let page = fixture.newPage(&t, filledWith: patternA) else { return }
    let va = userAddress(3)
    t.succeeds("enter read-only") { () throws(PmapError) in try user.enter(page, at: va, protection: .readOnly, wired: true) }
    let translation = t.succeeds("extract") { () throws(PmapError) in try user.extract(va.advanced(by: 0x123)) } ?? nil
    t.expect(translation != nil, "mapped address translates")
    if let translation {
        t.expectEqual(translation.physicalAddress.value, page.physicalAddress.value + 0x123, "physical address with offset")
        t.expect(translation.protection == .readOnly, "protection read-only")
        t.expect(translation.isWired && translation.isManaged, "wired and managed")
        t.expectEqual(translation.pageSize, pageSize, "4 KiB leaf")
    }
    let missing = t.succeeds("extract unmapped") { () throws(PmapError) in try user.extract(userAddress(4)) } ?? nil
    t.expect(missing == nil, "unmapped neighbour does not translate")
    // The kernel's own direct map: a 1 GiB or 2 MiB leaf with the right frame.
    let direct = VirtualAddress(AddressSpaceLayout.directMapBase + page.physicalAddress.value + 8)
    let viaDirect = t.succeeds("extract direct map") { () throws(PmapError) in try fixture.kernel.extract(direct) } ?? nil
    t.expectEqual(viaDirect?.physicalAddress.value ?? 0, page.physicalAddress.value + 8, "direct map translation")
    // Far from the image (whose neighbourhood is split into 4 KiB pages): the last RAM frame.
    let lastFrame = (pageFrames.firstFrame + UInt64(pageFrames.recordCount) - 1) << pageShift
    let far = t.succeeds("extract far direct map") { () throws(PmapError) in
        try fixture.kernel.extract(VirtualAddress(AddressSpaceLayout.directMapBase + lastFrame))
    } ?? nil
    t.expect((far?.pageSize ?? 0) > pageSize, "direct map uses large pages away from the image")
    t.expect(viaDirect.map { !$0.protection.contains(.execute) } ?? false, "direct map not executable")
}

private func protectReadOnlyMakesWriteFault(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let user = fixture.newUser(&t), let page = fixture.newPage(&t, filledWith: patternA) else { return }
    let va = userAddress(0)
    t.succeeds("activate") { () throws(PmapError) in try user.activate() }
    t.succeeds("enter") { () throws(PmapError) in try user.enter(page, at: va, protection: .readWrite) }
    volatileStore(va.pointer, 1)   // the TLB now holds a writable translation
    t.succeeds("protect read-only") { () throws(PmapError) in try user.protect(start: va, byteCount: pageSize, to: .readOnly) }
    let log = withFaultHandler({ fault in
        guard fault.address == va.value, fault.access == .write else { return .unhandled }
        do throws(PmapError) { try user.protect(start: va, byteCount: pageSize, to: .readWrite) } catch { return .unhandled }
        return .resolved
    }) {
        t.expectEqual(volatileLoad(va.pointer), 1, "read of a read-only page")
        volatileStore(va.pointer, 2)
    }
    t.expectEqual(log.count, 1, "write faults after protect read-only")
    t.expect(log.last?.reason == .protection, "fault reason is protection")
    t.expect(log.last.map { !$0.fromUser } ?? false, "fault from kernel mode")
    t.expectEqual(page.contents.load(as: UInt64.self), 2, "write landed once the hook restored write access")
}

private func removeMakesAccessFault(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let user = fixture.newUser(&t), let first = fixture.newPage(&t, filledWith: patternA),
          let second = fixture.newPage(&t, filledWith: patternB) else { return }
    let va = userAddress(7)
    t.succeeds("activate") { () throws(PmapError) in try user.activate() }
    t.succeeds("enter") { () throws(PmapError) in try user.enter(first, at: va, protection: .readWrite) }
    t.expectEqual(volatileLoad(va.pointer), patternA, "read before remove")
    t.succeeds("remove") { () throws(PmapError) in try user.remove(start: va, byteCount: pageSize) }
    t.expectEqual(fixture.reverseMap.mappingCount(of: first), 0, "pv entries after remove")
    let log = withFaultHandler({ fault in
        guard fault.address == va.value, fault.reason == .notPresent else { return .unhandled }
        do throws(PmapError) { try user.enter(second, at: va, protection: .readWrite) } catch { return .unhandled }
        return .resolved
    }) {
        t.expectEqual(volatileLoad(va.pointer), patternB, "read after the hook mapped another page")
    }
    t.expectEqual(log.count, 1, "access faults after remove")
    t.expect(log.last?.access == .read, "faulting access is a read")
}

private func removeRangeUnmapsAllAndFreesTables(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let user = fixture.newUser(&t) else { return }
    var pages: [Page] = []
    for index in 0..<8 {
        guard let page = fixture.newPage(&t, filledWith: UInt64(index)) else { return }
        pages.append(page)
    }
    t.succeeds("activate") { () throws(PmapError) in try user.activate() }
    let start = userAddress(512)   // one whole last-level table
    for index in 0..<512 {
        t.succeeds("enter") { () throws(PmapError) in
            try user.enter(pages[index % 8], at: start.advanced(by: UInt64(index) << pageShift), protection: .readWrite)
        }
    }
    t.expectEqual(user.residentPages, 512, "resident pages after 512 enters")
    t.expectEqual(user.tablePages, 4, "root plus three tables")
    t.expectEqual(volatileLoad(start.advanced(by: 511 << pageShift).pointer), 7, "last page reads its frame")
    t.succeeds("remove range") { () throws(PmapError) in try user.remove(start: start, byteCount: 512 << pageShift) }
    t.expectEqual(user.residentPages, 0, "resident pages after removing the range")
    t.expectEqual(user.tablePages, 1, "empty tables freed, root kept")
    var stillMapped = 0
    for index in 0..<512 {
        let translation = t.succeeds("extract") { () throws(PmapError) in try user.extract(start.advanced(by: UInt64(index) << pageShift)) } ?? nil
        if translation != nil { stillMapped += 1 }
    }
    t.expectEqual(stillMapped, 0, "pages still mapped after remove")
    for page in pages { t.expectEqual(page.mappingCount, 0, "pv entries left") }
    let log = withFaultHandler({ fault in
        guard fault.address == start.value + (100 << pageShift), fault.reason == .notPresent else { return .unhandled }
        do throws(PmapError) { try user.enter(pages[0], at: VirtualAddress(fault.address), protection: .readOnly) } catch { return .unhandled }
        return .resolved
    }) {
        _ = volatileLoad(start.advanced(by: 100 << pageShift).pointer)
    }
    t.expectEqual(log.count, 1, "access inside the removed range faults")
}

private func pageProtectWriteProtectsEveryMapping(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let first = fixture.newUser(&t), let second = fixture.newUser(&t),
          let page = fixture.newPage(&t, filledWith: patternA) else { return }
    let kernelVA = scratchKernelAddress(pages: 1)
    fixture.ownKernelRange(kernelVA, pages: 1)
    let a = userAddress(0), b = userAddress(9)
    t.succeeds("enter A a") { () throws(PmapError) in try first.enter(page, at: a, protection: .readWrite, access: .readWrite) }
    t.succeeds("enter A b") { () throws(PmapError) in try first.enter(page, at: b, protection: .readWrite) }
    t.succeeds("enter B a") { () throws(PmapError) in try second.enter(page, at: a, protection: .readWrite) }
    t.succeeds("enter kernel") { () throws(PmapError) in try fixture.kernel.enter(page, at: kernelVA, protection: .readWrite) }
    t.expectEqual(fixture.reverseMap.mappingCount(of: page), 4, "mappings of the shared page")
    t.succeeds("activate A") { () throws(PmapError) in try first.activate() }
    volatileStore(a.pointer, 1)        // writable translations cached in the TLB
    volatileStore(kernelVA.pointer, 2)
    fixture.reverseMap.pageProtect(page, to: .readOnly)
    t.expect(page.isDirty, "modified bits of write-protected mappings moved to the page")
    var protectedCount = 0
    fixture.reverseMap.forEachMapping(of: page) { map, address in
        if let translation = map.leafTranslation(at: address.value), !translation.protection.contains(.write) { protectedCount += 1 }
    }
    t.expectEqual(protectedCount, 4, "mappings without write permission")
    var current = first
    let log = withFaultHandler({ fault in
        guard fault.access == .write, fault.reason == .protection else { return .unhandled }
        let owner = fault.address >= AddressSpaceLayout.kernelStart ? fixture.kernel : current
        do throws(PmapError) { try owner.protect(start: VirtualAddress(fault.address & ~(pageSize - 1)), byteCount: pageSize, to: .readWrite) } catch {
            return .unhandled
        }
        return .resolved
    }) {
        t.expectEqual(volatileLoad(b.pointer), 2, "reads still work")
        volatileStore(a.pointer, 3)
        volatileStore(b.pointer, 4)
        volatileStore(kernelVA.pointer, 5)
        t.succeeds("activate B") { () throws(PmapError) in try second.activate() }
        current = second
        volatileStore(a.pointer, 6)
    }
    t.expectEqual(log.count, 4, "write faults: one per mapping, in both address spaces and the kernel")
    t.expectEqual(page.contents.load(as: UInt64.self), 6, "last write landed")
}

private func removeAllUnmapsPageEverywhere(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let first = fixture.newUser(&t), let second = fixture.newUser(&t),
          let page = fixture.newPage(&t, filledWith: patternA), let other = fixture.newPage(&t, filledWith: patternC) else { return }
    let kernelVA = scratchKernelAddress(pages: 1)
    fixture.ownKernelRange(kernelVA, pages: 1)
    let a = userAddress(1), b = userAddress(2)
    t.succeeds("enter A a") { () throws(PmapError) in try first.enter(page, at: a, protection: .readWrite) }
    t.succeeds("enter A b") { () throws(PmapError) in try first.enter(page, at: b, protection: .readOnly) }
    t.succeeds("enter B a") { () throws(PmapError) in try second.enter(page, at: a, protection: .readWrite) }
    t.succeeds("enter kernel") { () throws(PmapError) in try fixture.kernel.enter(page, at: kernelVA, protection: .readWrite) }
    t.succeeds("activate A") { () throws(PmapError) in try first.activate() }
    volatileStore(a.pointer, 7)
    fixture.reverseMap.removeAll(page)
    t.expectEqual(page.mappingCount, 0, "pv entries after removeAll")
    t.expect(page.isDirty && page.isReferenced, "modified and referenced bits moved to the page")
    t.expectEqual(first.residentPages + second.residentPages, 0, "user resident pages")
    var translations = 0
    for (map, address) in [(first, a), (first, b), (second, a), (fixture.kernel, kernelVA)] {
        if (t.succeeds("extract") { () throws(PmapError) in try map.extract(address) } ?? nil) != nil { translations += 1 }
    }
    t.expectEqual(translations, 0, "translations left after removeAll")
    let log = withFaultHandler({ fault in
        guard fault.reason == .notPresent else { return .unhandled }
        do throws(PmapError) {
            if fault.address >= AddressSpaceLayout.kernelStart {
                try fixture.kernel.enter(other, at: kernelVA, protection: .readOnly)
            } else {
                try first.enter(other, at: VirtualAddress(fault.address & ~(pageSize - 1)), protection: .readOnly)
            }
        } catch { return .unhandled }
        return .resolved
    }) {
        t.expectEqual(volatileLoad(a.pointer), patternC, "user read after removeAll faults to the hook")
        t.expectEqual(volatileLoad(kernelVA.pointer), patternC, "kernel read after removeAll faults to the hook")
    }
    t.expectEqual(log.count, 2, "faults after removeAll")
}

private func referencedBitSetByAccessAndCleared(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let user = fixture.newUser(&t), let page = fixture.newPage(&t, filledWith: patternA) else { return }
    let va = userAddress(0)
    let reverse = fixture.reverseMap
    t.succeeds("activate") { () throws(PmapError) in try user.activate() }
    t.succeeds("enter") { () throws(PmapError) in try user.enter(page, at: va, protection: .readWrite) }
    t.expect(!reverse.isReferenced(page), "a fresh mapping is unreferenced")
    let faults = PageFaultDispatcher.faultCount
    _ = volatileLoad(va.pointer)
    t.expect(reverse.isReferenced(page), "a read sets referenced")
    reverse.clearReferenced(page)
    t.expect(!reverse.isReferenced(page), "clearReferenced clears it")
    _ = volatileLoad(va.pointer)   // a stale TLB entry would keep the bit clear
    t.expect(reverse.isReferenced(page), "the next read sets it again")
    reverse.clearReferenced(page)
    volatileStore(va.pointer, 1)
    t.expect(reverse.isReferenced(page), "a write sets referenced")
    t.expectEqual(PageFaultDispatcher.faultCount, faults, "no fault reached the handler")
    t.note("pmap emulation faults resolved so far: \(user.emulationFaultsResolved + fixture.kernel.emulationFaultsResolved)")
}

private func modifiedBitSetByWriteAndCleared(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let user = fixture.newUser(&t), let page = fixture.newPage(&t, filledWith: patternA) else { return }
    let va = userAddress(0)
    let reverse = fixture.reverseMap
    t.succeeds("activate") { () throws(PmapError) in try user.activate() }
    t.succeeds("enter") { () throws(PmapError) in try user.enter(page, at: va, protection: .readWrite) }
    t.expect(!reverse.isModified(page), "a fresh mapping is clean")
    _ = volatileLoad(va.pointer)
    t.expect(!reverse.isModified(page), "a read does not dirty the page")
    volatileStore(va.pointer, 1)
    t.expect(reverse.isModified(page), "a write dirties the page")
    reverse.clearModified(page)
    t.expect(!reverse.isModified(page), "clearModified cleans it")
    _ = volatileLoad(va.pointer)
    t.expect(!reverse.isModified(page), "still clean after a read")
    volatileStore(va.pointer, 2)   // a stale writable TLB entry would leave the bit clear
    t.expect(reverse.isModified(page), "the next write dirties it again")
    t.expectEqual(page.contents.load(as: UInt64.self), 2, "the write landed")
    t.succeeds("remove") { () throws(PmapError) in try user.remove(start: va, byteCount: pageSize) }
    t.expect(page.isDirty, "removing a dirty mapping keeps the page dirty")
    t.expect(reverse.isModified(page), "isModified after remove")
}

/// Remaps `va` from one page to another and checks the second read sees the new frame.
private func remapReadsNewFrame(_ t: inout TestContext, _ map: MachinePmap, _ va: VirtualAddress, _ first: Page, _ second: Page) {
    t.succeeds("enter first") { () throws(PmapError) in try map.enter(first, at: va, protection: .readWrite) }
    t.expectEqual(volatileLoad(va.pointer), patternA, "read through the first mapping")
    t.succeeds("remove") { () throws(PmapError) in try map.remove(start: va, byteCount: pageSize) }
    t.succeeds("enter second") { () throws(PmapError) in try map.enter(second, at: va, protection: .readWrite) }
    t.expectEqual(volatileLoad(va.pointer), patternB, "read after remap sees the new frame, not a stale TLB entry")
    volatileStore(va.pointer, 9)
    t.expectEqual(first.contents.load(as: UInt64.self), patternA, "old frame untouched by the write")
    t.expectEqual(second.contents.load(as: UInt64.self), 9, "write reached the new frame")
}

private func tlbInvalidatedOnRemap(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let user = fixture.newUser(&t), let first = fixture.newPage(&t, filledWith: patternA),
          let second = fixture.newPage(&t, filledWith: patternB) else { return }
    t.succeeds("activate") { () throws(PmapError) in try user.activate() }
    remapReadsNewFrame(&t, user, userAddress(5), first, second)
}

private func tlbInvalidatedOnKernelRemap(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let first = fixture.newPage(&t, filledWith: patternA), let second = fixture.newPage(&t, filledWith: patternB) else { return }
    let va = scratchKernelAddress(pages: 1)
    fixture.ownKernelRange(va, pages: 1)
    remapReadsNewFrame(&t, fixture.kernel, va, first, second)
}

private func addressSpacesSwitched(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let first = fixture.newUser(&t), let second = fixture.newUser(&t),
          let pageA = fixture.newPage(&t, filledWith: patternA), let pageB = fixture.newPage(&t, filledWith: patternB) else { return }
    let va = userAddress(42)
    t.succeeds("enter A") { () throws(PmapError) in try first.enter(pageA, at: va, protection: .readWrite) }
    t.succeeds("enter B") { () throws(PmapError) in try second.enter(pageB, at: va, protection: .readWrite) }
    t.succeeds("activate A") { () throws(PmapError) in try first.activate() }
    t.expectEqual(volatileLoad(va.pointer), patternA, "address space A sees its page")
    t.succeeds("activate B") { () throws(PmapError) in try second.activate() }
    t.expectEqual(volatileLoad(va.pointer), patternB, "address space B sees its page at the same VA")
    t.expect(second.isActive && !first.isActive, "only B active")
    t.succeeds("activate A again") { () throws(PmapError) in try first.activate() }
    t.expectEqual(volatileLoad(va.pointer), patternA, "back in A")
    // Kernel mappings are shared: the direct map works in every address space.
    t.expectEqual(volatileLoad(DirectMap.pointer(to: pageB.physicalAddress)), patternB, "direct map in a user space")
    t.succeeds("activate kernel") { () throws(PmapError) in try fixture.kernel.activate() }
    let log = withFaultHandler({ fault in
        guard fault.address == va.value, fault.reason == .notPresent else { return .unhandled }
        do throws(PmapError) { try second.activate() } catch { return .unhandled }   // resolve by switching to B
        return .resolved
    }) {
        t.expectEqual(volatileLoad(va.pointer), patternB, "kernel-only space faults; the hook switched to B")
    }
    t.expectEqual(log.count, 1, "user address faults in the kernel-only address space")
}

private func kernelImageMappedWX(_ t: inout TestContext) {
    guard let kernel = kernelPmap else { return t.expect(false, "kernel pmap exists") }
    let layout = kernelImageLayout
    var checked = 0, writableExecutable = 0, wrong = 0
    var address = layout.text.lowerBound
    while address < layout.writableData.upperBound {
        let translation = t.succeeds("extract image page") { () throws(PmapError) in try kernel.extract(VirtualAddress(address)) } ?? nil
        defer { address += pageSize }
        if layout.guardPages.contains(address) {
            if translation != nil { wrong += 1 }
            continue
        }
        guard let translation else { wrong += 1; continue }
        checked += 1
        if translation.protection.isWritableAndExecutable { writableExecutable += 1 }
        let expected: Protection = layout.text.contains(address) ? .readExecute
            : (layout.readOnlyData.contains(address) ? .readOnly : .readWrite)
        if translation.protection != expected || translation.pageSize != pageSize
            || translation.physicalAddress != layout.physicalAddress(of: address) { wrong += 1 }
    }
    t.expect(checked > 16, "image pages checked")
    t.expectEqual(writableExecutable, 0, "image pages both writable and executable")
    t.expectEqual(wrong, 0, "image pages with the wrong protection, size or frame")
    // The direct map aliases the image: never executable, and read-only over text and rodata.
    let textAlias = VirtualAddress(AddressSpaceLayout.directMapBase + layout.physicalAddress(of: layout.text.lowerBound).value)
    let alias = t.succeeds("extract text alias") { () throws(PmapError) in try kernel.extract(textAlias) } ?? nil
    t.expect(alias?.protection == .readOnly, "direct-map alias of text is read-only, non-executable")
    t.note("image: \(checked) pages checked, text \(layout.text.count >> 12) pages")
}

private func kernelTextAndReadOnlyDataWritesFault(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let scratch = fixture.newPage(&t, filledWith: 0) else { return }
    let kernel = fixture.kernel
    for (probe, protection) in [(VirtualAddress(UInt64(probeTextPageAddress())), Protection.readExecute),
                                (VirtualAddress(UInt64(probeReadOnlyPageAddress())), Protection.readOnly)] {
        guard let original = t.succeeds("extract probe", { () throws(PmapError) in try kernel.extract(probe) }) ?? nil else {
            t.expect(false, "probe page mapped")
            continue
        }
        t.expect(original.protection == protection, "probe page protection")
        let before = DirectMap.pointer(to: original.physicalAddress).load(fromByteOffset: 16, as: UInt64.self)
        // The hook redirects the page to a scratch frame so the faulting store can complete.
        let log = withFaultHandler({ fault in
            guard fault.address == probe.value + 16, fault.access == .write, fault.reason == .protection else { return .unhandled }
            do throws(PmapError) {
                try kernel.remove(start: probe, byteCount: pageSize)
                try kernel.enter(scratch, at: probe, protection: .readWrite)
            } catch { return .unhandled }
            return .resolved
        }) {
            volatileStore(probe.pointer + 16, 0xD00D)
        }
        t.expectEqual(log.count, 1, "write to a read-only kernel page faults")
        t.expectEqual(scratch.contents.load(fromByteOffset: 16, as: UInt64.self), 0xD00D, "the store completed in the scratch frame")
        t.expectEqual(DirectMap.pointer(to: original.physicalAddress).load(fromByteOffset: 16, as: UInt64.self), before,
                      "the image page itself is unchanged")
        t.succeeds("restore probe") { () throws(PmapError) in
            try kernel.remove(start: probe, byteCount: pageSize)
            try kernel.enter(physical: original.physicalAddress, at: probe, protection: protection)
        }
        let restored = t.succeeds("extract restored") { () throws(PmapError) in try kernel.extract(probe) } ?? nil
        t.expect(restored?.physicalAddress == original.physicalAddress && restored?.protection == protection, "probe restored")
        t.expectEqual(volatileLoad(probe.pointer + 16), before, "reads see the image again")
        scratch.contents.storeBytes(of: 0, toByteOffset: 16, as: UInt64.self)
    }
}

private func executeNonExecutableFaults(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let page = fixture.newPage(&t, filledWith: 0) else { return }
    let kernel = fixture.kernel
    let va = scratchKernelAddress(pages: 1)
    fixture.ownKernelRange(va, pages: 1)
    t.succeeds("enter read-write") { () throws(PmapError) in try kernel.enter(page, at: va, protection: .readWrite) }
    volatileStore(va.pointer, UInt64(Platform.returnInstruction))
    Platform.synchronizeInstructionCache(UInt(va.value), byteCount: 8)
    t.fails(with: .writableAndExecutable, "kernel W+X refused") { () throws(PmapError) in
        try kernel.protect(start: va, byteCount: pageSize, to: .all)
    }
    let log = withFaultHandler({ fault in
        guard fault.address == va.value, fault.access == .execute else { return .unhandled }
        do throws(PmapError) { try kernel.protect(start: va, byteCount: pageSize, to: .readExecute) } catch { return .unhandled }
        return .resolved
    }) {
        callCode(at: va.pointer)   // returns once the hook made the page executable
    }
    t.expectEqual(log.count, 1, "instruction fetch from a non-executable page faults")
    t.expect(log.last?.reason == .protection, "execute fault is a protection fault")
    let translation = t.succeeds("extract") { () throws(PmapError) in try kernel.extract(va) } ?? nil
    t.expect(translation?.protection == .readExecute, "page is read-execute now")
    let again = withFaultHandler({ _ in .unhandled }) { callCode(at: va.pointer) }
    t.expectEqual(again.count, 0, "executable page runs without faulting")
}

private func kernelStackGuardPageFaults(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let scratch = fixture.newPage(&t, filledWith: patternC) else { return }
    let kernel = fixture.kernel
    let guardPage = VirtualAddress(UInt64(kernelStackGuard()))
    t.expectEqual(guardPage.value + pageSize, UInt64(kernelStackBottom()), "guard page right below the stack")
    let before = t.succeeds("extract guard") { () throws(PmapError) in try kernel.extract(guardPage) } ?? nil
    t.expect(before == nil, "guard page unmapped")
    let log = withFaultHandler({ fault in
        guard fault.address == guardPage.value + 8, fault.reason == .notPresent else { return .unhandled }
        do throws(PmapError) { try kernel.enter(scratch, at: guardPage, protection: .readOnly) } catch { return .unhandled }
        return .resolved
    }) {
        t.expectEqual(volatileLoad(guardPage.pointer + 8), patternC, "read completes after the hook mapped the guard")
    }
    t.expectEqual(log.count, 1, "touching the guard page faults")
    t.succeeds("unmap guard again") { () throws(PmapError) in try kernel.remove(start: guardPage, byteCount: pageSize) }
    let after = t.succeeds("extract guard") { () throws(PmapError) in try kernel.extract(guardPage) } ?? nil
    t.expect(after == nil, "guard page unmapped again")
}

private func badArgumentsReturnTypedErrors(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let user = fixture.newUser(&t), let page = fixture.newPage(&t, filledWith: patternA),
          let other = fixture.newPage(&t, filledWith: patternB) else { return }
    let kernel = fixture.kernel
    let va = userAddress(0)
    t.succeeds("enter") { () throws(PmapError) in try user.enter(page, at: va, protection: .readWrite) }
    let resident = user.residentPages, tables = user.tablePages, entries = fixture.reverseMap.entriesInUse
    t.fails(with: .unalignedAddress, "unaligned enter") { () throws(PmapError) in try user.enter(other, at: va.advanced(by: 8), protection: .readOnly) }
    t.fails(with: .unalignedAddress, "unaligned remove length") { () throws(PmapError) in try user.remove(start: va, byteCount: 100) }
    t.fails(with: .nonCanonicalAddress, "non-canonical enter") { () throws(PmapError) in
        try user.enter(other, at: VirtualAddress(0x0001_0000_0000_0000), protection: .readOnly)
    }
    t.fails(with: .nonCanonicalAddress, "non-canonical extract") { () throws(PmapError) in try user.extract(VirtualAddress(0x0001_0000_0000_1000)) }
    t.fails(with: .outsideAddressSpace, "kernel address in a user pmap") { () throws(PmapError) in
        try user.enter(other, at: VirtualAddress(AddressSpaceLayout.kernelStart), protection: .readOnly)
    }
    t.fails(with: .outsideAddressSpace, "user address in the kernel pmap") { () throws(PmapError) in
        try kernel.enter(other, at: va, protection: .readOnly)
    }
    t.fails(with: .rangeOverflow, "range past the user half") { () throws(PmapError) in
        try user.remove(start: VirtualAddress(AddressSpaceLayout.userEnd - pageSize), byteCount: 2 * pageSize)
    }
    t.fails(with: .rangeOverflow, "range wrapping around") { () throws(PmapError) in
        try user.protect(start: va, byteCount: UInt64.max & ~(pageSize - 1), to: .readOnly)
    }
    t.fails(with: .alreadyMapped, "remap to another page") { () throws(PmapError) in try user.enter(other, at: va, protection: .readOnly) }
    t.fails(with: .invalidProtection, "enter with no access") { () throws(PmapError) in try user.enter(other, at: userAddress(1), protection: .none) }
    t.fails(with: .invalidProtection, "access beyond protection") { () throws(PmapError) in
        try user.enter(other, at: userAddress(1), protection: .readOnly, access: .write)
    }
    t.fails(with: .writableAndExecutable, "kernel W+X enter") { () throws(PmapError) in
        try kernel.enter(other, at: scratchKernelAddress(pages: 1), protection: .all)
    }
    t.fails(with: .partialLargePage, "remove part of a direct-map large page") { () throws(PmapError) in
        // The last GiB of the direct map is a large page on every board (virt, the Pi, the PC).
        try kernel.remove(start: VirtualAddress(AddressSpaceLayout.directMapBase + Platform.directMapLimit - (1 << 30)),
                          byteCount: pageSize)
    }
    t.fails(with: .notMapped, "unwire an unmapped address") { () throws(PmapError) in try user.setWired(false, at: userAddress(1)) }
    t.fails(with: .wrongPmapKind, "destroy the kernel pmap") { () throws(PmapError) in try kernel.destroy() }
    t.succeeds("activate") { () throws(PmapError) in try user.activate() }
    t.fails(with: .addressSpaceActive, "destroy the active pmap") { () throws(PmapError) in try user.destroy() }
    t.expectEqual(user.residentPages, resident, "resident pages unchanged by refused calls")
    t.expectEqual(user.tablePages, tables, "table pages unchanged by refused calls")
    t.expectEqual(fixture.reverseMap.entriesInUse, entries, "pv entries unchanged by refused calls")
    let translation = t.succeeds("extract") { () throws(PmapError) in try user.extract(va) } ?? nil
    t.expect(translation?.physicalAddress == page.physicalAddress && translation?.protection == .readWrite, "original mapping intact")
    t.expectEqual(volatileLoad(va.pointer), patternA, "original page still readable")
    t.succeeds("re-enter same page read-only") { () throws(PmapError) in try user.enter(page, at: va, protection: .readOnly) }
    let updated = t.succeeds("extract") { () throws(PmapError) in try user.extract(va) } ?? nil
    t.expect(updated?.protection == .readOnly, "re-entering the same page updates its protection")
    t.succeeds("activate kernel") { () throws(PmapError) in try kernel.activate() }
    t.succeeds("destroy") { () throws(PmapError) in try user.destroy() }
    t.fails(with: .destroyed, "use after destroy") { () throws(PmapError) in try user.enter(other, at: va, protection: .readOnly) }
}

private func destroyFreesTablesAndEntries(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    let frames = fixture.frames
    let wiredBefore = frames.count(of: .wired), entriesBefore = fixture.reverseMap.entriesInUse
    let poolBefore = fixture.reverseMap.poolPages
    guard let user = fixture.newUser(&t), let page = fixture.newPage(&t, filledWith: patternA) else { return }
    // Far-apart addresses: separate tables at every level.
    let addresses: [UInt64] = [0x1000, 0x20_0000, 0x4000_0000, 0x80_0000_0000, 0x3FFF_FFFF_F000]
    for address in addresses {
        t.succeeds("enter") { () throws(PmapError) in try user.enter(page, at: VirtualAddress(address), protection: .readWrite) }
    }
    t.expectEqual(page.mappingCount, addresses.count, "pv entries")
    t.expect(user.tablePages > 5, "tables at every level")
    let poolGrowth = fixture.reverseMap.poolPages - poolBefore   // pv pool pages are wired too
    t.expectEqual(frames.count(of: .wired), wiredBefore + user.tablePages + poolGrowth, "page-table pages are wired")
    t.succeeds("destroy") { () throws(PmapError) in try user.destroy() }
    t.expectEqual(page.mappingCount, 0, "pv entries after destroy")
    t.expectEqual(fixture.reverseMap.entriesInUse, entriesBefore, "pool entries back")
    t.expectEqual(frames.count(of: .wired), wiredBefore + poolGrowth, "every table page freed")
    t.expectEqual(fixture.kernel.userPmapCount, 0, "user pmap unregistered")
}

private func wiredMappingsCounted(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    guard let user = fixture.newUser(&t), let page = fixture.newPage(&t, filledWith: patternA) else { return }
    t.succeeds("enter wired") { () throws(PmapError) in try user.enter(page, at: userAddress(0), protection: .readWrite, wired: true) }
    t.succeeds("enter unwired") { () throws(PmapError) in try user.enter(page, at: userAddress(1), protection: .readWrite) }
    t.expectEqual(user.wiredPages, 1, "wired pages")
    t.succeeds("wire second") { () throws(PmapError) in try user.setWired(true, at: userAddress(1)) }
    t.expectEqual(user.wiredPages, 2, "wired pages after setWired(true)")
    t.succeeds("unwire first") { () throws(PmapError) in try user.setWired(false, at: userAddress(0)) }
    t.expectEqual(user.wiredPages, 1, "wired pages after setWired(false)")
    t.succeeds("remove wired") { () throws(PmapError) in try user.remove(start: userAddress(1), byteCount: pageSize) }
    t.expectEqual(user.wiredPages, 0, "removing a wired mapping unwires it")
    t.expectEqual(user.residentPages, 1, "resident pages")
}
