// Blist: the swap-block allocator, a radix tree of bitmaps with exact free-run summaries.
// Invariants:
//  - Leaf word w holds blocks 64w ..< 64w+64; bit i is set iff block 64w+i is free. Padding
//    bits (at or past `blocks`) are always clear, so the padding behaves as allocated: no run
//    reaches past the end and nodes at the right edge need no special case.
//  - A node at level k >= 1 covers span(k) = 64 * 16^k blocks and summarises its 16 children
//    at level k-1 (level 0 is the leaf words); children past the end of a level count as
//    allocated. The top level has exactly one node, the root.
//  - Every summary is exact: the free run at the node's start (prefix), the free run at its
//    end (suffix) and the longest free run inside it (longest). A node is wholly free iff
//    prefix == span. Hence root.longest is the longest free run in the tree, a request that
//    cannot be met is refused at the root, and a search enters a subtree only if it holds a
//    fit (or contains the cursor).
//  - freeBlocks equals the number of set bits in the leaves; 0 <= cursor < blocks; every
//    block below allocatedPrefix is allocated (a hint that spares an allocation the rescan of
//    what lies before it when it cuts a longest run).
//  - Every public mutation validates its arguments and the state it depends on first; when
//    it throws, nothing has changed.
// Locks: none inside. The owner (the swap device) serialises every call.
// Memory: 1 bit per block for the leaves plus one 64-bit summary per 1024 blocks (1/16 bit per
// block) and a geometric tail above it: about 1.067 bits per block plus a small constant.

/// Why a blist operation was refused. Every case is something a caller can cause; a blist
/// that throws has not changed.
public enum BlistError: Error, Equatable {
    /// A size of zero blocks, or more than `Blist.maximumBlocks`.
    case invalidSize
    /// A count of zero, or a request whose lower bound exceeds its upper bound.
    case invalidCount
    /// No run of free blocks as long as the request exists (swap is full or too fragmented).
    case exhausted
    /// A range that does not lie wholly inside the tree (including arithmetic overflow).
    case outOfRange
    /// A free of a range in which at least one block is already free (a double free).
    case notAllocated
    /// A shrink that would cut off blocks that are still allocated.
    case shrinkWouldDropAllocated
}

/// A run of consecutive blocks, `start ..< start + count`.
public struct BlockRun: Equatable {
    /// The first block of the run.
    public var start: UInt64
    /// The number of blocks in the run (at least 1 for runs the blist returns).
    public var count: UInt64

    /// A run of `count` blocks starting at `start`.
    public init(start: UInt64, count: UInt64) {
        self.start = start
        self.count = count
    }

    /// The block just past the run.
    public var end: UInt64 { start + count }
}

/// A radix-tree bitmap allocator of swap blocks (the blist).
///
/// Blocks are numbered `0 ..< blocks`. All blocks start free. Allocation is next-fit: it takes
/// the first run that fits starting at or after the cursor (the block after the previous
/// allocation), and wraps around to the start of the tree when there is none. Allocation and
/// free cost O(log n) summary reads plus the blocks touched; a request that cannot be
/// satisfied is refused at the root in O(1).
///
/// A `Blist` is a value: copying it copies the tree (lazily). The owner must serialise calls.
public struct Blist: Equatable {
    /// The largest supported size. It keeps every intermediate sum far from UInt64 overflow and
    /// is far beyond any real device (2^40 blocks of 4 KiB is 4 PiB).
    public static var maximumBlocks: UInt64 { 1 << 40 }

    /// Number of blocks the tree manages.
    public private(set) var blocks: UInt64
    /// Number of blocks currently free.
    public private(set) var freeBlocks: UInt64
    /// Where the next allocation starts looking (next-fit).
    public private(set) var cursor: UInt64 = 0
    /// Blocks `0 ..< allocatedPrefix` are all allocated (see the file header).
    private(set) var allocatedPrefix: UInt64 = 0
    /// The leaf bitmaps, one bit per block, set = free (see the file header).
    private(set) var leaves: [UInt64]
    /// The tree's shape, then the inner-node summaries of every level, packed (see
    /// `Blist+Tree.swift`).
    private(set) var summaries: [UInt64]

    /// Creates a tree of `blocks` blocks, all free.
    ///
    /// Throws `.invalidSize` when `blocks` is zero or greater than `maximumBlocks`.
    public init(blocks: UInt64) throws(BlistError) {
        guard blocks >= 1 && blocks <= Blist.maximumBlocks else { throw .invalidSize }
        self.blocks = blocks
        self.freeBlocks = blocks
        let wordCount = Blist.wordCount(for: blocks)
        leaves = [UInt64](repeating: ~0, count: wordCount)
        leaves[wordCount - 1] = Blist.validBits(inLastWordOf: blocks)
        summaries = Blist.emptySummaries(wordCount: wordCount)
        withEditor { $0.rebuildSummaries(wholeFreeBelow: blocks) }
    }

    /// Number of blocks currently allocated.
    public var allocatedBlocks: UInt64 { blocks - freeBlocks }

    /// Length of the longest run of free blocks; O(1), read from the root.
    public var largestFreeRun: UInt64 { withView { $0.summary(level: $0.topLevel, node: 0).longest } }

    /// Whether `block` is allocated. Precondition: `block < blocks`.
    public func isAllocated(_ block: UInt64) -> Bool {
        precondition(block < blocks, "Blist.isAllocated: block past the end")
        return leaves[Blist.wordIndex(of: block)] & (1 << (block & 63)) == 0
    }

    /// Number of free blocks in `start ..< start + count`; O(count / 64).
    ///
    /// Throws `.outOfRange` unless the range lies inside the tree.
    public func freeBlocks(start: UInt64, count: UInt64) throws(BlistError) -> UInt64 {
        try checkRange(start: start, count: count)
        return count == 0 ? 0 : withView { $0.countFree(start: start, count: count) }
    }

    // MARK: Allocation

    /// Allocates `count` contiguous blocks and returns the first.
    ///
    /// Next-fit: takes the first fitting run at or after `cursor`, else the first one in the
    /// tree, and moves the cursor just past it.
    /// Throws `.invalidCount` when `count` is zero and `.exhausted` when no free run of
    /// `count` blocks exists (decided at the root without scanning).
    public mutating func allocate(count: UInt64) throws(BlistError) -> UInt64 {
        guard count >= 1 else { throw .invalidCount }
        guard let run = take(atLeast: count, upTo: count) else { throw .exhausted }
        return run.start
    }

    /// Allocates the longest run of at most `upTo` contiguous blocks, which must be at least
    /// `atLeast` long, and returns it.
    ///
    /// The length is exact: `min(upTo, largestFreeRun)`; placement is next-fit as for
    /// `allocate(count:)`.
    /// Throws `.invalidCount` when `atLeast` is zero or greater than `upTo`, and `.exhausted`
    /// when the longest free run is shorter than `atLeast`.
    public mutating func allocate(atLeast: UInt64, upTo: UInt64) throws(BlistError) -> BlockRun {
        guard atLeast >= 1 && atLeast <= upTo else { throw .invalidCount }
        guard let run = take(atLeast: atLeast, upTo: upTo) else { throw .exhausted }
        return run
    }

    /// Frees the allocated blocks `start ..< start + count`.
    ///
    /// Throws `.invalidCount` for a zero count, `.outOfRange` unless the range lies inside
    /// the tree, and `.notAllocated` when any block in it is already free; in each case
    /// nothing changes.
    public mutating func free(start: UInt64, count: UInt64) throws(BlistError) {
        guard count >= 1 else { throw .invalidCount }
        try checkRange(start: start, count: count)
        guard !withView({ $0.containsFree(start: start, count: count) }) else { throw .notAllocated }
        let prefix = allocatedPrefix
        withEditor { editor in
            editor.setBits(start: start, count: count, free: true)
            editor.updateSummaries(start: start, end: start + count, freed: true, allocatedPrefix: prefix)
        }
        freeBlocks += count
        allocatedPrefix = min(allocatedPrefix, start)
    }

    /// Marks `start ..< start + count` allocated, whatever its state, and returns how many of
    /// those blocks were already allocated (used to retire bad blocks and reserve headers).
    ///
    /// Does not move the cursor. Throws `.invalidCount` for a zero count and `.outOfRange`
    /// unless the range lies inside the tree; in each case nothing changes.
    @discardableResult
    public mutating func fill(start: UInt64, count: UInt64) throws(BlistError) -> UInt64 {
        guard count >= 1 else { throw .invalidCount }
        try checkRange(start: start, count: count)
        let wereFree = withView { $0.countFree(start: start, count: count) }
        if wereFree > 0 {
            withEditor { editor in
                let words = editor.setBits(start: start, count: count, free: false)
                editor.refreshSummaries(level: 1, firstChild: words.first, lastChild: words.last)
            }
            freeBlocks -= wereFree
        }
        if start <= allocatedPrefix { allocatedPrefix = max(allocatedPrefix, start + count) }
        return count - wereFree
    }

    /// Changes the size of the tree to `newBlocks` blocks (swapon of a larger device, or
    /// swapoff of a tail). Blocks added by growing are free; allocated blocks keep their
    /// numbers. O(n / 64): every summary is rebuilt.
    ///
    /// Throws `.invalidSize` for zero or more than `maximumBlocks`, and
    /// `.shrinkWouldDropAllocated` when any block in `newBlocks ..< blocks` is allocated.
    public mutating func resize(blocks newBlocks: UInt64) throws(BlistError) {
        guard newBlocks >= 1 && newBlocks <= Blist.maximumBlocks else { throw .invalidSize }
        if newBlocks < blocks {
            let tail = blocks - newBlocks
            guard withView({ $0.countFree(start: newBlocks, count: tail) }) == tail else {
                throw .shrinkWouldDropAllocated
            }
            shrinkLeaves(to: newBlocks)
            freeBlocks -= tail
        } else if newBlocks > blocks {
            growLeaves(to: newBlocks)
            freeBlocks += newBlocks - blocks
        } else {
            return
        }
        blocks = newBlocks
        if cursor >= blocks { cursor = 0 }
        allocatedPrefix = min(allocatedPrefix, blocks)
        summaries = Blist.emptySummaries(wordCount: leaves.count)
        withEditor { $0.rebuildSummaries(wholeFreeBelow: 0) }
    }

    // MARK: Internals

    /// Allocates a run of `min(upTo, largestFreeRun)` blocks, placed next-fit, or returns nil
    /// (changing nothing) when that is less than `atLeast`.
    private mutating func take(atLeast: UInt64, upTo: UInt64) -> BlockRun? {
        let lower = cursor
        let prefix = allocatedPrefix
        let taken = withEditor { editor -> BlockRun? in
            let count = min(upTo, editor.view.summary(level: editor.view.topLevel, node: 0).longest)
            guard count >= atLeast else { return nil }
            guard let start = editor.view.firstFit(count: count, atOrAfter: lower)
                    ?? editor.view.firstFit(count: count, atOrAfter: 0) else {
                preconditionFailure("Blist.allocate: root promised a run that no subtree holds")
            }
            editor.setBits(start: start, count: count, free: false)
            editor.updateSummaries(start: start, end: start + count, freed: false, allocatedPrefix: prefix)
            return BlockRun(start: start, count: count)
        }
        guard let run = taken else { return nil }
        freeBlocks -= run.count
        cursor = run.end == blocks ? 0 : run.end
        if run.start == allocatedPrefix { allocatedPrefix = run.end }
        return run
    }

    /// Throws unless `start ..< start + count` lies inside the tree (overflow-safe).
    private func checkRange(start: UInt64, count: UInt64) throws(BlistError) {
        guard start < blocks && count <= blocks - start else { throw .outOfRange }
    }

    /// Runs `body` with read access to the tree's storage.
    func withView<Result>(_ body: (TreeView) -> Result) -> Result {
        leaves.withUnsafeBufferPointer { leaves in
            summaries.withUnsafeBufferPointer { summaries in
                body(TreeView(leaves: leaves, summaries: summaries))
            }
        }
    }

    /// Runs `body` with write access to the leaves and summaries: one uniqueness check per
    /// array for the whole operation. The editor must not escape `body`.
    mutating func withEditor<Result>(_ body: (TreeEditor) -> Result) -> Result {
        leaves.withUnsafeMutableBufferPointer { leaves in
            summaries.withUnsafeMutableBufferPointer { summaries in
                body(TreeEditor(leaves: leaves, summaries: summaries))
            }
        }
    }

    /// Cuts the leaves down to `newBlocks` blocks; the dropped blocks are free and the array is
    /// reallocated so swapoff returns the memory.
    private mutating func shrinkLeaves(to newBlocks: UInt64) {
        let wordCount = Blist.wordCount(for: newBlocks)
        var kept = [UInt64](leaves[0..<wordCount])
        kept[wordCount - 1] &= Blist.validBits(inLastWordOf: newBlocks)
        leaves = kept
    }

    /// Extends the leaves to `newBlocks` blocks, the new blocks free.
    private mutating func growLeaves(to newBlocks: UInt64) {
        let oldEnd = blocks
        let wordCount = Blist.wordCount(for: newBlocks)
        leaves.append(contentsOf: [UInt64](repeating: 0, count: wordCount - leaves.count))
        for word in Blist.wordIndex(of: oldEnd)..<wordCount {
            leaves[word] |= Blist.mask(word: word, start: oldEnd, end: newBlocks)
        }
    }
}

// MARK: Leaf geometry

extension Blist {
    /// log2 of the blocks in one leaf word.
    static var leafShift: UInt64 { 6 }
    /// Blocks in one leaf word.
    static var blocksPerLeaf: UInt64 { 64 }

    /// Leaf words needed for `blocks` blocks.
    static func wordCount(for blocks: UInt64) -> Int {
        Int((blocks + blocksPerLeaf - 1) >> leafShift)
    }

    /// Index of the leaf word holding `block`.
    static func wordIndex(of block: UInt64) -> Int {
        Int(block >> leafShift)
    }

    /// The bits of the last leaf word that are real blocks (the rest is padding).
    static func validBits(inLastWordOf blocks: UInt64) -> UInt64 {
        let used = blocks & 63
        return used == 0 ? ~0 : ~0 >> (64 - used)
    }

    /// The bits of leaf word `word` that lie in `start ..< end`; the range must meet the word.
    static func mask(word: Int, start: UInt64, end: UInt64) -> UInt64 {
        let wordStart = UInt64(word) << leafShift
        let low = max(start, wordStart) - wordStart
        let high = min(end, wordStart + blocksPerLeaf) - wordStart
        return (~0 >> (64 - (high - low))) << low
    }
}
