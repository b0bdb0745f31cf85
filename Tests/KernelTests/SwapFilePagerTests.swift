// SwapFilePagerTests: the swap-file pager over a RAM disk in a VMWorld: faults read the
// device's real bytes (not zeros), read-ahead is one read per cluster bounded by the region
// and resident pages, a read error reaches the faulting access as a typed error and costs
// only its page, a writable shared mapping is refused with a typed error before anything
// changes, and the pager never writes the device.

import XCTest
@testable import Kernel

final class SwapFilePagerTests: XCTestCase {
    private let base: UInt64 = 0x10_0000_0000
    private let regionFirstBlock: UInt64 = 64       // the region starts 8 pages into the disk

    /// The word every byte-offset-8k of device page `page` holds.
    private func word(page: UInt64, _ index: Int) -> UInt64 { (page << 32) ^ UInt64(index) ^ 0x5357_4650 }

    /// A RAM disk of `pages` pages, page p filled with word(page: p, _).
    private func disk(_ world: VMWorld, pages: UInt64) throws -> RAMDisk {
        let ram = RAMDisk(blocks: pages * 8)
        let frame = try world.frames.allocate(zeroed: false)
        for page in 0..<pages {
            for index in 0..<Int(pageSize / 8) { frame.contents.storeBytes(of: word(page: page, index), toByteOffset: index * 8, as: UInt64.self) }
            try ram.write(at: page * 8, from: [BlockSegment(pages: 1, at: frame.physicalAddress)])
        }
        try world.frames.free(frame)
        return ram
    }

    func testFaultReadsRealDeviceDataWithOneReadPerCluster() throws {
        let world = VMWorld()
        let ram = try disk(world, pages: 72)
        let pager = try SwapFilePager.over(ram, firstBlock: regionFirstBlock, blockCount: 64 * 8)
        XCTAssertEqual(pager.pageCount, 64)
        let map = try VMMap(system: world.system)
        try pager.map(into: map, at: base, length: 32 << pageShift, protection: .readOnly)
        let readsBefore = ram.readRequests
        XCTAssertEqual(try map.load(base + (10 << pageShift) + 16), word(page: 8 + 10, 2), "device bytes, not zeros")
        XCTAssertEqual(ram.readRequests - readsBefore, 1, "one read")
        XCTAssertEqual(pager.pagesRead, 15, "7 behind, 7 ahead")
        for page in 0..<32 {
            XCTAssertEqual(try map.load(base + (UInt64(page) << pageShift) + 8 * 511), word(page: 8 + UInt64(page), 511), "page \(page)")
        }
        XCTAssertTrue(pager.reads <= 4, "clusters, not page by page: \(pager.reads)")
        XCTAssertEqual(ram.writeRequests, 72, "the pager never writes (72 set-up writes)")
        world.audit()
        map.destroy()
        world.audit()
    }

    func testReadAheadStopsAtRegionEndAndResidentPages() throws {
        let world = VMWorld()
        let ram = try disk(world, pages: 16)
        let pager = try SwapFilePager.over(ram, firstBlock: 0, blockCount: 10 * 8)
        let bounds: Range<UInt64> = 0..<(10 << pageShift)
        XCTAssertEqual(pager.readAhead(around: 9 << pageShift, within: bounds) { _ in false }, (2 << pageShift)..<(10 << pageShift))
        XCTAssertEqual(pager.readAhead(around: 4 << pageShift, within: bounds) { $0 == 2 << pageShift || $0 == 6 << pageShift },
                       (3 << pageShift)..<(6 << pageShift))
        XCTAssertFalse(pager.hasData(at: 10 << pageShift), "past the region")
        XCTAssertFalse(pager.hasData(at: 100), "unaligned")
        XCTAssertEqual(pager.offsetsWithData(in: (8 << pageShift)..<(20 << pageShift)), [8 << pageShift, 9 << pageShift])
    }

    func testWritableSharedMappingRefusedBeforeAnythingChanges() throws {
        let world = VMWorld()
        let ram = try disk(world, pages: 8)
        let pager = try SwapFilePager.over(ram, firstBlock: 0, blockCount: 64)
        let map = try VMMap(system: world.system)
        let objects = world.system.objects.count
        XCTAssertThrowsError(try pager.map(into: map, at: base, length: pageSize, protection: .readWrite)) { error in
            XCTAssertEqual(error as? SwapFilePagerError, .writableSharedMapping)
        }
        XCTAssertEqual(map.entries.count, 0)
        XCTAssertEqual(world.system.objects.count, objects)
        try pager.map(into: map, at: base, length: pageSize, protection: .readOnly)
        XCTAssertThrowsError(try map.protect(start: base, length: pageSize, to: .readWrite)) { error in
            XCTAssertEqual(error as? MapError, .protectionExceedsMaximum)
        }
        XCTAssertThrowsError(try map.store(1, at: base)) { error in
            XCTAssertEqual(error as? FaultError, .protectionViolation)
        }
        map.destroy()
        world.audit()
    }

    func testPrivateWritableMappingIsCopyOnWrite() throws {
        let world = VMWorld()
        let ram = try disk(world, pages: 8)
        let pager = try SwapFilePager.over(ram, firstBlock: 0, blockCount: 64)
        let map = try VMMap(system: world.system)
        try pager.map(into: map, at: base, length: 8 << pageShift, protection: .readWrite, copyOnWrite: true)
        let writes = ram.writeRequests
        try map.store(0xC0FFEE, at: base + (3 << pageShift))
        XCTAssertEqual(try map.load(base + (3 << pageShift)), 0xC0FFEE)
        XCTAssertEqual(try map.load(base + (3 << pageShift) + 8), word(page: 3, 1), "rest of the page copied from the device")
        XCTAssertEqual(try map.load(base + (4 << pageShift)), word(page: 4, 0))
        XCTAssertEqual(ram.writeRequests, writes, "the device is never written")
        XCTAssertEqual(ram.bytes(block: 24, count: 8).withUnsafeBytes { $0.load(as: UInt64.self) }, word(page: 3, 0))
        world.audit()
        map.destroy()
        world.audit()
    }

    func testReadErrorIsTypedAndConfinedToItsPage() throws {
        let world = VMWorld()
        let ram = try disk(world, pages: 8)
        let pager = try SwapFilePager.over(ram, firstBlock: 0, blockCount: 64)
        let map = try VMMap(system: world.system)
        try pager.map(into: map, at: base, length: 8 << pageShift, protection: .readOnly)
        ram.failingReadBlocks = [5 * 8 + 3]
        XCTAssertThrowsError(try map.load(base + (5 << pageShift))) { error in
            XCTAssertEqual(error as? FaultError, .pager(.ioError))
        }
        XCTAssertEqual(try map.load(base + (4 << pageShift)), word(page: 4, 0), "a neighbour is unaffected")
        XCTAssertEqual(try map.load(base + (6 << pageShift)), word(page: 6, 0))
        ram.failingReadBlocks = []
        XCTAssertEqual(try map.load(base + (5 << pageShift)), word(page: 5, 0), "readable once the device recovers")
        map.destroy()
        world.audit()
    }

    func testRegionOutsideDeviceRefused() throws {
        let ram = RAMDisk(blocks: 64)
        XCTAssertThrowsError(try SwapFilePager.over(ram, firstBlock: 60, blockCount: 8)) { error in
            XCTAssertEqual(error as? SwapFilePagerError, .regionOutOfRange)
        }
        XCTAssertThrowsError(try SwapFilePager.over(ram, firstBlock: 0, blockCount: 7)) { error in
            XCTAssertEqual(error as? SwapFilePagerError, .regionOutOfRange)
        }
    }
}
