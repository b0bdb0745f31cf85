// SwapPagerTests: the swap pager over RAM disks and real vm_page frames in an arena —
// cluster planning, one I/O per pageout cluster, read-ahead planning and pagein, write
// errors (quarantine and retry, the old copy kept), read errors and silent corruption
// confined to their page, swap full, collapse transfer through `absorb`, and the Pager
// protocol's byte-offset surface.

import XCTest
@testable import Kernel

final class SwapPagerTests: ArenaPageFramesTestCase {

    // MARK: Helpers

    /// A swap space on one RAM disk of `pages` pages, and the disk.
    private func space(pages: UInt64 = 1024) throws -> (SwapSpace, RAMDisk) {
        let ram = RAMDisk(blocks: pages * 8)
        let space = SwapSpace()
        try space.swapOn(try SwapDisk.over(ram), identifier: 1)
        return (space, ram)
    }

    /// A page whose every word is derived from (`index`, `generation`).
    private func page(index: UInt64, generation: UInt64 = 0) throws -> Page {
        let page = try frames.allocate(zeroed: false)
        fill(page, index: index, generation: generation)
        return page
    }

    private func fill(_ page: Page, index: UInt64, generation: UInt64) {
        for word in 0..<Int(pageSize / 8) {
            page.contents.storeBytes(of: index &* 0x1000_0001 &+ generation &* 77 &+ UInt64(word), toByteOffset: word * 8, as: UInt64.self)
        }
    }

    private func holds(_ page: Page, index: UInt64, generation: UInt64 = 0) -> Bool {
        for word in 0..<Int(pageSize / 8)
        where page.contents.load(fromByteOffset: word * 8, as: UInt64.self) != index &* 0x1000_0001 &+ generation &* 77 &+ UInt64(word) {
            return false
        }
        return true
    }

    private func blank() throws -> Page {
        let page = try frames.allocate(zeroed: false)
        page.contents.initializeMemory(as: UInt8.self, repeating: 0xEE, count: Int(pageSize))
        return page
    }

    /// First device block (512-byte blocks) of global swap block `block` on a one-disk space.
    private func deviceBlock(of block: UInt32) -> UInt64 {
        let (slot, page) = SwapSpace.location(of: UInt64(block))
        XCTAssertEqual(slot, 0)
        return page * 8
    }

    // MARK: Planning

    func testClustersBreakAtGapsAndAtSixteenPages() {
        let dirty = Array(UInt64(0)..<20) + [25, 26, 40]
        XCTAssertEqual(SwapPager.clusters(of: dirty), [0..<16, 16..<20, 25..<27, 40..<41])
        XCTAssertEqual(SwapPager.clusters(of: []), [])
    }

    func testPageOutClusterIsOneWriteOnConsecutiveBlocks() throws {
        let (space, ram) = try space()
        let pager = SwapPager(space: space, pageCountHint: 64)
        let pages = try (0..<16).map { (index: UInt64($0), page: try page(index: UInt64($0))) }
        let writesBefore = ram.writeRequests
        let results = pager.pageOut(pages)
        XCTAssertEqual(results.compactMap { $0 }, [])
        XCTAssertEqual(ram.writeRequests - writesBefore, 1, "16 pages, one device request")
        XCTAssertEqual(pager.pageOutWrites, 1)
        let first = pager.metadata.slot(at: 0)!.block
        for index: UInt64 in 0..<16 { XCTAssertEqual(pager.metadata.slot(at: index)?.block, first + UInt32(index)) }
        XCTAssertEqual(space.usedBlocks, 16)
    }

    func testReadAheadPlanFollowsContiguousBlocksWithinBoundsAndSkipsResident() throws {
        let (space, _) = try space()
        let pager = SwapPager(space: space, pageCountHint: 64)
        // 0..<16 and 16..<20 are two clusters on two separate block runs.
        let pages = try (0..<20).map { (index: UInt64($0), page: try page(index: UInt64($0))) }
        XCTAssertEqual(pager.pageOut(pages).compactMap { $0 }, [])
        XCTAssertNotEqual(pager.metadata.slot(at: 16)!.block, pager.metadata.slot(at: 15)!.block + 1, "layout assumption")
        let first = UInt64(pager.metadata.slot(at: 0)!.block)
        XCTAssertEqual(pager.readAheadPlan(around: 10, within: 0..<64) { _ in false },
                       PageInPlan(indices: 3..<16, firstBlock: first + 3), "7 behind, ahead up to the run's end")
        XCTAssertEqual(pager.readAheadPlan(around: 4, within: 0..<64) { _ in false },
                       PageInPlan(indices: 0..<12, firstBlock: first), "bounded by index 0 behind, 7 ahead")
        XCTAssertEqual(pager.readAheadPlan(around: 10, within: 8..<12) { _ in false }?.indices, 8..<12, "object bounds")
        XCTAssertEqual(pager.readAheadPlan(around: 10, within: 0..<64) { $0 == 7 || $0 == 13 }?.indices, 8..<13, "resident pages stop it")
        XCTAssertEqual(pager.readAheadPlan(around: 17, within: 0..<64) { _ in false }?.indices, 16..<20)
        XCTAssertNil(pager.readAheadPlan(around: 30, within: 0..<64) { _ in false }, "no data")
        XCTAssertNil(pager.readAheadPlan(around: 10, within: 11..<64) { _ in false }, "outside bounds")
    }

    func testSequentialFaultReadsTheWholeWindowAheadAndNoneBehind() throws {
        let (space, _) = try space()
        let pager = SwapPager(space: space, pageCountHint: 64)
        XCTAssertEqual(pager.pageOut(try (0..<64).map { (UInt64($0), try page(index: UInt64($0))) }).compactMap { $0 }, [])
        var resident = Set<UInt64>()
        func fault(_ index: UInt64) throws -> Range<UInt64> {
            let plan = try XCTUnwrap(pager.readAheadPlan(around: index, within: 0..<64) { resident.contains($0) })
            let targets = try plan.indices.map { _ in try blank() }
            XCTAssertEqual(pager.pageIn(targets, plan: plan).compactMap { $0 }, [])
            for (position, target) in targets.enumerated() {
                XCTAssertTrue(holds(target, index: plan.indices.lowerBound + UInt64(position)))
                try frames.free(target)
            }
            resident.formUnion(plan.indices)
            return plan.indices
        }
        XCTAssertEqual(try fault(0), 0..<8, "a first fault: 7 ahead")
        XCTAssertEqual(try fault(8), 8..<16, "sequential: ahead to the end of the cluster's block run")
        XCTAssertEqual(try fault(16), 16..<32, "sequential: a whole window of 16 ahead")
        XCTAssertEqual(pager.sequentialPageIns, 2)
        XCTAssertEqual(try fault(50), 48..<58, "a jump is not sequential: 7 each way (48 is the run's start)")
        XCTAssertEqual(pager.sequentialPageIns, 2)
    }

    // MARK: Data path

    func testPageInReadAheadRoundTripsInOneRead() throws {
        let (space, ram) = try space()
        let pager = SwapPager(space: space, pageCountHint: 64)
        XCTAssertEqual(pager.pageOut(try (0..<16).map { (UInt64($0), try page(index: UInt64($0), generation: 3)) }).compactMap { $0 }, [])
        let plan = try XCTUnwrap(pager.readAheadPlan(around: 8, within: 0..<16) { _ in false })
        XCTAssertEqual(plan.indices, 1..<16)
        let targets = try plan.indices.map { _ in try blank() }
        let readsBefore = ram.readRequests
        XCTAssertEqual(pager.pageIn(targets, plan: plan).compactMap { $0 }, [])
        XCTAssertEqual(ram.readRequests - readsBefore, 1, "15 pages, one device request")
        for (position, index) in plan.indices.enumerated() { XCTAssertTrue(holds(targets[position], index: index, generation: 3), "page \(index)") }
        XCTAssertEqual(pager.metadata.count, 16, "slots stay after pagein (the page is clean)")
    }

    func testWriteErrorQuarantinesBlockAndRetriesElsewhere() throws {
        // Learn where the first cluster lands on an identical space (allocation is
        // deterministic; probing this one would move its next-fit cursor), then make the
        // cluster's 6th block fail.
        let probe = try self.space().0.allocate(upTo: 16)
        let (space, ram) = try space()
        let pager = SwapPager(space: space, pageCountHint: 64)
        let badBlock = UInt32(probe.start + 5)
        for sector in deviceBlock(of: badBlock)..<(deviceBlock(of: badBlock) + 8) { ram.failingWriteBlocks.insert(sector) }
        let pages = try (0..<16).map { (index: UInt64($0), page: try page(index: UInt64($0))) }
        XCTAssertEqual(pager.pageOut(pages).compactMap { $0 }, [], "every page written after the retry")
        XCTAssertTrue(space.isQuarantined(UInt64(badBlock)))
        XCTAssertEqual(space.statistics.badBlocks, 1)
        XCTAssertEqual(space.usedBlocks, 16)
        pager.metadata.forEach(in: 0..<SwapMetadata.maximumIndex) { _, slot in XCTAssertNotEqual(slot.block, badBlock) }
        for index: UInt64 in 0..<16 {
            let target = try blank()
            try pager.pageIn(target, index: index)
            XCTAssertTrue(holds(target, index: index), "page \(index) readable")
        }
    }

    func testWriteErrorsEverywhereKeepOldCopyAndReportThePage() throws {
        let (space, ram) = try space(pages: 256)
        let pager = SwapPager(space: space, pageCountHint: 8)
        let resident = try page(index: 2, generation: 1)
        XCTAssertNil(pager.pageOut([(2, resident)])[0])
        let oldBlock = pager.metadata.slot(at: 2)!.block
        fill(resident, index: 2, generation: 2)   // Dirtied again.
        ram.failingWriteBlocks = Set(0..<(256 * 8))
        XCTAssertEqual(pager.pageOut([(2, resident)])[0], .io(.ioError))
        XCTAssertEqual(space.statistics.badBlocks, UInt64(SwapPager.writeAttempts))
        XCTAssertEqual(pager.metadata.slot(at: 2)?.block, oldBlock, "the previous copy is kept")
        XCTAssertEqual(space.usedBlocks, 1)
        XCTAssertThrowsError(try pager.pageOut(resident, at: 2 * pageSize)) { XCTAssertEqual($0 as? PagerError, .ioError) }
        let target = try blank()
        try pager.pageIn(target, index: 2)
        XCTAssertTrue(holds(target, index: 2, generation: 1))
    }

    func testReadErrorFailsOnlyThatPage() throws {
        let (space, ram) = try space()
        let pager = SwapPager(space: space, pageCountHint: 64)
        XCTAssertEqual(pager.pageOut(try (0..<16).map { (UInt64($0), try page(index: UInt64($0))) }).compactMap { $0 }, [])
        ram.failingReadBlocks = [deviceBlock(of: pager.metadata.slot(at: 5)!.block) + 3]
        let plan = try XCTUnwrap(pager.readAheadPlan(around: 8, within: 0..<16) { _ in false })
        let targets = try plan.indices.map { _ in try blank() }
        let results = pager.pageIn(targets, plan: plan)
        for (position, index) in plan.indices.enumerated() {
            if index == 5 {
                XCTAssertEqual(results[position], .io(.ioError))
            } else {
                XCTAssertNil(results[position], "page \(index) unaffected")
                XCTAssertTrue(holds(targets[position], index: index))
            }
        }
        XCTAssertThrowsError(try pager.pageIn(try blank(), at: 5 * pageSize)) { XCTAssertEqual($0 as? PagerError, .ioError) }
        XCTAssertTrue(pager.hasData(at: 5 * pageSize), "a read error loses no metadata")
    }

    func testSilentCorruptionIsDetectedOnPageIn() throws {
        let (space, ram) = try space()
        let pager = SwapPager(space: space, pageCountHint: 64)
        XCTAssertEqual(pager.pageOut(try (0..<8).map { (UInt64($0), try page(index: UInt64($0))) }).compactMap { $0 }, [])
        ram.corrupt(block: deviceBlock(of: pager.metadata.slot(at: 3)!.block) + 5, byte: 17)
        let plan = try XCTUnwrap(pager.readAheadPlan(around: 0, within: 0..<8) { _ in false })
        XCTAssertEqual(plan.indices, 0..<8)
        let targets = try plan.indices.map { _ in try blank() }
        let results = pager.pageIn(targets, plan: plan)
        XCTAssertEqual(results[3], .corrupted)
        XCTAssertEqual(results.enumerated().filter { $0.offset != 3 }.compactMap { $0.element }, [])
        XCTAssertThrowsError(try pager.pageIn(try blank(), index: 3)) { XCTAssertEqual($0 as? SwapPagerError, .corrupted) }
    }

    func testSwapFullReportsNoSpaceForTheRest() throws {
        let (space, _) = try space(pages: 3)   // Two usable blocks.
        let pager = SwapPager(space: space, pageCountHint: 8)
        let results = pager.pageOut(try (0..<4).map { (UInt64($0), try page(index: UInt64($0))) })
        XCTAssertEqual(results, [nil, nil, .noSpace, .noSpace])
        XCTAssertThrowsError(try pager.pageOut(try page(index: 7), at: 7 * pageSize)) { XCTAssertEqual($0 as? PagerError, .noSpace) }
    }

    func testRewriteAndDiscardFreeBlocks() throws {
        let (space, _) = try space()
        let pager = SwapPager(space: space, pageCountHint: 64)
        let resident = try page(index: 9)
        XCTAssertNil(pager.pageOut([(9, resident)])[0])
        XCTAssertNil(pager.pageOut([(9, resident)])[0])
        XCTAssertEqual(space.usedBlocks, 1, "the replaced block is freed")
        XCTAssertEqual(pager.pageOut(try (20..<40).map { (UInt64($0), try page(index: UInt64($0))) }).compactMap { $0 }, [])
        pager.discard(25 * pageSize..<30 * pageSize)
        XCTAssertEqual(space.usedBlocks, 16)
        XCTAssertEqual(pager.offsetsWithData(in: 0..<(24 * pageSize + 1)), [9, 20, 21, 22, 23, 24].map { $0 * pageSize })
        pager.terminate()
        XCTAssertEqual(space.usedBlocks, 0)
        XCTAssertTrue(pager.metadata.isEmpty)
    }

    // MARK: Collapse

    func testAbsorbMovesBackingDataIntoSurvivorHonouringOffsetsAndNewerPages() throws {
        let (space, _) = try space()
        let backing = SwapPager(space: space, pageCountHint: 8)
        let survivor = SwapPager(space: space, pageCountHint: 4)
        XCTAssertEqual(backing.pageOut(try (0..<8).map { (UInt64($0), try page(index: UInt64($0) + 100)) }).compactMap { $0 }, [])
        XCTAssertNil(survivor.pageOut([(1, try page(index: 500))])[0])
        // Survivor sees backing bytes [2, 6) pages at its 0; its page 2 is resident (newer).
        let merged = survivor.absorb(backing, range: 2 * pageSize..<6 * pageSize, destinationStart: 0) { $0 == 2 * pageSize }
        XCTAssertTrue(merged)
        XCTAssertEqual(survivor.offsetsWithData(in: 0..<UInt64.max), [0, 1, 3].map { $0 * pageSize })
        XCTAssertEqual(backing.offsetsWithData(in: 0..<UInt64.max), [0, 1, 6, 7].map { $0 * pageSize })
        XCTAssertEqual(space.usedBlocks, 7, "backing 3 (shadowed by survivor's own copy) and 4 (resident) freed")
        let target = try blank()
        try survivor.pageIn(target, at: 0)
        XCTAssertTrue(holds(target, index: 102))
        try survivor.pageIn(target, at: pageSize)
        XCTAssertTrue(holds(target, index: 500))
        try survivor.pageIn(target, at: 3 * pageSize)
        XCTAssertTrue(holds(target, index: 105))
        let (otherSpace, _) = try self.space()
        let stranger = SwapPager(space: otherSpace, pageCountHint: 4)
        XCTAssertFalse(survivor.absorb(stranger, range: 0..<pageSize, destinationStart: 0) { _ in false })
        XCTAssertFalse(survivor.absorb(survivor, range: 0..<pageSize, destinationStart: 0) { _ in false })
    }

    func testPagerProtocolRoundTripThroughByteOffsets() throws {
        let (space, _) = try space()
        let pager: any Pager = SwapPager(space: space, pageCountHint: 0)
        try pager.pageOut(try page(index: 77), at: 77 * pageSize)
        XCTAssertTrue(pager.hasData(at: 77 * pageSize))
        XCTAssertFalse(pager.hasData(at: 78 * pageSize))
        XCTAssertFalse(pager.hasData(at: 77 * pageSize + 1))
        let target = try blank()
        try pager.pageIn(target, at: 77 * pageSize)
        XCTAssertTrue(holds(target, index: 77))
        XCTAssertThrowsError(try pager.pageIn(target, at: 78 * pageSize)) { XCTAssertEqual($0 as? PagerError, .noData) }
        pager.discard(0..<UInt64.max)
        XCTAssertEqual(space.usedBlocks, 0)
    }
}
