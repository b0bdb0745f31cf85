// PageAllocSuite: the physical page allocator, tested live on the kernel's `physicalPages`.
// Tests leave the allocator as they found it (every page they take is given back), so the
// suites after this one see the same memory. While a test holds all of memory nothing may
// allocate, not even a diagnostic String: such tests record plain values, give the memory
// back, and only then call `t.expect`.

/// The page_alloc suite.
let pageAllocSuite = SelfTestSuite("page_alloc", [
    SelfTest("never_handed_out_and_reserved_rejected", neverHandedOutAndReservedRejected),
    SelfTest("allocate_all_then_free_all", allocateAllThenFreeAll),
    SelfTest("contiguous_runs_aligned", contiguousRunsAligned),
    SelfTest("counters_consistent", countersConsistent),
    SelfTest("double_free_detected", doubleFreeDetected),
    SelfTest("unaligned_and_inside_block_free_rejected", unalignedAndInsideBlockFreeRejected),
    SelfTest("allocate_zeroed_zeroes", allocateZeroedZeroes),
])

/// Free blocks per order, to compare the buddy structure before and after a test.
private func freeBlockCounts() -> InlineArray<19, Int> {
    var counts = InlineArray<19, Int>(repeating: 0)
    for order in 0...PageAllocator.maxOrder { counts[order] = physicalPages.freeBlockCount(order: order) }
    return counts
}

private func sameCounts(_ a: InlineArray<19, Int>, _ b: InlineArray<19, Int>) -> Bool {
    for order in 0...PageAllocator.maxOrder where a[order] != b[order] { return false }
    return true
}

/// Runs first, before `allocate_all_then_free_all` hands out every page once.
private func neverHandedOutAndReservedRejected(_ t: inout TestContext) {
    t.expect(physicalPages.regionCount > 0, "physicalPages is set up")
    guard physicalPages.regionCount > 0 else { return }
    let freeBefore = physicalPages.freePages

    // The last pages of RAM are the last a buddy allocator splits; look there for one that
    // was never handed out since boot.
    let top = physicalPages.region(at: physicalPages.regionCount - 1)
    var candidate = top.end
    var found = false
    var scanned = 0
    while scanned < 4096 && candidate.value > top.start.value {
        candidate = PhysicalAddress(candidate.value - pageSize)
        if physicalPages.status(of: candidate) == .free(wasHandedOut: false) { found = true; break }
        scanned += 1
    }
    if found {
        var error: PageAllocatorError?
        do { try physicalPages.free(candidate) } catch let e { error = e }
        t.expect(error == .neverAllocated, "freeing a never-handed-out page throws neverAllocated")
    } else {
        t.note("no never-handed-out page in the top 4096 pages; that case is covered by host tests")
    }

    var reservedError: PageAllocatorError?
    do { try physicalPages.free(physicalPages.metadataRange.start) } catch let e { reservedError = e }
    t.expect(reservedError == .reservedPage, "freeing the allocator's own metadata throws reservedPage")

    var rangeError: PageAllocatorError?
    do { try physicalPages.free(top.end) } catch let e { rangeError = e }
    t.expect(rangeError == .outOfRange, "freeing past the end of RAM throws outOfRange")
    t.expectEqual(physicalPages.freePages, freeBefore, "free pages after refused frees")
}

private func allocateAllThenFreeAll(_ t: inout TestContext) {
    physicalPages.drainHotCache()
    let freeBefore = physicalPages.freePages
    let blocksBefore = freeBlockCounts()

    // Chain every allocated page through its first word, so no heap memory is needed.
    let end = UInt64.max
    var head = end
    var count = 0
    var overlapping = false
    while true {
        let page: PhysicalAddress
        do { page = try physicalPages.allocate() } catch { break }
        let words = DirectMap.pointer(to: page)
        words.storeBytes(of: head, as: UInt64.self)
        words.storeBytes(of: page.value, toByteOffset: 8, as: UInt64.self)
        head = page.value
        count += 1
    }
    let freeWhileFull = physicalPages.freePages
    var refusedWhenFull = false
    do { _ = try physicalPages.allocate() } catch { refusedWhenFull = error == .outOfMemory }

    var freeFailures = 0
    while head != end {
        let words = DirectMap.pointer(to: PhysicalAddress(head))
        if words.load(fromByteOffset: 8, as: UInt64.self) != head { overlapping = true }
        let next = words.load(as: UInt64.self)
        do { try physicalPages.free(PhysicalAddress(head)) } catch { freeFailures += 1 }
        head = next
    }
    physicalPages.drainHotCache()

    t.expectEqual(count, freeBefore, "pages handed out before running out")
    t.expectEqual(freeWhileFull, 0, "free pages with all memory allocated")
    t.expect(refusedWhenFull, "allocation with no memory left throws outOfMemory")
    t.expect(!overlapping, "every page kept its own contents while all were allocated")
    t.expectEqual(freeFailures, 0, "frees that failed")
    t.expectEqual(physicalPages.freePages, freeBefore, "free pages after freeing everything")
    t.expect(sameCounts(freeBlockCounts(), blocksBefore), "free blocks coalesced back to the same orders")
}

private func contiguousRunsAligned(_ t: inout TestContext) {
    let freeBefore = physicalPages.freePages
    var runs = InlineArray<11, UInt64>(repeating: 0)
    var allocated = 0
    for order in 0...10 {
        guard let run = try? physicalPages.allocate(order: order) else { break }
        runs[order] = run.value
        allocated += 1
        t.expectEqual(run.value & ((pageSize << UInt64(order)) - 1), 0, "run address modulo its size")
        t.expectEqual(physicalPages.allocationOrder(at: run) ?? -1, order, "recorded order of the run")
        // Tag every page with its run, then check no other run overwrote it.
        for page in 0..<(1 << order) {
            DirectMap.pointer(to: run.advanced(by: UInt64(page) << pageShift)).storeBytes(of: run.value ^ UInt64(page), as: UInt64.self)
        }
    }
    t.expectEqual(allocated, 11, "runs of order 0...10 allocated")
    var intact = true
    for order in 0..<allocated {
        let run = PhysicalAddress(runs[order])
        for page in 0..<(1 << order) {
            let word = DirectMap.pointer(to: run.advanced(by: UInt64(page) << pageShift)).load(as: UInt64.self)
            if word != run.value ^ UInt64(page) { intact = false }
        }
    }
    t.expect(intact, "runs are disjoint: every page kept its tag")
    for order in 0..<allocated {
        do { try physicalPages.free(PhysicalAddress(runs[order]), order: order) } catch {
            t.expect(false, "freeing a run with its own order succeeds")
        }
    }
    t.expectEqual(physicalPages.freePages, freeBefore, "free pages after freeing the runs")
}

private func countersConsistent(_ t: inout TestContext) {
    t.expectEqual(physicalPages.usedPages + physicalPages.freePages, physicalPages.totalPages, "used + free")
    t.expect(physicalPages.totalPages > 0, "some memory is managed")
    t.expect(physicalPages.metadataPages > 0 && physicalPages.metadataPages <= physicalPages.reservedPages,
             "metadata pages are counted among the reserved pages")
    let free = physicalPages.freePages, used = physicalPages.usedPages
    guard let run = try? physicalPages.allocate(order: 3) else {
        t.expect(false, "an order-3 run is available")
        return
    }
    t.expectEqual(physicalPages.freePages, free - 8, "free pages after allocating 8")
    t.expectEqual(physicalPages.usedPages, used + 8, "used pages after allocating 8")
    do { try physicalPages.free(run) } catch { t.expect(false, "freeing the run succeeds") }
    t.expectEqual(physicalPages.freePages, free, "free pages after freeing the run")
    t.expectEqual(physicalPages.usedPages, used, "used pages after freeing the run")
    t.expect(physicalPages.invariantViolation() == nil, "every state byte and free list is consistent")
}

private func doubleFreeDetected(_ t: inout TestContext) {
    guard let page = try? physicalPages.allocate() else {
        t.expect(false, "a page is available")
        return
    }
    do { try physicalPages.free(page) } catch { t.expect(false, "the first free succeeds") }
    let free = physicalPages.freePages
    var error: PageAllocatorError?
    do { try physicalPages.free(page) } catch let e { error = e }
    t.expect(error == .doubleFree, "the second free throws doubleFree")
    t.expectEqual(physicalPages.freePages, free, "free pages after the refused double free")
    t.expect(physicalPages.status(of: page) == .free(wasHandedOut: true), "the page is free and remembers it was handed out")
    physicalPages.drainHotCache()
    var afterDrain: PageAllocatorError?
    do { try physicalPages.free(page) } catch let e { afterDrain = e }
    t.expect(afterDrain == .doubleFree, "a double free is still detected once the page left the hot cache")
}

private func unalignedAndInsideBlockFreeRejected(_ t: inout TestContext) {
    guard let run = try? physicalPages.allocate(order: 1) else {
        t.expect(false, "an order-1 run is available")
        return
    }
    let free = physicalPages.freePages
    var unaligned: PageAllocatorError?
    do { try physicalPages.free(run.advanced(by: 8)) } catch let e { unaligned = e }
    t.expect(unaligned == .unalignedAddress, "freeing an unaligned address throws unalignedAddress")
    var inside: PageAllocatorError?
    do { try physicalPages.free(run.advanced(by: pageSize)) } catch let e { inside = e }
    t.expect(inside == .insideBlock, "freeing the second page of a run throws insideBlock")
    var mismatch: PageAllocatorError?
    do { try physicalPages.free(run, order: 0) } catch let e { mismatch = e }
    t.expect(mismatch == .orderMismatch, "freeing with the wrong order throws orderMismatch")
    t.expectEqual(physicalPages.freePages, free, "free pages after the refused frees")
    t.expectEqual(physicalPages.allocationOrder(at: run) ?? -1, 1, "the run is still allocated")
    do { try physicalPages.free(run, order: 1) } catch { t.expect(false, "the real free succeeds") }
}

private func allocateZeroedZeroes(_ t: inout TestContext) {
    // With the hot cache drained, a freed single page is cached and handed out next, so
    // allocateZeroed must clear exactly the bytes just dirtied.
    guard let dirty = try? physicalPages.allocate() else {
        t.expect(false, "a page is available")
        return
    }
    DirectMap.pointer(to: dirty).initializeMemory(as: UInt8.self, repeating: 0xA5, count: Int(pageSize))
    physicalPages.drainHotCache()
    do { try physicalPages.free(dirty) } catch { t.expect(false, "freeing the dirty page succeeds") }
    guard let zeroed = try? physicalPages.allocateZeroed() else {
        t.expect(false, "a zeroed page is available")
        return
    }
    t.expectEqual(zeroed.value, dirty.value, "the dirty page came back from the hot cache")
    t.expectEqual(nonZeroBytes(zeroed, count: Int(pageSize)), 0, "non-zero bytes in an allocateZeroed page")
    do { try physicalPages.free(zeroed) } catch { t.expect(false, "freeing the zeroed page succeeds") }

    guard let run = try? physicalPages.allocateZeroed(order: 2) else {
        t.expect(false, "a zeroed order-2 run is available")
        return
    }
    t.expectEqual(nonZeroBytes(run, count: 4 * Int(pageSize)), 0, "non-zero bytes in an allocateZeroed run")
    do { try physicalPages.free(run) } catch { t.expect(false, "freeing the zeroed run succeeds") }
}

private func nonZeroBytes(_ address: PhysicalAddress, count: Int) -> Int {
    let bytes = DirectMap.pointer(to: address)
    var nonZero = 0
    for i in 0..<count where bytes.load(fromByteOffset: i, as: UInt8.self) != 0 { nonZero += 1 }
    return nonZero
}
