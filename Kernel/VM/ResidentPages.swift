// ResidentPages: one object's resident pages by byte offset — a RadixTree keyed by page index
// whose values are the pages' record pointers (the vm_radix of FreeBSD's vm_object).
// Why not a Dictionary: a large object's hash table is one contiguous buffer that doubles as
// it grows, and under memory pressure (exactly when pageIn and pageout make it grow) the heap
// may have no such run left; Swift's allocator then traps. Tree nodes are 512-byte slab
// objects, their allocation failure is a typed `outOfMemory`, and walks come out in offset
// order (clustering, collapse and range operations want that; a hash needed a sort).
// Invariants: offsets are page-aligned and below 2^72 bytes (page index < RadixTree.keyLimit);
// a stored value is a live `Page.Record` pointer. Everything else is RadixTree's.
// Locks: (o) the owning object's lock.

/// The resident pages of one VM object.
struct ResidentPages: ~Copyable {
    private var tree = RadixTree()

    init() {}

    /// Pages held.
    var count: Int { tree.count }
    var isEmpty: Bool { tree.isEmpty }
    /// Bytes of index nodes (the per-object cost of residency).
    var indexBytes: Int { tree.memoryBytes }

    @inline(__always) private static func key(_ offset: UInt64) -> UInt64 { offset >> pageShift }

    @inline(__always) private static func page(_ word: UInt) -> Page {
        Page(record: UnsafeMutablePointer<Page.Record>(bitPattern: word)!)
    }

    @inline(__always) private static func word(_ page: Page) -> UInt { UInt(bitPattern: page.record) }

    /// The page at `offset`, or nil.
    subscript(offset: UInt64) -> Page? {
        tree[Self.key(offset)].map(Self.page)
    }

    /// Makes `page` the page at `offset` (which must be free). Throws `outOfMemory` (no index
    /// node) or `outOfRange` (offset past the index); nothing changes then.
    mutating func insert(_ page: Page, at offset: UInt64) throws(ObjectError) {
        do {
            try tree.insert(Self.word(page), at: Self.key(offset))
        } catch {
            throw error == .outOfMemory ? .outOfMemory : .outOfRange
        }
    }

    /// Removes and returns the page at `offset`, or nil. Never allocates.
    @discardableResult
    mutating func remove(at offset: UInt64) -> Page? {
        tree.remove(at: Self.key(offset)).map(Self.page)
    }

    /// Page index range covering byte offsets [start, end).
    private static func keys(_ range: Range<UInt64>) -> Range<UInt64> {
        let upper = range.upperBound >> pageShift + (range.upperBound & (pageSize - 1) == 0 ? 0 : 1)
        return (range.lowerBound >> pageShift)..<max(range.lowerBound >> pageShift, upper)
    }

    /// Calls `body(offset, page)` for each page with offset in `range`, ascending, until it
    /// returns false; returns false if it did. `body` must not insert or remove pages here.
    @discardableResult
    func forEach(in range: Range<UInt64> = 0..<UInt64.max, _ body: (UInt64, Page) -> Bool) -> Bool {
        tree.forEach(in: Self.keys(range)) { key, word in body(key << pageShift, Self.page(word)) }
    }

    /// The first page at or after `offset`, or nil.
    func first(atOrAfter offset: UInt64) -> (offset: UInt64, page: Page)? {
        guard let (key, word) = tree.first(atOrAfter: Self.key(offset + pageSize - 1)) else { return nil }
        return (key << pageShift, Self.page(word))
    }

    /// Removes every page with offset in `range`, ascending, calling `body(offset, page)` after
    /// each removal. Never allocates. `body` must not insert or remove pages here.
    mutating func removeAll(in range: Range<UInt64> = 0..<UInt64.max, _ body: (UInt64, Page) -> Void) {
        tree.removeAll(in: Self.keys(range)) { key, word in body(key << pageShift, Self.page(word)) }
    }

    /// The pages in `range` as (offset, page), ascending (for callers that change the set).
    func list(in range: Range<UInt64> = 0..<UInt64.max) -> [(offset: UInt64, page: Page)] {
        var found: [(offset: UInt64, page: Page)] = []
        forEach(in: range) { offset, page in
            found.append((offset, page))
            return true
        }
        return found
    }

    /// The index's first broken invariant, or nil.
    func invariantViolation() -> StaticString? { tree.invariantViolation() }
}
