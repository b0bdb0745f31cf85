// Blist+Tree: the shape of the blist's inner levels, how a summary is stored, and the
// read-only walks over them (recomputing a summary, searching for a fit).
// Invariants: `summaries` opens with a header — the top level, then (offset, node count,
// field width) for each level — so the tree's shape travels with its storage. A level whose
// span fits in 21 bits packs a node's three fields into one word (longest | prefix << w |
// suffix << 2w, w = bit width of the span); higher levels, which hold one node per 4 Mi
// blocks or fewer, spend three words per node. A TreeView borrows the blist's arrays for
// one operation (`Blist.withView`/`withEditor`) and never escapes it; the indexes it is given
// are in range by construction (ranges are checked at the public boundary, nodes come from
// `children(level:node:)`), so it reads through unchecked buffer pointers.
// Locks: as Blist (the owner serialises calls).

extension Blist {
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

        /// Adds one leaf word. The longest run inside the word is only measured when it beats the
        /// longest run found so far (one O(log) test otherwise).
        mutating func append(leaf: UInt64) {
            if leaf == ~0 { return appendWholeFree(span: Blist.blocksPerLeaf) }
            if leaf == 0 { return append(prefix: 0, suffix: 0, longest: 0) }
            append(prefix: UInt64((~leaf).trailingZeroBitCount), suffix: UInt64((~leaf).leadingZeroBitCount),
                   longest: Blist.longestRun(in: leaf, longerThan: longest) ?? 0)
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

    /// log2 of the children per inner node.
    static var radixShift: Int { 4 }
    /// Children per inner node.
    static var radix: Int { 1 << radixShift }

    /// log2 of the blocks covered by one node at `level`.
    @inline(__always)
    static func spanShift(level: Int) -> UInt64 { leafShift + UInt64(level * radixShift) }

    /// Blocks covered by one node at `level` (64 for a leaf word).
    @inline(__always)
    static func span(level: Int) -> UInt64 { 1 << spanShift(level: level) }

    /// The level of the root.
    var topLevel: Int { Int(summaries[0]) }

    /// The levels above `wordCount` leaf words: they always include one inner level, so the
    /// root is always a summary.
    static func levelLayouts(wordCount: Int) -> [LevelLayout] {
        var levels = [LevelLayout(offset: 0, nodeCount: wordCount, fieldWidth: 0)]
        var nodeCount = wordCount
        repeat {
            nodeCount = (nodeCount + radix - 1) >> radixShift
            let width = UInt64(64 - span(level: levels.count).leadingZeroBitCount)
            levels.append(LevelLayout(offset: 0, nodeCount: nodeCount, fieldWidth: 3 * width <= 64 ? width : 0))
        } while nodeCount > 1
        return levels
    }

    /// A zeroed summary array for `wordCount` leaf words, its header filled in.
    static func emptySummaries(wordCount: Int) -> [UInt64] {
        let levels = levelLayouts(wordCount: wordCount)
        var summaries: [UInt64] = [UInt64(levels.count - 1)]
        var offset = 1 + 3 * levels.count  // The first word after the header.
        for (level, layout) in levels.enumerated() {
            summaries += [UInt64(level == 0 ? 0 : offset), UInt64(layout.nodeCount), layout.fieldWidth]
            if level > 0 { offset += layout.fieldWidth == 0 ? 3 * layout.nodeCount : layout.nodeCount }
        }
        summaries += [UInt64](repeating: 0, count: offset - summaries.count)
        return summaries
    }

    /// Read access to a blist's storage for the length of one operation.
    struct TreeView {
        let leaves: UnsafeBufferPointer<UInt64>
        let summaries: UnsafeBufferPointer<UInt64>

        /// The level of the root.
        var topLevel: Int { Int(summaries[0]) }

        /// Where `level` lives in `summaries` (level 0: the leaves, only its node count is used).
        @inline(__always)
        func layout(_ level: Int) -> LevelLayout {
            LevelLayout(offset: Int(summaries[1 + 3 * level]), nodeCount: Int(summaries[2 + 3 * level]),
                        fieldWidth: summaries[3 + 3 * level])
        }

        /// The summary of `node` on inner `level`.
        @inline(__always)
        func summary(level: Int, node: Int) -> RunSummary {
            layout(level).summary(of: node, in: summaries)
        }

        /// The children of `node` on `level`, as indexes into level `level - 1`.
        @inline(__always)
        func children(level: Int, node: Int) -> Range<Int> {
            let first = node << Blist.radixShift
            return first..<min(first + Blist.radix, layout(level - 1).nodeCount)
        }

        // MARK: Leaves

        /// Whether any block of a non-empty range inside the tree is free.
        func containsFree(start: UInt64, count: UInt64) -> Bool {
            let end = start + count
            for word in Blist.wordIndex(of: start)...Blist.wordIndex(of: end - 1)
            where leaves[word] & Blist.mask(word: word, start: start, end: end) != 0 {
                return true
            }
            return false
        }

        /// Number of free blocks in a non-empty range inside the tree.
        func countFree(start: UInt64, count: UInt64) -> UInt64 {
            let end = start + count
            var total: UInt64 = 0
            for word in Blist.wordIndex(of: start)...Blist.wordIndex(of: end - 1) {
                total += UInt64((leaves[word] & Blist.mask(word: word, start: start, end: end)).nonzeroBitCount)
            }
            return total
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

        // MARK: Recomputing

        /// Recomputes the summary of `node` on `level` from its children.
        func combine(level: Int, node: Int) -> RunSummary {
            let range = children(level: level, node: node)
            var accumulator = RunAccumulator()
            if level == 1 {
                for word in range { accumulator.append(leaf: leaves[word]) }
            } else {
                let childSpan = Blist.span(level: level - 1)
                let layout = layout(level - 1)
                for child in range {
                    let part = layout.summary(of: child, in: summaries)
                    if part.prefix == childSpan {
                        accumulator.appendWholeFree(span: childSpan)
                    } else {
                        accumulator.append(prefix: part.prefix, suffix: part.suffix, longest: part.longest)
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
                for word in children(level: level, node: node) where longest < ceiling {
                    let bits = leaves[word]
                    if bits == ~0 {
                        run += Blist.blocksPerLeaf
                        continue
                    }
                    longest = max(longest, run + UInt64((~bits).trailingZeroBitCount))
                    if bits != 0 { longest = Blist.longestRun(in: bits, longerThan: longest) ?? longest }
                    run = UInt64((~bits).leadingZeroBitCount)
                }
            } else {
                let childSpan = Blist.span(level: level - 1)
                let layout = layout(level - 1)
                for child in children(level: level, node: node) where longest < ceiling {
                    let part = layout.summary(of: child, in: summaries)
                    if part.prefix == childSpan {
                        run += childSpan
                        continue
                    }
                    longest = max(longest, max(run + part.prefix, part.longest))
                    run = part.suffix
                }
            }
            return max(longest, run)
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

        // MARK: Searching

        /// The first block `start >= lower` such that `start ..< start + count` is free, or nil.
        func firstFit(count: UInt64, atOrAfter lower: UInt64) -> UInt64? {
            if let start = firstFitNearby(count: count, atOrAfter: lower) { return start }
            if case .found(let start) = search(level: topLevel, node: 0, lower: lower, count: count, carry: 0) {
                return start
            }
            return nil
        }

        /// The next-fit fast path: a fit that starts in the leaf word holding `lower` and ends in
        /// it or in the next word, found without walking down from the root. A fit inside the
        /// word is the first one (an earlier start would fit inside the word too); otherwise the
        /// only start left in the word is that of the free run reaching its end.
        func firstFitNearby(count: UInt64, atOrAfter lower: UInt64) -> UInt64? {
            let word = Blist.wordIndex(of: lower)
            let base = UInt64(word) << Blist.leafShift
            let bits = leaves[word] & (~0 << (lower & 63))
            if count <= Blist.blocksPerLeaf, let start = Blist.firstRunStart(in: bits, length: count) {
                return base + start
            }
            let tail = UInt64((~bits).leadingZeroBitCount)
            guard tail > 0, tail < count, count - tail <= Blist.blocksPerLeaf, word + 1 < leaves.count,
                  UInt64((~leaves[word + 1]).trailingZeroBitCount) >= count - tail else { return nil }
            return base + Blist.blocksPerLeaf - tail
        }

        /// Searches `node` on `level` (>= 1) for the first fit at or after `lower`. `carry` free
        /// blocks end just before the node; it must be 0 unless the node lies wholly at or after
        /// `lower`. A child is entered only if it holds a fit, or if it contains `lower` (at most
        /// one per level), so the cost is O(radix * depth).
        func search(level: Int, node: Int, lower: UInt64, count: UInt64, carry: UInt64) -> SearchStep {
            let range = children(level: level, node: node)
            let skipped = min(Int(lower >> Blist.spanShift(level: level - 1)), range.upperBound)
            let first = max(range.lowerBound, skipped)
            let incoming = first == range.lowerBound ? carry : 0
            if level == 1 {
                return searchLeaves(first..<range.upperBound, lower: lower, count: count, carry: incoming)
            }
            let childSpan = Blist.span(level: level - 1)
            let layout = layout(level - 1)
            var carry = incoming
            for child in first..<range.upperBound {
                let base = UInt64(child) << Blist.spanShift(level: level - 1)
                let part = layout.summary(of: child, in: summaries)
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
    }
}

// MARK: Bit tricks

extension Blist {
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
