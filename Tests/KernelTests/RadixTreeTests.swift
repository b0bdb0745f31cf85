// RadixTreeTests: the radix tree under the VM's per-object indices — seeded random inserts,
// removes, range walks and range removals against a dictionary model over dense, sparse and
// huge keys; growth and shrinking of the root; every node returned; and inserts that fail
// for lack of memory at every possible allocation, each leaving the tree unchanged.

import XCTest
@testable import Kernel

/// Swaps MetadataMemory's allocator for one that fails the `failAt`-th allocation (and all
/// after it while `failForever`), restoring the host allocator afterwards.
final class FailingMetadataMemory {
    private let savedAllocate = MetadataMemory.allocate
    private(set) var allocations = 0
    var failAt: Int? = nil
    var failForever = false

    init() {
        MetadataMemory.allocate = { [unowned self] bytes in
            self.allocations += 1
            if let failAt = self.failAt, self.allocations == failAt || (self.failForever && self.allocations > failAt) {
                return nil
            }
            return UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: MetadataMemory.alignment)
        }
    }

    func restore() { MetadataMemory.allocate = savedAllocate }
}

final class RadixTreeTests: XCTestCase {
    private func contents(_ tree: borrowing RadixTree, in range: Range<UInt64> = 0..<UInt64.max) -> [(UInt64, UInt)] {
        var seen: [(UInt64, UInt)] = []
        tree.forEach(in: range) { key, value in
            seen.append((key, value))
            return true
        }
        return seen
    }

    private func assertMatches(_ tree: borrowing RadixTree, _ model: [UInt64: UInt], _ context: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNil(tree.invariantViolation(), "invariant (\(context))", file: file, line: line)
        XCTAssertEqual(tree.count, model.count, "count (\(context))", file: file, line: line)
        let seen = contents(tree)
        let expected = model.sorted { $0.key < $1.key }
        XCTAssertEqual(seen.map { $0.0 }, expected.map { $0.key }, "keys in order (\(context))", file: file, line: line)
        XCTAssertEqual(seen.map { $0.1 }, expected.map { $0.value }, "values (\(context))", file: file, line: line)
    }

    func testEmptyTreeHoldsNothing() {
        let tree = RadixTree()
        XCTAssertTrue(tree.isEmpty)
        XCTAssertNil(tree[0])
        XCTAssertNil(tree[RadixTree.keyLimit - 1])
        XCTAssertNil(tree.first(atOrAfter: 0))
        XCTAssertEqual(tree.nodeCount, 0)
        XCTAssertNil(tree.invariantViolation())
    }

    func testInsertLookupRemoveAndShrinkBackToNothing() throws {
        let before = MetadataMemory.blocksInUse
        do {
            var tree = RadixTree()
            try tree.insert(7, at: 3)
            XCTAssertEqual(tree.nodeCount, 1, "keys below 64 need one leaf")
            try tree.insert(9, at: 64)
            XCTAssertEqual(tree.nodeCount, 3, "key 64 grows a root above the first leaf and a second leaf")
            try tree.insert(11, at: 1 << 30)
            XCTAssertEqual(tree[3], 7)
            XCTAssertEqual(tree[64], 9)
            XCTAssertEqual(tree[1 << 30], 11)
            XCTAssertNil(tree[65])
            XCTAssertNil(tree.invariantViolation())
            XCTAssertEqual(tree.remove(at: 1 << 30), 11)
            XCTAssertEqual(tree.nodeCount, 3, "removing the far key shrinks the root back")
            XCTAssertNil(tree.remove(at: 1 << 30), "removed twice")
            XCTAssertEqual(tree.remove(at: 64), 9)
            XCTAssertEqual(tree.nodeCount, 1, "one leaf again")
            XCTAssertEqual(tree.remove(at: 3), 7)
            XCTAssertEqual(tree.nodeCount, 0)
            XCTAssertTrue(tree.isEmpty)
            XCTAssertNil(tree.invariantViolation())
        }
        XCTAssertEqual(MetadataMemory.blocksInUse, before, "every node went back")
    }

    func testKeyLimitIsATypedRefusal() {
        var tree = RadixTree()
        XCTAssertThrowsError(try tree.insert(1, at: RadixTree.keyLimit)) { error in
            XCTAssertEqual(error as? RadixTreeError, .keyOutOfRange)
        }
        XCTAssertNoThrow(try tree.insert(1, at: RadixTree.keyLimit - 1))
        XCTAssertEqual(tree[RadixTree.keyLimit - 1], 1)
        XCTAssertEqual(tree.first(atOrAfter: 5)?.key, RadixTree.keyLimit - 1)
        XCTAssertNil(tree.invariantViolation())
    }

    func testSeededOperationsMatchADictionary() throws {
        let before = MetadataMemory.blocksInUse
        for (seed, keySpace) in [(1, UInt64(200)), (2, 5000), (3, 1 << 20), (4, 1 << 40), (5, RadixTree.keyLimit)] as [(UInt64, UInt64)] {
            var random = SplitMix64(seed: seed)
            var tree = RadixTree()
            var model: [UInt64: UInt] = [:]
            for step in 0..<4000 {
                let key = random.below(keySpace)
                switch random.below(10) {
                case 0..<5:
                    if model[key] == nil {
                        let value = UInt(random.below(1 << 40) + 1)
                        try tree.insert(value, at: key)
                        model[key] = value
                    }
                case 5..<8:
                    XCTAssertEqual(tree.remove(at: key), model.removeValue(forKey: key), "seed \(seed) step \(step) remove")
                case 8:
                    let end = min(keySpace, key + random.below(keySpace / 8 + 2))
                    let expected = model.filter { (key..<end).contains($0.key) }.sorted { $0.key < $1.key }
                    let seen = contents(tree, in: key..<end)
                    XCTAssertEqual(seen.map { $0.0 }, expected.map { $0.key }, "seed \(seed) step \(step) range walk")
                    let next = model.keys.filter { $0 >= key }.min()
                    XCTAssertEqual(tree.first(atOrAfter: key)?.key, next, "seed \(seed) step \(step) first at or after")
                default:
                    let end = min(keySpace, key + random.below(keySpace / 16 + 2))
                    var removed: [UInt64] = []
                    tree.removeAll(in: key..<end) { removedKey, value in
                        XCTAssertEqual(model[removedKey], value)
                        removed.append(removedKey)
                    }
                    let expected = model.keys.filter { (key..<end).contains($0) }.sorted()
                    XCTAssertEqual(removed, expected, "seed \(seed) step \(step) range removal order")
                    for removedKey in expected { model[removedKey] = nil }
                }
                if step % 500 == 0 { assertMatches(tree, model, "seed \(seed) step \(step)") }
            }
            assertMatches(tree, model, "seed \(seed) end")
            var drained = 0
            tree.removeAll { _, _ in drained += 1 }
            XCTAssertEqual(drained, model.count)
            XCTAssertEqual(tree.nodeCount, 0, "removeAll frees every node")
        }
        XCTAssertEqual(MetadataMemory.blocksInUse, before, "every node went back")
    }

    func testDenseKeysCostAboutEightBytesEach() throws {
        var tree = RadixTree()
        for key in UInt64(0)..<32768 { try tree.insert(UInt(key + 1), at: key) }
        // 512 leaves of 64 keys, 8 nodes above them, one root.
        XCTAssertEqual(tree.nodeCount, 512 + 8 + 1)
        XCTAssertLessThan(Double(tree.memoryBytes) / 32768, 8.2)
    }

    func testDroppingATreeFreesItsNodes() throws {
        let before = MetadataMemory.blocksInUse
        do {
            var tree = RadixTree()
            for key in stride(from: UInt64(0), to: 1 << 24, by: 4093) { try tree.insert(1, at: key) }
            XCTAssertGreaterThan(MetadataMemory.blocksInUse, before)
        }
        XCTAssertEqual(MetadataMemory.blocksInUse, before, "deinit freed the nodes")
    }

    func testFailedInsertAtEveryAllocationLeavesTheTreeUnchanged() throws {
        // Keys that need growth of the root, a new path under an existing root, and both.
        let existing: [UInt64] = [1, 70, 4100]
        for newKey: UInt64 in [2, 130, 300_000, 1 << 40] {
            var probe = 0
            while true {
                probe += 1
                var tree = RadixTree()
                var model: [UInt64: UInt] = [:]
                for key in existing {
                    try tree.insert(UInt(key + 5), at: key)
                    model[key] = UInt(key + 5)
                }
                let nodes = tree.nodeCount
                let memory = FailingMetadataMemory()
                memory.failAt = probe
                defer { memory.restore() }
                do {
                    try tree.insert(99, at: newKey)
                    model[newKey] = 99
                    assertMatches(tree, model, "key \(newKey) succeeded after \(probe - 1) allocations")
                    break
                } catch {
                    XCTAssertEqual(error, .outOfMemory)
                    XCTAssertEqual(tree.nodeCount, nodes, "no node kept by a failed insert")
                    assertMatches(tree, model, "key \(newKey) failing allocation \(probe)")
                }
            }
        }
    }
}
