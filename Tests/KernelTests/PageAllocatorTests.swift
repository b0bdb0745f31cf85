// PageAllocatorTests: the buddy allocator over fake physical memory (PhysicalArena).
// Every test ends by checking `invariantViolation()`, which walks all state bytes and free
// lists; the random test replays from the printed seed.

import XCTest
@testable import Kernel

final class PageAllocatorTests: XCTestCase {
    private let mib: UInt64 = 1 << 20
    private let arenaBase: UInt64 = 0x4000_0000

    // MARK: Helpers

    private func assertConsistent(_ allocator: borrowing PageAllocator, file: StaticString = #filePath, line: UInt = #line) {
        if let broken = allocator.invariantViolation() {
            XCTFail("invariant broken: \(broken)", file: file, line: line)
        }
        XCTAssertEqual(allocator.usedPages + allocator.freePages, allocator.totalPages, "counters", file: file, line: line)
    }

    private func freeBlockCounts(_ allocator: borrowing PageAllocator) -> [Int] {
        (0...PageAllocator.maxOrder).map { allocator.freeBlockCount(order: $0) }
    }

    private func expectError(_ expected: PageAllocatorError, file: StaticString = #filePath, line: UInt = #line,
                             _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected \(expected), but the call succeeded", file: file, line: line)
        } catch {
            XCTAssertEqual(error as? PageAllocatorError, expected, file: file, line: line)
        }
    }

    /// Allocates single pages until memory runs out; returns them in allocation order.
    private func allocateAllPages(_ allocator: inout PageAllocator) -> [PhysicalAddress] {
        var pages: [PhysicalAddress] = []
        while true {
            do { pages.append(try allocator.allocate()) } catch {
                XCTAssertEqual(error, .outOfMemory)
                return pages
            }
        }
    }

    /// A snapshot of everything a refused free must leave unchanged.
    private struct Snapshot: Equatable {
        var free: Int, used: Int, blocks: [Int]
    }

    private func snapshot(_ allocator: borrowing PageAllocator) -> Snapshot {
        Snapshot(free: allocator.freePages, used: allocator.usedPages, blocks: freeBlockCounts(allocator))
    }

    // MARK: Set-up

    func testSetUpCarvesOneMetadataBytePerPageAndFreesTheRest() throws {
        let arena = PhysicalArena(byteCount: 64 * mib)
        let allocator = try PageAllocator(memoryMap: arena.wholeArenaMap())
        // 16384 frames need the fixed tables plus 16384 state bytes: 5 pages, carved from the
        // managed RAM.
        XCTAssertEqual(PageAllocator.metadataBytesPerPage, 1)
        XCTAssertLessThan(PageAllocator.tableBytes, Int(pageSize))
        let metadata = (PageAllocator.tableBytes + 16384 + Int(pageSize) - 1) / Int(pageSize)
        XCTAssertEqual(metadata, 5)
        XCTAssertEqual(allocator.metadataPages, metadata)
        XCTAssertEqual(allocator.reservedPages, metadata)
        XCTAssertEqual(allocator.totalPages, 16384 - metadata)
        XCTAssertEqual(allocator.freePages, allocator.totalPages)
        XCTAssertEqual(allocator.usedPages, 0)
        XCTAssertEqual(allocator.regionCount, 1)
        XCTAssertEqual(allocator.region(at: 0), arena.range)
        XCTAssertEqual(allocator.metadataRange, PhysicalRange(start: PhysicalAddress(arenaBase), end: PhysicalAddress(arenaBase + 5 * pageSize)))
        XCTAssertEqual(allocator.status(of: PhysicalAddress(arenaBase + 4 * pageSize)), .reserved)
        XCTAssertEqual(allocator.status(of: PhysicalAddress(arenaBase + 5 * pageSize)), .free(wasHandedOut: false))
        assertConsistent(allocator)
    }

    func testEmptyAllocatorRefusesEverything() {
        var allocator = PageAllocator()
        XCTAssertEqual(allocator.totalPages, 0)
        expectError(.outOfMemory) { _ = try allocator.allocate() }
        expectError(.outOfRange) { try allocator.free(PhysicalAddress(0x4000_0000)) }
        assertConsistent(allocator)
    }

    func testMetadataThatFitsInNoAvailableRangeIsReported() {
        _ = PhysicalArena(byteCount: 64 * mib)
        // 16384 usable frames need 5 metadata pages, but only 2 pages are not reserved.
        var map = MemoryMap()
        map.addUsable(PhysicalRange(start: PhysicalAddress(arenaBase), end: PhysicalAddress(arenaBase + 64 * mib)))
        map.addReserved(PhysicalRange(start: PhysicalAddress(arenaBase + 2 * pageSize), end: PhysicalAddress(arenaBase + 64 * mib)))
        do {
            _ = try PageAllocator(memoryMap: map)
            XCTFail("expected metadataDoesNotFit")
        } catch {
            XCTAssertEqual(error, .metadataDoesNotFit)
        }
    }

    // MARK: Allocate all, free all

    func testAllocateAllThenFreeAllRestoresEveryFreeBlock() throws {
        let arena = PhysicalArena(byteCount: 32 * mib)
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap(reserved: [(arenaBase + 5 * mib, arenaBase + 5 * mib + 40_000)]))
        let initialBlocks = freeBlockCounts(allocator)
        let total = allocator.totalPages

        let pages = allocateAllPages(&allocator)
        XCTAssertEqual(pages.count, total, "every free page handed out exactly once")
        XCTAssertEqual(Set(pages).count, pages.count, "no page handed out twice")
        XCTAssertEqual(allocator.freePages, 0)
        XCTAssertEqual(allocator.usedPages, total)
        for page in pages {
            XCTAssertTrue(page.isPageAligned)
            XCTAssertTrue(arena.range.start <= page && page < arena.range.end)
            XCTAssertFalse(page.value >= arenaBase + 5 * mib && page.value < arenaBase + 5 * mib + 40_000,
                           "a page of the reserved range was handed out")
        }
        // Each page keeps what was written into it while the others are allocated.
        for page in pages { arena.pointer(to: page).storeBytes(of: page.value ^ 0xA5A5, as: UInt64.self) }
        for page in pages { XCTAssertEqual(arena.pointer(to: page).load(as: UInt64.self), page.value ^ 0xA5A5) }
        assertConsistent(allocator)

        for page in pages.reversed() { try allocator.free(page) }
        XCTAssertEqual(allocator.freePages, total)
        XCTAssertEqual(allocator.cachedPages, PageAllocator.hotCacheCapacity, "the first frees fill the hot cache")
        assertConsistent(allocator)
        allocator.drainHotCache()
        XCTAssertEqual(allocator.cachedPages, 0)
        XCTAssertEqual(freeBlockCounts(allocator), initialBlocks, "freeing everything coalesces back to the set-up blocks")
        assertConsistent(allocator)
    }

    func testCountersFollowEveryAllocationAndFree() throws {
        let arena = PhysicalArena(byteCount: 16 * mib)
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap())
        let total = allocator.totalPages
        let a = try allocator.allocate(order: 3)
        XCTAssertEqual(allocator.usedPages, 8)
        XCTAssertEqual(allocator.freePages, total - 8)
        let b = try allocator.allocate()
        XCTAssertEqual(allocator.usedPages, 9)
        let c = try allocator.allocate(pages: 3)
        XCTAssertEqual(allocator.usedPages, 13, "3 pages round up to an order-2 block")
        try allocator.free(a)
        XCTAssertEqual(allocator.usedPages, 5)
        try allocator.free(c, pages: 3)
        try allocator.free(b, order: 0)
        XCTAssertEqual(allocator.usedPages, 0)
        XCTAssertEqual(allocator.freePages, total)
        XCTAssertEqual(allocator.totalPages, total)
        assertConsistent(allocator)
    }

    // MARK: Runs and coalescing

    func testContiguousRunsAreNaturallyAlignedAndDisjoint() throws {
        let arena = PhysicalArena(byteCount: 64 * mib)
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap())
        var runs: [(PhysicalAddress, Int)] = []
        for order in 0...12 {
            let address = try allocator.allocate(order: order)
            XCTAssertEqual(address.value % (pageSize << UInt64(order)), 0, "order \(order) run not aligned to its size")
            XCTAssertEqual(allocator.allocationOrder(at: address), order)
            XCTAssertNil(allocator.allocationOrder(at: address.advanced(by: pageSize)), "a tail is not a block start")
            runs.append((address, order))
        }
        for (i, a) in runs.enumerated() {
            for b in runs[(i + 1)...] {
                let aEnd = a.0.value + (pageSize << UInt64(a.1)), bEnd = b.0.value + (pageSize << UInt64(b.1))
                XCTAssertTrue(aEnd <= b.0.value || bEnd <= a.0.value, "runs overlap")
            }
        }
        assertConsistent(allocator)
        for (address, order) in runs { try allocator.free(address, order: order) }
        XCTAssertEqual(allocator.usedPages, 0)
        assertConsistent(allocator)
    }

    func testAllocatePagesRoundsUpToAPowerOfTwo() throws {
        let arena = PhysicalArena(byteCount: 16 * mib)
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap())
        XCTAssertEqual(PageAllocator.order(forPages: 1), 0)
        XCTAssertEqual(PageAllocator.order(forPages: 2), 1)
        XCTAssertEqual(PageAllocator.order(forPages: 5), 3)
        XCTAssertEqual(PageAllocator.order(forPages: 1 << PageAllocator.maxOrder), PageAllocator.maxOrder)
        XCTAssertNil(PageAllocator.order(forPages: 0))
        XCTAssertNil(PageAllocator.order(forPages: (1 << PageAllocator.maxOrder) + 1))
        let run = try allocator.allocate(pages: 5)
        XCTAssertEqual(allocator.allocationOrder(at: run), 3)
        XCTAssertEqual(run.value % (8 * pageSize), 0)
        expectError(.orderMismatch) { try allocator.free(run, pages: 3) }
        try allocator.free(run, pages: 6)
        assertConsistent(allocator)
    }

    func testFreeingBuddiesCoalescesThemIntoOneLargeBlock() throws {
        let arena = PhysicalArena(byteCount: 8 * mib)
        // 2048 frames: 1 metadata page. Reserve everything below 4 MiB - 1 page so the metadata
        // takes that page and exactly one order-10 block (4 MiB at 0x4040_0000) stays free.
        let map = arena.wholeArenaMap(reserved: [(arenaBase, arenaBase + 4 * mib - pageSize)])
        var allocator = try PageAllocator(memoryMap: map)
        XCTAssertEqual(allocator.totalPages, 1024)
        XCTAssertEqual(freeBlockCounts(allocator), (0...PageAllocator.maxOrder).map { $0 == 10 ? 1 : 0 })

        var pages = allocateAllPages(&allocator)
        XCTAssertEqual(pages.count, 1024)
        XCTAssertEqual(freeBlockCounts(allocator).reduce(0, +), 0)
        var random = SplitMix64Generator(seed: 0xC0A1E5CE)
        pages.shuffle(using: &random)
        for (i, page) in pages.enumerated() {
            try allocator.free(page)
            if i % 97 == 0 { assertConsistent(allocator) }
        }
        allocator.drainHotCache()
        XCTAssertEqual(freeBlockCounts(allocator), (0...PageAllocator.maxOrder).map { $0 == 10 ? 1 : 0 },
                       "1024 single frees in random order merge back into one order-10 block")
        let whole = try allocator.allocate(order: 10)
        XCTAssertEqual(whole.value, arenaBase + 4 * mib)
        assertConsistent(allocator)
    }

    func testBlocksNeverCoalesceAcrossARegionBoundaryOrAReservedPage() throws {
        let arena = PhysicalArena(byteCount: 32 * mib)
        // Regions A = [0, 2M), B = [4M, 6M) and D = [10M, 12M) are one order-9 block each. A's
        // buddy [2M, 4M) lies past A's end (in a hole; its state byte would be B's first),
        // D's buddy [8M, 10M) lies before D's start: neither may merge. C = [16M, 24M) is the
        // largest range and holds the metadata pages at 16M; the reserved page at 20M breaks the
        // order-9 block [20M, 22M), leaving order-9 blocks [18M, 20M) and [22M, 24M).
        let map = arena.memoryMap(usable: [(arenaBase, arenaBase + 2 * mib), (arenaBase + 4 * mib, arenaBase + 6 * mib),
                                           (arenaBase + 10 * mib, arenaBase + 12 * mib), (arenaBase + 16 * mib, arenaBase + 24 * mib)],
                                  reserved: [(arenaBase + 20 * mib, arenaBase + 20 * mib + 1)])
        var allocator = try PageAllocator(memoryMap: map)
        XCTAssertEqual(allocator.regionCount, 4)
        var random = SplitMix64Generator(seed: 0xB0DD1E5)
        let pages = allocateAllPages(&allocator)
        for page in pages.shuffled(using: &random) { try allocator.free(page) }
        allocator.drainHotCache()
        assertConsistent(allocator)

        XCTAssertEqual(allocator.freeBlockCount(order: 10), 0, "no order-10 block: every candidate spans a hole, metadata or the reserved page")
        var order9: [UInt64] = []
        while let block = try? allocator.allocate(order: 9) { order9.append((block.value - arenaBase) / mib) }
        XCTAssertEqual(order9.sorted(), [0, 4, 10, 18, 22], "each region coalesced fully and only within itself")
        assertConsistent(allocator)
    }

    // MARK: Regions, holes, reserved ranges

    func testMultipleRegionsWithHolesAndReservedRangesHandOutOnlyAvailablePages() throws {
        let arena = PhysicalArena(byteCount: 64 * mib)
        let usable: [(UInt64, UInt64)] = [
            (arenaBase + 40 * mib, arenaBase + 48 * mib),            // listed out of order
            (arenaBase + 100, arenaBase + 4 * mib + 100),            // unaligned: shrinks to whole pages
            (arenaBase + 16 * mib, arenaBase + 17 * mib + 12_288),   // odd size
            (arenaBase + 17 * mib, arenaBase + 17 * mib + 32_768),  // overlaps the previous
        ]
        let reserved: [(UInt64, UInt64)] = [
            (arenaBase + 1 * mib + 10, arenaBase + 1 * mib + 20),   // partial page: whole page reserved
            (arenaBase + 44 * mib, arenaBase + 45 * mib),
            (arenaBase + 47 * mib, arenaBase + 60 * mib),           // reaches past the usable range
        ]
        var allocator = try PageAllocator(memoryMap: arena.memoryMap(usable: usable, reserved: reserved))
        XCTAssertEqual(allocator.regionCount, 3)
        XCTAssertEqual(allocator.region(at: 0).start.value, arenaBase + pageSize)
        XCTAssertEqual(allocator.region(at: 1).end.value, arenaBase + 17 * mib + 32_768, "overlapping ranges merged")

        func isAvailable(_ page: UInt64) -> Bool {
            let inUsable = (page >= arenaBase + pageSize && page < arenaBase + 4 * mib)
                || (page >= arenaBase + 16 * mib && page < arenaBase + 17 * mib + 32_768)
                || (page >= arenaBase + 40 * mib && page < arenaBase + 48 * mib)
            let inReserved = (page == arenaBase + 1 * mib)
                || (page >= arenaBase + 44 * mib && page < arenaBase + 45 * mib)
                || (page >= arenaBase + 47 * mib)
            return inUsable && !inReserved
        }
        // Usable frames 1023 + 264 + 2048 = 3335, plus the tables, need two metadata pages.
        XCTAssertEqual(allocator.metadataPages, 2)
        XCTAssertEqual(allocator.totalPages, 1023 + 264 + 2048 - 1 - 256 - 256 - 2)
        XCTAssertEqual(allocator.reservedPages, 1 + 256 + 256 + 2)

        let pages = allocateAllPages(&allocator)
        XCTAssertEqual(pages.count, allocator.totalPages)
        for page in pages { XCTAssertTrue(isAvailable(page.value), "handed out \(page.value) outside the available ranges") }

        expectError(.reservedPage) { try allocator.free(PhysicalAddress(arenaBase + 1 * mib)) }
        expectError(.reservedPage) { try allocator.free(PhysicalAddress(arenaBase + 44 * mib + 8 * pageSize)) }
        expectError(.outOfRange) { try allocator.free(PhysicalAddress(arenaBase + 8 * mib)) }
        expectError(.outOfRange) { try allocator.free(PhysicalAddress(arenaBase)) }
        expectError(.outOfRange) { try allocator.free(PhysicalAddress(arenaBase + 48 * mib)) }
        for page in pages { try allocator.free(page) }
        XCTAssertEqual(allocator.usedPages, 0)
        assertConsistent(allocator)

        // Large blocks stay inside one region.
        while let block = try? allocator.allocate(order: 8) {
            let end = block.value + (pageSize << 8) - 1
            let inOne = (0..<allocator.regionCount).contains { r in
                allocator.region(at: r).start <= block && end < allocator.region(at: r).end.value
            }
            XCTAssertTrue(inOne, "an order-8 block crosses a region boundary")
            XCTAssertTrue(isAvailable(block.value) && isAvailable(end & ~(pageSize - 1)))
        }
        assertConsistent(allocator)
    }

    func testARegionAtPhysicalZeroHandsOutFrameZero() throws {
        let arena = PhysicalArena(base: 0, byteCount: 4 * mib)
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap())
        let pages = allocateAllPages(&allocator)
        XCTAssertTrue(pages.contains(PhysicalAddress(pageSize)), "frame 1 follows the metadata page at frame 0")
        XCTAssertFalse(pages.contains(PhysicalAddress(0)), "frame 0 holds the metadata")
        for page in pages { try allocator.free(page) }
        assertConsistent(allocator)

        // With the metadata elsewhere, frame 0 itself is handed out and linked correctly.
        let arena2 = PhysicalArena(base: 0, byteCount: 8 * mib)
        var second = try PageAllocator(memoryMap: arena2.memoryMap(usable: [(0, 2 * pageSize), (4 * mib, 8 * mib)]))
        let all = allocateAllPages(&second)
        XCTAssertTrue(all.contains(PhysicalAddress(0)))
        for page in all { try second.free(page) }
        assertConsistent(second)
    }

    // MARK: Bad frees

    func testEveryBadFreeIsATypedErrorAndChangesNothing() throws {
        let arena = PhysicalArena(byteCount: 16 * mib)
        let kernelImage: (UInt64, UInt64) = (arenaBase + 2 * mib, arenaBase + 2 * mib + 3 * pageSize)
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap(reserved: [kernelImage]))
        let single = try allocator.allocate()
        let run = try allocator.allocate(order: 2)
        let freed = try allocator.allocate()
        try allocator.free(freed)
        let before = snapshot(allocator)
        let neverHandedOut = PhysicalAddress(arenaBase + 15 * mib)
        XCTAssertEqual(allocator.status(of: neverHandedOut), .free(wasHandedOut: false))
        XCTAssertEqual(allocator.status(of: freed), .free(wasHandedOut: true))
        XCTAssertEqual(allocator.status(of: run), .allocated(order: 2))
        XCTAssertEqual(allocator.status(of: run.advanced(by: 3 * pageSize + 5)), .insideAllocatedBlock)
        XCTAssertEqual(allocator.status(of: PhysicalAddress(kernelImage.0 + 100)), .reserved)
        XCTAssertEqual(allocator.status(of: PhysicalAddress(arenaBase + 16 * mib)), .outOfRange)
        XCTAssertEqual(allocator.metadataRange.start.value, kernelImage.1, "metadata opens the largest available range")

        expectError(.doubleFree) { try allocator.free(freed) }
        expectError(.unalignedAddress) { try allocator.free(single.advanced(by: 8)) }
        expectError(.unalignedAddress) { try allocator.free(run.advanced(by: 1)) }
        expectError(.outOfRange) { try allocator.free(PhysicalAddress(arenaBase - pageSize)) }
        expectError(.outOfRange) { try allocator.free(PhysicalAddress(arenaBase + 16 * mib)) }
        expectError(.outOfRange) { try allocator.free(PhysicalAddress(0)) }
        expectError(.neverAllocated) { try allocator.free(neverHandedOut) }
        expectError(.insideBlock) { try allocator.free(run.advanced(by: pageSize)) }
        expectError(.insideBlock) { try allocator.free(run.advanced(by: 3 * pageSize)) }
        expectError(.reservedPage) { try allocator.free(PhysicalAddress(kernelImage.0)) }
        expectError(.reservedPage) { try allocator.free(allocator.metadataRange.start) }
        expectError(.orderMismatch) { try allocator.free(run, order: 1) }
        expectError(.orderMismatch) { try allocator.free(single, order: 2) }
        expectError(.invalidOrder) { try allocator.free(single, order: PageAllocator.maxOrder + 1) }
        XCTAssertEqual(snapshot(allocator), before, "a refused free changed the allocator")
        assertConsistent(allocator)

        // The real blocks are still intact and free normally.
        try allocator.free(run, order: 2)
        try allocator.free(single)
        expectError(.doubleFree) { try allocator.free(single) }
        expectError(.doubleFree) { try allocator.free(run.advanced(by: 2 * pageSize)) }
        XCTAssertEqual(allocator.usedPages, 0)
        assertConsistent(allocator)
    }

    func testDoubleFreeIsDetectedAfterThePageMergedIntoABiggerBlock() throws {
        let arena = PhysicalArena(byteCount: 8 * mib)
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap())
        let a = try allocator.allocate(order: 4)
        try allocator.free(a)
        // The block has coalesced; its head is now a tail of something bigger, or a free head.
        expectError(.doubleFree) { try allocator.free(a) }
        let b = try allocator.allocate(order: 6)
        // `a` may now lie inside `b` (an allocated tail) or still be free; either is refused.
        do {
            try allocator.free(a)
            XCTAssertEqual(a, b, "freeing a stale address only succeeds if it is b's start")
        } catch {
            XCTAssertTrue(error == .insideBlock || error == .doubleFree, "unexpected \(error)")
        }
        assertConsistent(allocator)
    }

    // MARK: Out of memory and invalid requests

    func testOutOfMemoryIsATypedErrorAndChangesNothing() throws {
        let arena = PhysicalArena(byteCount: 4 * mib)
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap())
        let before = snapshot(allocator)
        expectError(.outOfMemory) { _ = try allocator.allocate(order: 10) } // 1023 pages free, no order-10 block
        expectError(.outOfMemory) { _ = try allocator.allocate(pages: 1000) }
        expectError(.invalidOrder) { _ = try allocator.allocate(order: -1) }
        expectError(.invalidOrder) { _ = try allocator.allocate(order: PageAllocator.maxOrder + 1) }
        expectError(.invalidOrder) { _ = try allocator.allocate(pages: 0) }
        XCTAssertEqual(snapshot(allocator), before)

        let pages = allocateAllPages(&allocator)
        expectError(.outOfMemory) { _ = try allocator.allocate() }
        expectError(.outOfMemory) { _ = try allocator.allocateZeroed() }
        try allocator.free(pages[17])
        XCTAssertEqual(try allocator.allocate(), pages[17], "the only free page is handed out next")
        assertConsistent(allocator)
    }

    // MARK: Hot cache

    func testHotCacheServesSinglePagesLastInFirstOutAndDrainsBeforeFailing() throws {
        let arena = PhysicalArena(byteCount: 8 * mib)
        // One order-10 block [4M, 8M) as in the coalescing test.
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap(reserved: [(arenaBase, arenaBase + 4 * mib - pageSize)]))
        let a = try allocator.allocate(), b = try allocator.allocate()
        let free = allocator.freePages
        try allocator.free(a)
        try allocator.free(b)
        XCTAssertEqual(allocator.cachedPages, 2)
        XCTAssertEqual(allocator.freePages, free + 2, "cached pages count as free")
        XCTAssertEqual(allocator.status(of: a), .free(wasHandedOut: true))
        expectError(.doubleFree) { try allocator.free(a) }
        XCTAssertEqual(try allocator.allocate(), b, "last freed, first handed out")
        XCTAssertEqual(try allocator.allocate(), a)
        XCTAssertEqual(allocator.cachedPages, 0)
        assertConsistent(allocator)

        // Only the cache can complete the order-10 block: the allocation drains it first.
        var pages = allocateAllPages(&allocator)
        pages += [a, b]
        for page in pages { try allocator.free(page) }
        XCTAssertEqual(allocator.cachedPages, PageAllocator.hotCacheCapacity)
        XCTAssertEqual(allocator.freeBlockCount(order: 10), 0)
        let whole = try allocator.allocate(order: 10)
        XCTAssertEqual(whole.value, arenaBase + 4 * mib)
        XCTAssertEqual(allocator.cachedPages, 0)
        assertConsistent(allocator)
    }

    // MARK: Contents

    func testAllocatedPagesAreNotZeroedButAllocateZeroedIs() throws {
        let arena = PhysicalArena(byteCount: 4 * mib)
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap())
        allocator.fillsFreedPages = false
        let a = try allocator.allocate(order: 1)
        arena.pointer(to: a).initializeMemory(as: UInt8.self, repeating: 0xEE, count: 2 * Int(pageSize))
        try allocator.free(a)
        let again = try allocator.allocate(order: 1)
        XCTAssertEqual(again, a, "LIFO: the block just freed comes back")
        XCTAssertEqual(arena.pointer(to: again).load(fromByteOffset: 100, as: UInt8.self), 0xEE, "allocate does not zero")
        try allocator.free(again)
        let zeroed = try allocator.allocateZeroed(order: 1)
        XCTAssertEqual(zeroed, a)
        let bytes = UnsafeRawBufferPointer(start: arena.pointer(to: zeroed), count: 2 * Int(pageSize))
        XCTAssertTrue(bytes.allSatisfy { $0 == 0 }, "allocateZeroed left non-zero bytes")
        assertConsistent(allocator)
    }

    func testFreedPagesAreJunkFilledWhenEnabled() throws {
        let arena = PhysicalArena(byteCount: 4 * mib)
        var allocator = try PageAllocator(memoryMap: arena.wholeArenaMap())
        allocator.fillsFreedPages = true
        let a = try allocator.allocate(order: 2)
        arena.pointer(to: a).initializeMemory(as: UInt8.self, repeating: 0x11, count: 4 * Int(pageSize))
        try allocator.free(a)
        // The first 16 bytes of a free block's head page hold its free-list links.
        let bytes = UnsafeRawBufferPointer(start: arena.pointer(to: a) + 16, count: 4 * Int(pageSize) - 16)
        XCTAssertTrue(bytes.allSatisfy { $0 == PageAllocator.junkByte }, "freed block not junk-filled")
        // A single page goes to the hot cache, with no links in it: all of it is junk.
        let single = try allocator.allocate()
        arena.pointer(to: single).initializeMemory(as: UInt8.self, repeating: 0x22, count: Int(pageSize))
        try allocator.free(single)
        XCTAssertTrue(UnsafeRawBufferPointer(start: arena.pointer(to: single), count: Int(pageSize)).allSatisfy { $0 == PageAllocator.junkByte })
        assertConsistent(allocator)
    }

    // MARK: Random stress

    func testSeededRandomAllocateAndFreeMatchesAModel() throws {
        let seed: UInt64 = 0x5EED_0001
        print("PageAllocatorTests: random stress seed \(seed)")
        var random = SplitMix64Generator(seed: seed)
        let arena = PhysicalArena(byteCount: 16 * mib)
        let map = arena.memoryMap(usable: [(arenaBase, arenaBase + 6 * mib + 5 * pageSize), (arenaBase + 8 * mib, arenaBase + 16 * mib)],
                                  reserved: [(arenaBase + 9 * mib + 123, arenaBase + 9 * mib + 3 * pageSize)])
        var allocator = try PageAllocator(memoryMap: map)
        let initialBlocks = freeBlockCounts(allocator)
        var live: [PhysicalAddress: Int] = [:]      // model: block start -> order
        var owner: [UInt64: PhysicalAddress] = [:]  // model: frame -> block holding it
        var recentlyFreed: [PhysicalAddress] = []
        var usedInModel = 0

        for step in 0..<20_000 {
            let roll = Int.random(in: 0..<100, using: &random)
            if roll < 55 || live.isEmpty {
                let order = [0, 0, 0, 0, 1, 1, 2, 3, 4, 6, 9].randomElement(using: &random)!
                do {
                    let block = try allocator.allocate(order: order)
                    XCTAssertEqual(block.value % (pageSize << UInt64(order)), 0)
                    for f in 0..<(UInt64(1) << UInt64(order)) {
                        let frame = block.frameNumber + f
                        XCTAssertNil(owner[frame], "step \(step): frame \(frame) handed out twice")
                        owner[frame] = block
                    }
                    live[block] = order
                    usedInModel += 1 << order
                    recentlyFreed.removeAll { $0 == block }
                } catch {
                    XCTAssertEqual(error, .outOfMemory)
                    for larger in order...PageAllocator.maxOrder {
                        XCTAssertEqual(allocator.freeBlockCount(order: larger), 0, "step \(step): refused order \(order) with a free block of order \(larger)")
                    }
                }
            } else if roll < 95 {
                let (block, order) = live.randomElement(using: &random)!
                try allocator.free(block, order: order)
                for f in 0..<(UInt64(1) << UInt64(order)) { owner[block.frameNumber + f] = nil }
                live[block] = nil
                usedInModel -= 1 << order
                recentlyFreed.append(block)
            } else if let stale = recentlyFreed.randomElement(using: &random), owner[stale.frameNumber] == nil {
                let before = snapshot(allocator)
                expectError(.doubleFree) { try allocator.free(stale) }
                XCTAssertEqual(snapshot(allocator), before)
            }
            XCTAssertEqual(allocator.usedPages, usedInModel, "step \(step)")
            if step % 1000 == 0 { assertConsistent(allocator) }
        }
        assertConsistent(allocator)
        for (block, order) in live { try allocator.free(block, order: order) }
        XCTAssertEqual(allocator.usedPages, 0)
        allocator.drainHotCache()
        XCTAssertEqual(freeBlockCounts(allocator), initialBlocks, "everything coalesced back after the stress run")
        assertConsistent(allocator)
    }

    // MARK: The global instance

    func testGlobalInstanceIsSetUpOnceFromTheMemoryMap() throws {
        let arena = PhysicalArena(byteCount: 8 * mib)
        physicalPages = PageAllocator()
        XCTAssertEqual(physicalPages.totalPages, 0)
        try physicalPages.setUp(memoryMap: arena.wholeArenaMap())
        XCTAssertEqual(physicalPages.totalPages, 2048 - 1)
        let page = try physicalPages.allocate()
        try physicalPages.free(page)
        assertConsistent(physicalPages)
        physicalPages = PageAllocator()
    }
}
