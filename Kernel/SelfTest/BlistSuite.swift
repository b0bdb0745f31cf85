// BlistSuite: the swap-block allocator, run in the kernel on the kernel heap.
// Invariants checked: runs are found across leaf and subtree boundaries; a full or fragmented
// tree refuses with `.exhausted`; a refused call (double free, out of range, shrink over an
// allocated block) changes nothing; freed blocks are reused; statistics and the summaries
// agree with the blocks; a seeded random session agrees with a plain bitmap model.
// Trees stay small (at most 2^20 blocks, 136 KiB) so the suite is quick under TCG.

let blistSuite = SelfTestSuite("blist", [
    SelfTest("create_rejects_zero_and_oversized_sizes", createRejectsZeroAndOversizedSizes),
    SelfTest("new_tree_is_one_free_run", newTreeIsOneFreeRun),
    SelfTest("allocate_spans_leaf_boundary", allocateSpansLeafBoundary),
    SelfTest("allocate_spans_subtree_boundaries", allocateSpansSubtreeBoundaries),
    SelfTest("exhaustion_of_full_tree_is_typed_error", exhaustionOfFullTreeIsTypedError),
    SelfTest("fragmented_tree_refuses_long_run", fragmentedTreeRefusesLongRun),
    SelfTest("free_then_reuse", freeThenReuse),
    SelfTest("next_fit_cursor_moves_on_and_wraps", nextFitCursorMovesOnAndWraps),
    SelfTest("double_free_rejected_without_change", doubleFreeRejectedWithoutChange),
    SelfTest("out_of_range_rejected_without_change", outOfRangeRejectedWithoutChange),
    SelfTest("fill_counts_already_allocated_blocks", fillCountsAlreadyAllocatedBlocks),
    SelfTest("allocate_between_takes_longest_run", allocateBetweenTakesLongestRun),
    SelfTest("shrink_below_allocated_rejected", shrinkBelowAllocatedRejected),
    SelfTest("grow_adds_free_blocks_keeps_allocations", growAddsFreeBlocksKeepsAllocations),
    SelfTest("histogram_counts_runs_by_power_of_two", histogramCountsRunsByPowerOfTwo),
    SelfTest("memory_near_one_bit_per_block", memoryNearOneBitPerBlock),
    SelfTest("random_operations_match_bitmap_model", randomOperationsMatchBitmapModel),
])

// MARK: Helpers

/// A tree of `blocks` blocks; a failure to create one is recorded and yields nil.
private func makeBlist(_ blocks: UInt64, _ t: inout TestContext) -> Blist? {
    do {
        return try Blist(blocks: blocks)
    } catch {
        t.expect(false, "Blist(blocks:) succeeds for a valid size")
        return nil
    }
}

/// Records a failure unless `body` throws exactly `expected`.
private func expectError(_ expected: BlistError, _ what: StaticString, _ t: inout TestContext,
                         _ body: () throws(BlistError) -> Void) {
    do {
        try body()
        t.expect(false, what)
    } catch {
        t.expect(error == expected, what)
    }
}

/// Records a failure if `body` throws.
private func expectNoError(_ what: StaticString, _ t: inout TestContext, _ body: () throws(BlistError) -> Void) {
    do {
        try body()
    } catch {
        t.expect(false, what)
    }
}

/// The start `allocate(count:)` returns, or UInt64.max (never a block number here) on error.
private func allocated(_ blist: inout Blist, _ count: UInt64) -> UInt64 {
    (try? blist.allocate(count: count)) ?? UInt64.max
}

// MARK: Tests

private func createRejectsZeroAndOversizedSizes(_ t: inout TestContext) {
    expectError(.invalidSize, "zero blocks refused", &t) { () throws(BlistError) in _ = try Blist(blocks: 0) }
    expectError(.invalidSize, "more than maximumBlocks refused", &t) { () throws(BlistError) in
        _ = try Blist(blocks: Blist.maximumBlocks + 1)
    }
    expectNoError("one block accepted", &t) { () throws(BlistError) in _ = try Blist(blocks: 1) }
}

private func newTreeIsOneFreeRun(_ t: inout TestContext) {
    for blocks: UInt64 in [1, 63, 64, 65, 1_025, 16_385] {
        guard let blist = makeBlist(blocks, &t) else { return }
        t.expectEqual(blist.freeBlocks, blocks, "free blocks of a new tree")
        t.expectEqual(blist.largestFreeRun, blocks, "largest free run of a new tree")
        let histogram = blist.freeRunHistogram()
        t.expectEqual(histogram[histogram.count - 1], 1, "one run in the top histogram bucket")
        t.expect(blist.isConsistent, "new tree consistent")
    }
}

private func allocateSpansLeafBoundary(_ t: inout TestContext) {
    guard var blist = makeBlist(1_000, &t) else { return }
    expectNoError("fill whole tree", &t) { () throws(BlistError) in try blist.fill(start: 0, count: 1_000) }
    expectNoError("free 60..<70", &t) { () throws(BlistError) in try blist.free(start: 60, count: 10) }
    t.expectEqual(blist.largestFreeRun, 10, "the run across the leaf boundary")
    t.expectEqual(allocated(&blist, 10), 60, "run across blocks 63/64 allocated whole")
    t.expectEqual(blist.freeBlocks, 0, "nothing left")
    t.expect(blist.isConsistent, "consistent after a boundary-spanning allocation")
}

private func allocateSpansSubtreeBoundaries(_ t: inout TestContext) {
    guard var blist = makeBlist(300_000, &t) else { return }
    for boundary: UInt64 in [1_024, 16_384, 262_144] {
        expectNoError("fill whole tree", &t) { () throws(BlistError) in try blist.fill(start: 0, count: 300_000) }
        expectNoError("free across boundary", &t) { () throws(BlistError) in
            try blist.free(start: boundary - 7, count: 7 + boundary / 8)
        }
        t.expectEqual(allocated(&blist, 7 + boundary / 8), boundary - 7, "run across a subtree boundary")
        t.expect(blist.isConsistent, "consistent after a subtree-spanning allocation")
    }
}

private func exhaustionOfFullTreeIsTypedError(_ t: inout TestContext) {
    guard var blist = makeBlist(4_097, &t) else { return }
    t.expectEqual(allocated(&blist, 4_097), 0, "whole tree in one run")
    t.expectEqual(blist.largestFreeRun, 0, "no free run left")
    expectError(.exhausted, "allocate on a full tree", &t) { () throws(BlistError) in _ = try blist.allocate(count: 1) }
    expectError(.exhausted, "allocate(atLeast:upTo:) on a full tree", &t) { () throws(BlistError) in
        _ = try blist.allocate(atLeast: 1, upTo: 8)
    }
    expectError(.exhausted, "more blocks than the tree has", &t) { () throws(BlistError) in
        _ = try blist.allocate(count: 5_000)
    }
    t.expectEqual(blist.freeBlocks, 0, "failed allocations change nothing")
}

private func fragmentedTreeRefusesLongRun(_ t: inout TestContext) {
    guard var blist = makeBlist(8_192, &t) else { return }
    for block in stride(from: UInt64(1), to: 8_192, by: 2) {
        expectNoError("fill odd block", &t) { () throws(BlistError) in try blist.fill(start: block, count: 1) }
    }
    t.expectEqual(blist.freeBlocks, 4_096, "half the tree free")
    t.expectEqual(blist.largestFreeRun, 1, "but only single blocks")
    let before = blist
    expectError(.exhausted, "two blocks in a checkerboard", &t) { () throws(BlistError) in
        _ = try blist.allocate(count: 2)
    }
    t.expect(blist == before, "refusal changes nothing")
    t.expectEqual(allocated(&blist, 1), 0, "a single block still fits")
}

private func freeThenReuse(_ t: inout TestContext) {
    guard var blist = makeBlist(256, &t) else { return }
    t.expectEqual(allocated(&blist, 256), 0, "whole tree")
    expectNoError("free 100..<132", &t) { () throws(BlistError) in try blist.free(start: 100, count: 32) }
    t.expectEqual(allocated(&blist, 32), 100, "the freed run is reused")
    expectNoError("free 7", &t) { () throws(BlistError) in try blist.free(start: 7, count: 1) }
    t.expectEqual(allocated(&blist, 1), 7, "a freed single block is reused")
    t.expectEqual(blist.freeBlocks, 0, "nothing left")
}

private func nextFitCursorMovesOnAndWraps(_ t: inout TestContext) {
    guard var blist = makeBlist(100, &t) else { return }
    t.expectEqual(allocated(&blist, 1), 0, "first block")
    expectNoError("free block 0", &t) { () throws(BlistError) in try blist.free(start: 0, count: 1) }
    t.expectEqual(allocated(&blist, 1), 1, "next-fit moves on past a just-freed block")
    t.expectEqual(allocated(&blist, 99), UInt64.max, "99 blocks do not fit any more")
    t.expectEqual(allocated(&blist, 98), 2, "the rest of the tree")
    t.expectEqual(blist.cursor, 0, "the cursor wraps at the end")
    t.expectEqual(allocated(&blist, 1), 0, "wrapped allocation starts at block 0")
}

private func doubleFreeRejectedWithoutChange(_ t: inout TestContext) {
    guard var blist = makeBlist(500, &t) else { return }
    let start = allocated(&blist, 100)
    expectNoError("free a piece", &t) { () throws(BlistError) in try blist.free(start: start + 10, count: 10) }
    let before = blist
    expectError(.notAllocated, "free the same piece again", &t) { () throws(BlistError) in
        try blist.free(start: start + 10, count: 10)
    }
    expectError(.notAllocated, "free a range overlapping the piece", &t) { () throws(BlistError) in
        try blist.free(start: start, count: 100)
    }
    expectError(.notAllocated, "free a never-allocated block", &t) { () throws(BlistError) in
        try blist.free(start: 499, count: 1)
    }
    t.expect(blist == before, "refused frees change nothing")
}

private func outOfRangeRejectedWithoutChange(_ t: inout TestContext) {
    guard var blist = makeBlist(500, &t) else { return }
    expectNoError("fill whole tree", &t) { () throws(BlistError) in try blist.fill(start: 0, count: 500) }
    let before = blist
    expectError(.outOfRange, "free past the end", &t) { () throws(BlistError) in try blist.free(start: 500, count: 1) }
    expectError(.outOfRange, "free straddling the end", &t) { () throws(BlistError) in
        try blist.free(start: 499, count: 2)
    }
    expectError(.outOfRange, "free with an overflowing count", &t) { () throws(BlistError) in
        try blist.free(start: 2, count: UInt64.max)
    }
    expectError(.invalidCount, "free of zero blocks", &t) { () throws(BlistError) in
        try blist.free(start: 3, count: 0)
    }
    expectError(.invalidCount, "allocate zero blocks", &t) { () throws(BlistError) in
        _ = try blist.allocate(count: 0)
    }
    t.expect(blist == before, "refused calls change nothing")
}

private func fillCountsAlreadyAllocatedBlocks(_ t: inout TestContext) {
    guard var blist = makeBlist(3_000, &t) else { return }
    t.expectEqual(allocated(&blist, 10), 0, "blocks 0..<10")
    t.expectEqual((try? blist.fill(start: 5, count: 20)) ?? 999, 5, "fill over 5 allocated blocks")
    t.expectEqual(blist.freeBlocks, 2_975, "fill allocated the other 15")
    t.expectEqual((try? blist.fill(start: 0, count: 25)) ?? 999, 25, "fill of an allocated range")
    expectError(.outOfRange, "fill past the end", &t) { () throws(BlistError) in
        try blist.fill(start: 2_990, count: 11)
    }
    t.expect(blist.isConsistent, "consistent after fills")
}

private func allocateBetweenTakesLongestRun(_ t: inout TestContext) {
    guard var blist = makeBlist(1_000, &t) else { return }
    expectNoError("fill whole tree", &t) { () throws(BlistError) in try blist.fill(start: 0, count: 1_000) }
    expectNoError("free 5 at 100", &t) { () throws(BlistError) in try blist.free(start: 100, count: 5) }
    expectNoError("free 20 at 300", &t) { () throws(BlistError) in try blist.free(start: 300, count: 20) }
    let clipped = try? blist.allocate(atLeast: 1, upTo: 16)
    t.expect(clipped == BlockRun(start: 300, count: 16), "longest run clipped to upTo")
    let longest = try? blist.allocate(atLeast: 2, upTo: 32)
    t.expect(longest == BlockRun(start: 100, count: 5), "longest remaining run, shorter than upTo")
    expectError(.exhausted, "nothing as long as atLeast", &t) { () throws(BlistError) in
        _ = try blist.allocate(atLeast: 5, upTo: 32)
    }
}

private func shrinkBelowAllocatedRejected(_ t: inout TestContext) {
    guard var blist = makeBlist(5_000, &t) else { return }
    expectNoError("allocate block 4200", &t) { () throws(BlistError) in try blist.fill(start: 4_200, count: 1) }
    let before = blist
    expectError(.shrinkWouldDropAllocated, "shrink over an allocated block", &t) { () throws(BlistError) in
        try blist.resize(blocks: 4_200)
    }
    t.expect(blist == before, "refused shrink changes nothing")
    expectNoError("shrink to just past it", &t) { () throws(BlistError) in try blist.resize(blocks: 4_201) }
    t.expectEqual(blist.freeBlocks, 4_200, "free blocks after shrink")
    t.expect(blist.isConsistent, "consistent after shrink")
}

private func growAddsFreeBlocksKeepsAllocations(_ t: inout TestContext) {
    guard var blist = makeBlist(100, &t) else { return }
    expectNoError("fill whole tree", &t) { () throws(BlistError) in try blist.fill(start: 0, count: 100) }
    expectNoError("grow", &t) { () throws(BlistError) in try blist.resize(blocks: 70_000) }
    t.expectEqual(blist.freeBlocks, 69_900, "new blocks are free")
    t.expect(blist.isAllocated(99), "old allocations stay")
    t.expectEqual(allocated(&blist, 69_900), 100, "the new blocks form one run")
    t.expect(blist.isConsistent, "consistent after grow")
}

private func histogramCountsRunsByPowerOfTwo(_ t: inout TestContext) {
    guard var blist = makeBlist(5_000, &t) else { return }
    expectNoError("fill whole tree", &t) { () throws(BlistError) in try blist.fill(start: 0, count: 5_000) }
    for (start, count): (UInt64, UInt64) in [(0, 1), (10, 2), (20, 3), (60, 8), (1_000, 1_500), (4_999, 1)] {
        expectNoError("free a run", &t) { () throws(BlistError) in try blist.free(start: start, count: count) }
    }
    let histogram = blist.freeRunHistogram()
    t.expectEqual(histogram[0], 2, "runs of 1")
    t.expectEqual(histogram[1], 2, "runs of 2-3")
    t.expectEqual(histogram[2], 0, "runs of 4-7")
    t.expectEqual(histogram[3], 1, "runs of 8-15")
    t.expectEqual(histogram[10], 1, "runs of 1024-2047")
}

private func memoryNearOneBitPerBlock(_ t: inout TestContext) {
    for blocks: UInt64 in [1 << 10, 1 << 16, 1 << 20] {
        guard let blist = makeBlist(blocks, &t) else { return }
        // 1.1 bits per block plus 512 bytes of fixed overhead.
        t.expect(blist.memoryBytes * 80 <= blocks * 11 + 512 * 80, "at most 1.1 bits per block plus 512 bytes")
    }
}

/// 3000 seeded allocations and frees on 1025 blocks, against a one-byte-per-block model.
private func randomOperationsMatchBitmapModel(_ t: inout TestContext) {
    let blocks: UInt64 = 1_025
    guard var blist = makeBlist(blocks, &t) else { return }
    var model = [Bool](repeating: true, count: Int(blocks))
    var modelFree = blocks
    var runs: [BlockRun] = []
    var random = SplitMix64(seed: 0x5EED_B115)  // same session on every boot
    for _ in 0..<3_000 {
        if random.below(100) < 55 || runs.isEmpty {
            let count = 1 + random.below(random.below(4) == 0 ? 100 : 8)
            if let start = try? blist.allocate(count: count) {
                for block in start..<start + count {
                    t.expect(model[Int(block)], "allocated block was free in the model")
                    model[Int(block)] = false
                }
                modelFree -= count
                runs.append(BlockRun(start: start, count: count))
            } else {
                t.expect(count > modelLongestRun(model), "refused only when no run fits")
            }
        } else {
            let run = runs.remove(at: Int(random.below(UInt64(runs.count))))
            expectNoError("free a live run", &t) { () throws(BlistError) in
                try blist.free(start: run.start, count: run.count)
            }
            for block in run.start..<run.end { model[Int(block)] = true }
            modelFree += run.count
        }
        t.expectEqual(blist.freeBlocks, modelFree, "free blocks agree with the model")
        t.expectEqual(blist.largestFreeRun, modelLongestRun(model), "largest run agrees with the model")
        if t.hasFailed { return }
    }
    for block in 0..<Int(blocks) where blist.isAllocated(UInt64(block)) == model[block] {
        t.expect(false, "block state agrees with the model")
    }
    t.expect(blist.isConsistent, "consistent after the session")
}

private func modelLongestRun(_ model: [Bool]) -> UInt64 {
    var longest: UInt64 = 0
    var run: UInt64 = 0
    for free in model {
        run = free ? run + 1 : 0
        longest = max(longest, run)
    }
    return longest
}
