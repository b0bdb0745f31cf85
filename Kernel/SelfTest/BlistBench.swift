// BlistBench: cycles per blist operation on a tree of 2^22 blocks (16 GiB of swap, 544 KiB
// of blist), next to a baseline (a 4 KiB store loop) measured in the same run. Besides the
// trees, the heap holds at most two arrays of `operations` words.
// Parameters and memory per block are printed as `value` lines; nothing here judges them.
// The tree is created once per measurement so each starts from a known state. A failed
// allocation in a set-up step is a benchmark bug: `try!` turns it into a panic.

/// The blist benchmark suite.
let blistBenchmarks = BenchmarkSuite("blist") { bench in
    let blocks: UInt64 = 1 << 22
    let operations = 20_000
    bench.value("tree_blocks", blocks, unit: "blocks")
    bench.value("operations", UInt64(operations), unit: "ops")
    reportMemory(bench)

    var scratch = [UInt64](repeating: 0, count: 512)
    bench.measure("baseline_write_4k", operations: operations) {
        for i in 0..<operations {
            for w in 0..<512 { scratch[w] = UInt64(truncatingIfNeeded: i &+ w) }
        }
    }

    benchmarkSingleBlocks(bench, blocks: blocks, operations: operations)
    benchmarkRuns(bench, blocks: blocks, operations: operations)
    benchmarkFailures(bench, blocks: blocks, operations: operations)
}

/// Bytes of blist per block, in thousandths of a bit, for sizes from 1 Ki to 2^22 blocks.
private func reportMemory(_ bench: BenchmarkContext) {
    for shift in [10, 16, 22] as [UInt64] {
        let blist = try! Blist(blocks: 1 << shift)
        let millibits = (blist.memoryBytes * 8_000) >> shift
        switch shift {
        case 10: bench.value("memory_millibits_per_block_2^10", millibits, unit: "millibits")
        case 16: bench.value("memory_millibits_per_block_2^16", millibits, unit: "millibits")
        default: bench.value("memory_millibits_per_block_2^22", millibits, unit: "millibits")
        }
    }
}

/// One-block allocations on a fresh tree, then frees in a scattered order, then reuse.
private func benchmarkSingleBlocks(_ bench: BenchmarkContext, blocks: UInt64, operations: Int) {
    var blist = try! Blist(blocks: blocks)
    var starts = [UInt64](repeating: 0, count: operations)
    bench.measure("allocate_1_fresh", operations: operations) {
        for i in 0..<operations { starts[i] = try! blist.allocate(count: 1) }
    }
    // Free every other block first (fragmenting), then the rest.
    bench.measure("free_1_scattered", operations: operations) {
        for i in stride(from: 0, to: operations, by: 2) { try! blist.free(start: starts[i], count: 1) }
        for i in stride(from: 1, to: operations, by: 2) { try! blist.free(start: starts[i], count: 1) }
    }
    bench.measure("allocate_free_1_pair", operations: 2 * operations) {
        for _ in 0..<operations {
            let start = try! blist.allocate(count: 1)
            try! blist.free(start: start, count: 1)
        }
    }
}

/// Swap-sized runs (1-32 blocks) on a tree fragmented to about 65 % occupancy.
private func benchmarkRuns(_ bench: BenchmarkContext, blocks: UInt64, operations: Int) {
    var blist = try! Blist(blocks: blocks)
    var state: UInt64 = 0x2545_F491_4F6C_DD1D
    func random(_ bound: UInt64) -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state % bound
    }
    // Set-up, not timed and without a heap-hungry list of runs: alternate free gaps of 1-64
    // blocks with allocated stretches of 1-128 blocks (about 65 % allocated).
    var block: UInt64 = 0
    while block < blocks {
        block += 1 + random(64)
        let stretch = min(1 + random(128), blocks - min(block, blocks))
        if stretch > 0 { try! blist.fill(start: block, count: stretch) }
        block += stretch
    }
    bench.value("fragmented_free_blocks", blist.freeBlocks, unit: "blocks")
    var counts = [UInt64](repeating: 0, count: operations)
    for i in 0..<operations { counts[i] = 1 + random(32) }
    var starts = [UInt64](repeating: 0, count: operations)
    bench.measure("allocate_1_to_32_fragmented", operations: operations) {
        for i in 0..<operations { starts[i] = try! blist.allocate(count: counts[i]) }
    }
    bench.measure("free_1_to_32_fragmented", operations: operations) {
        for i in 0..<operations { try! blist.free(start: starts[i], count: counts[i]) }
    }
}

/// Requests that must fail: on a full tree, and on a checkerboard with plenty of free blocks.
private func benchmarkFailures(_ bench: BenchmarkContext, blocks: UInt64, operations: Int) {
    var full = try! Blist(blocks: blocks)
    _ = try! full.allocate(count: blocks)
    var failures = 0
    bench.measure("allocate_fails_full_tree", operations: operations) {
        for _ in 0..<operations where (try? full.allocate(count: 1)) == nil { failures += 1 }
    }
    var checkerboard = try! Blist(blocks: 1 << 16)
    for block in stride(from: UInt64(1), to: 1 << 16, by: 2) { try! checkerboard.fill(start: block, count: 1) }
    bench.measure("allocate_2_fails_fragmented_tree", operations: operations) {
        for _ in 0..<operations where (try? checkerboard.allocate(count: 2)) == nil { failures += 1 }
    }
    bench.value("failed_allocations", UInt64(failures), unit: "ops")
}
