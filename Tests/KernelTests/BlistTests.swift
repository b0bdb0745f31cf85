// BlistTests: the blist against a plain bitmap model, plus explicit edge cases.
// Invariants: every random run is seeded and prints nothing unless it fails; after each
// operation the model and the blist agree on the size, the free count, the cursor, the state
// of every block (so every live run) and, where the model can afford its O(n) scan, the
// longest free run, the histogram and the blist's own consistency check. A refused operation
// must leave the blist exactly as it was.

import XCTest
@testable import Kernel

// MARK: Reference model

/// The obvious implementation: one bit per block, searches one block at a time.
struct ReferenceBitmap {
    private(set) var words: [UInt64]  // bit set = free, the same layout as Blist.leaves
    private(set) var blocks: Int
    private(set) var freeCount: Int
    private(set) var cursor = 0

    init(blocks: Int) {
        self.blocks = blocks
        words = [UInt64](repeating: ~0, count: (blocks + 63) / 64)
        freeCount = blocks
        for block in blocks..<words.count * 64 { setFree(block, false) }
    }

    func isFree(_ block: Int) -> Bool { words[block / 64] & (1 << UInt64(block % 64)) != 0 }

    /// Calls `body` with a block-state test that skips the array's per-call overhead (the
    /// scans below visit every block and must stay fast in debug builds).
    private func scanning<T>(_ body: ((Int) -> Bool) -> T) -> T {
        words.withUnsafeBufferPointer { words in
            body { block in words[block >> 6] & (1 << UInt64(block & 63)) != 0 }
        }
    }

    private mutating func setFree(_ block: Int, _ free: Bool) {
        if free {
            words[block / 64] |= 1 << UInt64(block % 64)
        } else {
            words[block / 64] &= ~(1 << UInt64(block % 64))
        }
    }

    /// The first `start >= lower` with `count` free blocks from `start` on.
    func firstFit(count: Int, atOrAfter lower: Int) -> Int? {
        scanning { isFree in
            var run = 0
            var block = lower
            while block < blocks {
                run = isFree(block) ? run + 1 : 0
                if run == count { return block + 1 - count }
                block += 1
            }
            return nil
        }
    }

    func longestRun() -> Int {
        scanning { isFree in
            var longest = 0
            var run = 0
            var block = 0
            while block < blocks {
                run = isFree(block) ? run + 1 : 0
                if run > longest { longest = run }
                block += 1
            }
            return longest
        }
    }

    func histogram(bucketCount: Int) -> [UInt64] {
        var buckets = [UInt64](repeating: 0, count: bucketCount)
        var run = 0
        for block in 0...blocks {
            if block < blocks && isFree(block) {
                run += 1
            } else if run > 0 {
                buckets[63 - UInt64(run).leadingZeroBitCount] += 1
                run = 0
            }
        }
        return buckets
    }

    func freeCount(start: Int, count: Int) -> Int {
        (start..<start + count).filter { isFree($0) }.count
    }

    /// Next-fit, as documented for Blist.allocate(count:).
    mutating func allocate(count: Int) -> Int? {
        guard let start = firstFit(count: count, atOrAfter: cursor) ?? firstFit(count: count, atOrAfter: 0) else {
            return nil
        }
        for block in start..<start + count { setFree(block, false) }
        freeCount -= count
        cursor = start + count == blocks ? 0 : start + count
        return start
    }

    mutating func free(start: Int, count: Int) {
        for block in start..<start + count {
            precondition(!isFree(block), "model: double free")
            setFree(block, true)
        }
        freeCount += count
    }

    /// Marks the range allocated; returns how many blocks were already allocated.
    mutating func fill(start: Int, count: Int) -> Int {
        let wereFree = freeCount(start: start, count: count)
        for block in start..<start + count { setFree(block, false) }
        freeCount -= wereFree
        return count - wereFree
    }

    /// Grows (new blocks free) or shrinks; false, and no change, when the cut-off tail holds
    /// an allocated block.
    mutating func resize(blocks newBlocks: Int) -> Bool {
        if newBlocks < blocks {
            let tail = blocks - newBlocks
            guard freeCount(start: newBlocks, count: tail) == tail else { return false }
            for block in newBlocks..<blocks { setFree(block, false) }
            words.removeLast(words.count - (newBlocks + 63) / 64)
            freeCount -= tail
        } else {
            words.append(contentsOf: [UInt64](repeating: 0, count: (newBlocks + 63) / 64 - words.count))
            for block in blocks..<newBlocks { setFree(block, true) }
            freeCount += newBlocks - blocks
        }
        blocks = newBlocks
        if cursor >= blocks { cursor = 0 }
        return true
    }
}

/// The kernel's SplitMix64 with the helpers these tests use, so every failure can be replayed.
struct SeededRandom {
    var generator: SplitMix64
    init(state: UInt64) { generator = SplitMix64(seed: state) }
    mutating func next() -> UInt64 { generator.next() }
    mutating func below(_ bound: Int) -> Int { Int(generator.below(UInt64(max(bound, 1)))) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
}

// MARK: Random operations against the model

/// One seeded random session: a blist, the model and the runs the test owns.
struct RandomSession {
    var blist: Blist
    var model: ReferenceBitmap
    var live: [(start: Int, count: Int)] = []
    var random: SeededRandom
    let baseBlocks: Int
    let fullCheckEvery: Int
    var step = 0

    init(blocks: Int, seed: UInt64, fullCheckEvery: Int) throws {
        blist = try Blist(blocks: UInt64(blocks))
        model = ReferenceBitmap(blocks: blocks)
        random = SeededRandom(state: seed)
        baseBlocks = blocks
        self.fullCheckEvery = fullCheckEvery
    }

    var blocks: Int { model.blocks }

    /// Mostly swap-sized runs, sometimes runs that cross leaves and subtrees, rarely huge.
    mutating func randomCount() -> Int {
        let limit: Int
        switch random.below(100) {
        case 0..<60: limit = 8
        case 60..<85: limit = 80
        case 85..<95: limit = max(blocks / 8, 1)
        default: limit = blocks
        }
        return 1 + random.below(min(limit, blocks))
    }

    /// A random range inside the tree.
    mutating func randomRange() -> (start: Int, count: Int) {
        let start = random.below(blocks)
        return (start, 1 + random.below(min(blocks - start, random.chance(80) ? 100 : blocks)))
    }

    mutating func step(_ file: StaticString, _ line: UInt) {
        step += 1
        let nearlyFull = model.freeCount < blocks / 8
        switch random.below(100) {
        case 0..<38 where !nearlyFull: allocate(file, line)
        case 38..<46: allocateBetween(file, line)
        case 0..<78: freeLiveRun(file, line)
        case 78..<84: fill(file, line)
        case 84..<91: refusedOperation(file, line)
        case 91..<94: resize(file, line)
        default: allocateMoreThanLongest(file, line)
        }
        check(file, line)
    }

    mutating func allocate(_ file: StaticString, _ line: UInt) {
        let count = randomCount()
        let expected = model.allocate(count: count)
        do {
            let start = try blist.allocate(count: UInt64(count))
            XCTAssertEqual(Int(start), expected, "allocate(\(count)) at step \(step)", file: file, line: line)
            live.append((Int(start), count))
        } catch {
            XCTAssertEqual(error, .exhausted, file: file, line: line)
            XCTAssertNil(expected, "blist refused allocate(\(count)) the model could do, step \(step)",
                         file: file, line: line)
        }
    }

    mutating func allocateBetween(_ file: StaticString, _ line: UInt) {
        guard isAffordable || random.chance(5) else { return }
        let atLeast = randomCount()
        let upTo = atLeast + random.below(200)
        let longest = model.longestRun()
        let count = min(upTo, longest)
        do {
            let run = try blist.allocate(atLeast: UInt64(atLeast), upTo: UInt64(upTo))
            XCTAssertEqual(Int(run.count), count, "allocate(atLeast: \(atLeast), upTo: \(upTo)) length",
                           file: file, line: line)
            let expected = model.allocate(count: count)
            XCTAssertEqual(Int(run.start), expected, "allocate(atLeast:upTo:) placement, step \(step)",
                           file: file, line: line)
            live.append((Int(run.start), Int(run.count)))
        } catch {
            XCTAssertEqual(error, .exhausted, file: file, line: line)
            XCTAssertLessThan(count, atLeast, "refused although a run of \(atLeast) exists", file: file, line: line)
        }
    }

    /// Frees a whole live run or a piece of one (swap frees page by page).
    mutating func freeLiveRun(_ file: StaticString, _ line: UInt) {
        guard !live.isEmpty else { return }
        let index = random.below(live.count)
        let run = live[index]
        var start = run.start
        var count = run.count
        if random.chance(30) && run.count > 1 {
            start = run.start + random.below(run.count)
            count = 1 + random.below(run.start + run.count - start)
        }
        XCTAssertNoThrow(try blist.free(start: UInt64(start), count: UInt64(count)), file: file, line: line)
        model.free(start: start, count: count)
        live.remove(at: index)
        if start > run.start { live.append((run.start, start - run.start)) }
        if start + count < run.start + run.count {
            live.append((start + count, run.start + run.count - start - count))
        }
    }

    /// Fills a random range; the blocks it newly allocates become live runs.
    mutating func fill(_ file: StaticString, _ line: UInt) {
        let range = randomRange()
        var pieceStart: Int?
        for block in range.start...range.start + range.count {
            let isNew = block < range.start + range.count && model.isFree(block)
            if isNew && pieceStart == nil { pieceStart = block }
            if !isNew, let first = pieceStart {
                live.append((first, block - first))
                pieceStart = nil
            }
        }
        let expected = model.fill(start: range.start, count: range.count)
        XCTAssertEqual(try? blist.fill(start: UInt64(range.start), count: UInt64(range.count)), UInt64(expected),
                       "fill(\(range.start), \(range.count))", file: file, line: line)
    }

    /// An operation that must throw and change nothing.
    mutating func refusedOperation(_ file: StaticString, _ line: UInt) {
        let before = blist
        let expected: BlistError
        let size = UInt64(blocks)
        var thrown: BlistError?
        func capture(_ body: () throws(BlistError) -> Void) {
            do { try body() } catch { thrown = error }
        }
        switch random.below(6) {
        case 0:
            // A range with at least one free block: a double free.
            guard model.freeCount > 0 else { return }
            var block = random.below(blocks)
            while !model.isFree(block) { block = (block + 1) % blocks }
            let start = max(0, block - random.below(4))
            let count = min(blocks - start, block - start + 1 + random.below(4))
            expected = .notAllocated
            capture { () throws(BlistError) in try blist.free(start: UInt64(start), count: UInt64(count)) }
        case 1:
            expected = .outOfRange
            let start = UInt64(random.below(blocks))
            capture { () throws(BlistError) in try blist.free(start: start, count: size - start + 1) }
        case 2:
            expected = .outOfRange
            capture { () throws(BlistError) in try blist.fill(start: size, count: 1) }
        case 3:
            expected = .outOfRange
            capture { () throws(BlistError) in try blist.free(start: 1, count: UInt64.max) }
        case 4:
            expected = .invalidCount
            capture { () throws(BlistError) in _ = try blist.allocate(count: 0) }
        default:
            expected = .invalidCount
            capture { () throws(BlistError) in _ = try blist.allocate(atLeast: 5, upTo: 4) }
        }
        XCTAssertEqual(thrown, expected, "refused operation at step \(step)", file: file, line: line)
        XCTAssertTrue(blist == before, "a refused operation changed the blist at step \(step)", file: file, line: line)
    }

    mutating func resize(_ file: StaticString, _ line: UInt) {
        // Small trees move anywhere in [n/2, 3n/2]; large ones by a few leaves, which keeps
        // the model's block-by-block resize affordable.
        let reach = min(baseBlocks / 2, 5_000)
        let newBlocks = max(1, baseBlocks - reach + random.below(2 * reach + 1))
        let before = blist
        let accepted = model.resize(blocks: newBlocks)
        do {
            try blist.resize(blocks: UInt64(newBlocks))
            XCTAssertTrue(accepted, "resize(\(newBlocks)) accepted with allocated blocks in the tail",
                          file: file, line: line)
        } catch {
            XCTAssertEqual(error, .shrinkWouldDropAllocated, file: file, line: line)
            XCTAssertFalse(accepted, "resize(\(newBlocks)) refused", file: file, line: line)
            XCTAssertTrue(blist == before, "a refused resize changed the blist", file: file, line: line)
        }
    }

    /// Asking for one block more than the longest run must fail at once.
    mutating func allocateMoreThanLongest(_ file: StaticString, _ line: UInt) {
        let count = blist.largestFreeRun + 1
        guard count <= UInt64(blocks) else { return }
        let before = blist
        XCTAssertThrowsError(try blist.allocate(count: count), file: file, line: line) { error in
            XCTAssertEqual(error as? BlistError, .exhausted, file: file, line: line)
        }
        XCTAssertTrue(blist == before, "a failed allocation changed the blist", file: file, line: line)
    }

    var isAffordable: Bool { blocks <= 20_000 }

    /// The cheap checks after every step; the O(n) ones too when affordable or due.
    func check(_ file: StaticString, _ line: UInt) {
        XCTAssertEqual(Int(blist.blocks), model.blocks, "blocks, step \(step)", file: file, line: line)
        XCTAssertEqual(Int(blist.freeBlocks), model.freeCount, "free blocks, step \(step)", file: file, line: line)
        XCTAssertEqual(Int(blist.cursor), model.cursor, "cursor, step \(step)", file: file, line: line)
        XCTAssertTrue(blist.leaves == model.words, "block states differ, step \(step)", file: file, line: line)
        for run in live {
            XCTAssertTrue(blist.isAllocated(UInt64(run.start)) && blist.isAllocated(UInt64(run.start + run.count - 1)),
                          "live run \(run) not allocated, step \(step)", file: file, line: line)
        }
        guard isAffordable || step % fullCheckEvery == 0 else { return }
        XCTAssertEqual(Int(blist.largestFreeRun), model.longestRun(), "largest free run, step \(step)",
                       file: file, line: line)
        XCTAssertTrue(blist.isConsistent, "summaries inconsistent, step \(step)", file: file, line: line)
        if step % 16 == 0 {
            XCTAssertEqual(blist.freeRunHistogram(), model.histogram(bucketCount: blist.histogramBucketCount),
                           "histogram, step \(step)", file: file, line: line)
        }
    }
}

final class BlistTests: XCTestCase {
    /// Runs `operations` random steps on a tree of `blocks` blocks; returns the steps run.
    @discardableResult
    func runRandom(blocks: Int, operations: Int, seed: UInt64, fullCheckEvery: Int = 50,
                   file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        var session = try RandomSession(blocks: blocks, seed: seed, fullCheckEvery: fullCheckEvery)
        for _ in 0..<operations {
            session.step(file, line)
            if testRun?.failureCount ?? 0 > 0 {
                XCTFail("stopped: blocks \(blocks) seed \(seed) step \(session.step)", file: file, line: line)
                break
            }
        }
        return session.step
    }

    /// Leaf radix 64, node radix 16: sizes at, just below and just above each boundary.
    func testRandomOperationsOnTinyAndLeafSizedTrees() throws {
        var total = 0
        for (blocks, operations) in [(1, 2_000), (2, 2_000), (63, 6_000), (64, 6_000), (65, 6_000), (127, 4_000)] {
            total += try runRandom(blocks: blocks, operations: operations, seed: UInt64(blocks) &* 7919)
        }
        XCTAssertEqual(total, 26_000)
    }

    func testRandomOperationsAroundFirstInnerLevel() throws {
        var total = 0
        for (blocks, operations) in [(1_023, 8_000), (1_024, 8_000), (1_025, 8_000), (4_096, 6_000)] {
            total += try runRandom(blocks: blocks, operations: operations, seed: UInt64(blocks) &* 104_729)
        }
        XCTAssertEqual(total, 30_000)
    }

    func testRandomOperationsAroundSecondInnerLevel() throws {
        var total = 0
        for (blocks, operations) in [(16_383, 5_000), (16_384, 5_000), (16_385, 5_000)] {
            total += try runRandom(blocks: blocks, operations: operations, seed: UInt64(blocks) &* 1_299_709)
        }
        XCTAssertEqual(total, 15_000)
    }

    func testRandomOperationsOnOddLargeTrees() throws {
        var total = 0
        for (blocks, operations) in [(100_003, 4_000), (262_145, 3_000), (4_194_305, 1_000)] {
            total += try runRandom(blocks: blocks, operations: operations, seed: UInt64(blocks) &* 15_485_863,
                                   fullCheckEvery: 100)
        }
        XCTAssertEqual(total, 8_000)
    }

    func testRandomOperationsWithManySeeds() throws {
        var total = 0
        for seed in 1...24 as ClosedRange<UInt64> {
            let blocks = 1 + Int(seed * 2_654_435_761 % 3_000)
            total += try runRandom(blocks: blocks, operations: 1_000, seed: seed)
        }
        XCTAssertEqual(total, 24_000)
    }
}

// MARK: Edge cases

/// The error `body` throws, or nil. (Closures infer untyped throws in Swift 5 mode, so the
/// error is cast back; anything but a BlistError fails the test.)
func blistError<T>(_ body: () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> BlistError? {
    do {
        _ = try body()
        return nil
    } catch let error as BlistError {
        return error
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
        return nil
    }
}

final class BlistEdgeCaseTests: XCTestCase {
    func testCreateRejectsZeroAndOversizedTrees() {
        XCTAssertEqual(blistError { try Blist(blocks: 0) }, .invalidSize)
        XCTAssertEqual(blistError { try Blist(blocks: Blist.maximumBlocks + 1) }, .invalidSize)
        XCTAssertEqual(blistError { try Blist(blocks: UInt64.max) }, .invalidSize)
        XCTAssertNil(blistError { try Blist(blocks: 1) })
    }

    func testNewTreeIsOneFreeRun() throws {
        for blocks: UInt64 in [1, 63, 64, 65, 1_023, 1_024, 1_025, 16_385, 100_003] {
            let blist = try Blist(blocks: blocks)
            XCTAssertEqual(blist.freeBlocks, blocks)
            XCTAssertEqual(blist.allocatedBlocks, 0)
            XCTAssertEqual(blist.largestFreeRun, blocks)
            XCTAssertEqual(blist.cursor, 0)
            var histogram = [UInt64](repeating: 0, count: blist.histogramBucketCount)
            histogram[histogram.count - 1] = 1
            XCTAssertEqual(blist.freeRunHistogram(), histogram, "\(blocks) blocks")
            XCTAssertTrue(blist.isConsistent)
        }
    }

    func testOneBlockTreeAllocatesFreesAndReuses() throws {
        var blist = try Blist(blocks: 1)
        XCTAssertEqual(try blist.allocate(count: 1), 0)
        XCTAssertEqual(blistError { try blist.allocate(count: 1) }, .exhausted)
        XCTAssertEqual(blistError { try blist.allocate(count: 2) }, .exhausted)
        try blist.free(start: 0, count: 1)
        XCTAssertEqual(blistError { try blist.free(start: 0, count: 1) }, .notAllocated)
        XCTAssertEqual(try blist.allocate(count: 1), 0)
        XCTAssertTrue(blist.isConsistent)
    }

    func testExactlyFullTreeRefusesEveryAllocation() throws {
        for blocks: UInt64 in [1, 64, 65, 1_024, 16_385, 262_145] {
            var blist = try Blist(blocks: blocks)
            XCTAssertEqual(try blist.allocate(count: blocks), 0)
            XCTAssertEqual(blist.freeBlocks, 0)
            XCTAssertEqual(blist.largestFreeRun, 0)
            XCTAssertEqual(blist.cursor, 0, "the cursor wraps past the end")
            let full = blist
            XCTAssertEqual(blistError { try blist.allocate(count: 1) }, .exhausted)
            XCTAssertEqual(blistError { try blist.allocate(atLeast: 1, upTo: 1) }, .exhausted)
            XCTAssertEqual(blist, full)
            XCTAssertEqual(blist.freeRunHistogram(), [UInt64](repeating: 0, count: blist.histogramBucketCount))
            try blist.free(start: 0, count: blocks)
            XCTAssertEqual(blist.largestFreeRun, blocks)
            XCTAssertTrue(blist.isConsistent)
        }
    }

    /// A run straddling each boundary (leaf word, level 1, 2 and 3 nodes) is found whole.
    func testRunsCrossEveryLevelBoundary() throws {
        let blocks: UInt64 = 2 * 262_144 + 5
        var blist = try Blist(blocks: blocks)
        for boundary: UInt64 in [64, 1_024, 16_384, 262_144] {
            let splits: [(UInt64, UInt64)] = [(1, 1), (1, 63), (63, 1), (40, 100), (64, 40), (5, boundary + 3)]
            for (before, after) in splits {
                try blist.fill(start: 0, count: blocks)
                try blist.free(start: boundary - before, count: before + after)
                XCTAssertEqual(blist.largestFreeRun, before + after)
                XCTAssertEqual(try blist.allocate(count: before + after), boundary - before,
                               "run of \(before)+\(after) around \(boundary)")
                XCTAssertEqual(blist.freeBlocks, 0)
                XCTAssertTrue(blist.isConsistent)
                try blist.free(start: 0, count: blocks)
            }
        }
    }

    /// A run made of a tail, whole free subtrees and a head is found from the cursor and from 0.
    func testRunThroughWholeFreeSubtreesIsFound() throws {
        var blist = try Blist(blocks: 70_000)
        try blist.fill(start: 0, count: 70_000)
        try blist.free(start: 1_019, count: 3 * 16_384 + 11)
        try blist.free(start: 10, count: 3)
        XCTAssertEqual(try blist.allocate(count: 3), 10)
        XCTAssertEqual(try blist.allocate(count: 3 * 16_384), 1_019)
        XCTAssertEqual(try blist.allocate(count: 11), 1_019 + 3 * 16_384)
        XCTAssertEqual(blist.freeBlocks, 0)
        XCTAssertTrue(blist.isConsistent)
    }

    func testFillOverPartlyAllocatedRangeCountsAlreadyAllocated() throws {
        var blist = try Blist(blocks: 3_000)
        XCTAssertEqual(try blist.allocate(count: 10), 0)
        XCTAssertEqual(try blist.fill(start: 5, count: 20), 5)
        XCTAssertEqual(blist.freeBlocks, 3_000 - 25)
        XCTAssertEqual(try blist.fill(start: 0, count: 25), 25, "a fill of a full range allocates nothing")
        XCTAssertEqual(try blist.fill(start: 1_000, count: 2_000), 0)
        XCTAssertEqual(try blist.fill(start: 0, count: 3_000), 25 + 2_000)
        XCTAssertEqual(blist.freeBlocks, 0)
        try blist.free(start: 0, count: 3_000)
        XCTAssertEqual(blistError { try blist.fill(start: 2_990, count: 11) }, .outOfRange)
        XCTAssertEqual(blistError { try blist.fill(start: 0, count: 0) }, .invalidCount)
        XCTAssertEqual(blist.freeBlocks, 3_000)
        XCTAssertTrue(blist.isConsistent)
    }

    func testDoubleAndOverlappingFreesAreRejectedWithoutChange() throws {
        var blist = try Blist(blocks: 500)
        let start = try blist.allocate(count: 100)
        try blist.free(start: start + 10, count: 10)
        let before = blist
        XCTAssertEqual(blistError { try blist.free(start: start + 10, count: 10) }, .notAllocated)
        XCTAssertEqual(blistError { try blist.free(start: start, count: 100) }, .notAllocated)
        XCTAssertEqual(blistError { try blist.free(start: start + 95, count: 10) }, .notAllocated)
        XCTAssertEqual(blistError { try blist.free(start: 499, count: 1) }, .notAllocated)
        XCTAssertEqual(blist, before)
    }

    func testOutOfRangeRequestsAreRejectedWithoutChange() throws {
        var blist = try Blist(blocks: 500)
        try blist.fill(start: 0, count: 500)
        let before = blist
        XCTAssertEqual(blistError { try blist.free(start: 500, count: 1) }, .outOfRange)
        XCTAssertEqual(blistError { try blist.free(start: 499, count: 2) }, .outOfRange)
        XCTAssertEqual(blistError { try blist.free(start: 2, count: UInt64.max) }, .outOfRange)
        XCTAssertEqual(blistError { try blist.free(start: UInt64.max, count: 2) }, .outOfRange)
        XCTAssertEqual(blistError { try blist.free(start: 3, count: 0) }, .invalidCount)
        XCTAssertEqual(blistError { try blist.freeBlocks(start: 0, count: 501) }, .outOfRange)
        XCTAssertEqual(blistError { try blist.allocate(count: 0) }, .invalidCount)
        XCTAssertEqual(blistError { try blist.allocate(atLeast: 0, upTo: 3) }, .invalidCount)
        XCTAssertEqual(blistError { try blist.allocate(atLeast: 4, upTo: 3) }, .invalidCount)
        XCTAssertEqual(blist, before)
    }

    func testShrinkBelowAllocatedBlocksIsRejected() throws {
        var blist = try Blist(blocks: 5_000)
        try blist.fill(start: 4_200, count: 1)
        let before = blist
        XCTAssertEqual(blistError { try blist.resize(blocks: 4_200) }, .shrinkWouldDropAllocated)
        XCTAssertEqual(blistError { try blist.resize(blocks: 64) }, .shrinkWouldDropAllocated)
        XCTAssertEqual(blistError { try blist.resize(blocks: 0) }, .invalidSize)
        XCTAssertEqual(blistError { try blist.resize(blocks: Blist.maximumBlocks + 1) }, .invalidSize)
        XCTAssertEqual(blist, before)
        try blist.resize(blocks: 4_201)
        XCTAssertEqual(blist.blocks, 4_201)
        XCTAssertEqual(blist.freeBlocks, 4_200)
        XCTAssertEqual(blist.largestFreeRun, 4_200)
        try blist.free(start: 4_200, count: 1)
        try blist.resize(blocks: 1)
        XCTAssertEqual(blist.freeBlocks, 1)
        XCTAssertTrue(blist.isConsistent)
    }

    func testGrowAddsFreeBlocksAndKeepsAllocations() throws {
        var blist = try Blist(blocks: 100)
        try blist.fill(start: 0, count: 100)
        try blist.resize(blocks: 300_000)
        XCTAssertEqual(blist.freeBlocks, 299_900)
        XCTAssertEqual(blist.largestFreeRun, 299_900)
        XCTAssertTrue(blist.isAllocated(99))
        XCTAssertEqual(try blist.allocate(count: 299_900), 100)
        XCTAssertTrue(blist.isConsistent)
        try blist.free(start: 0, count: 300_000)
        XCTAssertEqual(blist.largestFreeRun, 300_000)
    }

    func testAllocateAtLeastUpToTakesLongestAvailableRun() throws {
        var blist = try Blist(blocks: 1_000)
        try blist.fill(start: 0, count: 1_000)
        try blist.free(start: 100, count: 5)
        try blist.free(start: 300, count: 20)
        try blist.free(start: 700, count: 12)
        XCTAssertEqual(try blist.allocate(atLeast: 1, upTo: 16), BlockRun(start: 300, count: 16))
        XCTAssertEqual(try blist.allocate(atLeast: 6, upTo: 32), BlockRun(start: 700, count: 12))
        XCTAssertEqual(blistError { try blist.allocate(atLeast: 6, upTo: 32) }, .exhausted)
        XCTAssertEqual(try blist.allocate(atLeast: 2, upTo: 2), BlockRun(start: 100, count: 2))
        XCTAssertEqual(blist.freeBlocks, 3 + 4)
    }

    func testNextFitCursorSpreadsAllocationsAndWraps() throws {
        var blist = try Blist(blocks: 100)
        XCTAssertEqual(try blist.allocate(count: 1), 0)
        try blist.free(start: 0, count: 1)
        XCTAssertEqual(try blist.allocate(count: 1), 1, "next-fit does not go back to a just-freed block")
        XCTAssertEqual(try blist.allocate(count: 98), 2)
        XCTAssertEqual(blist.cursor, 0, "the cursor wraps after the last block")
        XCTAssertEqual(try blist.allocate(count: 1), 0)
        try blist.free(start: 50, count: 3)
        XCTAssertEqual(try blist.allocate(count: 2), 50, "no fit after the cursor: search from the start")
    }

    func testFragmentedTreeRefusesLongRunAtTheRoot() throws {
        var blist = try Blist(blocks: 20_000)
        for block in stride(from: UInt64(1), to: 20_000, by: 2) { try blist.fill(start: block, count: 1) }
        XCTAssertEqual(blist.freeBlocks, 10_000)
        XCTAssertEqual(blist.largestFreeRun, 1)
        let before = blist
        XCTAssertEqual(blistError { try blist.allocate(count: 2) }, .exhausted)
        XCTAssertEqual(blist, before)
        var histogram = [UInt64](repeating: 0, count: blist.histogramBucketCount)
        histogram[0] = 10_000
        XCTAssertEqual(blist.freeRunHistogram(), histogram)
    }

    func testHistogramCountsRunsByPowerOfTwo() throws {
        var blist = try Blist(blocks: 5_000)
        try blist.fill(start: 0, count: 5_000)
        for (start, count): (UInt64, UInt64) in [(0, 1), (10, 2), (20, 3), (60, 8), (1_000, 1_500), (4_999, 1)] {
            try blist.free(start: start, count: count)
        }
        var expected = [UInt64](repeating: 0, count: blist.histogramBucketCount)
        expected[0] = 2  // 1, 1
        expected[1] = 2  // 2, 3
        expected[3] = 1  // 8
        expected[10] = 1  // 1500
        XCTAssertEqual(blist.freeRunHistogram(), expected)
    }

    func testDumpShowsHeaderNodesAndLeaves() throws {
        var blist = try Blist(blocks: 2_048)
        try blist.fill(start: 0, count: 1_024)
        try blist.free(start: 3, count: 2)
        var lines: [String] = []
        blist.dump { lines.append($0) }
        XCTAssertEqual(lines.first, "blist: blocks 2048, free 1026, largest free run 1024, cursor 0, levels 2, "
                       + "memory \(blist.memoryBytes) bytes")
        XCTAssertEqual(lines.dropFirst().first, "  L2 #0 [0, +16384) longest 1024 prefix 0 suffix 0")
        XCTAssertTrue(lines.contains("    L1 #0 [0, +1024) longest 2 prefix 0 suffix 0"), "\(lines)")
        XCTAssertTrue(lines.contains("      leaf #0 [0, +64) free 0x18"), "\(lines)")
        XCTAssertTrue(lines.contains("      leaf #15 [960, +64) free 0x0"), "\(lines)")
        XCTAssertEqual(lines.last, "    L1 #1 [1024, +1024) all free")
    }

    func testMemoryStaysNearOneBitPerBlock() throws {
        for shift in stride(from: UInt64(10), through: 24, by: 2) {
            let blocks: UInt64 = (1 << shift) + 3
            let blist = try Blist(blocks: blocks)
            XCTAssertLessThanOrEqual(Double(blist.memoryBytes * 8), 1.1 * Double(blocks) + 8 * 512,
                                     "\(blocks) blocks take \(blist.memoryBytes) bytes")
        }
    }

    /// Block numbers past 2^31 (and past 2^32 in sums) come back intact.
    func testHugeTreeUsesSixtyFourBitBlockNumbers() throws {
        let blocks: UInt64 = (1 << 31) + 77
        var blist = try Blist(blocks: blocks)
        XCTAssertEqual(blist.largestFreeRun, blocks)
        XCTAssertEqual(try blist.fill(start: (1 << 31) - 40, count: 117), 0)
        XCTAssertEqual(blist.largestFreeRun, (1 << 31) - 40)
        try blist.free(start: (1 << 31) + 20, count: 30)
        XCTAssertEqual(blist.freeBlocks, blocks - 87)
        XCTAssertEqual(try blist.allocate(count: (1 << 31) - 40), 0)
        XCTAssertEqual(try blist.allocate(count: 30), (1 << 31) + 20)
        XCTAssertEqual(blist.freeBlocks, 0)
        XCTAssertEqual(blistError { try blist.allocate(count: 1) }, .exhausted)
        try blist.free(start: blocks - 1, count: 1)
        XCTAssertEqual(try blist.allocate(count: 1), blocks - 1)
    }

    /// The word-level tricks against a bit-by-bit count on random and structured words.
    func testLongestRunAndRunStartsMatchBitByBitCount() {
        var random = SeededRandom(state: 42)
        var words: [UInt64] = [0, ~0, 1, 1 << 63, ~0 >> 1, ~0 << 1, 0x5555_5555_5555_5555]
        for _ in 0..<3_000 {
            let a = random.next(), b = random.next(), c = random.next()
            words.append(a | b | c)  // long runs
            words.append(a & b)  // short runs
            words.append(a)
        }
        for word in words {
            var longest: UInt64 = 0
            var run: UInt64 = 0
            for bit in 0..<64 {
                run = word & (1 << UInt64(bit)) != 0 ? run + 1 : 0
                longest = max(longest, run)
            }
            XCTAssertEqual(Blist.longestRun(in: word), longest, "word \(String(word, radix: 16))")
            for length in [1, 2, 3, 7, 8, 13, 32, 63, 64] as [UInt64] {
                let starts = Blist.runStarts(in: word, length: length)
                for bit in 0..<UInt64(64) {
                    let fits = bit + length <= 64 && (bit..<bit + length).allSatisfy { word & (1 << $0) != 0 }
                    XCTAssertEqual(starts & (1 << bit) != 0, fits, "word \(String(word, radix: 16)) length \(length)")
                }
            }
        }
    }
}
