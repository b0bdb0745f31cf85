// SwapPagerAsyncTests: asynchronous pageout writes — several cluster writes on the device at
// once, never more than `SwapPager.maxWritesInFlight`, a full device queue waited out, slots
// recorded only for completed writes, and the write-error semantics unchanged (the failed
// cluster retried page by page after the others finished, the bad block quarantined).

import XCTest
@testable import Kernel

final class SwapPagerAsyncTests: ArenaPageFramesTestCase {

    private func space(pages: UInt64 = 1024, queueDepth: Int = 16) throws -> (SwapSpace, RAMDisk) {
        let ram = RAMDisk(blocks: pages * 8, queueDepth: queueDepth)
        let space = SwapSpace()
        try space.swapOn(try SwapDisk.over(ram), identifier: 1)
        return (space, ram)
    }

    private func value(_ index: UInt64, _ word: Int) -> UInt64 { index &* 0x9E37_79B9 ^ UInt64(word) }

    private func pages(_ count: Int) throws -> [(index: UInt64, page: Page)] {
        try (0..<count).map { index in
            let page = try frames.allocate(zeroed: false)
            for word in 0..<Int(pageSize / 8) { page.contents.storeBytes(of: value(UInt64(index), word), toByteOffset: word * 8, as: UInt64.self) }
            return (UInt64(index), page)
        }
    }

    private func readsBack(_ pager: SwapPager, _ count: Int) throws -> Bool {
        let target = try frames.allocate(zeroed: false)
        defer { try? frames.free(target) }
        for index in 0..<UInt64(count) {
            try pager.pageIn(target, index: index)
            for word in 0..<Int(pageSize / 8) where target.contents.load(fromByteOffset: word * 8, as: UInt64.self) != value(index, word) {
                return false
            }
        }
        return true
    }

    func testClusterWritesOverlapUpToTheCap() throws {
        let (space, ram) = try space()
        let pager = SwapPager(space: space, pageCountHint: 128)
        let writesBefore = ram.writeRequests
        XCTAssertEqual(pager.pageOut(try pages(128)).compactMap { $0 }, [])
        XCTAssertEqual(pager.pageOutWrites, 8, "eight clusters of 16")
        XCTAssertEqual(pager.peakWritesInFlight, SwapPager.maxWritesInFlight, "writes overlapped, up to the cap")
        XCTAssertTrue(ram.peakInFlight > 1 && ram.peakInFlight <= SwapPager.maxWritesInFlight * 4,
                      "several device requests in flight: \(ram.peakInFlight)")
        XCTAssertEqual(ram.inFlightCount, 0, "everything reaped")
        XCTAssertEqual(ram.writeRequests - writesBefore, 8)
        XCTAssertEqual(space.usedBlocks, 128)
        XCTAssertTrue(try readsBack(pager, 128))
    }

    func testFullDeviceQueueIsWaitedOut() throws {
        let (space, ram) = try space(queueDepth: 1)
        let pager = SwapPager(space: space, pageCountHint: 64)
        XCTAssertEqual(pager.pageOut(try pages(64)).compactMap { $0 }, [])
        XCTAssertEqual(ram.peakInFlight, 1)
        XCTAssertEqual(space.usedBlocks, 64)
        XCTAssertTrue(try readsBack(pager, 64))
    }

    func testWriteErrorInOneOfSeveralInFlightClustersIsRetriedAndQuarantined() throws {
        let probe = try self.space().0.allocate(upTo: 16)
        let (space, ram) = try space()
        let pager = SwapPager(space: space, pageCountHint: 64)
        let bad = probe.start + 5   // the first cluster's 6th block; three more clusters follow it
        let (_, devicePage) = SwapSpace.location(of: bad)
        for sector in (devicePage * 8)..<(devicePage * 8 + 8) { ram.failingWriteBlocks.insert(sector) }
        XCTAssertEqual(pager.pageOut(try pages(64)).compactMap { $0 }, [], "every page written after the retry")
        XCTAssertTrue(space.isQuarantined(bad))
        XCTAssertEqual(space.statistics.badBlocks, 1)
        XCTAssertEqual(space.usedBlocks, 64)
        pager.metadata.forEach(in: 0..<SwapMetadata.maximumIndex) { _, slot in XCTAssertNotEqual(UInt64(slot.block), bad) }
        XCTAssertTrue(try readsBack(pager, 64))
    }

    func testWriteErrorsEverywhereLeaveEveryPageDirtyAndNoSlot() throws {
        let (space, ram) = try space(pages: 256)
        let pager = SwapPager(space: space, pageCountHint: 32)
        ram.failingWriteBlocks = Set(0..<(256 * 8))
        let results = pager.pageOut(try pages(32))
        XCTAssertEqual(results.filter { $0 == .io(.ioError) }.count, 32, "every page reported: stays dirty")
        XCTAssertEqual(pager.metadata.slot(at: 0), nil)
        XCTAssertEqual(space.usedBlocks, 0, "no slot recorded for a failed write")
        XCTAssertEqual(ram.inFlightCount, 0)
    }
}
