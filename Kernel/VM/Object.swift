// Object: a reference-counted, sparse set of pages indexed by offset, with an optional
// backing (shadow) object and an optional pager. Anonymous objects zero-fill what they lack;
// physical objects describe a fixed range of physical memory (device memory, firmware RAM).
// Invariants:
//  - A page lives in at most one object at one offset: its record's `object`/`offset` name
//    them (VMObject.identity), and only insert/remove/rename change them.
//  - referenceCount = map entries naming the object + objects whose `shadow` it is
//    (`shadowers`) + references held by callers (tests). At 0 the object is cached (if
//    cacheable) or terminated; termination frees its pages, terminates its pager and drops
//    its reference to its shadow, iteratively down the chain (never recursion).
//  - Shadow links are acyclic; `shadowers` lists exactly the objects whose `shadow` is self.
//  - `copy` (delayed copy) names the newest copy object, whose `shadow` is self; it is not a
//    reference (the copy references us).
//  - Resident pages lie below `size`; physical objects hold no resident pages.
// Locks: (o) object lock (one CPU today; SMP: per object, shadow before backing).

/// Why an object call was refused. Every case leaves the object unchanged.
public enum ObjectError: Error, Equatable {
    /// An offset or length is not a multiple of the page size.
    case unaligned
    /// The offset lies at or beyond the object's size, or offset + length overflows.
    case outOfRange
    /// A page is already resident at that offset.
    case offsetOccupied
    /// The page belongs to another object (or is not a managed, in-use page).
    case pageNotAvailable
    /// Nothing is resident at that offset.
    case notResident
    /// The operation needs a pager and the object has none.
    case noPager
    /// The pager failed.
    case pager(PagerError)
    /// No page frame left.
    case outOfMemory
    /// Physical objects hold no pages and cannot be shadowed in place, cached or grown.
    case wrongKind
}

/// A VM object.
public final class VMObject {
    /// What the object's pages are.
    public enum Kind: Equatable {
        /// Zero-filled on first touch; swap-backed once a pager is attached.
        case anonymous
        /// A fixed range of physical memory starting at the given frame.
        case physical(PhysicalAddress)
    }

    public let system: VMSystem
    public let kind: Kind
    /// Bytes the object covers (anonymous objects grow by `coalesce`).
    public internal(set) var size: UInt64
    /// Explicit VM references (see the invariants).
    public internal(set) var referenceCount = 1
    /// Resident pages by byte offset.
    var residentPages = ResidentPages()
    /// The object this one shadows, and where this object's offset 0 lies in it.
    public internal(set) var shadow: VMObject? = nil
    public internal(set) var shadowOffset: UInt64 = 0
    /// Objects whose `shadow` is this object.
    var shadowers: [VMObject] = []
    /// Newest delayed-copy object of this object (unretained: it references us).
    public internal(set) var copy: VMObject? = nil
    /// The backing store, if any, and pager offset = object offset + pagerOffset.
    public internal(set) var pager: (any Pager)? = nil
    public internal(set) var pagerOffset: UInt64 = 0
    /// Kept in the object cache at reference count 0 instead of being terminated.
    public var isCacheable = false
    /// Key under which the cache finds it (a pager or file identity); 0 = none.
    public var cacheKey: UInt64 = 0
    /// Page-ins or page-outs running; collapse and bypass wait for 0.
    public internal(set) var pagingInProgress = 0
    /// The pageout daemon's laundry writes in flight for this object (each also counts in
    /// `pagingInProgress`); `settleLaundry` waits for them.
    public internal(set) var laundryWrites = 0
    public internal(set) var isTerminated = false
    /// Position in VMSystem.objects.
    var registryIndex = -1
    /// Cache LRU links (ObjectCache only).
    var cacheNewer: VMObject? = nil
    var cacheOlder: VMObject? = nil
    public internal(set) var isCached = false

    /// A new object with one reference (the caller's). Anonymous objects start empty;
    /// `physical` covers [base, base + size). Throws `unaligned` for a size or base off a page.
    public init(system: VMSystem, kind: Kind = .anonymous, size: UInt64) throws(ObjectError) {
        guard size & (pageSize - 1) == 0 else { throw .unaligned }
        if case .physical(let base) = kind {
            guard base.isPageAligned else { throw .unaligned }
            guard base.value.addingReportingOverflow(size).overflow == false else { throw .outOfRange }
        }
        self.system = system
        self.kind = kind
        self.size = size
        system.register(self)
    }

    /// The value stored in a page record's `object` field.
    var identity: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    public var isAnonymous: Bool { kind == .anonymous }

    /// Number of resident pages.
    public var residentPageCount: Int { residentPages.count }

    /// Resident (offset, page) pairs sorted by offset. O(n).
    public var sortedResidentPages: [(offset: UInt64, page: Page)] { residentPages.list() }

    /// Bytes of this object's resident-page index.
    public var residentIndexBytes: Int { residentPages.indexBytes }

    // MARK: References

    /// Adds a reference. Reviving a terminated object is a caller bug.
    public func reference() {
        precondition(!isTerminated, "VMObject.reference: object terminated")
        if isCached { system.cache.remove(self) }
        referenceCount += 1
    }

    /// Drops a reference. At 0 the object goes to the cache (if cacheable) or is terminated,
    /// and termination continues down the shadow chain while each backing object loses its
    /// last reference, in a loop. When an object is left with exactly one reference and that
    /// is a shadow's, the shadow is collapsed into it (as FreeBSD's vm_object_deallocate does).
    public func deallocate() {
        var current: VMObject? = self
        while let object = current {
            current = nil
            precondition(object.referenceCount > 0, "VMObject.deallocate: reference count underflow")
            object.referenceCount -= 1
            if object.referenceCount > 0 {
                if object.referenceCount == 1, object.shadowers.count == 1 {
                    object.shadowers[0].collapse()
                }
                return
            }
            object.settleLaundry()
            if object.isCacheable && object.pagingInProgress == 0 {
                object.system.cache.insert(object, in: object.system)
                return
            }
            current = object.terminate()
        }
    }

    /// Frees every page and the pager, unlinks the object from its shadow and returns the
    /// shadow, whose reference the caller must drop (the loop in `deallocate`).
    func terminate() -> VMObject? {
        precondition(referenceCount == 0 && shadowers.isEmpty, "VMObject.terminate: object still referenced")
        settleLaundry()
        precondition(pagingInProgress == 0, "VMObject.terminate: paging in progress")
        residentPages.removeAll { _, page in
            detach(page)
            system.releasePage(page)
        }
        pager?.terminate()
        pager = nil
        let backing = shadow
        if let backing {
            backing.removeShadower(self)
            if backing.copy === self { backing.copy = nil }
        }
        shadow = nil
        if let copy, copy.shadow === self { preconditionFailure("VMObject.terminate: copy object still shadows it") }
        copy = nil
        isTerminated = true
        system.unregister(self)
        return backing
    }

    func addShadower(_ object: VMObject) { shadowers.append(object) }

    func removeShadower(_ object: VMObject) {
        guard let index = shadowers.firstIndex(where: { $0 === object }) else {
            preconditionFailure("VMObject.removeShadower: not a shadower")
        }
        shadowers.remove(at: index)
    }

    // MARK: Resident pages

    private func checkOffset(_ offset: UInt64) throws(ObjectError) {
        guard offset & (pageSize - 1) == 0 else { throw .unaligned }
        guard offset < size else { throw .outOfRange }
    }

    /// Checks [offset, offset + length) is a page-aligned range inside the object; returns its end.
    func checkRange(_ offset: UInt64, _ length: UInt64) throws(ObjectError) -> UInt64 {
        guard offset & (pageSize - 1) == 0, length & (pageSize - 1) == 0 else { throw .unaligned }
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= size else { throw .outOfRange }
        return end
    }

    /// Makes `page` (managed, in use, owned by no object) resident at `offset` and puts it on
    /// the active queue. Throws `unaligned`, `outOfRange`, `offsetOccupied`, `pageNotAvailable`,
    /// `wrongKind` for a physical object, `outOfMemory` when the page index cannot grow.
    public func insert(_ page: Page, at offset: UInt64) throws(ObjectError) {
        guard isAnonymous else { throw .wrongKind }
        try checkOffset(offset)
        guard residentPages[offset] == nil else { throw .offsetOccupied }
        guard page.isManaged, page.queue != .free, page.object == nil, !page.isPageTable else { throw .pageNotAvailable }
        try attach(page, at: offset)
        if page.wireCount == 0 { try? system.pages.activate(page) }
    }

    /// The page resident at `offset`, or nil.
    public func page(at offset: UInt64) -> Page? { residentPages[offset] }

    /// Detaches and returns the page at `offset`; it keeps its mappings and queue: the caller
    /// owns it now. Throws `unaligned`, `outOfRange`, `notResident`.
    public func remove(at offset: UInt64) throws(ObjectError) -> Page {
        try checkOffset(offset)
        if let page = residentPages[offset], page.isLaundering { settleLaundry() }
        guard let page = residentPages.remove(at: offset) else { throw .notResident }
        detach(page)
        return page
    }

    /// Moves the page at `offset` to `target` at `targetOffset` (its mappings stay: the frame
    /// and its contents do not change). Throws the offset errors of both objects,
    /// `notResident`, `offsetOccupied` or `outOfMemory` (the target's index cannot grow);
    /// nothing changes when it throws.
    public func rename(at offset: UInt64, to target: VMObject, at targetOffset: UInt64) throws(ObjectError) {
        try checkOffset(offset)
        guard target.isAnonymous else { throw .wrongKind }
        try target.checkOffset(targetOffset)
        if let page = residentPages[offset], page.isLaundering { settleLaundry(keeping: page) }
        guard let page = residentPages[offset] else { throw .notResident }
        guard target.residentPages[targetOffset] == nil else { throw .offsetOccupied }
        try target.residentPages.insert(page, at: targetOffset)
        residentPages.remove(at: offset)
        detach(page)
        target.claim(page, at: targetOffset)
    }

    /// Makes `page` (owned by no object) resident at `offset`. Throws `outOfMemory` when the
    /// index cannot grow; the page is then untouched and still the caller's.
    func attach(_ page: Page, at offset: UInt64) throws(ObjectError) {
        precondition(page.object == nil, "VMObject.attach: page in two objects")
        try residentPages.insert(page, at: offset)
        claim(page, at: offset)
    }

    /// Points `page`'s record at this object (the index already holds it at `offset`).
    func claim(_ page: Page, at offset: UInt64) {
        precondition(page.object == nil, "VMObject.claim: page in two objects")
        page.object = identity
        page.offset = offset
        system.residentPageTotal += 1
    }

    /// Clears `page`'s record of this object (the caller took it out of the index).
    func detach(_ page: Page) {
        precondition(page.object == identity, "VMObject.detach: page of another object")
        page.object = nil
        page.offset = 0
        system.residentPageTotal -= 1
    }

    /// Waits for this object's laundry writes and collects them (pages written are freed,
    /// `keeping` excepted); afterwards none of its pages is laundering.
    func settleLaundry(keeping: Page? = nil) {
        guard laundryWrites > 0 else { return }
        system.pageout.settle(self, keeping: keeping)
        precondition(laundryWrites == 0, "VMObject.settleLaundry: laundry writes left")
    }

    /// True if a page in [start, end) is wired.
    private func hasWiredPage(from start: UInt64, to end: UInt64) -> Bool {
        !residentPages.forEach(in: start..<end) { _, page in page.wireCount == 0 }
    }

    /// Unmaps and frees every resident page in [start, end) (none may be wired).
    private func freePages(from start: UInt64, to end: UInt64) {
        settleLaundry()
        residentPages.removeAll(in: start..<end) { _, page in
            detach(page)
            system.releasePage(page)
        }
    }

    /// Frees every page in [offset, offset + length), removing all their mappings first, and
    /// discards the pager's data there. Wired pages are refused before anything changes.
    /// Throws `unaligned`, `outOfRange`, `pageNotAvailable` (a page in the range is wired).
    public func removeRange(offset: UInt64, length: UInt64) throws(ObjectError) {
        let end = try checkRange(offset, length)
        guard !hasWiredPage(from: offset, to: end) else { throw .pageNotAvailable }
        freePages(from: offset, to: end)
        pager?.discard((offset + pagerOffset)..<(end + pagerOffset))
    }

    /// Restricts every mapping of every resident page in the range to at most `protection`
    /// (through the reverse map, in every address space). Throws `unaligned`, `outOfRange`.
    public func protectRange(offset: UInt64, length: UInt64, to protection: Protection) throws(ObjectError) {
        let end = try checkRange(offset, length)
        residentPages.forEach(in: offset..<end) { _, page in
            system.mappings.pageProtect(page, to: protection)
            return true
        }
    }

    /// Writes every modified resident page in the range to the pager and marks it clean
    /// (write-protecting its mappings first so a write during the page-out faults and
    /// re-dirties it). Returns the number of pages written. Throws `unaligned`, `outOfRange`,
    /// `noPager`, or `pager(error)` (pages before the failing one stay clean).
    @discardableResult
    public func clean(offset: UInt64, length: UInt64) throws(ObjectError) -> Int {
        let end = try checkRange(offset, length)
        guard let pager else { throw .noPager }
        settleLaundry()
        let dirty = residentPages.list(in: offset..<end).filter { system.mappings.isModified($0.page) }
        var written = 0
        pagingInProgress += 1
        defer { pagingInProgress -= 1 }
        for (pageOffset, page) in dirty {
            system.mappings.pageProtect(page, to: .readExecute)
            do {
                try pager.pageOut(page, at: pageOffset + pagerOffset)
            } catch {
                throw .pager(error)
            }
            system.mappings.clearModified(page)
            written += 1
        }
        return written
    }

    /// Attaches `pager` as this anonymous object's backing store (pager offset = offset).
    /// Throws `wrongKind` for a physical object or if a pager is attached already.
    public func setPager(_ pager: any Pager) throws(ObjectError) {
        guard isAnonymous, self.pager == nil else { throw .wrongKind }
        self.pager = pager
        pagerOffset = 0
    }

    /// Brings the page at `offset` in from the pager into a new resident page, with the
    /// pager's read-ahead around it (neighbours it holds on consecutive blocks, not resident
    /// here) as long as memory is not short: those land on the inactive queue, the faulting
    /// page on the active one, all clean (their pager data stays valid until dirtied). Only
    /// the fault path and tests call it. Throws `notResident` if the pager has no data
    /// there, `outOfMemory`, `pager(error)` for the faulting page (a failed neighbour is
    /// simply left in the pager).
    func pageIn(at offset: UInt64) throws(ObjectError) -> Page {
        guard let pager, pager.hasData(at: offset + pagerOffset) else { throw .notResident }
        guard let page = system.allocatePage(zeroed: false) else { throw .outOfMemory }
        pagingInProgress += 1
        defer { pagingInProgress -= 1 }
        let base = pagerOffset
        var range = (offset + base)..<(offset + base + pageSize)
        if system.pageout.hasRoom(for: SwapPager.clusterPages) {
            range = pager.readAhead(around: offset + base, within: base..<(size + base)) { pagerOffset in
                self.residentPages[pagerOffset - base] != nil
            }
        }
        var pages: [Page] = []
        var cursor = range.lowerBound
        while cursor < range.upperBound {
            if cursor == offset + base {
                pages.append(page)
            } else if let extra = try? system.pages.allocate(zeroed: false) {
                pages.append(extra)
            } else {
                // No frame for a neighbour: read only up to the faulting page's run.
                if cursor < offset + base {
                    for extra in pages { try? system.pages.free(extra) }
                    pages = []
                    range = (offset + base)..<range.upperBound
                    cursor = range.lowerBound
                    continue
                }
                range = range.lowerBound..<cursor
                break
            }
            cursor += pageSize
        }
        let results = pager.pageIn(batch: pages, at: range)
        var faultingError: PagerError? = nil
        for (position, extra) in pages.enumerated() {
            let pageOffset = range.lowerBound + UInt64(position) * pageSize - base
            if extra == page {
                faultingError = results[position]
                continue
            }
            if results[position] != nil {
                try? system.pages.free(extra)
                continue
            }
            do { try attach(extra, at: pageOffset) } catch {
                try? system.pages.free(extra)   // No index node: it stays in the pager.
                continue
            }
            try? system.pages.deactivate(extra)
            system.statistics.pagesReadAhead += 1
        }
        if let faultingError {
            try? system.pages.free(page)
            throw .pager(faultingError)
        }
        do { try attach(page, at: offset) } catch {
            try? system.pages.free(page)
            throw error
        }
        try? system.pages.activate(page)
        system.statistics.pageIns += 1
        system.statistics.pageInOperations += 1
        return page
    }

    /// Gives this anonymous object a swap pager over the system's swap space, reserving swap
    /// for its whole size. Returns the pager (the existing one if any); nil when there is no
    /// swap, the object already has another kind of pager, or the reservation is refused.
    func swapPager() -> SwapPager? {
        if let pager { return pager as? SwapPager }
        guard isAnonymous, let space = system.swapSpace else { return nil }
        let pager = SwapPager(space: space, pageCountHint: size >> pageShift)
        do { try pager.reserve(size >> pageShift) } catch { return nil }
        self.pager = pager
        pagerOffset = 0
        system.statistics.swapPagersCreated += 1
        return pager
    }

    /// Forgets the pager's copy of the page at `offset` (the page is being dirtied again:
    /// the copy is stale, and its swap block goes back at once).
    func discardPagerData(at offset: UInt64) {
        guard let pager, pager.hasData(at: offset + pagerOffset) else { return }
        pager.discard((offset + pagerOffset)..<(offset + pagerOffset + pageSize))
        system.statistics.swapSlotsDiscardedOnWrite += 1
    }

    /// True if the pager holds a copy of the page at `offset`.
    func pagerHasData(at offset: UInt64) -> Bool {
        guard let pager else { return false }
        return pager.hasData(at: offset + pagerOffset)
    }

    // MARK: Coalesce

    /// Grows this anonymous object in place so that [offset, offset + length + extra) is
    /// backed by it, when a new anonymous allocation of `extra` bytes lands right after a
    /// mapping of [offset, offset + length). Only possible if nobody else can see the object
    /// (one reference, no shadowers, no pager, no copy object). Stale pages in the grown part
    /// (left by an earlier shrink) are freed. Returns false, changing nothing, otherwise.
    public func coalesce(offset: UInt64, length: UInt64, extra: UInt64) -> Bool {
        guard isAnonymous, referenceCount == 1, shadowers.isEmpty, pager == nil, copy == nil, !isCached else { return false }
        guard offset & (pageSize - 1) == 0, length & (pageSize - 1) == 0, extra & (pageSize - 1) == 0 else { return false }
        let (end, overflow1) = offset.addingReportingOverflow(length)
        guard !overflow1 else { return false }
        let (newEnd, overflow2) = end.addingReportingOverflow(extra)
        guard !overflow2 else { return false }
        let staleEnd = max(size, end)
        if hasWiredPage(from: end, to: staleEnd) { return false }
        freePages(from: end, to: staleEnd)
        if newEnd > size { size = newEnd }
        return true
    }
}
