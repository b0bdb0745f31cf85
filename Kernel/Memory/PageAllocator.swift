// PageAllocator: the physical page allocator, a binary buddy system over the RAM the memory
// map reports.
// Invariants:
//  - A block of order k is 2^k frames, naturally aligned (its first frame number is a multiple
//    of 2^k), wholly inside one region. Every managed frame belongs to exactly one block, which
//    is free or allocated, or is cached or reserved.
//  - A free block of order k is on free list k exactly once; its head byte says `free head k`,
//    its other bytes `free tail`. An allocated block has `allocated head k` / `allocated tail`.
//  - Coalescing is eager: two buddies of the same order are never both free heads.
//  - Except in the hot cache: up to `hotCacheCapacity` freed single pages wait uncoalesced, on no
//    free list, in a LIFO array (state `cached`), so alloc/free of single pages in a loop does
//    not split and re-merge a large block each time (Linux's per-CPU page lists do the same).
//    They count as free; `drainHotCache()` merges them, and so does any allocation that would
//    otherwise fail.
//  - freePages == cachedPages + sum over k of 2^k * freeBlockCounts[k];
//    usedPages == totalPages - freePages.
// Runs before the heap exists: no Array, class or String here. Its tables (free-list heads,
// counts, hot cache, region table) and one state byte per frame of every usable range are
// carved from the managed RAM itself; free-list links live in the first 16 bytes of each free
// block's head page. All are reached through `DirectMap`, so host tests run this code
// unchanged over an arena. (Tables in raw memory, not InlineArray fields: Embedded Swift copies
// a whole InlineArray of structs to read one element, which made every call cost kilobytes of
// copying.) The struct is ~Copyable: it owns those tables, and a copy would fork its counters
// from them.
// Locks: none yet. One CPU, and nothing allocates pages from interrupt context. The region
// table is (c) constant after `setUp(memoryMap:)`.

/// Why a page allocation or free was refused. Every case leaves the allocator unchanged (except
/// that `outOfMemory` comes after the hot cache was drained into the buddy lists).
public enum PageAllocatorError: Error, Equatable {
    /// No free block of the requested order: memory is exhausted or too fragmented.
    case outOfMemory
    /// The order is outside `0...PageAllocator.maxOrder`, or a page count is 0 or above
    /// `1 << PageAllocator.maxOrder`.
    case invalidOrder
    /// `setUp`: no available range is large enough to hold the allocator's metadata.
    case metadataDoesNotFit
    /// The address is not page-aligned.
    case unalignedAddress
    /// The address is not inside any usable RAM range the allocator manages.
    case outOfRange
    /// The page is reserved: kernel image, boot structures, or the allocator's own metadata.
    case reservedPage
    /// The page was handed out earlier and is free now: freed twice (or freed through a stale
    /// address).
    case doubleFree
    /// The page is free and has never been handed out since `setUp`.
    case neverAllocated
    /// The page lies inside an allocated block but is not its first page.
    case insideBlock
    /// `free(_:order:)` / `free(_:pages:)`: the block at the address has a different order.
    case orderMismatch
}

/// What the allocator knows about one page frame.
public enum PageStatus: Equatable {
    /// Free (on a free list or in the hot cache); `wasHandedOut` tells whether it was
    /// allocated at some point since `setUp`.
    case free(wasHandedOut: Bool)
    /// The first page of an allocated block of `order`.
    case allocated(order: Int)
    /// A page of an allocated block other than its first.
    case insideAllocatedBlock
    /// Never handed out: a reserved range, or the allocator's metadata.
    case reserved
    /// Not in any usable RAM range the allocator manages.
    case outOfRange
}

/// The buddy allocator. `physicalPages` is the kernel's instance.
///
/// Freshly allocated pages are NOT zeroed: they hold whatever was there before (or the junk
/// pattern, see `fillsFreedPages`). Use `allocateZeroed(order:)` when zeros are needed.
public struct PageAllocator: ~Copyable {
    /// Largest block: 2^18 pages = 1 GiB, the largest leaf page size on x86_64 and aarch64.
    public static let maxOrder = 18
    /// Byte written over every page of a block when it is freed and `fillsFreedPages` is set
    /// (Linux's POISON_FREE), so a stale reference reads an obvious pattern.
    public static let junkByte: UInt8 = 0x6B
    /// Bytes of metadata the allocator carves per page frame of usable RAM (plus one fixed
    /// table of `tableBytes` for the whole allocator).
    public static let metadataBytesPerPage = 1
    /// Freed single pages kept uncoalesced for the next single-page allocations.
    public static let hotCacheCapacity = 32

    private static let noFrame = UInt64.max
    private static let orderCount = 19

    // The tables at the start of the metadata, in bytes from `metadataStart`:
    // free-list heads (first frame of each order's list, or noFrame), free-block counts,
    // hot-cache frames, and the region table of PhysicalRangeList.capacity (32) entries (first
    // frame, frame count, byte offset of the region's state bytes). The state bytes follow,
    // region after region. Literals, so they fold to constants in the hot paths.
    private static let freeListHeadsOffset = 0
    private static let freeBlockCountsOffset = 8 * 19
    private static let hotFramesOffset = 16 * 19
    private static let regionTableOffset = 16 * 19 + 8 * 32
    private static let regionEntryBytes = 24
    /// Bytes of the fixed tables in front of the state bytes.
    public static let tableBytes = 16 * 19 + 8 * 32 + 24 * 32

    /// Physical address of the metadata (tables, then state bytes); 0 before `setUp`.
    private var metadataStart = PhysicalAddress(0)
    /// Usable RAM ranges managed (entries of the region table).
    public private(set) var regionCount = 0
    /// Bit k set iff free list k is non-empty; finds a block for any order in O(1).
    private var nonEmptyOrders: UInt32 = 0
    /// Pages in the hot cache (free, counted in `freePages`, on no free list).
    public private(set) var cachedPages = 0
    /// Pages the allocator hands out: usable RAM minus reserved ranges and its own metadata.
    public private(set) var totalPages = 0
    /// Pages currently free.
    public private(set) var freePages = 0
    /// Pages inside usable RAM that are never handed out (reserved ranges plus metadata).
    public private(set) var reservedPages = 0
    /// Pages holding the metadata (part of `reservedPages`).
    public private(set) var metadataPages = 0
    /// When set, `free` overwrites every freed page with `junkByte`, to catch use after free
    /// (as xv6's kfree does). Costs a 4 KiB write per page; on by default in debug builds only.
    public var fillsFreedPages: Bool

    /// Pages currently handed out.
    public var usedPages: Int { totalPages - freePages }

    /// An allocator that manages nothing; every allocation fails until `setUp(memoryMap:)`.
    public init() {
        fillsFreedPages = _isDebugAssertConfiguration()
    }

    /// An allocator over `memoryMap`; see `setUp(memoryMap:)`.
    public init(memoryMap: MemoryMap) throws(PageAllocatorError) {
        self.init()
        try setUp(memoryMap: memoryMap)
    }

    /// Takes over the usable RAM of `memoryMap` minus its reserved ranges.
    ///
    /// Carves the metadata (`tableBytes` plus one state byte per frame of every usable range)
    /// from the start of the largest available range, then frees every available page.
    /// Forgets any earlier state. The caller guarantees that `DirectMap` maps all usable RAM and
    /// that nothing else uses the available ranges. Throws `metadataDoesNotFit` when no
    /// available range can hold the metadata (the allocator is then empty).
    public mutating func setUp(memoryMap: MemoryMap) throws(PageAllocatorError) {
        let fills = fillsFreedPages
        self = PageAllocator()
        fillsFreedPages = fills

        var map = memoryMap
        map.normalize()
        var available = map.availableRanges()

        var frames: UInt64 = 0
        for i in 0..<map.usable.count { frames &+= map.usable[i].byteCount >> pageShift }
        guard frames > 0 else { return }
        let neededPages = (UInt64(Self.tableBytes) &+ frames &+ pageSize &- 1) >> pageShift

        var host = -1
        for i in 0..<available.count where available[i].byteCount >> pageShift >= neededPages {
            if host < 0 || available[i].byteCount > available[host].byteCount { host = i }
        }
        guard host >= 0 else { throw .metadataDoesNotFit }
        // Get and set instead of mutating in place: PhysicalRangeList's `modify` accessor is a
        // coroutine whose frame Embedded Swift may heap-allocate, and there is no heap yet.
        var hostRange = available[host]
        metadataStart = hostRange.start
        hostRange.start = metadataStart.advanced(by: neededPages << pageShift)
        available[host] = hostRange
        metadataPages = Int(neededPages)

        let tables = self.tables
        tables.initializeMemory(as: UInt8.self, repeating: 0, count: Self.tableBytes)
        for order in 0..<Self.orderCount { setFreeListHead(order, Self.noFrame) }
        var offset = Self.tableBytes
        for r in 0..<map.usable.count {
            let range = map.usable[r]
            let count = range.byteCount >> pageShift
            let entry = tables + Self.regionTableOffset + r * Self.regionEntryBytes
            entry.storeBytes(of: range.start.frameNumber, as: UInt64.self)
            entry.storeBytes(of: count, toByteOffset: 8, as: UInt64.self)
            entry.storeBytes(of: UInt64(offset), toByteOffset: 16, as: UInt64.self)
            (tables + offset).initializeMemory(as: UInt8.self, repeating: FrameState.reserved.rawValue, count: Int(count))
            offset += Int(count)
        }
        regionCount = map.usable.count

        for i in 0..<available.count where !available[i].isEmpty {
            let first = available[i].start.frameNumber
            let end = available[i].end.frameNumber
            guard let r = regionIndex(containing: first) else {
                preconditionFailure("PageAllocator.setUp: available range outside usable RAM")
            }
            precondition(end <= regionEnd(r), "PageAllocator.setUp: available range crosses a region end")
            addFreeFrames(first, end, region: r)
        }
        totalPages = freePages
        reservedPages = Int(frames) - totalPages
    }

    // MARK: Allocation

    /// Hands out one page: the most recently freed one from the hot cache, else from the
    /// buddy lists (at most `maxOrder` splits). O(1). Contents are not zeroed.
    /// Throws `outOfMemory` when no page is free.
    public mutating func allocate() throws(PageAllocatorError) -> PhysicalAddress {
        try allocate(order: 0)
    }

    /// Hands out 2^order contiguous pages whose address is a multiple of their size.
    /// Contents are not zeroed. Throws `invalidOrder`, or `outOfMemory` when no block of the
    /// order is free even after draining the hot cache (the drain is the only change then).
    public mutating func allocate(order: Int) throws(PageAllocatorError) -> PhysicalAddress {
        guard order >= 0 && order <= Self.maxOrder else { throw .invalidOrder }
        if order == 0 && cachedPages > 0 { return allocateFromHotCache() }
        var candidates = nonEmptyOrders >> UInt32(order)
        if candidates == 0 && cachedPages > 0 {
            drainHotCache()
            candidates = nonEmptyOrders >> UInt32(order)
        }
        guard candidates != 0 else { throw .outOfMemory }
        var current = order + candidates.trailingZeroBitCount
        let frame = freeListHead(current)
        guard let r = regionIndex(containing: frame) else {
            preconditionFailure("PageAllocator.allocate: free list head outside every region")
        }
        let head = state(of: frame, in: r)
        precondition(head.kind == .freeHead && head.order == current,
                     "PageAllocator.allocate: free list head is not a free block of its order")
        removeFromFreeList(frame, order: current)

        // Split: keep the lower half, give the upper half back to the next lower list.
        while current > order {
            current -= 1
            let upper = frame &+ (1 << UInt64(current))
            setState(of: upper, in: r, state(of: upper, in: r).with(kind: .freeHead, order: current))
            pushOnFreeList(upper, order: current)
        }
        markBlock(frame, order: order, in: r, head: FrameState(kind: .allocatedHead, order: order, wasHandedOut: true),
                  tail: FrameState(kind: .allocatedTail, order: 0, wasHandedOut: true))
        freePages -= 1 << order
        return PhysicalAddress(frame << pageShift)
    }

    /// Hands out at least `pages` contiguous pages: the next power of two, naturally aligned.
    /// Free the run with `free(_:)` or `free(_:pages:)` with the same count.
    /// Throws `invalidOrder` (0 pages or more than 2^maxOrder) or `outOfMemory`.
    public mutating func allocate(pages: Int) throws(PageAllocatorError) -> PhysicalAddress {
        guard let order = Self.order(forPages: pages) else { throw .invalidOrder }
        return try allocate(order: order)
    }

    /// Like `allocate(order:)`, then fills the block with zeros.
    public mutating func allocateZeroed(order: Int = 0) throws(PageAllocatorError) -> PhysicalAddress {
        let address = try allocate(order: order)
        DirectMap.zeroPages(DirectMap.pointer(to: address), count: 1 << order)
        return address
    }

    /// The smallest order whose block holds `pages` pages, or nil for 0 or more than 2^maxOrder.
    public static func order(forPages pages: Int) -> Int? {
        guard pages >= 1 && pages <= 1 << maxOrder else { return nil }
        return pages == 1 ? 0 : Int.bitWidth - (pages - 1).leadingZeroBitCount
    }

    /// Merges every page of the hot cache into the buddy lists. Afterwards the free blocks are
    /// fully coalesced, as `freeBlockCount(order:)` then shows. O(cachedPages * maxOrder).
    public mutating func drainHotCache() {
        while cachedPages > 0 {
            cachedPages -= 1
            let frame = hotFrame(cachedPages)
            guard let r = regionIndex(containing: frame), state(of: frame, in: r).kind == .cached else {
                preconditionFailure("PageAllocator.drainHotCache: hot-cache entry is not a cached page")
            }
            setState(of: frame, in: r, FrameState(kind: .freeHead, order: 0, wasHandedOut: true))
            insertCoalescing(frame, order: 0, in: r)
        }
    }

    // MARK: Free

    /// Takes back the whole block that starts at `address`: a single page goes to the hot
    /// cache while it has room, anything else onto the free lists, merged with free buddies.
    ///
    /// Checks everything before changing anything; on error the allocator is unchanged.
    /// Throws `unalignedAddress`, `outOfRange`, `reservedPage`, `doubleFree`,
    /// `neverAllocated` or `insideBlock`.
    public mutating func free(_ address: PhysicalAddress) throws(PageAllocatorError) {
        let (frame, r, order) = try allocatedBlock(at: address)
        release(frame, order: order, in: r)
    }

    /// Like `free(_:)`, and also throws `orderMismatch` unless the block has order `order`.
    public mutating func free(_ address: PhysicalAddress, order: Int) throws(PageAllocatorError) {
        guard order >= 0 && order <= Self.maxOrder else { throw .invalidOrder }
        let (frame, r, actual) = try allocatedBlock(at: address)
        guard actual == order else { throw .orderMismatch }
        release(frame, order: order, in: r)
    }

    /// Frees a run obtained from `allocate(pages:)` with the same `pages`.
    public mutating func free(_ address: PhysicalAddress, pages: Int) throws(PageAllocatorError) {
        guard let order = Self.order(forPages: pages) else { throw .invalidOrder }
        try free(address, order: order)
    }

    // MARK: Inspection

    /// Number of free blocks of exactly `order` on the buddy lists (0 for an order outside
    /// `0...maxOrder`). Pages in the hot cache are in no block: drain it first to see the
    /// fully coalesced structure.
    public func freeBlockCount(order: Int) -> Int {
        guard order >= 0 && order <= Self.maxOrder && metadataPages > 0 else { return 0 }
        return freeBlockCountValue(order)
    }

    /// The order of the allocated block starting at `address`, or nil if no allocated block
    /// starts there.
    public func allocationOrder(at address: PhysicalAddress) -> Int? {
        if case .allocated(let order) = status(of: address) { return order }
        return nil
    }

    /// What the allocator knows about the page holding `address` (for tests and debuggers).
    public func status(of address: PhysicalAddress) -> PageStatus {
        guard let r = regionIndex(containing: address.frameNumber) else { return .outOfRange }
        let s = state(of: address.frameNumber, in: r)
        switch s.kind {
        case .freeHead, .freeTail, .cached: return .free(wasHandedOut: s.wasHandedOut)
        case .allocatedHead: return .allocated(order: s.order)
        case .allocatedTail: return .insideAllocatedBlock
        case .reserved: return .reserved
        }
    }

    /// The pages holding the metadata (empty before `setUp`).
    public var metadataRange: PhysicalRange {
        PhysicalRange(start: metadataStart, end: metadataStart.advanced(by: UInt64(metadataPages) << pageShift))
    }

    /// The `index`th usable RAM range the allocator manages (sorted by address).
    public func region(at index: Int) -> PhysicalRange {
        precondition(index >= 0 && index < regionCount, "PageAllocator.region: index out of range")
        return PhysicalRange(start: PhysicalAddress(regionFirst(index) << pageShift),
                             end: PhysicalAddress(regionEnd(index) << pageShift))
    }

    /// Walks every state byte, free list and the hot cache, and returns the first broken
    /// invariant, or nil. O(managed frames + free blocks): for tests and debugging.
    public func invariantViolation() -> StaticString? {
        guard metadataPages > 0 else {
            let empty = regionCount == 0 && totalPages == 0 && freePages == 0 && cachedPages == 0 && nonEmptyOrders == 0
            return empty ? nil : "an allocator without metadata that is not empty"
        }
        var freeFromStates = 0, allocatedFromStates = 0, reservedFromStates = 0, cachedFromStates = 0
        var headsByOrder = InlineArray<19, Int>(repeating: 0)
        for r in 0..<regionCount {
            let first = regionFirst(r), end = regionEnd(r)
            if r > 0 && first < regionEnd(r - 1) { return "regions not sorted and disjoint" }
            var frame = first
            while frame < end {
                let head = state(of: frame, in: r)
                switch head.kind {
                case .reserved:
                    reservedFromStates += 1
                    frame += 1
                    continue
                case .cached:
                    cachedFromStates += 1
                    if !head.wasHandedOut { return "a cached page without history" }
                    frame += 1
                    continue
                case .freeTail, .allocatedTail:
                    return "a tail byte without a head before it"
                case .freeHead, .allocatedHead:
                    break
                }
                if head.order > Self.maxOrder { return "a head with an order above maxOrder" }
                let size = UInt64(1) << UInt64(head.order)
                if frame & (size - 1) != 0 { return "a block not aligned to its size" }
                if frame + size > end { return "a block crossing its region's end" }
                let tailKind: FrameState.Kind = head.kind == .freeHead ? .freeTail : .allocatedTail
                var t = frame + 1
                while t < frame + size {
                    let tail = state(of: t, in: r)
                    if tail.kind != tailKind { return "a block whose tail bytes do not match its head" }
                    if head.kind == .allocatedHead && !tail.wasHandedOut { return "an allocated page without history" }
                    t += 1
                }
                if head.kind == .freeHead {
                    freeFromStates += Int(size)
                    headsByOrder[head.order] += 1
                    let buddy = frame ^ size
                    if head.order < Self.maxOrder && buddy >= first && buddy + size <= end {
                        let b = state(of: buddy, in: r)
                        if b.kind == .freeHead && b.order == head.order { return "two free buddies not coalesced" }
                    }
                } else {
                    allocatedFromStates += Int(size)
                }
                frame += size
            }
        }
        var freeFromLists = 0
        for order in 0...Self.maxOrder {
            var count = 0
            var previous = Self.noFrame
            var frame = freeListHead(order)
            while frame != Self.noFrame {
                guard let r = regionIndex(containing: frame) else { return "a free-list link outside every region" }
                let s = state(of: frame, in: r)
                if s.kind != .freeHead || s.order != order { return "a free-list entry that is not a free head of its order" }
                if link(of: frame).load(fromByteOffset: 8, as: UInt64.self) != previous { return "a broken free-list back link" }
                count += 1
                if count > headsByOrder[order] { return "a free list longer than its free heads (cycle or duplicate)" }
                previous = frame
                frame = link(of: frame).load(as: UInt64.self)
            }
            if count != headsByOrder[order] { return "a free head missing from its free list" }
            if count != freeBlockCountValue(order) { return "freeBlockCounts disagrees with the free list" }
            if (count > 0) != (nonEmptyOrders & (1 << UInt32(order)) != 0) { return "nonEmptyOrders disagrees with the free list" }
            freeFromLists += count << order
        }
        if cachedFromStates != cachedPages { return "cachedPages disagrees with the cached state bytes" }
        for i in 0..<cachedPages {
            guard let r = regionIndex(containing: hotFrame(i)) else { return "a hot-cache entry outside every region" }
            if state(of: hotFrame(i), in: r).kind != .cached { return "a hot-cache entry that is not a cached page" }
            for j in 0..<i where hotFrame(j) == hotFrame(i) { return "a page twice in the hot cache" }
        }
        if freeFromLists != freeFromStates || freeFromStates + cachedPages != freePages {
            return "freePages disagrees with the free blocks and the hot cache"
        }
        if allocatedFromStates != usedPages { return "usedPages disagrees with the allocated blocks" }
        if reservedFromStates != reservedPages { return "reservedPages disagrees with the reserved bytes" }
        return nil
    }

    // MARK: Allocation and free internals

    /// Validates a free of `address` and returns its frame, region and block order.
    private func allocatedBlock(at address: PhysicalAddress) throws(PageAllocatorError) -> (UInt64, Int, Int) {
        guard address.isPageAligned else { throw .unalignedAddress }
        let frame = address.frameNumber
        guard let r = regionIndex(containing: frame) else { throw .outOfRange }
        let s = state(of: frame, in: r)
        switch s.kind {
        case .allocatedHead: return (frame, r, s.order)
        case .allocatedTail: throw .insideBlock
        case .freeHead, .freeTail, .cached: throw s.wasHandedOut ? .doubleFree : .neverAllocated
        case .reserved: throw .reservedPage
        }
    }

    private mutating func allocateFromHotCache() -> PhysicalAddress {
        cachedPages -= 1
        let frame = hotFrame(cachedPages)
        guard let r = regionIndex(containing: frame), state(of: frame, in: r).kind == .cached else {
            preconditionFailure("PageAllocator.allocate: hot-cache entry is not a cached page")
        }
        setState(of: frame, in: r, FrameState(kind: .allocatedHead, order: 0, wasHandedOut: true))
        freePages -= 1
        return PhysicalAddress(frame << pageShift)
    }

    /// Takes back a validated allocated block.
    private mutating func release(_ frame: UInt64, order: Int, in r: Int) {
        if fillsFreedPages {
            DirectMap.pointer(to: PhysicalAddress(frame << pageShift))
                .initializeMemory(as: UInt8.self, repeating: Self.junkByte, count: Int(pageSize) << order)
        }
        freePages += 1 << order
        if order == 0 && cachedPages < Self.hotCacheCapacity {
            setState(of: frame, in: r, FrameState(kind: .cached, order: 0, wasHandedOut: true))
            setHotFrame(cachedPages, frame)
            cachedPages += 1
            return
        }
        // Every page of an allocated block has been handed out, so its bytes keep that history.
        markBlock(frame, order: order, in: r, head: FrameState(kind: .freeHead, order: order, wasHandedOut: true),
                  tail: FrameState(kind: .freeTail, order: 0, wasHandedOut: true))
        insertCoalescing(frame, order: order, in: r)
    }

    /// Puts the free block at `frame` (already marked free) on a free list, merged with its
    /// free buddies as far as they go. Buddies must lie wholly inside the same region.
    private mutating func insertCoalescing(_ frame: UInt64, order: Int, in r: Int) {
        let first = regionFirst(r), end = regionEnd(r)
        var head = frame
        var current = order
        while current < Self.maxOrder {
            let size = UInt64(1) << UInt64(current)
            let buddy = head ^ size
            guard buddy >= first && buddy + size <= end else { break }
            let b = state(of: buddy, in: r)
            guard b.kind == .freeHead && b.order == current else { break }
            removeFromFreeList(buddy, order: current)
            let lower = min(head, buddy), upper = max(head, buddy)
            setState(of: upper, in: r, state(of: upper, in: r).with(kind: .freeTail, order: 0))
            head = lower
            current += 1
            setState(of: head, in: r, state(of: head, in: r).with(kind: .freeHead, order: current))
        }
        pushOnFreeList(head, order: current)
    }

    /// Frees the frames [first, end) of region `r` at setUp, as maximal aligned blocks.
    private mutating func addFreeFrames(_ first: UInt64, _ end: UInt64, region r: Int) {
        var frame = first
        while frame < end {
            var order = min(Self.maxOrder, frame.trailingZeroBitCount)
            while UInt64(1) << UInt64(order) > end - frame { order -= 1 }
            markBlock(frame, order: order, in: r, head: FrameState(kind: .freeHead, order: order, wasHandedOut: false),
                      tail: FrameState(kind: .freeTail, order: 0, wasHandedOut: false))
            pushOnFreeList(frame, order: order)
            freePages += 1 << order
            frame += UInt64(1) << UInt64(order)
        }
    }

    /// Writes `head` to the block's first byte and `tail` to the other 2^order - 1.
    private func markBlock(_ frame: UInt64, order: Int, in r: Int, head: FrameState, tail: FrameState) {
        let states = stateBytes(of: r) + Int(frame - regionFirst(r))
        states.pointee = head.rawValue
        if order > 0 { (states + 1).initialize(repeating: tail.rawValue, count: (1 << order) - 1) }
    }

    // MARK: Tables (raw memory at metadataStart, valid only after setUp)

    private var tables: UnsafeMutableRawPointer { DirectMap.pointer(to: metadataStart) }

    private func freeListHead(_ order: Int) -> UInt64 {
        tables.load(fromByteOffset: Self.freeListHeadsOffset + 8 * order, as: UInt64.self)
    }

    private func setFreeListHead(_ order: Int, _ frame: UInt64) {
        tables.storeBytes(of: frame, toByteOffset: Self.freeListHeadsOffset + 8 * order, as: UInt64.self)
    }

    private func freeBlockCountValue(_ order: Int) -> Int {
        tables.load(fromByteOffset: Self.freeBlockCountsOffset + 8 * order, as: Int.self)
    }

    private func setFreeBlockCount(_ order: Int, _ count: Int) {
        tables.storeBytes(of: count, toByteOffset: Self.freeBlockCountsOffset + 8 * order, as: Int.self)
    }

    private func hotFrame(_ index: Int) -> UInt64 {
        tables.load(fromByteOffset: Self.hotFramesOffset + 8 * index, as: UInt64.self)
    }

    private func setHotFrame(_ index: Int, _ frame: UInt64) {
        tables.storeBytes(of: frame, toByteOffset: Self.hotFramesOffset + 8 * index, as: UInt64.self)
    }

    private func regionFirst(_ r: Int) -> UInt64 {
        tables.load(fromByteOffset: Self.regionTableOffset + r * Self.regionEntryBytes, as: UInt64.self)
    }

    private func regionEnd(_ r: Int) -> UInt64 {
        regionFirst(r) &+ tables.load(fromByteOffset: Self.regionTableOffset + r * Self.regionEntryBytes + 8, as: UInt64.self)
    }

    private func stateBytes(of r: Int) -> UnsafeMutablePointer<UInt8> {
        let offset = tables.load(fromByteOffset: Self.regionTableOffset + r * Self.regionEntryBytes + 16, as: UInt64.self)
        return (tables + Int(offset)).assumingMemoryBound(to: UInt8.self)
    }

    private func state(of frame: UInt64, in r: Int) -> FrameState {
        FrameState(rawValue: stateBytes(of: r)[Int(frame - regionFirst(r))])
    }

    private func setState(of frame: UInt64, in r: Int, _ s: FrameState) {
        stateBytes(of: r)[Int(frame - regionFirst(r))] = s.rawValue
    }

    /// The region holding `frame` (binary search over the sorted regions), or nil.
    private func regionIndex(containing frame: UInt64) -> Int? {
        var low = 0, high = regionCount
        while low < high {
            let mid = (low + high) / 2
            if frame < regionFirst(mid) {
                high = mid
            } else if frame >= regionEnd(mid) {
                low = mid + 1
            } else {
                return mid
            }
        }
        return nil
    }

    // MARK: Free lists: the head page of a free block holds [next frame, previous frame].

    private func link(of frame: UInt64) -> UnsafeMutableRawPointer {
        DirectMap.pointer(to: PhysicalAddress(frame << pageShift))
    }

    private mutating func pushOnFreeList(_ frame: UInt64, order: Int) {
        let next = freeListHead(order)
        link(of: frame).storeBytes(of: next, as: UInt64.self)
        link(of: frame).storeBytes(of: Self.noFrame, toByteOffset: 8, as: UInt64.self)
        if next != Self.noFrame { link(of: next).storeBytes(of: frame, toByteOffset: 8, as: UInt64.self) }
        setFreeListHead(order, frame)
        setFreeBlockCount(order, freeBlockCountValue(order) + 1)
        nonEmptyOrders |= 1 << UInt32(order)
    }

    private mutating func removeFromFreeList(_ frame: UInt64, order: Int) {
        let next = link(of: frame).load(as: UInt64.self)
        let previous = link(of: frame).load(fromByteOffset: 8, as: UInt64.self)
        if previous == Self.noFrame {
            precondition(freeListHead(order) == frame, "PageAllocator.removeFromFreeList: block without back link is not the list head")
            setFreeListHead(order, next)
        } else {
            link(of: previous).storeBytes(of: next, as: UInt64.self)
        }
        if next != Self.noFrame { link(of: next).storeBytes(of: previous, toByteOffset: 8, as: UInt64.self) }
        let count = freeBlockCountValue(order) - 1
        precondition(count >= 0, "PageAllocator.removeFromFreeList: free block count underflow")
        setFreeBlockCount(order, count)
        if count == 0 { nonEmptyOrders &= ~(1 << UInt32(order)) }
    }
}

/// One frame's state byte.
/// Bit 7: the frame has been handed out at least once since setUp (tells a double free from a
/// free of a page never handed out). Bits 0-6: 0...31 free head of that order, 32...63
/// allocated head of order (value - 32), 64 free tail, 65 allocated tail, 66 cached (a free
/// single page in the hot cache), 127 reserved.
private struct FrameState {
    enum Kind { case freeHead, allocatedHead, freeTail, allocatedTail, cached, reserved }

    var rawValue: UInt8

    static let historyBit: UInt8 = 0x80
    static let reserved = FrameState(rawValue: 127)

    init(rawValue: UInt8) { self.rawValue = rawValue }

    init(kind: Kind, order: Int, wasHandedOut: Bool) {
        let value: UInt8
        switch kind {
        case .freeHead: value = UInt8(order)
        case .allocatedHead: value = 32 + UInt8(order)
        case .freeTail: value = 64
        case .allocatedTail: value = 65
        case .cached: value = 66
        case .reserved: value = 127
        }
        rawValue = value | (wasHandedOut ? Self.historyBit : 0)
    }

    var kind: Kind {
        switch rawValue & ~Self.historyBit {
        case 0..<32: return .freeHead
        case 32..<64: return .allocatedHead
        case 64: return .freeTail
        case 65: return .allocatedTail
        case 66: return .cached
        default: return .reserved
        }
    }

    /// The block order of a head byte.
    var order: Int { Int(rawValue & 31) }

    var wasHandedOut: Bool { rawValue & Self.historyBit != 0 }

    /// The same frame's history with a new kind and order.
    func with(kind: Kind, order: Int) -> FrameState {
        FrameState(kind: kind, order: order, wasHandedOut: wasHandedOut)
    }
}

/// The kernel's physical page allocator: empty until boot calls `setUp(memoryMap:)` once.
public nonisolated(unsafe) var physicalPages = PageAllocator()
