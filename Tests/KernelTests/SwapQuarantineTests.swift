// SwapQuarantineTests: the bad-block quarantine on disk — every quarantine rewrites and
// flushes the device's header, swapoff + swapon of the same disk (in another slot, under
// another identifier) keeps the quarantined blocks out, `.initialise` forgets them, damaged,
// unknown and overflowed headers refuse swapon without changing anything, a failed header
// write keeps the quarantine in memory and is retried, and the statistics stay exact through
// swapoff (with evacuation, and a failed one) and re-add.

import XCTest
@testable import Kernel

final class SwapQuarantineTests: ArenaAllocatorTestCase {
    private func ramDisk(pages: UInt64) -> RAMDisk { RAMDisk(blocks: pages * 8) }

    /// The header on `ram`'s first page.
    private func header(on ram: RAMDisk) throws -> SwapHeader {
        try Array(ram.bytes(block: 0, count: 8)).withUnsafeBytes { try SwapHeader.read(from: $0.baseAddress!) }
    }

    /// Writes `header`'s page onto `ram`, then lets `edit` change it (a damaged or foreign header).
    private func place(_ header: SwapHeader, on ram: RAMDisk, _ edit: (inout [UInt8]) -> Void = { _ in }) {
        var bytes = [UInt8](repeating: 0, count: Int(pageSize))
        bytes.withUnsafeMutableBytes { header.write(to: $0.baseAddress!) }
        edit(&bytes)
        ram.store(bytes, block: 0)
    }

    private func expectSwapError(_ expected: SwapError, file: StaticString = #filePath, line: UInt = #line,
                                 _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) {
            XCTAssertEqual($0 as? SwapError, expected, file: file, line: line)
        }
    }

    /// Allocates every free block one at a time.
    private func allocateAll(_ space: SwapSpace) -> [UInt64] {
        var blocks: [UInt64] = []
        while let run = try? space.allocate(upTo: 16) { blocks.append(contentsOf: run.start..<run.end) }
        return blocks
    }

    private func freeAll(_ space: SwapSpace, _ blocks: [UInt64]) throws {
        for block in blocks where space.isInUse(block) { try space.free(start: block, count: 1) }
    }

    func testQuarantineSurvivesSwapOffAndSwapOnOfTheSameDisk() throws {
        let ram = ramDisk(pages: 65)
        let space = SwapSpace()
        try space.swapOn(try SwapDisk.over(ram), identifier: 1)
        let blocks = allocateAll(space)
        XCTAssertEqual(blocks.count, 64)
        let badPages: [UInt64] = [40, 3, 17]
        let flushesBefore = ram.flushRequests
        for page in badPages {
            XCTAssertEqual(try space.quarantine(SwapSpace.globalBlock(slot: 0, page: page)), .persisted)
        }
        XCTAssertEqual(ram.flushRequests, flushesBefore + 3, "each header rewrite is flushed")
        XCTAssertEqual(try header(on: ram), SwapHeader(pageCount: 65, identifier: 1, slot: 0, quarantinedPages: [3, 17, 40]),
                       "the header lists the pages, ascending, before quarantine returns")
        try freeAll(space, blocks)
        try space.swapOff(identifier: 1)

        // Back on in slot 1 under another identifier: the same device pages, other global blocks.
        let other = SwapSpace()
        try other.swapOn(try SwapDisk.over(ramDisk(pages: 33)), identifier: 7)
        try other.swapOn(try SwapDisk.over(ram), identifier: 2)
        let bad = badPages.map { SwapSpace.globalBlock(slot: 1, page: $0) }
        for block in bad { XCTAssertTrue(other.isQuarantined(block), "block \(block) quarantined again from the header") }
        XCTAssertFalse(other.isQuarantined(SwapSpace.globalBlock(slot: 1, page: 4)))
        XCTAssertEqual(other.statistics.badBlocks, 3)
        XCTAssertEqual(other.statistics.totalBlocks, 32 + 61)
        XCTAssertEqual(other.statistics.freeBlocks, 32 + 61)
        XCTAssertEqual(try header(on: ram), SwapHeader(pageCount: 65, identifier: 2, slot: 1, quarantinedPages: [3, 17, 40]),
                       "rewritten for the new identity, list kept")
        for _ in 0..<2 {
            let again = allocateAll(other)
            XCTAssertEqual(again.count, 32 + 61)
            XCTAssertTrue(Set(again).isDisjoint(with: bad), "a quarantined block is never handed out again")
            try freeAll(other, again)
        }
    }

    func testInitialiseForgetsTheQuarantineAndForeignPagesGetAFreshHeader() throws {
        let ram = ramDisk(pages: 40)
        place(SwapHeader(pageCount: 40, identifier: 5, slot: 3, quarantinedPages: [2, 30]), on: ram)
        let space = SwapSpace()
        try space.swapOn(try SwapDisk.over(ram), identifier: 9, header: .initialise)
        XCTAssertEqual(space.statistics.badBlocks, 0)
        XCTAssertEqual(space.freeBlocks, 39)
        XCTAssertEqual(try header(on: ram), SwapHeader(pageCount: 40, identifier: 9, slot: 0))
        try space.swapOff(identifier: 9)

        // Data that is no header at all (here: a non-zero pattern) is not ours: initialised.
        ram.store([UInt8](repeating: 0x5A, count: Int(pageSize)), block: 0)
        try space.swapOn(try SwapDisk.over(ram), identifier: 9)
        XCTAssertEqual(space.statistics.badBlocks, 0)
        XCTAssertEqual(try header(on: ram), SwapHeader(pageCount: 40, identifier: 9, slot: 0))
    }

    func testVersion1HeaderIsAcceptedAndUpgraded() throws {
        let ram = ramDisk(pages: 40)
        place(SwapHeader(pageCount: 40, identifier: 5, slot: 0), on: ram) { bytes in
            bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(1), toByteOffset: 8, as: UInt32.self) }
            let sum = bytes.withUnsafeBytes { SwapHeader.checksum(of: $0.baseAddress!) }
            bytes.withUnsafeMutableBytes { $0.storeBytes(of: sum, toByteOffset: 36, as: UInt32.self) }
        }
        let space = SwapSpace()
        try space.swapOn(try SwapDisk.over(ram), identifier: 5)
        XCTAssertEqual(space.freeBlocks, 39)
        XCTAssertEqual(ram.bytes(block: 0, count: 1)[8], 2, "rewritten as version 2")
    }

    func testDamagedUnknownOrUnreadableHeaderRefusesSwapOnAndChangesNothing() throws {
        let cases: [(SwapError, (inout [UInt8]) -> Void)] = [
            (.badHeader(.checksumMismatch), { $0[60] ^= 0x40 }),
            (.badHeader(.unsupportedVersion(3)), { $0[8] = 3 }),
            (.badHeader(.wrongPageSize(8192)), { $0.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(8192), toByteOffset: 12, as: UInt32.self) } }),
        ]
        for (expected, damage) in cases {
            let ram = ramDisk(pages: 40)
            place(SwapHeader(pageCount: 40, identifier: 5, slot: 0, quarantinedPages: [7]), on: ram, damage)
            let onDisk = Array(ram.bytes(block: 0, count: 8))
            let space = SwapSpace()
            let before = space.statistics
            expectSwapError(expected) { try space.swapOn(try SwapDisk.over(ram), identifier: 5) }
            XCTAssertEqual(space.statistics, before)
            XCTAssertEqual(space.deviceIdentifiers, [])
            XCTAssertEqual(Array(ram.bytes(block: 0, count: 8)), onDisk, "a header it cannot read is not overwritten")
            XCTAssertEqual(physicalPages.usedPages, 0, "the header frame is returned")
            try space.swapOn(try SwapDisk.over(ram), identifier: 5, header: .initialise)
            XCTAssertEqual(space.freeBlocks, 39, "initialise takes the device anyway")
            try space.swapOff(identifier: 5)
        }
        let ram = ramDisk(pages: 40)
        ram.failingReadBlocks = [3]
        let space = SwapSpace()
        expectSwapError(.io(.ioError)) { try space.swapOn(try SwapDisk.over(ram), identifier: 1) }
        XCTAssertEqual(ram.writeRequests, 0, "the header could not be read: nothing written")
        XCTAssertEqual(physicalPages.usedPages, 0)
    }

    func testEntriesPastAShorterWindowAreDropped() throws {
        let ram = ramDisk(pages: 64)
        place(SwapHeader(pageCount: 64, identifier: 5, slot: 0, quarantinedPages: [10, 39, 50]), on: ram)
        let space = SwapSpace()
        try space.swapOn(try SwapDisk.over(ram, blockCount: 40 * 8), identifier: 5)
        XCTAssertEqual(space.statistics.badBlocks, 2, "pages 10 and 39 lie in the 40-page window, 50 does not")
        XCTAssertEqual(space.totalBlocks, 37)
        XCTAssertEqual(try header(on: ram).quarantinedPages, [10, 39])
    }

    func testOverflowedQuarantineIsRecordedAndRefusedAtSwapOn() throws {
        let capacity = SwapHeader.quarantineCapacity
        let pages = UInt64(capacity) + 20
        let ram = ramDisk(pages: pages)
        let space = SwapSpace()
        try space.swapOn(try SwapDisk.over(ram), identifier: 1)
        let blocks = allocateAll(space)
        for page in 1...UInt64(capacity) {
            XCTAssertEqual(try space.quarantine(SwapSpace.globalBlock(slot: 0, page: page)), .persisted)
        }
        let last = SwapSpace.globalBlock(slot: 0, page: UInt64(capacity) + 1)
        XCTAssertEqual(try space.quarantine(last), .overflowed, "the list is full: the header says so")
        XCTAssertTrue(space.isQuarantined(last), "memory still holds every quarantined block")
        XCTAssertEqual(space.statistics.badBlocks, UInt64(capacity) + 1)
        let onDisk = try header(on: ram)
        XCTAssertTrue(onDisk.quarantineOverflowed)
        XCTAssertEqual(onDisk.quarantinedPages.count, capacity)
        try freeAll(space, blocks)
        XCTAssertEqual(space.freeBlocks, pages - 1 - UInt64(capacity) - 1)
        try space.swapOff(identifier: 1)

        expectSwapError(.quarantineOverflow) { try space.swapOn(try SwapDisk.over(ram), identifier: 1) }
        XCTAssertEqual(space.statistics.devices, 0)
        XCTAssertEqual(physicalPages.usedPages, 0)
        try space.swapOn(try SwapDisk.over(ram), identifier: 1, header: .initialise)
        XCTAssertEqual(space.freeBlocks, pages - 1, "an explicit initialise starts over")
    }

    func testFailedHeaderWriteKeepsTheQuarantineAndIsRetried() throws {
        let ram = ramDisk(pages: 64)
        let space = SwapSpace()
        try space.swapOn(try SwapDisk.over(ram), identifier: 1)
        let blocks = allocateAll(space)
        let block = { (page: UInt64) in SwapSpace.globalBlock(slot: 0, page: page) }

        ram.failingWriteBlocks = Set(0..<8)
        XCTAssertEqual(try space.quarantine(block(5)), .inMemoryOnly(.io(.ioError)))
        XCTAssertTrue(space.isQuarantined(block(5)), "kept in memory")
        XCTAssertFalse(space.isInUse(block(5)))
        XCTAssertEqual(space.statistics.badBlocks, 1)
        XCTAssertEqual(space.headerWriteErrors, 1)
        XCTAssertTrue(space.isHeaderStale(onDevice: 1))
        XCTAssertEqual(try header(on: ram).quarantinedPages, [], "the old header is still there")

        ram.failingWriteBlocks = []
        XCTAssertEqual(try space.quarantine(block(9)), .persisted, "the next quarantine writes the whole list")
        XCTAssertFalse(space.isHeaderStale(onDevice: 1))
        XCTAssertEqual(try header(on: ram).quarantinedPages, [5, 9])

        ram.failingWriteBlocks = [3]
        XCTAssertEqual(try space.quarantine(block(2)), .inMemoryOnly(.io(.ioError)))
        ram.failingWriteBlocks = []
        try freeAll(space, blocks)
        try space.swapOff(identifier: 1)
        XCTAssertEqual(try header(on: ram).quarantinedPages, [2, 5, 9], "swapoff wrote the stale header")
        XCTAssertEqual(space.headerWriteErrors, 2)

        // A header that cannot be written at swapoff either: swapoff still succeeds; the
        // unlisted block is simply usable again after the next swapon.
        try space.swapOn(try SwapDisk.over(ram), identifier: 1)
        let again = allocateAll(space)
        ram.failingWriteBlocks = Set(0..<8)
        XCTAssertEqual(try space.quarantine(block(20)), .inMemoryOnly(.io(.ioError)))
        try freeAll(space, again)
        try space.swapOff(identifier: 1)
        XCTAssertEqual(space.headerWriteErrors, 4, "the quarantine's write and swapoff's retry")
        XCTAssertEqual(physicalPages.usedPages, 0, "the header frame is returned")
        ram.failingWriteBlocks = []
        try space.swapOn(try SwapDisk.over(ram), identifier: 1)
        XCTAssertEqual(space.statistics.badBlocks, 3)
        XCTAssertFalse(space.isQuarantined(block(20)))
    }

    func testSwapOffAndReAddKeepTheStatisticsExactWithQuarantinedBlocks() throws {
        let ramA = ramDisk(pages: 100)
        let ramB = ramDisk(pages: 50)
        let space = SwapSpace()
        try space.swapOn(try SwapDisk.over(ramA), identifier: 1)
        try space.swapOn(try SwapDisk.over(ramB), identifier: 2)
        var held = allocateAll(space)
        XCTAssertEqual(held.count, 99 + 49)
        for page: UInt64 in [1, 16, 60] { try space.quarantine(SwapSpace.globalBlock(slot: 0, page: page)) }
        try space.quarantine(SwapSpace.globalBlock(slot: 1, page: 20))
        held.removeAll { space.isQuarantined($0) }
        // Keep 10 blocks of each device in use, free the rest.
        let keptA = held.filter { SwapSpace.location(of: $0).slot == 0 }.prefix(10)
        let keptB = held.filter { SwapSpace.location(of: $0).slot == 1 }.prefix(10)
        try freeAll(space, held.filter { !keptA.contains($0) && !keptB.contains($0) })
        var stats = space.statistics
        XCTAssertEqual(stats.totalBlocks, 96 + 48)
        XCTAssertEqual(stats.usedBlocks, 20)
        XCTAssertEqual(stats.badBlocks, 4)
        XCTAssertEqual(stats.freeBlocks, 96 + 48 - 20)

        // A swapoff that evacuates only half fails: the device is back as it was, bad blocks
        // still held (they are not returned to the allocator with the idle ones).
        expectSwapError(.deviceBusy(blocksInUse: 5)) {
            try space.swapOff(identifier: 1) { space, blocks in
                for block in blocks.prefix(5) { try! space.free(start: block, count: 1) }
            }
        }
        stats = space.statistics
        XCTAssertEqual(stats.usedBlocks, 15)
        XCTAssertEqual(stats.badBlocks, 4)
        XCTAssertEqual(stats.freeBlocks, stats.totalBlocks - stats.usedBlocks)

        // Evacuating swapoff of device 1: only device 2 and its own bad block remain.
        try space.swapOff(identifier: 1) { space, blocks in
            for block in blocks { try! space.free(start: block, count: 1) }
        }
        stats = space.statistics
        XCTAssertEqual(stats.devices, 1)
        XCTAssertEqual(stats.totalBlocks, 48)
        XCTAssertEqual(stats.badBlocks, 1)
        XCTAssertEqual(stats.usedBlocks, 10)
        XCTAssertEqual(stats.freeBlocks, 38)
        XCTAssertTrue(space.isQuarantined(SwapSpace.globalBlock(slot: 1, page: 20)))
        XCTAssertFalse(space.isQuarantined(SwapSpace.globalBlock(slot: 0, page: 16)), "device 1 is gone")

        // Re-added (it takes slot 0 again): its three bad blocks come back from its header.
        try space.swapOn(try SwapDisk.over(ramA), identifier: 1)
        stats = space.statistics
        XCTAssertEqual(stats.totalBlocks, 96 + 48)
        XCTAssertEqual(stats.badBlocks, 4)
        XCTAssertEqual(stats.usedBlocks, 10)
        XCTAssertEqual(stats.freeBlocks, 96 + 48 - 10)
        let all = allocateAll(space)
        XCTAssertEqual(all.count, 96 + 48 - 10)
        XCTAssertTrue(all.allSatisfy { !space.isQuarantined($0) })
        XCTAssertEqual(space.statistics.freeBlocks, 0)
        try freeAll(space, all + Array(keptB))
        XCTAssertEqual(space.statistics.freeBlocks, 96 + 48)
        XCTAssertEqual(space.statistics.usedBlocks, 0)
        try space.swapOff(identifier: 1)
        try space.swapOff(identifier: 2)
        XCTAssertEqual(space.statistics, SwapSpace().statistics, "nothing left")
        XCTAssertEqual(physicalPages.usedPages, 0, "both header frames returned")
    }
}
