// KernelHeapTests: the slab + page-run heap over a page allocator in a PhysicalArena.
// Most tests use `ArenaPageSource` (the global `physicalPages` over the test's arena, with an
// optional page budget so out-of-memory can be forced); one test uses the kernel's own
// `PhysicalPageSource`. Every test ends with `invariantViolation()`, which walks the page map
// and every partial list.

import XCTest
@testable import Kernel

/// Heap pages from the global `physicalPages` (set up over the test's arena), optionally
/// limited to `budget` pages so out-of-memory can be forced.
private struct ArenaPageSource: HeapPageSource {
    var budget = Int.max
    private(set) var pagesOut = 0

    mutating func allocatePages(order: Int) throws(HeapError) -> UnsafeMutableRawPointer {
        guard 1 << order <= budget else { throw .outOfMemory }
        do {
            let address = try physicalPages.allocate(order: order)
            budget -= 1 << order
            pagesOut += 1 << order
            return DirectMap.pointer(to: address)
        } catch {
            throw .outOfMemory
        }
    }

    mutating func freePages(_ block: UnsafeMutableRawPointer, order: Int) {
        do {
            try physicalPages.free(DirectMap.physicalAddress(of: block), order: order)
        } catch {
            fatalError("ArenaPageSource: heap freed a block it did not get: \(error)")
        }
        budget += 1 << order
        pagesOut -= 1 << order
    }
}

final class KernelHeapTests: XCTestCase {
    private let mib: UInt64 = 1 << 20
    private var arena: PhysicalArena!

    private func makeHeap(megabytes: UInt64 = 64, budget: Int = .max) throws -> KernelHeap<ArenaPageSource> {
        arena = PhysicalArena(byteCount: megabytes * mib)
        try physicalPages.setUp(memoryMap: arena.wholeArenaMap())
        var source = ArenaPageSource()
        source.budget = budget
        return KernelHeap(source: source)
    }

    override func tearDown() {
        physicalPages = PageAllocator()
        arena = nil
        super.tearDown()
    }

    private func assertConsistent<S>(_ heap: KernelHeap<S>, file: StaticString = #filePath, line: UInt = #line) {
        if let broken = heap.invariantViolation() {
            XCTFail("invariant broken: \(broken)", file: file, line: line)
        }
    }

    private func expectError<S>(_ expected: HeapError, _ heap: inout KernelHeap<S>, file: StaticString = #filePath, line: UInt = #line,
                                _ body: (inout KernelHeap<S>) throws -> Void) {
        let before = heap.statistics
        do {
            try body(&heap)
            XCTFail("expected \(expected), but the call succeeded", file: file, line: line)
        } catch {
            XCTAssertEqual(error as? HeapError, expected, file: file, line: line)
        }
        XCTAssertEqual(heap.statistics, before, "a refused call changed the heap", file: file, line: line)
    }

    private func address(_ pointer: UnsafeMutableRawPointer) -> UInt { UInt(bitPattern: pointer) }

    // MARK: Size classes

    func testSizeClassesAreTheSmallestThatFitAndAreIncreasing() {
        XCTAssertEqual(HeapSizeClasses.size(of: 0), 16)
        XCTAssertEqual(HeapSizeClasses.size(of: HeapSizeClasses.count - 1), HeapSizeClasses.largestSize)
        for c in 1..<HeapSizeClasses.count {
            XCTAssertGreaterThan(HeapSizeClasses.size(of: c), HeapSizeClasses.size(of: c - 1))
            XCTAssertEqual(HeapSizeClasses.size(of: c) % 16, 0)
            XCTAssertLessThanOrEqual(HeapSizeClasses.capacity(of: c), 256, "bitmap holds 256 objects")
        }
        for size in 1...HeapSizeClasses.largestSize {
            guard let c = HeapSizeClasses.index(forSize: size, alignment: 8) else { return XCTFail("no class for \(size)") }
            XCTAssertGreaterThanOrEqual(HeapSizeClasses.size(of: c), size)
            if c > 0 { XCTAssertLessThan(HeapSizeClasses.size(of: c - 1), size, "class for \(size) is not the smallest") }
        }
        XCTAssertNil(HeapSizeClasses.index(forSize: HeapSizeClasses.largestSize + 1, alignment: 16))
        XCTAssertNil(HeapSizeClasses.index(forSize: 16, alignment: 4096))
        XCTAssertEqual(HeapSizeClasses.index(forSize: 24, alignment: 32).map(HeapSizeClasses.size(of:)), 32)
        XCTAssertEqual(HeapSizeClasses.index(forSize: 100, alignment: 64).map(HeapSizeClasses.size(of:)), 128)
        XCTAssertEqual(HeapSizeClasses.index(forSize: 600, alignment: 512).map(HeapSizeClasses.size(of:)), 1024)
    }

    func testEverySizeClassIsAlignedAndReportsItsUsableSize() throws {
        var heap = try makeHeap()
        var pointers: [UnsafeMutableRawPointer] = []
        for c in 0..<HeapSizeClasses.count {
            let size = HeapSizeClasses.size(of: c)
            for _ in 0..<(HeapSizeClasses.capacity(of: c) + 1) {   // spill into a second slab
                let p = try heap.allocate(size: size, alignment: 1)
                XCTAssertEqual(Int(address(p)) % HeapSizeClasses.alignment(of: c), 0, "class \(size) misaligned")
                XCTAssertEqual(Int(address(p)) % 16, 0, "malloc alignment is 16")
                XCTAssertEqual(try heap.usableSize(of: p), size)
                pointers.append(p)
            }
        }
        XCTAssertEqual(heap.statistics.slabPages, 2 * HeapSizeClasses.count)
        assertConsistent(heap)
        for p in pointers { try heap.free(p) }
        XCTAssertEqual(heap.statistics.liveAllocations, 0)
        XCTAssertEqual(heap.statistics.bytesInUse, 0)
        XCTAssertEqual(heap.statistics.slabPages, HeapSizeClasses.count, "one spare empty slab per class is kept")
        assertConsistent(heap)
    }

    func testRequestedAlignmentsUpTo4096AndBeyondAreHonoured() throws {
        var heap = try makeHeap()
        var pointers: [UnsafeMutableRawPointer] = []
        for shift in 0...17 {
            let alignment = 1 << shift
            for size in [0, 1, 17, 100, 1000, 2048, 3000, 5000, 70_000] {
                let p = try heap.allocate(size: size, alignment: alignment)
                XCTAssertEqual(Int(address(p)) % alignment, 0, "size \(size) alignment \(alignment)")
                XCTAssertGreaterThanOrEqual(try heap.usableSize(of: p), max(size, 1))
                pointers.append(p)
            }
        }
        assertConsistent(heap)
        for p in pointers.reversed() { try heap.free(p) }
        XCTAssertEqual(heap.statistics.liveAllocations, 0)
        XCTAssertEqual(heap.statistics.largeRunPages, 0)
        assertConsistent(heap)
    }

    func testZeroByteAllocationsAreUniqueAndFreeable() throws {
        var heap = try makeHeap()
        let a = try heap.allocate(size: 0, alignment: 1)
        let b = try heap.allocate(size: 0, alignment: 1)
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(try heap.usableSize(of: a), 16)
        try heap.free(a)
        try heap.free(b)
        assertConsistent(heap)
    }

    // MARK: Many allocations

    func testManyRandomAllocationsNeverOverlapAndKeepTheirContents() throws {
        let seed: UInt64 = 0x4EA9_0002
        print("KernelHeapTests: random allocation seed \(seed)")
        var random = SplitMix64Generator(seed: seed)
        var heap = try makeHeap(megabytes: 256)
        struct Block { var pointer: UnsafeMutableRawPointer; var size: Int; var tag: UInt8 }
        var blocks: [Block] = []
        func fill(_ b: Block) { b.pointer.initializeMemory(as: UInt8.self, repeating: b.tag, count: b.size) }
        func verify(_ b: Block) -> Bool {
            UnsafeRawBufferPointer(start: b.pointer, count: b.size).allSatisfy { $0 == b.tag }
        }

        for step in 0..<20_000 {
            if blocks.isEmpty || Int.random(in: 0..<100, using: &random) < 60 {
                let size = Bool.random(using: &random) ? Int.random(in: 0...256, using: &random)
                    : Int.random(in: 0...20_000, using: &random)
                let alignment = 1 << Int.random(in: 0...7, using: &random)
                let p = try heap.allocate(size: size, alignment: alignment)
                XCTAssertEqual(Int(address(p)) % alignment, 0)
                let block = Block(pointer: p, size: size, tag: UInt8(truncatingIfNeeded: step | 1))
                fill(block)
                blocks.append(block)
            } else {
                let i = Int.random(in: 0..<blocks.count, using: &random)
                blocks.swapAt(i, blocks.count - 1)
                let block = blocks.removeLast()
                XCTAssertTrue(verify(block), "step \(step): a block was overwritten while live")
                try heap.free(block.pointer)
            }
            if step % 2000 == 0 { assertConsistent(heap) }
        }
        // No two live blocks overlap, over their whole usable size.
        let spans = try blocks.map { (address($0.pointer), address($0.pointer) + UInt(try heap.usableSize(of: $0.pointer))) }.sorted { $0.0 < $1.0 }
        for (a, b) in zip(spans, spans.dropFirst()) { XCTAssertLessThanOrEqual(a.1, b.0, "live allocations overlap") }
        for block in blocks { XCTAssertTrue(verify(block), "a block was overwritten while live") }
        XCTAssertEqual(heap.statistics.liveAllocations, blocks.count)
        assertConsistent(heap)
        for block in blocks { try heap.free(block.pointer) }
        XCTAssertEqual(heap.statistics.liveAllocations, 0)
        XCTAssertEqual(heap.statistics.bytesInUse, 0)
        XCTAssertEqual(heap.statistics.largeRunPages, 0)
        XCTAssertLessThanOrEqual(heap.statistics.slabPages, HeapSizeClasses.count, "at most one cached slab per class")
        XCTAssertEqual(heap.source.pagesOut, heap.statistics.pagesHeld, "every page the source gave is accounted for")
        assertConsistent(heap)
    }

    func testEmptySlabsGoBackToTheSourceExceptOneSparePerClass() throws {
        var heap = try makeHeap()
        var pointers: [UnsafeMutableRawPointer] = []
        for _ in 0..<(3 * 256 + 10) { pointers.append(try heap.allocate(size: 16, alignment: 16)) }
        XCTAssertEqual(heap.statistics.slabPages, 4)
        let held = heap.source.pagesOut
        for p in pointers { try heap.free(p) }
        XCTAssertEqual(heap.statistics.slabPages, 1)
        XCTAssertEqual(heap.source.pagesOut, held - 3)
        // Alloc/free in a loop reuses the spare slab instead of taking pages.
        for _ in 0..<1000 { try heap.free(try heap.allocate(size: 16, alignment: 16)) }
        XCTAssertEqual(heap.source.pagesOut, held - 3)
        assertConsistent(heap)
    }

    // MARK: Large allocations

    func testLargeAllocationsArePageRunsThatGoBackToTheSource() throws {
        var heap = try makeHeap()
        let before = heap.source.pagesOut
        let a = try heap.allocate(size: 4097, alignment: 16)
        XCTAssertEqual(try heap.usableSize(of: a), 8192)
        XCTAssertEqual(address(a) % 4096, 0)
        let b = try heap.allocate(size: 3 * 4096, alignment: 8)
        XCTAssertEqual(try heap.usableSize(of: b), 4 * 4096, "3 pages round up to 4")
        let c = try heap.allocate(size: 1 << 20, alignment: 1 << 20)
        XCTAssertEqual(address(c) % (1 << 20), 0)
        XCTAssertEqual(heap.statistics.largeRunPages, 2 + 4 + 256)
        c.initializeMemory(as: UInt8.self, repeating: 0x5A, count: 1 << 20)
        XCTAssertEqual(heap.statistics.liveAllocations, 3)
        assertConsistent(heap)
        try heap.free(b)
        try heap.free(a)
        try heap.free(c)
        XCTAssertEqual(heap.statistics.largeRunPages, 0)
        XCTAssertEqual(heap.source.pagesOut - before, heap.statistics.metadataPages, "only page-map nodes remain")
        assertConsistent(heap)
    }

    // MARK: Errors

    func testBadFreesAreTypedErrorsAndChangeNothing() throws {
        var heap = try makeHeap()
        let small = try heap.allocate(size: 48, alignment: 16)
        let other = try heap.allocate(size: 48, alignment: 16)
        let large = try heap.allocate(size: 10_000, alignment: 16)
        let freedSmall = try heap.allocate(size: 100, alignment: 16)
        try heap.free(freedSmall)
        let freedLarge = try heap.allocate(size: 9000, alignment: 16)
        try heap.free(freedLarge)
        var onStack = 0
        let stackPointer = withUnsafeMutablePointer(to: &onStack) { UnsafeMutableRawPointer($0) }
        let notFromHeap = arena.pointer(to: PhysicalAddress(arena.base.value + 60 * mib))

        expectError(.doubleFree, &heap) { try $0.free(freedSmall) }
        expectError(.unknownPointer, &heap) { try $0.free(freedLarge) }
        expectError(.unknownPointer, &heap) { try $0.free(stackPointer) }
        expectError(.unknownPointer, &heap) { try $0.free(notFromHeap) }
        expectError(.unknownPointer, &heap) { try $0.free(small + 8) }
        expectError(.unknownPointer, &heap) { try $0.free(small + 1) }
        expectError(.unknownPointer, &heap) { try $0.free(large + 16) }
        expectError(.unknownPointer, &heap) { try $0.free(large + 4096) }
        // Past the last object of a 48-byte slab (85 objects end at 4080).
        let slabPage = UnsafeMutableRawPointer(bitPattern: address(small) & ~4095)!
        expectError(.unknownPointer, &heap) { try $0.free(slabPage + 85 * 48) }
        expectError(.doubleFree, &heap) { _ = try $0.usableSize(of: freedSmall) }
        expectError(.unknownPointer, &heap) { _ = try $0.usableSize(of: stackPointer) }
        assertConsistent(heap)

        // The live allocations are untouched and free normally.
        try heap.free(small)
        try heap.free(other)
        try heap.free(large)
        expectError(.doubleFree, &heap) { try $0.free(small) }
        XCTAssertEqual(heap.statistics.liveAllocations, 0)
        assertConsistent(heap)
    }

    func testInvalidArgumentsAreTypedErrors() throws {
        var heap = try makeHeap()
        expectError(.invalidAlignment, &heap) { _ = try $0.allocate(size: 8, alignment: 0) }
        expectError(.invalidAlignment, &heap) { _ = try $0.allocate(size: 8, alignment: 24) }
        expectError(.invalidAlignment, &heap) { _ = try $0.allocate(size: 8, alignment: -16) }
        expectError(.invalidSize, &heap) { _ = try $0.allocate(size: -1, alignment: 16) }
        expectError(.invalidSize, &heap) { _ = try $0.allocate(size: Int.max, alignment: 16) }
        expectError(.invalidSize, &heap) { _ = try $0.allocate(size: (4096 << PageAllocator.maxOrder) + 1, alignment: 16) }
        expectError(.invalidSize, &heap) { _ = try $0.allocate(size: 16, alignment: 8192 << PageAllocator.maxOrder) }
        assertConsistent(heap)
    }

    func testOutOfMemoryIsReportedAndLeavesTheHeapConsistent() throws {
        var heap = try makeHeap(budget: 40)
        var pointers: [UnsafeMutableRawPointer] = []
        var refusal: HeapError?
        while refusal == nil {
            do { pointers.append(try heap.allocate(size: 1000, alignment: 16)) } catch { refusal = error }
        }
        XCTAssertEqual(refusal, .outOfMemory)
        XCTAssertLessThanOrEqual(heap.source.pagesOut, 40)
        expectError(.outOfMemory, &heap) { _ = try $0.allocate(size: 1000, alignment: 16) }
        expectError(.outOfMemory, &heap) { _ = try $0.allocate(size: 100_000, alignment: 16) }
        assertConsistent(heap)
        for p in pointers { try heap.free(p) }
        XCTAssertEqual(heap.statistics.liveAllocations, 0)
        XCTAssertNoThrow(try heap.allocate(size: 50_000, alignment: 16), "freed pages are usable again")
        assertConsistent(heap)
    }

    func testOutOfMemoryWhileGrowingThePageMapGivesThePageBack() throws {
        // Budget 1: the slab page is granted, but the page-map root is not.
        var heap = try makeHeap(budget: 1)
        expectError(.outOfMemory, &heap) { _ = try $0.allocate(size: 32, alignment: 16) }
        XCTAssertEqual(heap.source.pagesOut, 0, "the slab page went back when its descriptor failed")
        assertConsistent(heap)
    }

    // MARK: Debug fill

    func testFreedObjectsAreJunkFilledWhenEnabled() throws {
        var heap = try makeHeap()
        heap.fillsFreedMemory = true
        let keep = try heap.allocate(size: 64, alignment: 16)   // keeps the slab alive
        let p = try heap.allocate(size: 64, alignment: 16)
        p.initializeMemory(as: UInt8.self, repeating: 0x33, count: 64)
        try heap.free(p)
        XCTAssertTrue(UnsafeRawBufferPointer(start: p, count: 64).allSatisfy { $0 == HeapSizeClasses.junkByte })
        try heap.free(keep)
        assertConsistent(heap)
    }

    // MARK: The kernel's page source

    func testPhysicalPageSourceTakesPagesFromTheGlobalAllocator() throws {
        let arena = PhysicalArena(byteCount: 32 * mib)
        try physicalPages.setUp(memoryMap: arena.wholeArenaMap())
        var heap = KernelHeap()
        let baseline = physicalPages.usedPages
        let run = try heap.allocate(size: 64 * 1024, alignment: 16)
        let object = try heap.allocate(size: 200, alignment: 16)
        XCTAssertEqual(physicalPages.usedPages - baseline, heap.statistics.pagesHeld)
        XCTAssertEqual(physicalPages.allocationOrder(at: DirectMap.physicalAddress(of: run)), 4)
        try heap.free(run)
        try heap.free(object)
        XCTAssertEqual(physicalPages.usedPages - baseline, heap.statistics.pagesHeld)
        XCTAssertEqual(heap.statistics.largeRunPages, 0)
        assertConsistent(heap)
        XCTAssertNil(physicalPages.invariantViolation())
    }
}
