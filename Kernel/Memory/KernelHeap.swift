// KernelHeap: the kernel's malloc. Backs the Swift runtime (posix_memalign, malloc, calloc,
// realloc, free through the C shims) so classes, ARC, Array and Dictionary work in the kernel.
// Small requests (up to 2048 bytes) come from one-page slabs of 24 size classes; larger or
// more strictly aligned requests get a whole run of 2^k pages.
// Invariants:
//  - Each slab page and each large run's first page has exactly one 64-byte descriptor in the
//    page map (a radix tree keyed by page address, nodes taken from the page source). Pages
//    inside a large run have none, so a pointer into one is unknown, not freeable.
//  - A slab holds objects of one class at offsets i * classSize, i < capacity; bitmap bit i is
//    set iff object i is live; bits at and above capacity are always set.
//  - A slab is on its class's partial list iff it has a free object (used < capacity).
//  - An empty slab is returned to the source unless it is its class's only partial slab, so a
//    class keeps at most one empty slab (no page ping-pong on alloc/free loops).
//  - The heap never reads or writes an object's bytes except to junk-fill it on free, and it
//    never dereferences a pointer handed to `free` before the page map vouches for it.
// It must never allocate through the Swift runtime (it IS the runtime's allocator): raw
// pointers only, no Array, class, String or escaping closure.
// Locks: none yet. One CPU, and nothing allocates from interrupt context.

/// Why the heap refused a request. Every case leaves the heap unchanged.
public enum HeapError: Error, Equatable {
    /// The page source has no memory left.
    case outOfMemory
    /// The alignment is zero or not a power of two.
    case invalidAlignment
    /// The size is negative, or needs a run larger than 2^PageAllocator.maxOrder pages.
    case invalidSize
    /// The heap never handed out this pointer (or handed out a large run there and took it
    /// back already: freed runs are forgotten, so their double free is reported this way).
    case unknownPointer
    /// The pointer names a slab object that is already free: a double free (and, from
    /// `usableSize(of:)`, a use after free).
    case doubleFree
}

/// Where the heap gets its pages. The kernel uses `PhysicalPageSource`; host tests back it
/// with their own arena.
public protocol HeapPageSource {
    /// Hands out 2^order contiguous writable pages whose address is a multiple of their size.
    /// Contents are undefined. Throws `outOfMemory` (or `invalidSize` for an order it cannot
    /// provide).
    mutating func allocatePages(order: Int) throws(HeapError) -> UnsafeMutableRawPointer
    /// Takes back a block this source handed out with the same order.
    mutating func freePages(_ block: UnsafeMutableRawPointer, order: Int)
}

/// Pages from the kernel's `physicalPages`, addressed through the direct map. Relies on the
/// direct map's base being aligned to the largest block (1 GiB), so virtual alignment equals
/// physical alignment. When the allocator is empty it asks `reclaim` once before failing.
public struct PhysicalPageSource: HeapPageSource {
    /// Gives page frames back to `physicalPages` when a heap block cannot be had; true if it
    /// did (worth one retry). The kernel installs one that drains the VM's free-page cache
    /// (PageFrames' free queue), whose pages the heap cannot otherwise reach. It runs inside
    /// an arbitrary allocation, so it must not allocate from the heap or change VM objects.
    public nonisolated(unsafe) static var reclaim: (() -> Bool)? = nil

    public init() {}

    public mutating func allocatePages(order: Int) throws(HeapError) -> UnsafeMutableRawPointer {
        do {
            return DirectMap.pointer(to: try physicalPages.allocate(order: order))
        } catch {
            guard error != .invalidOrder else { throw .invalidSize }
        }
        guard let reclaim = PhysicalPageSource.reclaim, reclaim() else { throw .outOfMemory }
        do {
            return DirectMap.pointer(to: try physicalPages.allocate(order: order))
        } catch {
            throw .outOfMemory
        }
    }

    public mutating func freePages(_ block: UnsafeMutableRawPointer, order: Int) {
        do {
            try physicalPages.free(DirectMap.physicalAddress(of: block), order: order)
        } catch {
            preconditionFailure("PhysicalPageSource.freePages: page allocator refused a heap block")
        }
    }
}

/// Counters of what the heap holds.
public struct HeapStatistics: Equatable {
    /// Allocations handed out and not yet freed.
    public var liveAllocations = 0
    /// Usable bytes of the live allocations (size class or whole run, not the request).
    public var bytesInUse = 0
    /// Pages held as slabs (including partly used and cached empty ones).
    public var slabPages = 0
    /// Pages held as large runs.
    public var largeRunPages = 0
    /// Pages held by the page map's nodes.
    public var metadataPages = 0
    /// Allocations and frees since the heap was created.
    public var allocationCount = 0, freeCount = 0

    public init() {}

    /// Every page the heap holds from its source.
    public var pagesHeld: Int { slabPages + largeRunPages + metadataPages }
}

/// The size classes and fixed layout of the heap (not generic, so it can hold constants).
public enum HeapSizeClasses {
    /// 16, 32 ... 128 in steps of 16, then four classes per doubling up to 2048.
    public static let count = 24
    /// The largest slab object; anything bigger is a page run.
    public static let largestSize = 2048
    /// Byte written over freed slab objects when `fillsFreedMemory` is set.
    public static let junkByte: UInt8 = 0x6B
    /// A slab is one page.
    static let slabBytes = Int(pageSize)
    /// Bytes of a page-map descriptor (one per slab page or large run).
    public static let descriptorBytes = 64

    /// Object size of class `index`.
    public static func size(of index: Int) -> Int {
        if index < 8 { return (index + 1) * 16 }
        let group = (index - 8) / 4, quarter = (index - 8) % 4
        return (128 << group) + (quarter + 1) * (32 << group)
    }

    /// Alignment every object of class `index` has: the largest power of two dividing its size.
    public static func alignment(of index: Int) -> Int {
        let size = Self.size(of: index)
        return size & (~size &+ 1)
    }

    /// Objects per slab of class `index`.
    public static func capacity(of index: Int) -> Int { slabBytes / Self.size(of: index) }

    /// The smallest class whose objects hold `size` bytes at `alignment`, or nil when the
    /// request needs a page run. `alignment` must be a power of two; size 0 counts as 1.
    public static func index(forSize requested: Int, alignment: Int) -> Int? {
        let size = max(requested, 1)
        guard size <= largestSize && alignment <= largestSize else { return nil }
        let needed = alignment > 16 ? (size + alignment - 1) & ~(alignment - 1) : size
        guard needed <= largestSize else { return nil }
        var index: Int
        if needed <= 128 {
            index = (needed + 15) / 16 - 1
        } else {
            let s = needed - 1
            let log = Int.bitWidth - 1 - s.leadingZeroBitCount   // 7...10
            index = 8 + (log - 7) * 4 + (s >> (log - 2)) - 4
        }
        while Self.alignment(of: index) < alignment { index += 1 }
        return index
    }
}

/// The kernel heap: slabs of size classes plus page runs, over a page source.
public struct KernelHeap<Source: HeapPageSource> {
    /// Where the pages come from.
    public private(set) var source: Source
    /// What the heap holds right now.
    public private(set) var statistics = HeapStatistics()
    /// When set, `free` overwrites slab objects with `HeapSizeClasses.junkByte` to expose use
    /// after free. On by default in debug builds only. (Page runs go back to the page source,
    /// which junk-fills on its own terms.)
    public var fillsFreedMemory: Bool

    /// Root node of the page map (address of a 4 KiB node), 0 until the first slab or run.
    private var pageMapRoot: UInt = 0
    /// Descriptor address of the first slab with a free object, per class (0 = none).
    private var partialSlabs: InlineArray<24, UInt>

    /// A heap over `source`; it takes no pages until the first allocation.
    public init(source: Source) {
        self.source = source
        partialSlabs = InlineArray(repeating: 0)
        fillsFreedMemory = _isDebugAssertConfiguration()
    }

    // MARK: Allocation

    /// Hands out `size` bytes aligned to `alignment`; contents are undefined.
    ///
    /// Size 0 is treated as 1 (a unique pointer, as C allows). Alignment up to 2048 is served
    /// from slabs when the size fits; anything larger, up to 2^maxOrder pages, is a page run
    /// aligned to max(4096, alignment). Throws `invalidAlignment`, `invalidSize` or
    /// `outOfMemory`.
    public mutating func allocate(size: Int, alignment: Int) throws(HeapError) -> UnsafeMutableRawPointer {
        guard alignment > 0 && alignment & (alignment - 1) == 0 else { throw .invalidAlignment }
        guard size >= 0 else { throw .invalidSize }
        let request = max(size, 1)
        let pointer: UnsafeMutableRawPointer
        if let sizeClass = HeapSizeClasses.index(forSize: request, alignment: alignment) {
            pointer = try allocateObject(sizeClass: sizeClass)
        } else {
            pointer = try allocateRun(size: request, alignment: alignment)
        }
        statistics.allocationCount += 1
        return pointer
    }

    /// Takes back an allocation. Checks the pointer against the page map first and throws
    /// `unknownPointer` or `doubleFree` without changing anything.
    public mutating func free(_ pointer: UnsafeMutableRawPointer) throws(HeapError) {
        let (descriptor, index) = try liveAllocation(at: pointer)
        if descriptor.kind == PageDescriptor.large {
            let order = Int(descriptor.order)
            descriptor.clear()
            source.freePages(pointer, order: order)
            statistics.largeRunPages -= 1 << order
            statistics.bytesInUse -= Int(pageSize) << order
        } else {
            freeObject(index, in: descriptor, pointer: pointer)
        }
        statistics.liveAllocations -= 1
        statistics.freeCount += 1
    }

    /// The bytes usable at `pointer` (its size class, or its whole page run).
    /// Throws `unknownPointer` or `doubleFree` like `free`.
    public func usableSize(of pointer: UnsafeRawPointer) throws(HeapError) -> Int {
        let (descriptor, _) = try liveAllocation(at: pointer)
        if descriptor.kind == PageDescriptor.large { return Int(pageSize) << Int(descriptor.order) }
        return HeapSizeClasses.size(of: Int(descriptor.sizeClass))
    }

    /// Walks the page map and the partial lists and returns the first broken invariant, or
    /// nil. O(page-map nodes + slabs): for tests and debugging.
    public func invariantViolation() -> StaticString? {
        var live = 0, bytes = 0, slabs = 0, runPages = 0, nodes = 0
        var partialBySlabs = InlineArray<24, Int>(repeating: 0)
        var emptyBySlabs = InlineArray<24, Int>(repeating: 0)
        if pageMapRoot != 0 {
            nodes += 1
            for i in 0..<512 {
                let level1 = Self.entry(pageMapRoot, i)
                if level1 == 0 { continue }
                nodes += 1
                for j in 0..<512 {
                    let level2 = Self.entry(level1, j)
                    if level2 == 0 { continue }
                    nodes += 1
                    for k in 0..<512 {
                        let leaf = Self.entry(level2, k)
                        if leaf == 0 { continue }
                        nodes += Self.leafPages
                        for l in 0..<512 {
                            let d = PageDescriptor(address: leaf + UInt(l * HeapSizeClasses.descriptorBytes))
                            if d.page == 0 { continue }
                            if Self.leafIndex(d.page) != l { return "a descriptor in the wrong page-map slot" }
                            if d.kind == PageDescriptor.large {
                                live += 1
                                bytes += Int(pageSize) << Int(d.order)
                                runPages += 1 << Int(d.order)
                                continue
                            }
                            if d.kind != PageDescriptor.slab { return "a descriptor of unknown kind" }
                            let c = Int(d.sizeClass)
                            if c >= HeapSizeClasses.count { return "a slab with an invalid size class" }
                            if Int(d.capacity) != HeapSizeClasses.capacity(of: c) { return "a slab with the wrong capacity" }
                            var setBits = 0
                            for w in 0..<4 { setBits += d.bitmapWord(w).nonzeroBitCount }
                            if setBits - (256 - Int(d.capacity)) != Int(d.used) { return "a slab whose bitmap disagrees with its used count" }
                            for index in Int(d.capacity)..<256 where !d.isLive(index) { return "a slab bitmap bit above capacity is clear" }
                            slabs += 1
                            live += Int(d.used)
                            bytes += Int(d.used) * HeapSizeClasses.size(of: c)
                            if d.used < d.capacity { partialBySlabs[c] += 1 }
                            if d.used == 0 { emptyBySlabs[c] += 1 }
                        }
                    }
                }
            }
        }
        for c in 0..<HeapSizeClasses.count {
            var count = 0
            var previous: UInt = 0
            var address = partialSlabs[c]
            while address != 0 {
                let d = PageDescriptor(address: address)
                if d.kind != PageDescriptor.slab || Int(d.sizeClass) != c { return "a partial list entry of another class" }
                if d.used >= d.capacity { return "a full slab on a partial list" }
                if d.previous != previous { return "a broken partial-list back link" }
                count += 1
                if count > partialBySlabs[c] { return "a partial list longer than its partial slabs (cycle)" }
                previous = address
                address = d.next
            }
            if count != partialBySlabs[c] { return "a partial slab missing from its list" }
            if emptyBySlabs[c] > 1 { return "more than one empty slab kept for a class" }
        }
        if live != statistics.liveAllocations { return "liveAllocations disagrees with the slabs and runs" }
        if bytes != statistics.bytesInUse { return "bytesInUse disagrees with the slabs and runs" }
        if slabs != statistics.slabPages { return "slabPages disagrees with the page map" }
        if runPages != statistics.largeRunPages { return "largeRunPages disagrees with the page map" }
        if nodes != statistics.metadataPages { return "metadataPages disagrees with the page map" }
        return nil
    }

    // MARK: Slabs

    /// Hands out the first free object of the class's first partial slab (adding a slab if
    /// there is none); a slab that becomes full leaves the partial list.
    private mutating func allocateObject(sizeClass c: Int) throws(HeapError) -> UnsafeMutableRawPointer {
        if partialSlabs[c] == 0 { try addSlab(sizeClass: c) }
        let d = PageDescriptor(address: partialSlabs[c])
        var index = -1
        for w in 0..<4 {
            let word = d.bitmapWord(w)
            if word != UInt64.max {
                index = w * 64 + (~word).trailingZeroBitCount
                break
            }
        }
        precondition(index >= 0 && index < Int(d.capacity), "KernelHeap.allocate: partial slab has no free object")
        d.setLive(index, true)
        d.used += 1
        if d.used == d.capacity { removeFromPartialList(d, sizeClass: c) }
        let size = HeapSizeClasses.size(of: c)
        statistics.liveAllocations += 1
        statistics.bytesInUse += size
        return UnsafeMutableRawPointer(bitPattern: d.page + UInt(index * size))!
    }

    /// Takes a page from the source, registers it as an empty slab of class `c` and puts it on
    /// the partial list. On failure nothing is left behind.
    private mutating func addSlab(sizeClass c: Int) throws(HeapError) {
        let page = try source.allocatePages(order: 0)
        precondition(UInt(bitPattern: page) & UInt(pageSize - 1) == 0, "KernelHeap.addSlab: page source returned an unaligned page")
        let d: PageDescriptor
        do {
            d = try makeDescriptor(forPage: UInt(bitPattern: page))
        } catch {
            source.freePages(page, order: 0)
            throw error
        }
        d.kind = PageDescriptor.slab
        d.sizeClass = UInt8(c)
        d.order = 0
        d.used = 0
        let capacity = HeapSizeClasses.capacity(of: c)
        d.capacity = UInt16(capacity)
        for w in 0..<4 {
            let low = w * 64
            let word: UInt64 = capacity >= low + 64 ? 0 : capacity <= low ? .max : ~((1 << UInt64(capacity - low)) - 1)
            d.setBitmapWord(w, word)
        }
        pushOnPartialList(d, sizeClass: c)
        statistics.slabPages += 1
    }

    /// Clears a validated live object's bit; a full slab rejoins the partial list, an empty
    /// one goes back to the source unless it is the class's only partial slab.
    private mutating func freeObject(_ index: Int, in d: PageDescriptor, pointer: UnsafeMutableRawPointer) {
        let c = Int(d.sizeClass)
        let size = HeapSizeClasses.size(of: c)
        if fillsFreedMemory { pointer.initializeMemory(as: UInt8.self, repeating: HeapSizeClasses.junkByte, count: size) }
        let wasFull = d.used == d.capacity
        d.setLive(index, false)
        d.used -= 1
        statistics.bytesInUse -= size
        if wasFull { pushOnPartialList(d, sizeClass: c) }
        let isOnlyPartialSlab = partialSlabs[c] == d.address && d.next == 0
        if d.used == 0 && !isOnlyPartialSlab {
            removeFromPartialList(d, sizeClass: c)
            let page = UnsafeMutableRawPointer(bitPattern: d.page)!
            d.clear()
            source.freePages(page, order: 0)
            statistics.slabPages -= 1
        }
    }

    /// Partial lists are doubly linked through the descriptors' next/previous fields.
    private mutating func pushOnPartialList(_ d: PageDescriptor, sizeClass c: Int) {
        let head = partialSlabs[c]
        d.next = head
        d.previous = 0
        if head != 0 { PageDescriptor(address: head).previous = d.address }
        partialSlabs[c] = d.address
    }

    private mutating func removeFromPartialList(_ d: PageDescriptor, sizeClass c: Int) {
        if d.previous == 0 {
            precondition(partialSlabs[c] == d.address, "KernelHeap.removeFromPartialList: slab without back link is not the list head")
            partialSlabs[c] = d.next
        } else {
            PageDescriptor(address: d.previous).next = d.next
        }
        if d.next != 0 { PageDescriptor(address: d.next).previous = d.previous }
        d.next = 0
        d.previous = 0
    }

    // MARK: Page runs

    /// Hands out a naturally aligned run of 2^k pages holding `size` bytes at `alignment`,
    /// registered by its first page.
    private mutating func allocateRun(size: Int, alignment: Int) throws(HeapError) -> UnsafeMutableRawPointer {
        let maxBytes = Int(pageSize) << PageAllocator.maxOrder
        guard size <= maxBytes && alignment <= maxBytes else { throw .invalidSize }
        let pages = (size + Int(pageSize) - 1) >> Int(pageShift)
        let alignmentPages = max(alignment >> Int(pageShift), 1)
        guard let order = PageAllocator.order(forPages: max(pages, alignmentPages)) else { throw .invalidSize }
        let block = try source.allocatePages(order: order)
        precondition(UInt(bitPattern: block) & UInt(max(alignment, Int(pageSize)) - 1) == 0,
                     "KernelHeap.allocateRun: page source returned a block not aligned to its size")
        let d: PageDescriptor
        do {
            d = try makeDescriptor(forPage: UInt(bitPattern: block))
        } catch {
            source.freePages(block, order: order)
            throw error
        }
        d.kind = PageDescriptor.large
        d.order = UInt8(order)
        statistics.largeRunPages += 1 << order
        statistics.bytesInUse += Int(pageSize) << order
        statistics.liveAllocations += 1
        return block
    }

    // MARK: Page map

    // A radix tree over address bits 12...47: three levels of 4 KiB interior nodes (512
    // entries, bits 39-47, 30-38, 21-29) and leaves of 512 descriptors (bits 12-20, 32 KiB).
    // Descriptors hold their page's full address, so addresses differing only above bit 47
    // never alias on lookup.

    private static var leafOrder: Int { 3 }
    private static var leafPages: Int { 1 << leafOrder }

    private static func leafIndex(_ page: UInt) -> Int { Int((page >> 12) & 511) }

    /// Entry `index` of an interior page-map node (a child's address, or 0).
    private static func entry(_ node: UInt, _ index: Int) -> UInt {
        UnsafeRawPointer(bitPattern: node)!.load(fromByteOffset: index * 8, as: UInt.self)
    }

    /// The live allocation `pointer` names and its slab object index; throws otherwise.
    private func liveAllocation(at pointer: UnsafeRawPointer) throws(HeapError) -> (PageDescriptor, Int) {
        let address = UInt(bitPattern: pointer)
        let page = address & ~UInt(pageSize - 1)
        guard let d = descriptor(forPage: page) else { throw .unknownPointer }
        guard d.kind == PageDescriptor.slab || d.kind == PageDescriptor.large else {
            preconditionFailure("KernelHeap.liveAllocation: registered page with an unknown descriptor kind")
        }
        if d.kind == PageDescriptor.large {
            guard address == page else { throw .unknownPointer }
            return (d, 0)
        }
        let size = HeapSizeClasses.size(of: Int(d.sizeClass))
        let offset = Int(address - page)
        guard offset % size == 0 && offset / size < Int(d.capacity) else { throw .unknownPointer }
        let index = offset / size
        guard d.isLive(index) else { throw .doubleFree }
        return (d, index)
    }

    /// The descriptor registered for `page`, or nil. Never touches `page` itself.
    private func descriptor(forPage page: UInt) -> PageDescriptor? {
        guard pageMapRoot != 0 else { return nil }
        var node = pageMapRoot
        var shift: UInt = 39
        while shift >= 21 {
            node = Self.entry(node, Int((page >> shift) & 511))
            if node == 0 { return nil }
            shift -= 9
        }
        let d = PageDescriptor(address: node + UInt(Self.leafIndex(page) * HeapSizeClasses.descriptorBytes))
        return d.page == page ? d : nil
    }

    /// Registers `page` in the page map, creating nodes on the way, and returns its fresh
    /// descriptor (only `page` set). Throws `outOfMemory` if a node cannot be allocated; nodes
    /// created before that stay (they are empty and reused later).
    private mutating func makeDescriptor(forPage page: UInt) throws(HeapError) -> PageDescriptor {
        if pageMapRoot == 0 { pageMapRoot = try allocateNode(order: 0) }
        var node = pageMapRoot
        var shift: UInt = 39
        while shift >= 21 {
            let slot = UnsafeMutableRawPointer(bitPattern: node)! + Int((page >> shift) & 511) * 8
            var child = slot.load(as: UInt.self)
            if child == 0 {
                child = try allocateNode(order: shift == 21 ? Self.leafOrder : 0)
                slot.storeBytes(of: child, as: UInt.self)
            }
            node = child
            shift -= 9
        }
        let d = PageDescriptor(address: node + UInt(Self.leafIndex(page) * HeapSizeClasses.descriptorBytes))
        precondition(d.page == 0, "KernelHeap.makeDescriptor: page already registered (or aliases above bit 47)")
        d.clear()
        d.page = page
        return d
    }

    /// A zero-filled page-map node of 2^order pages.
    private mutating func allocateNode(order: Int) throws(HeapError) -> UInt {
        let block = try source.allocatePages(order: order)
        precondition(UInt(bitPattern: block) & UInt(pageSize - 1) == 0, "KernelHeap.allocateNode: page source returned an unaligned page")
        DirectMap.zeroPages(block, count: 1 << order)
        statistics.metadataPages += 1 << order
        return UInt(bitPattern: block)
    }
}

extension KernelHeap where Source == PhysicalPageSource {
    /// A heap over the kernel's physical page allocator.
    public init() { self.init(source: PhysicalPageSource()) }
}

/// A view of one 64-byte page-map descriptor:
/// [0] page address, [8] next slab, [16] previous slab (descriptor addresses),
/// [24] kind, [25] size class, [26] run order, [28] used objects, [30] capacity,
/// [32...63] live-object bitmap (slabs only).
private struct PageDescriptor {
    static let unused: UInt8 = 0, slab: UInt8 = 1, large: UInt8 = 2

    let address: UInt

    init(address: UInt) { self.address = address }

    private var raw: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }

    var page: UInt {
        get { raw.load(as: UInt.self) }
        nonmutating set { raw.storeBytes(of: newValue, as: UInt.self) }
    }
    var next: UInt {
        get { raw.load(fromByteOffset: 8, as: UInt.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 8, as: UInt.self) }
    }
    var previous: UInt {
        get { raw.load(fromByteOffset: 16, as: UInt.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 16, as: UInt.self) }
    }
    var kind: UInt8 {
        get { raw.load(fromByteOffset: 24, as: UInt8.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 24, as: UInt8.self) }
    }
    var sizeClass: UInt8 {
        get { raw.load(fromByteOffset: 25, as: UInt8.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 25, as: UInt8.self) }
    }
    var order: UInt8 {
        get { raw.load(fromByteOffset: 26, as: UInt8.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 26, as: UInt8.self) }
    }
    var used: UInt16 {
        get { raw.load(fromByteOffset: 28, as: UInt16.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 28, as: UInt16.self) }
    }
    var capacity: UInt16 {
        get { raw.load(fromByteOffset: 30, as: UInt16.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 30, as: UInt16.self) }
    }

    func bitmapWord(_ w: Int) -> UInt64 { raw.load(fromByteOffset: 32 + w * 8, as: UInt64.self) }

    func setBitmapWord(_ w: Int, _ value: UInt64) { raw.storeBytes(of: value, toByteOffset: 32 + w * 8, as: UInt64.self) }

    func isLive(_ index: Int) -> Bool { bitmapWord(index / 64) & (1 << UInt64(index % 64)) != 0 }

    func setLive(_ index: Int, _ live: Bool) {
        let bit: UInt64 = 1 << UInt64(index % 64)
        let word = bitmapWord(index / 64)
        setBitmapWord(index / 64, live ? word | bit : word & ~bit)
    }

    /// Marks the slot unused.
    func clear() {
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: HeapSizeClasses.descriptorBytes)
    }
}

/// The kernel heap behind the Swift runtime's allocation entry points.
public nonisolated(unsafe) var kernelHeap = KernelHeap()
