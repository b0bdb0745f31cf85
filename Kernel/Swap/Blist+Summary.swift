// Blist+Summary: the inner levels of the blist — how summaries are stored, recomputed and
// searched.
// Invariants: a level whose span fits in 21 bits packs a node's three fields into one word
// (longest | prefix << w | suffix << 2w, w = bit width of the span); higher levels, which hold
// one node per 4 Mi blocks or fewer, spend three words per node. A summary is a pure function
// of its children, so after a leaf change only the ancestors of that leaf are recomputed, and
// the walk up stops at the first level where nothing changed.
// Locks: as Blist (the owner serialises calls).

/// Where one level of the tree lives in `Blist.summaries`, and how its nodes are encoded.
struct LevelLayout: Equatable {
    /// Index of the level's first word in `summaries` (unused for the leaves).
    var offset: Int
    /// Number of nodes on the level (leaf words for level 0).
    var nodeCount: Int
    /// Bits per field when a node is packed into one word; 0 when it takes three words.
    var fieldWidth: UInt64

    /// Decodes the summary of `node` from the summary words.
    @inline(__always)
    func summary(of node: Int, in words: UnsafeBufferPointer<UInt64>) -> RunSummary {
        let width = fieldWidth
        if width == 0 {
            let index = offset + 3 * node
            return RunSummary(prefix: words[index], suffix: words[index + 1], longest: words[index + 2])
        }
        let word = words[offset + node]
        let fieldMask: UInt64 = (1 << width) - 1
        return RunSummary(prefix: (word >> width) & fieldMask, suffix: (word >> (2 * width)) & fieldMask,
                          longest: word & fieldMask)
    }

    /// Encodes `summary` as the summary of `node`.
    @inline(__always)
    func store(_ summary: RunSummary, for node: Int, in words: UnsafeMutableBufferPointer<UInt64>) {
        let width = fieldWidth
        if width == 0 {
            let index = offset + 3 * node
            words[index] = summary.prefix
            words[index + 1] = summary.suffix
            words[index + 2] = summary.longest
            return
        }
        words[offset + node] = summary.longest | summary.prefix << width | summary.suffix << (2 * width)
    }
}

/// The exact free-run summary of one node (see the invariants in Blist.swift).
struct RunSummary: Equatable {
    /// Free blocks at the start of the node.
    var prefix: UInt64
    /// Free blocks at the end of the node.
    var suffix: UInt64
    /// The longest free run inside the node.
    var longest: UInt64

    /// The summary of a wholly free node of `span` blocks.
    static func wholeFree(span: UInt64) -> RunSummary {
        RunSummary(prefix: span, suffix: span, longest: span)
    }
}

/// Folds children, left to right, into their parent's summary.
struct RunAccumulator {
    private var prefix: UInt64 = 0
    private var run: UInt64 = 0
    private(set) var longest: UInt64 = 0
    private var sawPartialChild = false

    /// Adds a wholly free child of `span` blocks.
    mutating func appendWholeFree(span: UInt64) { run += span }

    /// Adds a child that is not wholly free.
    mutating func append(prefix childPrefix: UInt64, suffix childSuffix: UInt64, longest childLongest: UInt64) {
        if !sawPartialChild {
            prefix = run + childPrefix
            sawPartialChild = true
        }
        longest = max(longest, max(run + childPrefix, childLongest))
        run = childSuffix
    }

    /// The parent's summary. `isComplete` is false when the parent has fewer children than
    /// the radix: the missing ones are padding, which is allocated, so the suffix is empty.
    func summary(isComplete: Bool) -> RunSummary {
        RunSummary(prefix: sawPartialChild ? prefix : run,
                   suffix: isComplete ? run : 0,
                   longest: max(longest, run))
    }
}

/// The outcome of searching one node for a fit.
enum SearchStep {
    /// The run starts here.
    case found(UInt64)
    /// No fit ends inside the node; `carry` free blocks (at or after the search's lower
    /// bound) end at the node's last block and may start a run in the next node.
    case notFound(carry: UInt64)
}

extension Blist {
    /// log2 of the children per inner node.
    static var radixShift: Int { 4 }
    /// Children per inner node.
    static var radix: Int { 1 << radixShift }

    /// log2 of the blocks covered by one node at `level`.
    static func spanShift(level: Int) -> UInt64 {
        leafShift + UInt64(level * radixShift)
    }

    /// Blocks covered by one node at `level` (64 for a leaf word).
    static func span(level: Int) -> UInt64 {
        1 << spanShift(level: level)
    }

    /// The level of the root.
    var topLevel: Int { levels.count - 1 }

    /// The levels above `wordCount` leaf words, and the number of summary words they need.
    /// There is always at least one inner level, so the root is always a summary.
    static func layout(wordCount: Int) -> (levels: [LevelLayout], summaryWords: Int) {
        var levels = [LevelLayout(offset: 0, nodeCount: wordCount, fieldWidth: 0)]
        var nodeCount = wordCount
        var offset = 0
        repeat {
            nodeCount = (nodeCount + radix - 1) >> radixShift
            let width = UInt64(64 - span(level: levels.count).leadingZeroBitCount)
            let isPacked = 3 * width <= 64
            levels.append(LevelLayout(offset: offset, nodeCount: nodeCount, fieldWidth: isPacked ? width : 0))
            offset += isPacked ? nodeCount : 3 * nodeCount
        } while nodeCount > 1
        return (levels, offset)
    }

    // MARK: Storage

    /// The summary of `node` on inner `level`.
    @inline(__always)
    func summary(level: Int, node: Int) -> RunSummary {
        let layout = levels[level]
        return summaries.withUnsafeBufferPointer { layout.summary(of: node, in: $0) }
    }

    /// Stores the summary of `node` on inner `level`.
    mutating func setSummary(_ summary: RunSummary, level: Int, node: Int) {
        let layout = levels[level]
        summaries.withUnsafeMutableBufferPointer { layout.store(summary, for: node, in: $0) }
    }

    // MARK: Recomputing

    /// The children of `node` on `level`, as indexes into level `level - 1`.
    func children(level: Int, node: Int) -> Range<Int> {
        let first = node << Blist.radixShift
        return first..<min(first + Blist.radix, levels[level - 1].nodeCount)
    }

    /// Recomputes the summary of `node` on `level` from its children.
    func combine(level: Int, node: Int) -> RunSummary {
        let range = children(level: level, node: node)
        var accumulator = RunAccumulator()
        if level == 1 {
            leaves.withUnsafeBufferPointer { words in
                for word in range { Blist.append(leaf: words[word], to: &accumulator) }
            }
        } else {
            let childSpan = Blist.span(level: level - 1)
            let layout = levels[level - 1]
            summaries.withUnsafeBufferPointer { words in
                for child in range {
                    let part = layout.summary(of: child, in: words)
                    if part.prefix == childSpan {
                        accumulator.appendWholeFree(span: childSpan)
                    } else {
                        accumulator.append(prefix: part.prefix, suffix: part.suffix, longest: part.longest)
                    }
                }
            }
        }
        return accumulator.summary(isComplete: range.count == Blist.radix)
    }

    /// The longest free run inside `node` on `level`, from its children, given that it lies
    /// in `floor ... ceiling` (a piece of a cut run, and the node's longest before the cut):
    /// runs no longer than `floor` are not measured, and reaching `ceiling` ends the scan.
    func longestRun(level: Int, node: Int, floor: UInt64, ceiling: UInt64) -> UInt64 {
        var run: UInt64 = 0
        var longest = floor
        if level == 1 {
            leaves.withUnsafeBufferPointer { words in
                for word in children(level: level, node: node) where longest < ceiling {
                    let bits = words[word]
                    if bits == ~0 {
                        run += Blist.blocksPerLeaf
                        continue
                    }
                    if bits == 0 {
                        longest = max(longest, run)
                        run = 0
                        continue
                    }
                    longest = max(longest, run + UInt64((~bits).trailingZeroBitCount))
                    longest = Blist.longestRun(in: bits, longerThan: longest) ?? longest
                    run = UInt64((~bits).leadingZeroBitCount)
                }
            }
        } else {
            let childSpan = Blist.span(level: level - 1)
            let layout = levels[level - 1]
            summaries.withUnsafeBufferPointer { words in
                for child in children(level: level, node: node) where longest < ceiling {
                    let part = layout.summary(of: child, in: words)
                    if part.prefix == childSpan {
                        run += childSpan
                        continue
                    }
                    longest = max(longest, max(run + part.prefix, part.longest))
                    run = part.suffix
                }
            }
        }
        return max(longest, run)
    }

    /// Adds one leaf word to `accumulator`. The longest run inside the word is only measured
    /// when it beats the longest run found so far (one O(log) test otherwise).
    static func append(leaf: UInt64, to accumulator: inout RunAccumulator) {
        if leaf == ~0 {
            accumulator.appendWholeFree(span: blocksPerLeaf)
            return
        }
        if leaf == 0 {
            accumulator.append(prefix: 0, suffix: 0, longest: 0)
            return
        }
        let inside = longestRun(in: leaf, longerThan: accumulator.longest) ?? 0
        accumulator.append(prefix: UInt64((~leaf).trailingZeroBitCount),
                           suffix: UInt64((~leaf).leadingZeroBitCount), longest: inside)
    }

    /// Brings the summaries above children `first ... last` of level `level - 1` up to date
    /// by recomputing every node above them, level by level, stopping at the first level
    /// where no summary changed. Works for any change (a fill over mixed blocks, a big run).
    mutating func refreshSummaries(level startLevel: Int, firstChild: Int, lastChild: Int) {
        var first = firstChild
        var last = lastChild
        for level in startLevel...topLevel {
            first >>= Blist.radixShift
            last >>= Blist.radixShift
            var changed = false
            for node in first...last {
                let updated = combine(level: level, node: node)
                if updated != summary(level: level, node: node) {
                    setSummary(updated, level: level, node: node)
                    changed = true
                }
            }
            if !changed { return }
        }
    }

    /// Updates the summaries above `start ..< end` after a uniform change: every block in it
    /// went from allocated to free (`freed`) or from free to allocated.
    ///
    /// Only one free run is affected: the run through the range after a free, or the run the
    /// range was cut from by an allocation. Going up one level at a time, its ends are
    /// extended through the neighbouring children (in O(1) when the node's old prefix or
    /// suffix shows the run reaches the node's edge), and each ancestor is updated from its
    /// old summary. Only an allocation that cut the ancestor's longest run, when what is left
    /// of it might not be the longest, recomputes the ancestor from its children.
    mutating func updateSummaries(start: UInt64, end: UInt64, freed: Bool) {
        var first = Blist.wordIndex(of: start)
        var last = Blist.wordIndex(of: end - 1)
        var run = (start: start - freeBlocks(endingAt: start), end: end + freeBlocks(startingAt: end))
        for level in 1...topLevel {
            let node = first >> Blist.radixShift
            guard node == last >> Blist.radixShift else {
                return refreshSummaries(level: level, firstChild: first, lastChild: last)
            }
            let old = summary(level: level, node: node)
            let span = Blist.span(level: level)
            let nodeStart = UInt64(node) * span
            let nodeEnd = nodeStart + span
            run = extend(run, level: level, node: node, old: old, firstChild: first, lastChild: last)
            var updated = old
            let runLength = run.end - run.start
            if freed {
                updated.longest = max(old.longest, runLength)
                if run.start == nodeStart { updated.prefix = run.end - nodeStart }
                if run.end == nodeEnd { updated.suffix = nodeEnd - run.start }
            } else {
                if run.start == nodeStart { updated.prefix = start - nodeStart }
                if run.end == nodeEnd { updated.suffix = nodeEnd - end }
                if old.longest <= runLength {
                    // The cut run was a longest one. Every other run lies wholly before or
                    // wholly after it (nothing before it below allocatedPrefix), so a piece
                    // of the cut run at least that long is the new longest.
                    let piece = max(start - run.start, run.end - end)
                    let before = run.start <= allocatedPrefix ? 0 : run.start - nodeStart
                    updated.longest = piece >= max(before, nodeEnd - run.end)
                        ? piece : longestRun(level: level, node: node, floor: piece, ceiling: old.longest)
                }
            }
            if updated == old { return }
            setSummary(updated, level: level, node: node)
            first = node
            last = node
        }
    }

    /// Extends `run`, known so far within children `firstChild ... lastChild` of `node` on
    /// `level`, to the whole node. `old` is the node's summary from before the change, which
    /// did not touch the other children.
    private func extend(_ run: (start: UInt64, end: UInt64), level: Int, node: Int, old: RunSummary,
                        firstChild: Int, lastChild: Int) -> (start: UInt64, end: UInt64) {
        let childSpan = Blist.span(level: level - 1)
        let nodeStart = UInt64(node) * Blist.span(level: level)
        let nodeEnd = nodeStart + Blist.span(level: level)
        let siblings = children(level: level, node: node)
        var extended = run
        if run.start == UInt64(firstChild) * childSpan {
            extended.start = old.prefix >= run.start - nodeStart
                ? nodeStart
                : run.start - freeRun(level: level - 1, before: firstChild, downTo: siblings.lowerBound)
        }
        if run.end == UInt64(lastChild + 1) * childSpan {
            extended.end = old.suffix >= nodeEnd - run.end
                ? nodeEnd
                : run.end + freeRun(level: level - 1, after: lastChild, upTo: siblings.upperBound)
        }
        return extended
    }

    /// Free blocks just below `block` inside its leaf word (0 at a word boundary).
    func freeBlocks(endingAt block: UInt64) -> UInt64 {
        let offset = block & 63
        guard offset > 0 else { return 0 }
        let below = leaves[Blist.wordIndex(of: block)] << (64 - offset)
        return UInt64((~below).leadingZeroBitCount)
    }

    /// Free blocks from `block` on inside its leaf word (0 at a word boundary, where the
    /// block belongs to the next word).
    func freeBlocks(startingAt block: UInt64) -> UInt64 {
        let offset = block & 63
        guard offset > 0 else { return 0 }
        let above = leaves[Blist.wordIndex(of: block - 1)] >> offset
        return UInt64((~above).trailingZeroBitCount)
    }

    /// The free run that ends where child `child` of level `level` begins, counted back to
    /// child `limit` at most.
    func freeRun(level: Int, before child: Int, downTo limit: Int) -> UInt64 {
        let childSpan = Blist.span(level: level)
        var total: UInt64 = 0
        var index = child - 1
        while index >= limit {
            let suffix = level == 0 ? UInt64((~leaves[index]).leadingZeroBitCount)
                                    : summary(level: level, node: index).suffix
            total += suffix
            if suffix != childSpan { break }
            index -= 1
        }
        return total
    }

    /// The free run that starts where child `child` of level `level` ends, counted up to (not
    /// including) child `limit`.
    func freeRun(level: Int, after child: Int, upTo limit: Int) -> UInt64 {
        let childSpan = Blist.span(level: level)
        var total: UInt64 = 0
        var index = child + 1
        while index < limit {
            let prefix = level == 0 ? UInt64((~leaves[index]).trailingZeroBitCount)
                                    : summary(level: level, node: index).prefix
            total += prefix
            if prefix != childSpan { break }
            index += 1
        }
        return total
    }

    /// Recomputes every summary from the leaves. Nodes that end at or before `wholeFreeBelow`
    /// are known to be wholly free (a fresh tree) and are written without looking below.
    mutating func rebuildSummaries(wholeFreeBelow: UInt64) {
        for level in 1...topLevel {
            let span = Blist.span(level: level)
            for node in 0..<levels[level].nodeCount {
                let isWholeFree = UInt64(node + 1) * span <= wholeFreeBelow
                let value = isWholeFree ? RunSummary.wholeFree(span: span) : combine(level: level, node: node)
                setSummary(value, level: level, node: node)
            }
        }
    }

    // MARK: Searching

    /// The first block `start >= lower` such that `start ..< start + count` is free, or nil.
    func firstFit(count: UInt64, atOrAfter lower: UInt64) -> UInt64? {
        if case .found(let start) = search(level: topLevel, node: 0, lower: lower, count: count, carry: 0) {
            return start
        }
        return nil
    }

    /// Searches `node` on `level` (>= 1) for the first fit at or after `lower`. `carry` free
    /// blocks end just before the node; it must be 0 unless the node lies wholly at or after
    /// `lower`. A child is entered only if it holds a fit, or if it contains `lower` (at most
    /// one per level), so the cost is O(radix * depth).
    func search(level: Int, node: Int, lower: UInt64, count: UInt64, carry: UInt64) -> SearchStep {
        let range = children(level: level, node: node)
        let childSpan = Blist.span(level: level - 1)
        let skipped = min(Int(lower >> Blist.spanShift(level: level - 1)), range.upperBound)
        let first = max(range.lowerBound, skipped)
        let incoming = first == range.lowerBound ? carry : 0
        if level == 1 {
            return searchLeaves(first..<range.upperBound, lower: lower, count: count, carry: incoming)
        }
        var carry = incoming
        for child in first..<range.upperBound {
            let base = UInt64(child) * childSpan
            let part = summary(level: level - 1, node: child)
            if base < lower {
                // The child contains `lower`: its summary counts blocks before it.
                if part.longest >= count {
                    let step = search(level: level - 1, node: child, lower: lower, count: count, carry: 0)
                    guard case .notFound(let rest) = step else { return step }
                    carry = rest
                } else {
                    carry = min(part.suffix, base + childSpan - lower)
                }
                continue
            }
            if carry + part.prefix >= count { return .found(base - carry) }
            if part.longest >= count {
                return search(level: level - 1, node: child, lower: lower, count: count, carry: carry)
            }
            carry = part.prefix == childSpan ? carry + childSpan : part.suffix
        }
        return .notFound(carry: carry)
    }

    /// Scans leaf words for the first fit at or after `lower`, with `carry` free blocks
    /// ending just before the first word.
    func searchLeaves(_ words: Range<Int>, lower: UInt64, count: UInt64, carry: UInt64) -> SearchStep {
        var carry = carry
        for word in words {
            let base = UInt64(word) << Blist.leafShift
            var bits = leaves[word]
            if base < lower { bits &= ~0 << (lower - base) }
            if carry + UInt64((~bits).trailingZeroBitCount) >= count { return .found(base - carry) }
            if count < Blist.blocksPerLeaf, let offset = Blist.firstRunStart(in: bits, length: count) {
                return .found(base + offset)
            }
            carry = bits == ~0 ? carry + Blist.blocksPerLeaf : UInt64((~bits).leadingZeroBitCount)
        }
        return .notFound(carry: carry)
    }

    // MARK: Bit tricks

    /// `bits` with bit i set iff bits i ..< i + length of `word` are all set (1 <= length <= 64).
    /// Each step ANDs the word with itself shifted by at most the run length already proven,
    /// so the length grows by doubling: O(log length).
    static func runStarts(in word: UInt64, length: UInt64) -> UInt64 {
        var starts = word
        var proven: UInt64 = 1
        while proven < length && starts != 0 {
            let step = min(proven, length - proven)
            starts &= starts >> step
            proven += step
        }
        return starts
    }

    /// Offset of the first run of `length` set bits lying wholly inside `word`, or nil.
    static func firstRunStart(in word: UInt64, length: UInt64) -> UInt64? {
        let starts = runStarts(in: word, length: length)
        return starts == 0 ? nil : UInt64(starts.trailingZeroBitCount)
    }

    /// Length of the longest run of set bits in `word` if it is longer than `floor`, else
    /// nil. First proves a run of floor + 1 (O(log floor)), then doubles the proven length
    /// while possible and closes the remaining gap by halving steps: O(log 64) in all.
    static func longestRun(in word: UInt64, longerThan floor: UInt64) -> UInt64? {
        if word == ~0 { return floor < 64 ? 64 : nil }
        guard floor < 63 else { return nil }
        var length = floor + 1
        var starts = runStarts(in: word, length: length)
        guard starts != 0 else { return nil }
        while length < 64 {
            let longer = starts & (starts >> length)
            if longer == 0 { break }
            starts = longer
            length *= 2
        }
        // Now the longest run lies in length ..< length + gap.
        var gap = length
        while gap > 1 {
            let half = gap / 2
            let longer = starts & (starts >> half)
            if longer != 0 {
                starts = longer
                length += half
                gap -= half
            } else {
                gap = half
            }
        }
        return length
    }

    /// Length of the longest run of set bits in `word`.
    static func longestRun(in word: UInt64) -> UInt64 {
        longestRun(in: word, longerThan: 0) ?? 0
    }
}
