// SwapMetadata: where each paged-out page of one object lives — page index -> swap slot
// (a swap block and the checksum of the page written there).
// Invariants:
//  - A slot is packed in one word: block in the high 32 bits, checksum in the low 32;
//    `emptySlot` (all ones) means "no data". Block UInt32.max is therefore never a swap block
//    (SwapSpace caps the global block space below it).
//  - Small objects (at most `directLimit` pages, given at creation) keep a direct block of
//    exactly `pageCountHint` slots. Anything else lives in runs of `runPages` consecutive
//    page indices (256 bytes: one kernel-heap slab object, sixteen to a page), named by
//    key = index / runPages, indexed by a RadixTree (key -> run pointer). The direct block is
//    run 0 cut short, so converting it on the first index past it is one copy.
//  - A run is in the tree iff at least one of its slots is full; a run emptied by a removal
//    is freed at once. `count` is the number of full slots, `runCount` of live runs.
//  - Growth allocates before it changes anything: `insert` either stores the slot or throws
//    `outOfMemory` with the metadata unchanged. Nothing here needs more than 512 contiguous
//    bytes, so a fragmented heap under memory pressure can still serve it.
// Why this shape: FreeBSD's swblk keeps 32 64-bit block numbers per run in a pctrie (8.25+
// bytes per page, no checksum); NetBSD's uao hash keeps 16 int slots plus list links per
// element. Here a densely swapped page costs 8 bytes *including* its checksum, plus a radix
// leaf (512 bytes) per 64 runs: 8.26 bytes per page (SwapMetadataTests). An earlier version
// used an open-addressed hash table and 4 KiB chunk arrays; both grew as contiguous heap
// blocks (a chunk array's header made it a two-page run, 16 bytes per page in reality) and
// trapped when memory was short.
// Locks: none inside; the owning pager's object lock (o) serialises every call.

/// One paged-out page: the swap block holding it and the checksum of its contents.
public struct SwapSlot: Equatable {
    /// Global swap block (SwapSpace numbering), below `SwapSlot.maximumBlocks`.
    public var block: UInt32
    /// Checksum of the page as it was written (`SwapChecksum.of`).
    public var checksum: UInt32

    /// A slot for `block` holding a page whose checksum is `checksum`.
    public init(block: UInt32, checksum: UInt32) {
        self.block = block
        self.checksum = checksum
    }

    /// Swap blocks are numbered below this (UInt32.max is the empty marker).
    public static var maximumBlocks: UInt64 { UInt64(UInt32.max) }

    /// The packed word (block high, checksum low).
    var packed: UInt64 { UInt64(block) << 32 | UInt64(checksum) }

    init(packed: UInt64) {
        block = UInt32(truncatingIfNeeded: packed >> 32)
        checksum = UInt32(truncatingIfNeeded: packed)
    }
}

/// Why swap metadata refused to record a slot. The metadata is unchanged.
public enum SwapMetadataError: Error, Equatable {
    /// No memory for a run or an index node.
    case outOfMemory
}

/// Per-object map from page index to swap slot: a direct block for small objects, runs in a
/// radix tree for large ones (see the file header).
public struct SwapMetadata: ~Copyable {
    /// Page indices per run.
    public static var runPages: UInt64 { 32 }
    /// Objects of at most this many pages use the direct block.
    public static var directLimit: UInt64 { runPages }
    /// Page indices must be below this (2^45 pages: 128 PiB of object).
    public static var maximumIndex: UInt64 { 1 << 45 }
    /// Bytes of one run.
    public static var runBytes: Int { Int(runPages) * 8 }

    static var emptySlot: UInt64 { ~0 }
    static var runShift: UInt64 { 5 }

    private typealias Run = UnsafeMutablePointer<UInt64>

    /// Full slots.
    public private(set) var count = 0
    /// True once the runs and their tree are in use.
    public private(set) var usesRuns: Bool
    /// Direct mode: slot i is page index i, `directSlots` of them (nil: not allocated yet).
    private var direct: Run? = nil
    private let directSlots: Int
    /// Run mode: run key -> run pointer.
    private var runs = RadixTree()

    /// Empty metadata for an object of `pageCountHint` pages: direct if it is at most
    /// `directLimit`, else runs. Any index below `maximumIndex` may be used whatever the
    /// hint; a direct block converts to runs on the first index past it. Allocates nothing.
    public init(pageCountHint: UInt64) {
        let isSmall = pageCountHint >= 1 && pageCountHint <= SwapMetadata.directLimit
        usesRuns = !isSmall
        directSlots = isSmall ? Int(pageCountHint) : 0
    }

    deinit {
        if let direct { MetadataMemory.freeBlock(UnsafeMutableRawPointer(direct)) }
        // The tree frees its own nodes when it dies; the runs are ours.
        runs.forEach { _, word in
            MetadataMemory.freeBlock(UnsafeMutableRawPointer(bitPattern: word)!)
            return true
        }
    }

    /// True when no page has a slot.
    public var isEmpty: Bool { count == 0 }

    /// Live runs (0 while direct).
    public var runCount: Int { runs.count }

    /// Bytes of metadata memory held: the direct block or the runs, plus the tree's nodes.
    /// Every block is exactly a kernel-heap size class (8 x slots, 256, 512 bytes), so this
    /// is what the heap hands out, not an estimate.
    public var memoryBytes: Int {
        (direct == nil ? 0 : directSlots * 8) + runs.count * SwapMetadata.runBytes + runs.memoryBytes
    }

    @inline(__always) private static func key(_ index: UInt64) -> UInt64 { index >> runShift }
    @inline(__always) private static func lane(_ index: UInt64) -> Int { Int(index & (runPages - 1)) }
    @inline(__always) private static func run(_ word: UInt) -> Run { Run(bitPattern: word)! }

    private func run(key: UInt64) -> Run? { runs[key].map(SwapMetadata.run) }

    // MARK: Lookup

    /// The slot of page `index`, or nil. O(tree height).
    public func slot(at index: UInt64) -> SwapSlot? {
        let word = packedSlot(at: index)
        return word == SwapMetadata.emptySlot ? nil : SwapSlot(packed: word)
    }

    private func packedSlot(at index: UInt64) -> UInt64 {
        if !usesRuns {
            guard let direct, index < UInt64(directSlots) else { return SwapMetadata.emptySlot }
            return direct[Int(index)]
        }
        guard let run = run(key: SwapMetadata.key(index)) else { return SwapMetadata.emptySlot }
        return run[SwapMetadata.lane(index)]
    }

    // MARK: Insert and remove

    /// Records `slot` for page `index` and returns the slot it replaces (whose block the caller
    /// must free), or nil. Throws `outOfMemory` (no room for a run or an index node; nothing
    /// changed). Precondition: `index < maximumIndex` and `slot.block` below
    /// `SwapSlot.maximumBlocks` (SwapPager refuses offsets past `maximumIndex`).
    @discardableResult
    public mutating func insert(_ slot: SwapSlot, at index: UInt64) throws(SwapMetadataError) -> SwapSlot? {
        precondition(index < SwapMetadata.maximumIndex, "SwapMetadata.insert: index past maximumIndex")
        precondition(UInt64(slot.block) < SwapSlot.maximumBlocks, "SwapMetadata.insert: block is the empty marker")
        let run: Run
        if !usesRuns && index < UInt64(directSlots) {
            run = try directBlock()
            return store(slot, in: run, at: Int(index))
        }
        if !usesRuns { try convertToRuns() }
        if let existing = self.run(key: SwapMetadata.key(index)) {
            run = existing
        } else {
            run = try addRun(key: SwapMetadata.key(index))
        }
        return store(slot, in: run, at: SwapMetadata.lane(index))
    }

    private mutating func store(_ slot: SwapSlot, in run: Run, at lane: Int) -> SwapSlot? {
        let old = run[lane]
        run[lane] = slot.packed
        if old == SwapMetadata.emptySlot {
            count += 1
            return nil
        }
        return SwapSlot(packed: old)
    }

    /// Forgets page `index` and returns its slot (the caller frees the block), or nil.
    @discardableResult
    public mutating func remove(at index: UInt64) -> SwapSlot? {
        if !usesRuns {
            guard let direct, index < UInt64(directSlots), direct[Int(index)] != SwapMetadata.emptySlot else { return nil }
            let old = direct[Int(index)]
            direct[Int(index)] = SwapMetadata.emptySlot
            count -= 1
            return SwapSlot(packed: old)
        }
        let key = SwapMetadata.key(index)
        guard let run = run(key: key) else { return nil }
        let old = run[SwapMetadata.lane(index)]
        guard old != SwapMetadata.emptySlot else { return nil }
        run[SwapMetadata.lane(index)] = SwapMetadata.emptySlot
        count -= 1
        if SwapMetadata.isEmpty(run) { freeRun(key: key) }
        return SwapSlot(packed: old)
    }

    /// Forgets every page in `range`, handing each removed (index, slot) to `body` in
    /// ascending index order so the caller can free the blocks. Never allocates.
    public mutating func removeRange(_ range: Range<UInt64>, _ body: (UInt64, SwapSlot) -> Void) {
        guard !range.isEmpty, count > 0 else { return }
        if !usesRuns {
            guard let direct else { return }
            var index = range.lowerBound
            while index < min(range.upperBound, UInt64(directSlots)) {
                if let old = SwapMetadata.take(direct, Int(index)) {
                    count -= 1
                    body(index, old)
                }
                index += 1
            }
            return
        }
        var cursor = SwapMetadata.key(range.lowerBound)
        while let (key, word) = runs.first(atOrAfter: cursor), key << SwapMetadata.runShift < range.upperBound {
            cursor = key + 1
            let run = SwapMetadata.run(word)
            for lane in 0..<Int(SwapMetadata.runPages) {
                let index = key << SwapMetadata.runShift | UInt64(lane)
                guard range.contains(index), let old = SwapMetadata.take(run, lane) else { continue }
                count -= 1
                body(index, old)
            }
            if SwapMetadata.isEmpty(run) { freeRun(key: key) }
        }
    }

    /// Forgets everything, handing each slot to `body` (ascending), and returns the memory.
    public mutating func removeAll(_ body: (UInt64, SwapSlot) -> Void) {
        removeRange(0..<SwapMetadata.maximumIndex, body)
        if let direct {
            MetadataMemory.freeBlock(UnsafeMutableRawPointer(direct))
            self.direct = nil
        }
    }

    // MARK: Iteration

    /// Calls `body` with every (index, slot) whose index lies in `range`, ascending.
    public func forEach(in range: Range<UInt64>, _ body: (UInt64, SwapSlot) -> Void) {
        forEachWhile(in: range, { index, slot in
            body(index, slot)
            return true
        })
    }

    /// Calls `body` with every (index, slot) in `range`, ascending, until it returns false;
    /// returns false if it did. O(live runs in the range + tree height).
    @discardableResult
    public func forEachWhile(in range: Range<UInt64>, _ body: (UInt64, SwapSlot) -> Bool) -> Bool {
        guard !range.isEmpty, count > 0 else { return true }
        if !usesRuns {
            guard let direct else { return true }
            return SwapMetadata.visit(direct, slots: directSlots, base: 0, range, body)
        }
        let keys = SwapMetadata.key(range.lowerBound)..<(SwapMetadata.key(range.upperBound - 1) + 1)
        return runs.forEach(in: keys) { key, word in
            SwapMetadata.visit(SwapMetadata.run(word), slots: Int(SwapMetadata.runPages), base: key << SwapMetadata.runShift, range, body)
        }
    }

    private static func visit(_ run: Run, slots: Int, base: UInt64, _ range: Range<UInt64>,
                              _ body: (UInt64, SwapSlot) -> Bool) -> Bool {
        for lane in 0..<slots where run[lane] != emptySlot {
            let index = base + UInt64(lane)
            if range.contains(index) && !body(index, SwapSlot(packed: run[lane])) { return false }
        }
        return true
    }

    // MARK: Collapse

    /// Collapse support (the mechanism of FreeBSD's swap_pager_copy): moves `source`'s slots
    /// for source indices in `range` into this metadata, the slot of source index `s` landing
    /// at `s - range.lowerBound + destinationStart`. Where `hasNewer(destinationIndex)` is
    /// true (the surviving object has a resident page there) or this metadata already holds a
    /// slot there (the survivor's own paged-out copy is newer), the source slot is handed to
    /// `release` instead (the caller frees its block). Slots outside `range` stay in `source`.
    /// Moves one slot at a time, each inserted here before it leaves `source`; throws
    /// `outOfMemory` when this metadata cannot grow, leaving the slots not yet moved in
    /// `source` (every slot is in exactly one of the two). Precondition: every destination
    /// index is below `maximumIndex` (the pager checks).
    public mutating func transfer(from source: inout SwapMetadata, range: Range<UInt64>,
                                  destinationStart: UInt64, hasNewer: (UInt64) -> Bool,
                                  release: (SwapSlot) -> Void) throws(SwapMetadataError) {
        var cursor = range.lowerBound
        while cursor < range.upperBound, let (index, slot) = source.first(atOrAfter: cursor), index < range.upperBound {
            cursor = index + 1
            let destination = index - range.lowerBound + destinationStart
            if hasNewer(destination) || self.slot(at: destination) != nil {
                source.remove(at: index)
                release(slot)
                continue
            }
            try insert(slot, at: destination)
            source.remove(at: index)
        }
    }

    /// The first (index, slot) with index >= `index`, or nil.
    public func first(atOrAfter index: UInt64) -> (index: UInt64, slot: SwapSlot)? {
        var found: (index: UInt64, slot: SwapSlot)? = nil
        forEachWhile(in: index..<SwapMetadata.maximumIndex, { foundIndex, slot in
            found = (foundIndex, slot)
            return false
        })
        return found
    }

    // MARK: Runs

    private static func isEmpty(_ run: Run) -> Bool {
        var all: UInt64 = ~0
        for lane in 0..<Int(runPages) { all &= run[lane] }
        return all == emptySlot
    }

    /// Empties slot `lane` of `run`, returning what it held.
    private static func take(_ run: Run, _ lane: Int) -> SwapSlot? {
        let word = run[lane]
        guard word != emptySlot else { return nil }
        run[lane] = emptySlot
        return SwapSlot(packed: word)
    }

    /// A block of `slots` empty slots, or nil.
    private static func allocateSlots(_ slots: Int) -> Run? {
        guard let raw = MetadataMemory.allocateBlock(bytes: slots * 8) else { return nil }
        let run = raw.bindMemory(to: UInt64.self, capacity: slots)
        run.initialize(repeating: emptySlot, count: slots)
        return run
    }

    /// The direct block, allocated on first use.
    private mutating func directBlock() throws(SwapMetadataError) -> Run {
        if let direct { return direct }
        guard let block = SwapMetadata.allocateSlots(directSlots) else { throw .outOfMemory }
        direct = block
        return block
    }

    /// A new empty run entered at `key`.
    private mutating func addRun(key: UInt64) throws(SwapMetadataError) -> Run {
        guard let run = SwapMetadata.allocateSlots(Int(SwapMetadata.runPages)) else { throw .outOfMemory }
        do {
            try runs.insert(UInt(bitPattern: run), at: key)
        } catch {
            MetadataMemory.freeBlock(UnsafeMutableRawPointer(run))
            throw .outOfMemory
        }
        return run
    }

    private mutating func freeRun(key: UInt64) {
        guard let word = runs.remove(at: key) else { preconditionFailure("SwapMetadata.freeRun: no run at key") }
        MetadataMemory.freeBlock(UnsafeMutableRawPointer(bitPattern: word)!)
    }

    /// Moves the direct block into run 0 (the direct block covers indices below
    /// `directLimit` = `runPages`, exactly run 0). Throws `outOfMemory`, still direct.
    private mutating func convertToRuns() throws(SwapMetadataError) {
        guard let direct else {
            usesRuns = true
            return
        }
        if count > 0 {
            let run = try addRun(key: 0)
            run.update(from: direct, count: directSlots)
        }
        MetadataMemory.freeBlock(UnsafeMutableRawPointer(direct))
        self.direct = nil
        usesRuns = true
    }

    /// Checks the structure against its invariants (tests and the auditor); nil if sound.
    public func invariantViolation() -> StaticString? {
        var full = 0
        if !usesRuns {
            if !runs.isEmpty { return "SwapMetadata: runs while direct" }
            if let direct { for lane in 0..<directSlots where direct[lane] != SwapMetadata.emptySlot { full += 1 } }
            return full == count ? nil : "SwapMetadata: count differs from full direct slots"
        }
        if direct != nil { return "SwapMetadata: direct block kept after conversion" }
        if let broken = runs.invariantViolation() { return broken }
        var emptyRun = false
        runs.forEach { _, word in
            let run = SwapMetadata.run(word)
            if SwapMetadata.isEmpty(run) { emptyRun = true }
            for lane in 0..<Int(SwapMetadata.runPages) where run[lane] != SwapMetadata.emptySlot { full += 1 }
            return true
        }
        if emptyRun { return "SwapMetadata: empty run kept" }
        if full != count { return "SwapMetadata: count differs from full slots" }
        return nil
    }
}


/// The per-page checksum kept in swap metadata and verified on pagein.
public enum SwapChecksum {
    /// A 32-bit checksum of `pageSize` bytes at `bytes`: four independent multiply-rotate
    /// lanes over 64-bit words (so the loop is not one long dependency chain), folded. Any
    /// single changed word, a zeroed page or swapped words change it (positions are mixed in).
    public static func of(_ bytes: UnsafeRawPointer) -> UInt32 {
        let words = Int(pageSize) / 8
        var lanes: (UInt64, UInt64, UInt64, UInt64) = (0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344,
                                                       0xA409_3822_299F_31D0, 0x082E_FA98_EC4E_6C89)
        let prime: UInt64 = 0x9E37_79B9_7F4A_7C15
        var index = 0
        while index < words {
            let a = bytes.load(fromByteOffset: index * 8, as: UInt64.self)
            let b = bytes.load(fromByteOffset: index * 8 + 8, as: UInt64.self)
            let c = bytes.load(fromByteOffset: index * 8 + 16, as: UInt64.self)
            let d = bytes.load(fromByteOffset: index * 8 + 24, as: UInt64.self)
            lanes.0 = ((lanes.0 ^ a) &* prime).rotateLeft(31)
            lanes.1 = ((lanes.1 ^ b) &* prime).rotateLeft(29)
            lanes.2 = ((lanes.2 ^ c) &* prime).rotateLeft(27)
            lanes.3 = ((lanes.3 ^ d) &* prime).rotateLeft(23)
            index += 4
        }
        var hash = lanes.0 ^ lanes.1.rotateLeft(16) ^ lanes.2.rotateLeft(32) ^ lanes.3.rotateLeft(48)
        hash ^= hash >> 33
        hash &*= 0xFF51_AFD7_ED55_8CCD
        hash ^= hash >> 33
        return UInt32(truncatingIfNeeded: hash ^ (hash >> 32))
    }
}

extension UInt64 {
    /// Rotates left by `count` bits (0 < count < 64).
    @inline(__always) fileprivate func rotateLeft(_ count: UInt64) -> UInt64 {
        (self << count) | (self >> (64 - count))
    }
}
