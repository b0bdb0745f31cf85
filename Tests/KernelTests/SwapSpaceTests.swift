// SwapSpaceTests: swapon/swapoff over RAM disks — the header, interleaving in stripes across
// devices, I/O split at stripe boundaries, bad-block quarantine, reservation accounting,
// swap-full hysteresis, and swapoff's refusal, evacuation and restore on failure.

import XCTest
@testable import Kernel

final class SwapSpaceTests: ArenaAllocatorTestCase {
    /// A RAM disk of `pages` pages (512-byte blocks) wrapped for swap.
    private func disk(pages: UInt64, maxSegments: Int = 32) throws -> (RAMDisk, SwapDisk) {
        let ram = RAMDisk(blocks: pages * 8, maxSegments: maxSegments)
        return (ram, try SwapDisk.over(ram))
    }

    private func expectSwapError(_ expected: SwapError, file: StaticString = #filePath, line: UInt = #line,
                                 _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) {
            XCTAssertEqual($0 as? SwapError, expected, file: file, line: line)
        }
    }

    func testSwapOnWritesValidHeaderAndReservesFirstPage() throws {
        let (ram, swapDisk) = try disk(pages: 64)
        let space = SwapSpace()
        XCTAssertTrue(space.isNearlyFull, "no swap: not available")
        try space.swapOn(swapDisk, identifier: 0xABCD)
        let header = try ram.bytes(block: 0, count: 8).withUnsafeBytes { try SwapHeader.read(from: $0.baseAddress!) }
        XCTAssertEqual(header, SwapHeader(pageCount: 64, identifier: 0xABCD, slot: 0))
        XCTAssertEqual(space.totalBlocks, 63)
        XCTAssertEqual(space.freeBlocks, 63)
        XCTAssertFalse(space.isNearlyFull)
        var seen: Set<UInt64> = []
        while let run = try? space.allocate(upTo: 16) {
            for block in run.start..<run.end {
                let (slot, page) = SwapSpace.location(of: block)
                XCTAssertEqual(slot, 0)
                XCTAssertNotEqual(page, 0, "the header page is never handed out")
                XCTAssertTrue(seen.insert(block).inserted)
            }
        }
        XCTAssertEqual(seen.count, 63)
        ram.corrupt(block: 2)
        XCTAssertThrowsError(try ram.bytes(block: 0, count: 8).withUnsafeBytes { try SwapHeader.read(from: $0.baseAddress!) },
                             "a damaged header fails its checksum") {
            XCTAssertEqual($0 as? SwapError, .badHeader(.checksumMismatch))
        }
    }

    func testSwapOnFailureChangesNothing() throws {
        let (ram, swapDisk) = try disk(pages: 64)
        ram.failingWriteBlocks = [0]
        let space = SwapSpace()
        let before = space.statistics
        expectSwapError(.io(.ioError)) { try space.swapOn(swapDisk, identifier: 1) }
        XCTAssertEqual(space.statistics, before)
        XCTAssertEqual(space.deviceIdentifiers, [])
        expectSwapError(.full) { _ = try space.allocate(upTo: 1) }
        let (_, tiny) = try disk(pages: 1)
        expectSwapError(.windowOutOfRange) { try space.swapOn(tiny, identifier: 2) }
        XCTAssertEqual(physicalPages.usedPages, 0, "header buffers returned")
    }

    func testSwapOnRefusesDuplicatesAndFifthDevice() throws {
        let space = SwapSpace()
        for identifier in 1...UInt64(SwapSpace.maximumDevices) { try space.swapOn(try disk(pages: 32).1, identifier: identifier) }
        expectSwapError(.duplicateDevice) { try space.swapOn(try self.disk(pages: 32).1, identifier: 1) }
        expectSwapError(.tooManyDevices) { try space.swapOn(try self.disk(pages: 32).1, identifier: 99) }
        XCTAssertEqual(space.totalBlocks, 4 * 31)
    }

    func testBlocksInterleaveAcrossDevicesInStripes() throws {
        let space = SwapSpace()
        let (ramA, diskA) = try disk(pages: 161)
        let (ramB, diskB) = try disk(pages: 161)
        try space.swapOn(diskA, identifier: 1)
        try space.swapOn(diskB, identifier: 2)
        XCTAssertEqual(space.totalBlocks, 320)
        var perDevice = [0, 0]
        var clustersOnOneDevice = 0
        var clusters = 0
        while let run = try? space.allocate(upTo: 16) {
            let slots = Set((run.start..<run.end).map { SwapSpace.location(of: $0).slot })
            XCTAssertTrue(slots.isSubset(of: [0, 1]), "only present devices")
            for block in run.start..<run.end { perDevice[SwapSpace.location(of: block).slot] += 1 }
            clusters += 1
            if slots.count == 1 { clustersOnOneDevice += 1 }
        }
        XCTAssertEqual(perDevice, [160, 160])
        XCTAssertGreaterThan(clustersOnOneDevice, clusters * 3 / 4, "16-block runs mostly fall in one stripe")
        // A run straddling the two devices is written as two I/Os, each to the right place.
        for block: UInt64 in 72..<88 { try space.free(start: block, count: 1) }
        let run = try space.allocate(upTo: 16)
        XCTAssertEqual(run, BlockRun(start: 72, count: 16), "blocks 72..79 on A, 80..87 on B")
        var frames: [PhysicalAddress] = []
        for index in 0..<16 {
            let frame = try physicalPages.allocate()
            DirectMap.pointer(to: frame).initializeMemory(as: UInt8.self, repeating: UInt8(index + 1), count: Int(pageSize))
            frames.append(frame)
        }
        try space.write(start: run.start, from: frames)
        // Block 72 = device A page 24; block 80 = device B page 16.
        XCTAssertEqual(ramA.bytes(block: 24 * 8, count: 8).first, 1)
        XCTAssertEqual(ramA.bytes(block: 31 * 8, count: 8).first, 8)
        XCTAssertEqual(ramB.bytes(block: 16 * 8, count: 8).first, 9)
        XCTAssertEqual(ramB.bytes(block: 23 * 8, count: 8).first, 16)
        for frame in frames { DirectMap.pointer(to: frame).initializeMemory(as: UInt8.self, repeating: 0, count: Int(pageSize)) }
        try space.read(start: run.start, into: frames)
        for (index, frame) in frames.enumerated() {
            XCTAssertEqual(DirectMap.pointer(to: frame).load(fromByteOffset: 4095, as: UInt8.self), UInt8(index + 1))
        }
    }

    func testQuarantinedBlockIsNeverHandedOutAgain() throws {
        let space = SwapSpace()
        try space.swapOn(try disk(pages: 65).1, identifier: 1)
        var blocks: [UInt64] = []
        while let run = try? space.allocate(upTo: 1) { blocks.append(run.start) }
        XCTAssertEqual(blocks.count, 64)
        let bad = blocks[10]
        try space.quarantine(bad)
        XCTAssertTrue(space.isQuarantined(bad))
        expectSwapError(.blockNotInUse) { try space.free(start: bad, count: 1) }
        expectSwapError(.blockNotInUse) { try space.quarantine(bad) }
        for block in blocks where block != bad { try space.free(start: block, count: 1) }
        XCTAssertEqual(space.statistics.badBlocks, 1)
        XCTAssertEqual(space.totalBlocks, 63)
        XCTAssertEqual(space.freeBlocks, 63)
        for _ in 0..<3 {
            var again: [UInt64] = []
            while let run = try? space.allocate(upTo: 5) { again.append(contentsOf: run.start..<run.end) }
            XCTAssertFalse(again.contains(bad))
            XCTAssertEqual(again.count, 63)
            for block in again { try space.free(start: block, count: 1) }
        }
        expectSwapError(.blockNotInUse) { try space.free(start: blocks[0], count: 1) }
    }

    func testReservationRefusesOvercommitAndChecksUnreserve() throws {
        let space = SwapSpace()
        try space.swapOn(try disk(pages: 101).1, identifier: 1)
        space.overcommitPages = 50
        try space.reserve(100)
        try space.reserve(50)
        expectSwapError(.overcommitted) { try space.reserve(1) }
        XCTAssertEqual(space.statistics.reservedPages, 150)
        expectSwapError(.notReserved) { try space.unreserve(151) }
        try space.unreserve(60)
        try space.reserve(60)
        expectSwapError(.overcommitted) { try space.reserve(UInt64.max) }
        // swapoff that would leave reservations uncovered is refused.
        try space.swapOn(try disk(pages: 33).1, identifier: 2)
        try space.reserve(32)
        expectSwapError(.overcommitted) { try space.swapOff(identifier: 2) }
        try space.unreserve(32)
        try space.swapOff(identifier: 2)
    }

    func testSwapFullHysteresisNeedsHighWatermarkToClear() throws {
        let space = SwapSpace()
        try space.swapOn(try disk(pages: 257).1, identifier: 1)
        XCTAssertEqual(space.lowWatermark, 8)
        XCTAssertEqual(space.highWatermark, 16)
        var blocks: [UInt64] = []
        while space.freeBlocks >= 8 {
            XCTAssertFalse(space.isNearlyFull)
            blocks.append(try space.allocate(upTo: 1).start)
        }
        XCTAssertTrue(space.isNearlyFull, "below the low watermark")
        while space.freeBlocks < 16 {
            try space.free(start: blocks.removeLast(), count: 1)
            XCTAssertTrue(space.isNearlyFull, "still nearly full up to the high watermark (free \(space.freeBlocks))")
        }
        try space.free(start: blocks.removeLast(), count: 1)
        XCTAssertFalse(space.isNearlyFull, "available again above the high watermark")
        XCTAssertFalse(space.statistics.isNearlyFull)
    }

    func testSwapOffRefusesWhileBlocksInUseWithoutEvacuation() throws {
        let space = SwapSpace()
        try space.swapOn(try disk(pages: 64).1, identifier: 1)
        let run = try space.allocate(upTo: 3)
        let before = space.statistics
        expectSwapError(.deviceBusy(blocksInUse: 3)) { try space.swapOff(identifier: 1) }
        XCTAssertEqual(space.statistics, before)
        expectSwapError(.noSuchDevice) { try space.swapOff(identifier: 7) }
        try space.free(start: run.start, count: run.count)
        try space.swapOff(identifier: 1)
        XCTAssertEqual(space.statistics.devices, 0)
        XCTAssertEqual(space.totalBlocks, 0)
        XCTAssertTrue(space.isNearlyFull)
        expectSwapError(.full) { _ = try space.allocate(upTo: 1) }
    }

    func testSwapOffEvacuatesThroughCallbackAndKeepsOtherDevice() throws {
        let space = SwapSpace()
        try space.swapOn(try disk(pages: 200).1, identifier: 1)
        try space.swapOn(try disk(pages: 40).1, identifier: 2)
        var held: [UInt64] = []
        for _ in 0..<20 { held.append(contentsOf: { let r = try! space.allocate(upTo: 4); return Array(r.start..<r.end) }()) }
        let onFirst = space.blocksInUse(onDevice: 1)
        XCTAssertFalse(onFirst.isEmpty)
        var evacuated: [UInt64] = []
        try space.swapOff(identifier: 1) { space, blocks in
            XCTAssertEqual(blocks, onFirst)
            for block in blocks {
                // While draining, no new block lands on the leaving device.
                if let replacement = try? space.allocate(upTo: 1) {
                    XCTAssertEqual(SwapSpace.location(of: replacement.start).slot, 1)
                    held.append(replacement.start)
                }
                try! space.free(start: block, count: 1)
                evacuated.append(block)
            }
        }
        XCTAssertEqual(evacuated, onFirst)
        XCTAssertEqual(space.deviceIdentifiers, [2])
        XCTAssertEqual(space.totalBlocks, 39)
        XCTAssertEqual(space.usedBlocks + space.freeBlocks, 39)
        for block in held where !onFirst.contains(block) { try space.free(start: block, count: 1) }
        XCTAssertEqual(space.freeBlocks, 39)
    }

    func testFailedSwapOffRestoresTheDevice() throws {
        let space = SwapSpace()
        try space.swapOn(try disk(pages: 64).1, identifier: 1)
        let first = try space.allocate(upTo: 4)
        let freeBefore = space.freeBlocks
        expectSwapError(.deviceBusy(blocksInUse: 2)) {
            try space.swapOff(identifier: 1) { space, blocks in
                XCTAssertEqual(space.freeBlocks, 0, "draining holds every free block")
                try! space.free(start: blocks[0], count: 2)  // Only half evacuated.
            }
        }
        XCTAssertEqual(space.deviceIdentifiers, [1])
        XCTAssertEqual(space.freeBlocks, freeBefore + 2, "evacuated blocks became free, the rest is as before")
        XCTAssertEqual(space.usedBlocks, 2)
        XCTAssertTrue(space.isInUse(first.start + 2))
        var count: UInt64 = 0
        while let run = try? space.allocate(upTo: 16) { count += run.count }
        XCTAssertEqual(count, freeBefore + 2, "everything is allocatable again")
    }

    func testSwapOffOfWidestDeviceShrinksTheSpace() throws {
        let space = SwapSpace()
        try space.swapOn(try disk(pages: 40).1, identifier: 1)
        try space.swapOn(try disk(pages: 500).1, identifier: 2)
        XCTAssertEqual(space.totalBlocks, 39 + 499)
        try space.swapOff(identifier: 2)
        XCTAssertEqual(space.totalBlocks, 39)
        XCTAssertEqual(space.freeBlocks, 39)
        try space.swapOn(try disk(pages: 20).1, identifier: 3)
        XCTAssertEqual(space.freeBlocks, 39 + 19)
        var slots: Set<Int> = []
        while let run = try? space.allocate(upTo: 1) { slots.insert(SwapSpace.location(of: run.start).slot) }
        XCTAssertEqual(slots, [0, 1], "the new device took the freed slot")
    }

    func testDiskSplitsRequestsBySegmentLimitsAndWaitsWhenQueueIsFull() throws {
        let ram = RAMDisk(blocks: 64 * 8, maxSegments: 2, maxSegmentBytes: 2 * Int(pageSize), queueDepth: 2)
        let swapDisk = try SwapDisk.over(ram)
        // Frames 0,1 adjacent (one segment), 2 alone, then 3 adjacent ones (two segments).
        let base = try physicalPages.allocate(pages: 16)
        let frames = [0, 1, 3, 5, 6, 7, 9, 11].map { base.advanced(by: UInt64($0) * pageSize) }
        let requests = swapDisk.plan(frames)
        XCTAssertEqual(requests.map { $0.pages }, [3, 3, 2])
        XCTAssertEqual(requests.map { $0.segments.count }, [2, 2, 2])
        XCTAssertEqual(requests[1].segments.map { $0.byteCount }, [2 * Int(pageSize), Int(pageSize)], "segments capped at maxSegmentBytes")
        for (index, frame) in frames.enumerated() {
            DirectMap.pointer(to: frame).initializeMemory(as: UInt8.self, repeating: UInt8(index + 1), count: Int(pageSize))
        }
        try swapDisk.transfer(.write, page: 10, frames: frames)
        XCTAssertGreaterThan(ram.refusedAsFull, 0, "the third request waited for the queue")
        XCTAssertEqual(ram.writeRequests, 3)
        for index in 0..<8 { XCTAssertEqual(ram.bytes(block: UInt64(10 + index) * 8, count: 8).last, UInt8(index + 1)) }
        XCTAssertEqual(ram.inFlightCount, 0)
        XCTAssertThrowsError(try SwapDisk.over(ram, firstBlock: 60 * 8, blockCount: 5 * 8)) {
            XCTAssertEqual($0 as? SwapError, .windowOutOfRange)
        }
        let window = try SwapDisk.over(ram, firstBlock: 8 * 8 + 3, blockCount: 17)
        XCTAssertEqual(window.pageCount, 2, "whole pages only")
    }
}
