// Blist+Update: keeping the summaries exact when leaf bits change.
// Invariants: a summary is a pure function of its children, so after a change only the
// ancestors of the changed leaves can change, and the walk up stops at the first level where
// no summary changed. A TreeEditor borrows the blist's arrays for one operation and never
// escapes it (see Blist+Tree.swift); the leaves are written before the summaries above them.
// Locks: as Blist (the owner serialises calls).

extension Blist {
    /// Write access to a blist's storage for the length of one operation.
    struct TreeEditor {
        let view: TreeView
        let leaves: UnsafeMutableBufferPointer<UInt64>
        let summaries: UnsafeMutableBufferPointer<UInt64>

        init(leaves: UnsafeMutableBufferPointer<UInt64>, summaries: UnsafeMutableBufferPointer<UInt64>) {
            self.leaves = leaves
            self.summaries = summaries
            view = TreeView(leaves: UnsafeBufferPointer(leaves), summaries: UnsafeBufferPointer(summaries))
        }

        /// Stores the summary of `node` on inner `level`.
        @inline(__always)
        func setSummary(_ summary: RunSummary, level: Int, node: Int) {
            view.layout(level).store(summary, for: node, in: summaries)
        }

        /// Sets (frees) or clears (allocates) every bit of a non-empty range inside the tree and
        /// returns the first and last leaf word touched. The caller updates the summaries.
        @discardableResult
        func setBits(start: UInt64, count: UInt64, free: Bool) -> (first: Int, last: Int) {
            let end = start + count
            let first = Blist.wordIndex(of: start)
            let last = Blist.wordIndex(of: end - 1)
            for word in first...last {
                let mask = Blist.mask(word: word, start: start, end: end)
                if free {
                    leaves[word] |= mask
                } else {
                    leaves[word] &= ~mask
                }
            }
            return (first, last)
        }

        /// Brings the summaries above children `first ... last` of level `level - 1` up to date
        /// by recomputing every node above them, level by level, stopping at the first level
        /// where no summary changed. Works for any change (a fill over mixed blocks, a big run).
        func refreshSummaries(level startLevel: Int, firstChild: Int, lastChild: Int) {
            var first = firstChild
            var last = lastChild
            for level in startLevel...view.topLevel {
                first >>= Blist.radixShift
                last >>= Blist.radixShift
                var changed = false
                for node in first...last {
                    let updated = view.combine(level: level, node: node)
                    if updated != view.summary(level: level, node: node) {
                        setSummary(updated, level: level, node: node)
                        changed = true
                    }
                }
                if !changed { return }
            }
        }

        /// Recomputes every summary from the leaves. Nodes that end at or before `wholeFreeBelow`
        /// are known to be wholly free (a fresh tree) and are written without looking below.
        func rebuildSummaries(wholeFreeBelow: UInt64) {
            for level in 1...view.topLevel {
                let span = Blist.span(level: level)
                for node in 0..<view.layout(level).nodeCount {
                    let isWholeFree = UInt64(node + 1) * span <= wholeFreeBelow
                    let value = isWholeFree ? RunSummary.wholeFree(span: span) : view.combine(level: level, node: node)
                    setSummary(value, level: level, node: node)
                }
            }
        }

        /// Updates the summaries above `start ..< end` after a uniform change: every block in it
        /// went from allocated to free (`freed`) or from free to allocated. Every block below
        /// `allocatedPrefix` is allocated.
        ///
        /// Only one free run is affected: the run through the range after a free, or the run the
        /// range was cut from by an allocation. Going up one level at a time, its ends are
        /// extended through the neighbouring children (in O(1) when the node's old prefix or
        /// suffix shows the run reaches the node's edge), and each ancestor is updated from its
        /// old summary. Only an allocation that cut the ancestor's longest run, when what is left
        /// of it might not be the longest, recomputes the ancestor from its children.
        func updateSummaries(start: UInt64, end: UInt64, freed: Bool, allocatedPrefix: UInt64) {
            var first = Blist.wordIndex(of: start)
            var last = Blist.wordIndex(of: end - 1)
            var run = (start: start - view.freeBlocks(endingAt: start), end: end + view.freeBlocks(startingAt: end))
            for level in 1...view.topLevel {
                let node = first >> Blist.radixShift
                guard node == last >> Blist.radixShift else {
                    return refreshSummaries(level: level, firstChild: first, lastChild: last)
                }
                let place = NodePlace(level: level, node: node)
                let layout = view.layout(level)
                let old = layout.summary(of: node, in: view.summaries)
                run = extend(run, at: place, old: old, firstChild: first, lastChild: last)
                let updated = freed
                    ? afterFree(old, run: run, at: place)
                    : afterAllocation(old, run: run, cut: (start, end), at: place, allocatedPrefix: allocatedPrefix)
                if updated == old { return }
                layout.store(updated, for: node, in: summaries)
                first = node
                last = node
            }
        }

        /// A node's summary after a free that made `run` (clipped to the node) one free run.
        /// Freeing only adds free blocks, so every old run survives inside a run at least as long.
        private func afterFree(_ old: RunSummary, run: (start: UInt64, end: UInt64),
                               at place: NodePlace) -> RunSummary {
            var updated = old
            updated.longest = max(old.longest, run.end - run.start)
            if run.start == place.start { updated.prefix = run.end - place.start }
            if run.end == place.end { updated.suffix = place.end - run.start }
            return updated
        }

        /// A node's summary after an allocation of `cut` out of the free run `run` (clipped to
        /// the node, as it was before the allocation).
        private func afterAllocation(_ old: RunSummary, run: (start: UInt64, end: UInt64),
                                     cut: (start: UInt64, end: UInt64), at place: NodePlace,
                                     allocatedPrefix: UInt64) -> RunSummary {
            var updated = old
            if run.start == place.start { updated.prefix = cut.start - place.start }
            if run.end == place.end { updated.suffix = place.end - cut.end }
            let runLength = run.end - run.start
            guard old.longest <= runLength else { return updated }
            // The cut run was a longest one. Every other run lies wholly before or wholly after
            // it (nothing before it below allocatedPrefix, nothing after the last leaf), so a
            // piece of the cut run at least that long is the new longest; otherwise the children
            // must be asked.
            let piece = max(cut.start - run.start, run.end - cut.end)
            let before = run.start <= allocatedPrefix ? 0 : run.start - place.start
            let after = min(place.end, UInt64(leaves.count) << Blist.leafShift) - run.end
            updated.longest = piece >= max(before, after)
                ? piece : view.longestRun(level: place.level, node: place.node, floor: piece, ceiling: old.longest)
            return updated
        }

        /// Extends `run`, known so far within children `firstChild ... lastChild` of the node at
        /// `place`, to the whole node. `old` is the node's summary from before the change, which
        /// did not touch the other children: when its prefix (suffix) covers the gap, the run
        /// reaches the node's edge without looking at the children.
        private func extend(_ run: (start: UInt64, end: UInt64), at place: NodePlace, old: RunSummary,
                            firstChild: Int, lastChild: Int) -> (start: UInt64, end: UInt64) {
            let childShift = Blist.spanShift(level: place.level - 1)
            var extended = run
            if run.start == UInt64(firstChild) << childShift {
                extended.start = old.prefix >= run.start - place.start
                    ? place.start
                    : run.start - view.freeRun(level: place.level - 1, before: firstChild,
                                               downTo: place.node << Blist.radixShift)
            }
            if run.end == UInt64(lastChild + 1) << childShift {
                extended.end = old.suffix >= place.end - run.end
                    ? place.end
                    : run.end + view.freeRun(level: place.level - 1, after: lastChild,
                                             upTo: view.children(level: place.level, node: place.node).upperBound)
            }
            return extended
        }
    }

    /// A node and the blocks it covers, `start ..< end` (end is nominal: it may lie past the
    /// tree's last block).
    struct NodePlace {
        let level: Int
        let node: Int
        let start: UInt64
        let end: UInt64

        @inline(__always)
        init(level: Int, node: Int) {
            self.level = level
            self.node = node
            start = UInt64(node) << Blist.spanShift(level: level)
            end = start + Blist.span(level: level)
        }
    }
}
