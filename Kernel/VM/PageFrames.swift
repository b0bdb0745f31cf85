// PageFrames: the vm_page array and its queues (free, active, inactive, wired).
// One `Page.Record` per frame from the lowest to the highest frame the page allocator manages,
// in one flat array carved from physical memory, so `page(at:)` is a subtraction and an index.
// Frames in holes or reserved ranges have records too; they are simply never managed.
// The free queue is a bounded cache in front of the buddy allocator (`physicalPages`): pages
// come from it first and go back to it when freed; above `freeQueueLimit` the coldest page is
// returned to the allocator, so the VM never hoards memory the heap may need.
// Zeroing is lazy: a freed page keeps its old contents on the free queue; `allocate(zeroed:
// true)` (anonymous memory, page tables) clears it when it is handed out, so no data ever
// leaks from one owner to the next.
// Invariants: every managed page is on exactly the queue its record names, or on none while
// handed out; free pages are unmapped, unwired, not busy; wired pages sit on the wired queue
// with wireCount > 0. `invariantViolation()` checks all of it.
// Locks: none yet (one CPU, no page allocation from interrupt context); see Page.swift.

/// Why a page operation was refused. Every case leaves the pages unchanged.
public enum PageFrameError: Error, Equatable {
    /// No free page in the free queue or the page allocator (or no room for the array).
    case outOfMemory
    /// The page allocator manages no memory: set it up first.
    case noManagedMemory
    /// The page is not owned by PageFrames (reserved, a hole, or the allocator's).
    case notManaged
    /// The page is on the free queue: freed twice, or used after free.
    case pageIsFree
    /// The page is wired; unwire it first (or this is not a wired page's operation).
    case pageIsWired
    /// `unwire` of a page whose wire count is 0.
    case pageNotWired
    /// The page still has virtual mappings; remove them (ReverseMap.removeAll) first.
    case pageIsMapped
    /// The page is busy.
    case pageIsBusy
    /// `unbusy` of a page that is not busy.
    case pageNotBusy
    /// The page holds a page table; only its pmap frees it.
    case pageIsPageTable
}

/// The vm_page array and page queues. `pageFrames` (kernel) is the instance the VM uses.
public final class PageFrames {
    /// Frame number of record 0.
    public let firstFrame: UInt64
    /// Number of records.
    public let recordCount: Int
    /// Where the array lives, and its size in pages.
    public let arrayAddress: PhysicalAddress
    public let arrayPages: Int
    private let records: UnsafeMutablePointer<Page.Record>

    private var freeQueue = PageQueue(.free)
    private var activeQueue = PageQueue(.active)
    private var inactiveQueue = PageQueue(.inactive)
    private var wiredQueue = PageQueue(.wired)

    /// Pages kept on the free queue at most; beyond it `free` returns pages to the allocator.
    public var freeQueueLimit = 256
    /// Pages currently taken from the page allocator (free queue plus handed out).
    public private(set) var ownedPages = 0
    /// Pages zero-filled by `allocate(zeroed: true)` so far.
    public private(set) var zeroFilledPages = 0

    /// Builds records for every frame `physicalPages` manages, carving the array from it.
    /// Throws `noManagedMemory` before the allocator is set up, `outOfMemory` when the array
    /// does not fit. The array is never given back (the VM lives as long as the kernel).
    public init() throws(PageFrameError) {
        let regions = physicalPages.regionCount
        guard regions > 0 else { throw .noManagedMemory }
        let first = physicalPages.region(at: 0).start.frameNumber
        let end = physicalPages.region(at: regions - 1).end.frameNumber
        let count = Int(end - first)
        let bytes = count * Page.recordSize
        let pages = (bytes + Int(pageSize) - 1) / Int(pageSize)
        let address: PhysicalAddress
        do {
            address = try physicalPages.allocate(pages: pages)
        } catch {
            throw .outOfMemory
        }
        firstFrame = first
        recordCount = count
        arrayAddress = address
        arrayPages = pages
        records = DirectMap.pointer(to: address).bindMemory(to: Page.Record.self, capacity: count)
        for index in 0..<count {
            (records + index).initialize(to: Page.Record(physicalAddress: PhysicalAddress((first + UInt64(index)) << pageShift)))
        }
    }

    // MARK: Lookup

    /// The page describing the frame that holds `address`, or nil outside the array. O(1).
    public func page(at address: PhysicalAddress) -> Page? {
        let frame = address.frameNumber
        guard frame >= firstFrame, frame - firstFrame < UInt64(recordCount) else { return nil }
        return Page(record: records + Int(frame - firstFrame))
    }

    @inline(__always) private func index(of page: Page) -> UInt32 {
        let index = records.distance(to: page.record)
        precondition(index >= 0 && index < recordCount, "PageFrames: page handle from another array")
        return UInt32(index)
    }

    @inline(__always) private func page(index: UInt32) -> Page { Page(record: records + Int(index)) }

    // MARK: Allocation

    /// Hands out a managed page on no queue: unwired, not busy, clean, unreferenced.
    /// `zeroed`: the contents are cleared (lazy zeroing: anonymous memory and page tables must
    /// ask for it). Throws `outOfMemory`.
    public func allocate(zeroed: Bool) throws(PageFrameError) -> Page {
        let index: UInt32
        if let cached = freeQueue.first {
            freeQueue.remove(cached, in: records)
            index = cached
        } else {
            let address: PhysicalAddress
            do {
                address = try physicalPages.allocate()
            } catch {
                throw .outOfMemory
            }
            guard let page = page(at: address) else {
                preconditionFailure("PageFrames.allocate: the allocator handed out a frame outside the array")
            }
            precondition(!page.isManaged, "PageFrames.allocate: the allocator handed out a managed page")
            page.record.pointee.flags = .managed
            ownedPages += 1
            index = self.index(of: page)
        }
        let page = page(index: index)
        page.record.pointee.flags = .managed
        page.record.pointee.object = nil
        page.record.pointee.offset = 0
        page.record.pointee.tableEntryCount = 0
        if zeroed {
            DirectMap.zeroPages(page.contents, count: 1)
            zeroFilledPages += 1
        }
        return page
    }

    /// Takes back a page handed out by `allocate`. It must be unmapped, unwired, not busy and
    /// not a page table. Throws the first rule it breaks.
    public func free(_ page: Page) throws(PageFrameError) {
        guard page.isManaged else { throw .notManaged }
        guard page.queue != .free else { throw .pageIsFree }
        guard page.wireCount == 0 else { throw .pageIsWired }
        guard page.record.pointee.mappings == nil else { throw .pageIsMapped }
        guard !page.isBusy else { throw .pageIsBusy }
        guard !page.isPageTable else { throw .pageIsPageTable }
        let index = index(of: page)
        unlink(index)
        page.record.pointee.flags = .managed
        page.record.pointee.object = nil
        freeQueue.prepend(index, in: records)   // LIFO: the next allocation gets a cache-warm page
        if freeQueue.count > freeQueueLimit, let coldest = freeQueue.last {
            release(coldest)
        }
    }

    /// Gives every page on the free queue back to the page allocator.
    public func drainFreeQueue() {
        while let index = freeQueue.last { release(index) }
    }

    private func release(_ index: UInt32) {
        freeQueue.remove(index, in: records)
        let page = page(index: index)
        page.record.pointee.flags = []
        ownedPages -= 1
        do {
            try physicalPages.free(page.physicalAddress)
        } catch {
            preconditionFailure("PageFrames.release: the allocator refused a page it handed out")
        }
    }

    /// Unlinks `index` from whatever queue it is on.
    private func unlink(_ index: UInt32) {
        switch records[Int(index)].queue {
        case .none: break
        case .free: freeQueue.remove(index, in: records)
        case .active: activeQueue.remove(index, in: records)
        case .inactive: inactiveQueue.remove(index, in: records)
        case .wired: wiredQueue.remove(index, in: records)
        }
    }

    // MARK: Queues

    /// Moves an in-use, unwired page to the tail of the active queue.
    /// Throws `notManaged`, `pageIsFree` or `pageIsWired`.
    public func activate(_ page: Page) throws(PageFrameError) {
        try checkQueueable(page)
        let index = index(of: page)
        unlink(index)
        activeQueue.append(index, in: records)
    }

    /// Moves an in-use, unwired page to the tail of the inactive queue.
    /// Throws `notManaged`, `pageIsFree` or `pageIsWired`.
    public func deactivate(_ page: Page) throws(PageFrameError) {
        try checkQueueable(page)
        let index = index(of: page)
        unlink(index)
        inactiveQueue.append(index, in: records)
    }

    /// Takes an in-use page off the paging queues (the caller keeps it, e.g. while busy).
    public func dequeue(_ page: Page) throws(PageFrameError) {
        try checkQueueable(page)
        unlink(index(of: page))
    }

    private func checkQueueable(_ page: Page) throws(PageFrameError) {
        guard page.isManaged else { throw .notManaged }
        guard page.queue != .free else { throw .pageIsFree }
        guard page.wireCount == 0 else { throw .pageIsWired }
    }

    /// Wires an in-use page: the first wiring moves it to the wired queue.
    public func wire(_ page: Page) throws(PageFrameError) {
        guard page.isManaged else { throw .notManaged }
        guard page.queue != .free else { throw .pageIsFree }
        if page.record.pointee.wireCount == 0 {
            let index = index(of: page)
            unlink(index)
            wiredQueue.append(index, in: records)
        }
        page.record.pointee.wireCount += 1
    }

    /// Drops one wiring; the last one moves the page to the active queue.
    /// Throws `pageNotWired` when the count is already 0.
    public func unwire(_ page: Page) throws(PageFrameError) {
        guard page.isManaged else { throw .notManaged }
        guard page.record.pointee.wireCount > 0 else { throw .pageNotWired }
        page.record.pointee.wireCount -= 1
        if page.record.pointee.wireCount == 0 {
            let index = index(of: page)
            wiredQueue.remove(index, in: records)
            activeQueue.append(index, in: records)
        }
    }

    /// Marks the page busy; false if it already was.
    public func tryBusy(_ page: Page) -> Bool {
        if page.isBusy { return false }
        page.record.pointee.flags.insert(.busy)
        return true
    }

    /// Clears the busy mark. Throws `pageNotBusy`.
    public func unbusy(_ page: Page) throws(PageFrameError) {
        guard page.isBusy else { throw .pageNotBusy }
        page.record.pointee.flags.remove(.busy)
    }

    /// Pages on `queue` (`.none` counts handed-out pages on no queue).
    public func count(of queue: Page.Queue) -> Int {
        switch queue {
        case .free: return freeQueue.count
        case .active: return activeQueue.count
        case .inactive: return inactiveQueue.count
        case .wired: return wiredQueue.count
        case .none: return ownedPages - freeQueue.count - activeQueue.count - inactiveQueue.count - wiredQueue.count
        }
    }

    /// The first page of `queue` (oldest at the head for active/inactive/wired), or nil.
    public func first(of queue: Page.Queue) -> Page? {
        let head: UInt32?
        switch queue {
        case .free: head = freeQueue.first
        case .active: head = activeQueue.first
        case .inactive: head = inactiveQueue.first
        case .wired: head = wiredQueue.first
        case .none: head = nil
        }
        return head.map { page(index: $0) }
    }

    // MARK: Page-table pages (used by PageTable only)

    /// A zeroed, wired page flagged as a page table.
    func allocateTablePage() throws(PageFrameError) -> Page {
        let page = try allocate(zeroed: true)
        try wire(page)
        page.record.pointee.flags.insert(.pageTable)
        return page
    }

    /// Frees a page-table page whose table has no valid entries left.
    func freeTablePage(_ page: Page) {
        precondition(page.isPageTable, "PageFrames.freeTablePage: not a page-table page")
        precondition(page.tableEntryCount == 0, "PageFrames.freeTablePage: table still has entries")
        page.record.pointee.flags.remove(.pageTable)
        do {
            try unwire(page)
            try free(page)
        } catch {
            preconditionFailure("PageFrames.freeTablePage: page-table page in a bad state")
        }
    }

    // MARK: Consistency

    /// Walks every queue and record and returns the first broken rule, or nil. O(records).
    public func invariantViolation() -> StaticString? {
        for queue in [freeQueue, activeQueue, inactiveQueue, wiredQueue] {
            if let broken = queue.invariantViolation(in: records, recordCount: recordCount) { return broken }
        }
        var managed = 0
        for index in 0..<recordCount {
            let record = records[index]
            if record.physicalAddress.frameNumber != firstFrame + UInt64(index) { return "PageFrames: record for the wrong frame" }
            guard record.flags.contains(.managed) else {
                if record.queue != .none { return "PageFrames: unmanaged page on a queue" }
                if record.mappings != nil || record.wireCount != 0 { return "PageFrames: unmanaged page mapped or wired" }
                continue
            }
            managed += 1
            switch record.queue {
            case .free:
                if record.mappings != nil || record.wireCount != 0 || record.flags.contains(.busy)
                    || record.flags.contains(.pageTable) { return "PageFrames: free page in use" }
            case .wired:
                if record.wireCount == 0 { return "PageFrames: page on the wired queue with wireCount 0" }
            case .active, .inactive, .none:
                if record.wireCount != 0 { return "PageFrames: wired page off the wired queue" }
            }
            if (record.mappings == nil) != (record.mappingCount == 0) { return "PageFrames: mappingCount disagrees with the list" }
            if !record.flags.contains(.pageTable) && record.tableEntryCount != 0 { return "PageFrames: table entries on a non-table page" }
        }
        if managed != ownedPages { return "PageFrames: ownedPages disagrees with the managed records" }
        return nil
    }
}
