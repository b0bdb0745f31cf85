// VMPageSuite: the vm_page array and its queues on the real machine: record size, O(1) lookup
// from a physical address, queue moves and counters, wiring, busy, lazy zero-fill (a freed
// page's old contents never reach the next owner), and the free queue's bound in front of the
// page allocator. Every test ends with PageFrames' full invariant walk.

let vmPageSuite = SelfTestSuite("vm_page", [
    SelfTest("record_size_at_most_64_bytes", recordSizeAtMost64Bytes),
    SelfTest("lookup_physical_address_to_record", lookupPhysicalAddressToRecord),
    SelfTest("queues_move_pages_and_keep_counters", queuesMovePagesAndKeepCounters),
    SelfTest("wire_moves_to_wired_queue_and_back", wireMovesToWiredQueueAndBack),
    SelfTest("allocate_zeroed_never_leaks_old_contents", allocateZeroedNeverLeaksOldContents),
    SelfTest("free_rejects_mapped_busy_wired_and_double_free", freeRejectsPagesInUse),
    SelfTest("free_queue_bounded_returns_pages_to_allocator", freeQueueReturnsPagesToAllocator),
])

private func checkInvariants(_ t: inout TestContext, _ frames: PageFrames) {
    if let broken = frames.invariantViolation() {
        t.note(text(broken))
        t.expect(false, "PageFrames invariants hold")
    }
}

private func recordSizeAtMost64Bytes(_ t: inout TestContext) {
    t.expect(Page.recordSize <= 64, "vm_page record fits in 64 bytes")
    t.expectEqual(MemoryLayout<Page>.size, 8, "a page handle is one pointer")
    t.note("vm_page record: \(Page.recordSize) bytes, \(pageFrames.recordCount) records in \(pageFrames.arrayPages) pages")
    checkInvariants(&t, pageFrames)
}

private func lookupPhysicalAddressToRecord(_ t: inout TestContext) {
    let frames: PageFrames = pageFrames
    guard let page = try? frames.allocate(zeroed: false) else { return t.expect(false, "allocate") }
    let address = page.physicalAddress
    t.expect(frames.page(at: address) == page, "page(at:) of the frame's address")
    t.expect(frames.page(at: address.advanced(by: 0xFFF)) == page, "any byte of the frame finds the same record")
    t.expect(frames.page(at: address.advanced(by: pageSize)) != page, "the next frame has its own record")
    t.expectEqual(frames.page(at: address)?.physicalAddress.value ?? 0, address.value, "record names its frame")
    t.expect(page.isManaged && page.queue == .none, "a fresh page is managed and on no queue")
    let image = Platform.kernelImagePhysicalAddress(of: kernelTextStart())
    t.expect(frames.page(at: image).map { !$0.isManaged } ?? false, "kernel image frames have unmanaged records")
    let beyond = PhysicalAddress((frames.firstFrame + UInt64(frames.recordCount)) << pageShift)
    t.expect(frames.page(at: beyond) == nil, "no record past the last frame")
    // O(1): 10 000 lookups of frames spread over all of memory.
    var found = 0
    let start = Platform.cycles()
    for index in 0..<10_000 {
        let frame = frames.firstFrame + UInt64(index * 7919 % frames.recordCount)
        if frames.page(at: PhysicalAddress(frame << pageShift))?.physicalAddress.frameNumber == frame { found += 1 }
    }
    let cycles = Platform.cycles() - start
    t.expectEqual(found, 10_000, "lookups that found their frame")
    t.note("10000 lookups: \(cycles / 10_000) cycles each")
    do { try frames.free(page) } catch { t.expect(false, "free") }
    checkInvariants(&t, frames)
}

private func queuesMovePagesAndKeepCounters(_ t: inout TestContext) {
    let frames: PageFrames = pageFrames
    let active = frames.count(of: .active), inactive = frames.count(of: .inactive), free = frames.count(of: .free)
    let handedOut = frames.count(of: .none)
    var pages: [Page] = []
    for _ in 0..<3 {
        guard let page = try? frames.allocate(zeroed: false) else { return t.expect(false, "allocate") }
        pages.append(page)
    }
    t.expectEqual(frames.count(of: .none), handedOut + 3, "allocated pages counted on no queue")
    for page in pages { _ = try? frames.activate(page) }
    t.expectEqual(frames.count(of: .active), active + 3, "active after activate")
    t.expectEqual(frames.count(of: .none), handedOut, "activated pages left the no-queue count")
    _ = try? frames.deactivate(pages[1])
    t.expectEqual(frames.count(of: .active), active + 2, "active after one deactivate")
    t.expectEqual(frames.count(of: .inactive), inactive + 1, "inactive after one deactivate")
    t.expect(pages[1].queue == .inactive, "page names its queue")
    _ = try? frames.deactivate(pages[0])
    if inactive == 0 {
        t.expect(frames.first(of: .inactive) == pages[1], "the first deactivated page heads the inactive queue")
    }
    _ = try? frames.activate(pages[1])   // O(1) move back to the tail of active
    t.expect(pages[1].queue == .active, "moved back to active")
    t.expectEqual(frames.count(of: .inactive), inactive + 1, "inactive after moving one back")
    for page in pages { do { try frames.free(page) } catch { t.expect(false, "free") } }
    t.expectEqual(frames.count(of: .active), active, "active count restored")
    t.expectEqual(frames.count(of: .inactive), inactive, "inactive count restored")
    t.expect(frames.count(of: .free) >= free, "freed pages on the free queue")
    t.expect(pages.allSatisfy { $0.queue == .free || !$0.isManaged }, "freed pages are free or back in the allocator")
    checkInvariants(&t, frames)
}

private func wireMovesToWiredQueueAndBack(_ t: inout TestContext) {
    let frames: PageFrames = pageFrames
    let wired = frames.count(of: .wired)
    guard let page = try? frames.allocate(zeroed: false) else { return t.expect(false, "allocate") }
    _ = try? frames.activate(page)
    do {
        try frames.wire(page)
        try frames.wire(page)
    } catch { t.expect(false, "wire") }
    t.expectEqual(page.wireCount, 2, "wire count")
    t.expect(page.queue == .wired, "wired page on the wired queue")
    t.expectEqual(frames.count(of: .wired), wired + 1, "wired queue counts the page once")
    var refused = false
    do { try frames.deactivate(page) } catch { refused = error == .pageIsWired }
    t.expect(refused, "a wired page cannot be deactivated")
    refused = false
    do { try frames.free(page) } catch { refused = error == .pageIsWired }
    t.expect(refused, "a wired page cannot be freed")
    _ = try? frames.unwire(page)
    t.expect(page.queue == .wired && page.wireCount == 1, "still wired after one unwire")
    _ = try? frames.unwire(page)
    t.expect(page.queue == .active && page.wireCount == 0, "the last unwire moves it to active")
    refused = false
    do { try frames.unwire(page) } catch { refused = error == .pageNotWired }
    t.expect(refused, "unwire below zero refused")
    t.expectEqual(frames.count(of: .wired), wired, "wired count restored")
    do { try frames.free(page) } catch { t.expect(false, "free") }
    checkInvariants(&t, frames)
}

private func allocateZeroedNeverLeaksOldContents(_ t: inout TestContext) {
    let frames: PageFrames = pageFrames
    guard let page = try? frames.allocate(zeroed: false) else { return t.expect(false, "allocate") }
    page.contents.initializeMemory(as: UInt64.self, repeating: 0x5EC2_E7DA_7A5E_C2E7, count: 512)
    do { try frames.free(page) } catch { t.expect(false, "free") }
    guard let again = try? frames.allocate(zeroed: true) else { return t.expect(false, "allocate zeroed") }
    t.expect(again == page, "the free queue hands the same frame back (LIFO)")
    var nonZero = 0
    for index in 0..<512 where again.contents.load(fromByteOffset: index * 8, as: UInt64.self) != 0 { nonZero += 1 }
    t.expectEqual(nonZero, 0, "non-zero words in a zeroed page")
    t.expect(!again.isDirty && !again.isReferenced && again.mappingCount == 0, "a new owner gets a clean record")
    do { try frames.free(again) } catch { t.expect(false, "free") }
    checkInvariants(&t, frames)
}

private func freeRejectsPagesInUse(_ t: inout TestContext) {
    let fixture = PmapFixture()
    defer { fixture.tearDown(&t) }
    let frames = fixture.frames
    guard let user = fixture.newUser(&t), let page = fixture.newPage(&t, filledWith: 1) else { return }
    func refusal(_ page: Page) -> PageFrameError? {
        do { try frames.free(page) } catch { return error }
        return nil
    }
    t.succeeds("enter") { () throws(PmapError) in try user.enter(page, at: VirtualAddress(testUserBase), protection: .readOnly) }
    t.expect(refusal(page) == .pageIsMapped, "a mapped page cannot be freed")
    t.succeeds("remove") { () throws(PmapError) in try user.remove(start: VirtualAddress(testUserBase), byteCount: pageSize) }
    t.expect(frames.tryBusy(page), "busy a page")
    t.expect(!frames.tryBusy(page), "busy twice refused")
    t.expect(refusal(page) == .pageIsBusy, "a busy page cannot be freed")
    _ = try? frames.unbusy(page)
    var unbusyRefused = false
    do { try frames.unbusy(page) } catch { unbusyRefused = error == .pageNotBusy }
    t.expect(unbusyRefused, "unbusy of a page that is not busy refused")
    let image = Platform.kernelImagePhysicalAddress(of: kernelTextStart())
    if let imagePage = frames.page(at: image) { t.expect(refusal(imagePage) == .notManaged, "an image page cannot be freed") }
    if let root = frames.page(at: user.root) { t.expect(refusal(root) == .pageIsWired, "a page-table page cannot be freed") }
    guard let loose = try? frames.allocate(zeroed: false) else { return t.expect(false, "allocate") }
    t.expect(refusal(loose) == nil, "free an unused page")
    t.expect(refusal(loose) == .pageIsFree, "double free refused")
}

private func freeQueueReturnsPagesToAllocator(_ t: inout TestContext) {
    let frames: PageFrames = pageFrames
    let savedLimit = frames.freeQueueLimit
    frames.drainFreeQueue()
    frames.freeQueueLimit = 4
    let allocatorFree = physicalPages.freePages
    var pages: [Page] = []
    for _ in 0..<10 {
        guard let page = try? frames.allocate(zeroed: false) else { return t.expect(false, "allocate") }
        pages.append(page)
    }
    t.expectEqual(physicalPages.freePages, allocatorFree - 10, "pages taken from the allocator")
    for page in pages { do { try frames.free(page) } catch { t.expect(false, "free") } }
    t.expectEqual(frames.count(of: .free), 4, "free queue holds its limit")
    t.expectEqual(physicalPages.freePages, allocatorFree - 4, "the rest went back to the allocator")
    frames.freeQueueLimit = savedLimit
    checkInvariants(&t, frames)
}
