// Blist+Statistics: what the blist can tell about itself — fragmentation, memory, a dump of
// the tree and a full consistency check.
// Invariants: nothing here changes the tree. Walks skip wholly free and wholly allocated
// subtrees using the summaries, so their cost follows the fragmentation, not the size.
// Locks: as Blist (the owner serialises calls).

extension Blist {
    /// Number of buckets in `freeRunHistogram()`: one per power of two up to `blocks`.
    public var histogramBucketCount: Int { 64 - blocks.leadingZeroBitCount }

    /// Fragmentation: element `i` counts the maximal free runs whose length lies in
    /// `2^i ..< 2^(i+1)`. Not O(1): it visits every partly allocated subtree.
    public func freeRunHistogram() -> [UInt64] {
        var histogram = FreeRunHistogram(bucketCount: histogramBucketCount)
        withView { $0.visitRuns(level: $0.topLevel, node: 0, into: &histogram) }
        histogram.closeRun()
        return histogram.buckets
    }

    /// Heap and inline bytes the blist holds: both arrays at their capacity plus their
    /// headers and the value itself (allocator rounding not counted).
    public var memoryBytes: UInt64 {
        let arrayHeader = 32
        let bytes = MemoryLayout<Blist>.size
            + leaves.capacity * MemoryLayout<UInt64>.stride + arrayHeader
            + summaries.capacity * MemoryLayout<UInt64>.stride + arrayHeader
        return UInt64(bytes)
    }

    /// Whether the tree's shape fits its size, every summary matches its children, the free
    /// count matches the leaves, the padding and everything below the allocated-prefix hint is
    /// allocated, and the cursor is in range. O(n / 64): for tests and debugging.
    public var isConsistent: Bool {
        guard cursor < blocks, leaves.count == Blist.wordCount(for: blocks) else { return false }
        let padding = ~Blist.validBits(inLastWordOf: blocks)
        guard leaves[leaves.count - 1] & padding == 0 else { return false }
        var free: UInt64 = 0
        for word in leaves { free += UInt64(word.nonzeroBitCount) }
        guard free == freeBlocks else { return false }
        guard allocatedPrefix <= blocks,
              allocatedPrefix == 0 || (try? freeBlocks(start: 0, count: allocatedPrefix)) == 0 else { return false }
        let shape = Blist.emptySummaries(wordCount: leaves.count)
        let headerWords = 1 + 3 * (Int(shape[0]) + 1)
        guard summaries.count == shape.count, summaries[0..<headerWords] == shape[0..<headerWords] else { return false }
        return withView { $0.layout($0.topLevel).nodeCount == 1 && $0.summariesMatchChildren() }
    }

    /// Writes a readable picture of the tree through `emit`, one line per call: a header,
    /// then every node top-down, indented by depth. Wholly free or wholly allocated subtrees
    /// are one line each; leaf words print their free-bitmap (bit i = block start + i).
    public func dump(_ emit: (String) -> Void) {
        emit("blist: blocks \(blocks), free \(freeBlocks), largest free run \(largestFreeRun), "
             + "cursor \(cursor), levels \(topLevel), memory \(memoryBytes) bytes")
        withView { $0.dumpNode(level: $0.topLevel, node: 0, depth: 1, emit) }
    }
}

extension Blist.TreeView {
    /// Whether every summary equals the one recomputed from its children.
    func summariesMatchChildren() -> Bool {
        for level in 1...topLevel {
            for node in 0..<layout(level).nodeCount
            where combine(level: level, node: node) != summary(level: level, node: node) {
                return false
            }
        }
        return true
    }

    /// Adds the free runs inside `node` on `level` to `histogram`, continuing the run that
    /// ended just before the node.
    func visitRuns(level: Int, node: Int, into histogram: inout Blist.FreeRunHistogram) {
        let span = Blist.span(level: level)
        let part = summary(level: level, node: node)
        if part.prefix == span {
            histogram.extendRun(by: span)
        } else if part.longest == 0 {
            histogram.closeRun()
        } else if level == 1 {
            for word in children(level: 1, node: node) { histogram.add(leaf: leaves[word]) }
        } else {
            for child in children(level: level, node: node) {
                visitRuns(level: level - 1, node: child, into: &histogram)
            }
        }
    }

    /// Emits `node` on `level` and, unless it is uniform, its children.
    func dumpNode(level: Int, node: Int, depth: Int, _ emit: (String) -> Void) {
        let span = Blist.span(level: level)
        let indent = String(repeating: "  ", count: depth)
        let head = "\(indent)L\(level) #\(node) [\(UInt64(node) * span), +\(span))"
        let part = summary(level: level, node: node)
        if part.prefix == span { return emit(head + " all free") }
        if part.longest == 0 { return emit(head + " all allocated") }
        emit(head + " longest \(part.longest) prefix \(part.prefix) suffix \(part.suffix)")
        for child in children(level: level, node: node) {
            if level > 1 {
                dumpNode(level: level - 1, node: child, depth: depth + 1, emit)
            } else {
                let start = UInt64(child) << Blist.leafShift
                emit("\(indent)  leaf #\(child) [\(start), +64) free 0x" + String(leaves[child], radix: 16))
            }
        }
    }
}

extension Blist {
    /// Counts maximal free runs into power-of-two buckets while the tree is walked in order.
    struct FreeRunHistogram {
        private(set) var buckets: [UInt64]
        private var run: UInt64 = 0

        init(bucketCount: Int) { buckets = [UInt64](repeating: 0, count: bucketCount) }

        /// The current run goes on for `length` more blocks.
        mutating func extendRun(by length: UInt64) { run += length }

        /// An allocated block (or the end): the current run, if any, is complete.
        mutating func closeRun() {
            guard run > 0 else { return }
            buckets[63 - run.leadingZeroBitCount] += 1
            run = 0
        }

        /// Walks the 64 blocks of a leaf word, alternating free and allocated stretches.
        mutating func add(leaf: UInt64) {
            var position: UInt64 = 0
            while position < 64 {
                let rest = leaf >> position
                if rest == 0 {
                    closeRun()
                    return
                }
                let allocated = UInt64(rest.trailingZeroBitCount)
                if allocated > 0 { closeRun() }
                position += allocated
                let free = UInt64((~(leaf >> position)).trailingZeroBitCount)
                run += free
                position += free
            }
        }
    }
}
