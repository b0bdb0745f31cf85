// PageoutTests: the VM side of swap on the host — the pageout daemon under a resident-page
// limit with a swap space over a RAM disk (working set larger than the limit round-trips,
// clusters of at most 16, clean pages freed without I/O, swap full as a typed fault error),
// the swap slot dropped on a write, read-ahead pagein in one read, collapse of a paged-out
// backing object, VM swapoff (evacuation, and refusal when memory is short), and the
// Pager protocol's default batch calls for single-page pagers.

import XCTest
@testable import Kernel

final class PageoutTests: XCTestCase {
    private let page = pageSize

    private func world(swapPages: UInt64 = 2048, limit: Int?) throws -> (VMWorld, SwapSpace, RAMDisk) {
        try swapTestWorld(swapPages: swapPages, limit: limit)
    }

    private func value(_ address: UInt64, _ generation: UInt64) -> UInt64 { address &* 31 ^ generation << 48 }

    func testPressureWorkingSetFourTimesTheLimitRoundTrips() throws {
        let (world, space, _) = try world(limit: 32)
        let map = try VMMap(system: world.system)
        let pages: UInt64 = 128
        try map.map(nil, at: 0x100000, length: pages * page, protection: .readWrite)
        for generation: UInt64 in 1...2 {
            for index in 0..<pages {
                let address = 0x100000 + index * page
                try map.store(value(address, generation), at: address)
                try map.store(value(address + 8, generation), at: address + page - 8)
            }
            XCTAssertLessThanOrEqual(world.system.residentPageTotal, 32)
            for index in 0..<pages {
                let address = 0x100000 + index * page
                XCTAssertEqual(try map.load(address), value(address, generation), "page \(index) gen \(generation)")
                XCTAssertEqual(try map.load(address + page - 8), value(address + 8, generation))
            }
        }
        let stats = world.system.pageout.statistics
        XCTAssertGreaterThanOrEqual(stats.laundered, 2 * 96)
        XCTAssertLessThanOrEqual(stats.laundered, stats.launderClusters * SwapPager.clusterPages)
        XCTAssertGreaterThan(stats.laundered, 4 * stats.launderClusters, "sequential pages go out in clusters")
        XCTAssertEqual(world.system.statistics.swapPagersCreated, 1)
        world.audit([], "under pressure")
        map.destroy()
        XCTAssertEqual(space.usedBlocks, 0, "object death freed its blocks")
        XCTAssertEqual(space.reservedPages, 0, "and its reservation")
        world.audit()
    }

    func testRealFrameShortageWorkingSetTwiceTheArenaRoundTrips() throws {
        // No resident limit: the daemon counts real free frames of a 4 MiB arena.
        let world = VMWorld(megabytes: 4)
        let ram = RAMDisk(blocks: 4096 * 8)
        let space = SwapSpace()
        try space.swapOn(try SwapDisk.over(ram), identifier: 1)
        world.system.swapSpace = space
        world.system.pageout.freeMinimum = 16
        world.system.pageout.freeTarget = 48
        let map = try VMMap(system: world.system)
        let pages: UInt64 = 2048   // 8 MiB
        try map.map(nil, at: 0x1000000, length: pages * page, protection: .readWrite)
        for index in 0..<pages {
            let address = 0x1000000 + index * page
            try map.store(value(address, 7), at: address)
        }
        for index in 0..<pages {
            let address = 0x1000000 + index * page
            XCTAssertEqual(try map.load(address), value(address, 7), "page \(index)")
        }
        XCTAssertGreaterThan(world.system.pageout.statistics.laundered, Int(pages) / 2)
        world.audit()
        map.destroy()
        XCTAssertEqual(space.usedBlocks, 0)
    }

    func testCleanPagesFreedWithoutWriteAndWriteDropsSlot() throws {
        let (world, space, _) = try world(limit: nil)
        let map = try VMMap(system: world.system)
        try map.map(nil, at: 0x100000, length: 8 * page, protection: .readWrite)
        for index: UInt64 in 0..<8 { try map.store(index + 1, at: 0x100000 + index * page) }
        pageOutEverything(world.system)
        XCTAssertEqual(world.system.residentPageTotal, 0)
        XCTAssertEqual(space.usedBlocks, 8)
        let readsBefore = space.reads
        XCTAssertEqual(try map.load(0x100000 + 3 * page), 4)
        XCTAssertEqual(space.reads - readsBefore, 1, "read-ahead: one read")
        XCTAssertEqual(world.system.residentPageTotal, 8, "the whole cluster came in")
        let writesBefore = space.writes
        pageOutEverything(world.system)
        XCTAssertEqual(space.writes, writesBefore, "clean pages are freed without a write")
        XCTAssertEqual(world.system.pageout.statistics.freedClean, 8)
        XCTAssertEqual(try map.load(0x100000 + 5 * page), 6)
        try map.store(60, at: 0x100000 + 5 * page)
        XCTAssertEqual(space.usedBlocks, 7, "the write dropped the stale slot")
        pageOutEverything(world.system)
        XCTAssertEqual(try map.load(0x100000 + 5 * page), 60)
        map.destroy()
        world.audit()
    }

    func testSwapFullFaultIsOutOfMemoryNotAPanic() throws {
        let (world, space, _) = try world(swapPages: 16, limit: 8)
        space.overcommitPages = 64   // the 64-page object may reserve more than the 15 blocks
        let map = try VMMap(system: world.system)
        try map.map(nil, at: 0x100000, length: 64 * page, protection: .readWrite)
        var failure: FaultError? = nil
        var resolved = 0
        for index: UInt64 in 0..<64 {
            do { try map.store(index, at: 0x100000 + index * page); resolved += 1 } catch { failure = error; break }
        }
        XCTAssertEqual(failure, .outOfMemory)
        XCTAssertGreaterThan(resolved, 8, "swap took some pages first")
        XCTAssertEqual(space.freeBlocks, 0)
        // Reading a swapped page back needs a frame too: with memory and swap full it is the
        // same typed error; with memory back, nothing written was lost.
        XCTAssertThrowsError(try map.load(0x100000)) { XCTAssertEqual($0 as? FaultError, .outOfMemory) }
        world.system.pageout.residentLimit = nil
        for index in 0..<UInt64(resolved) { XCTAssertEqual(try map.load(0x100000 + index * page), index) }
        world.audit()
        map.destroy()
        XCTAssertEqual(space.usedBlocks, 0)
    }

    func testObjectWhoseReservationIsRefusedStaysResident() throws {
        let (world, space, _) = try world(swapPages: 16, limit: 8)
        let map = try VMMap(system: world.system)
        try map.map(nil, at: 0x100000, length: 64 * page, protection: .readWrite)
        var failure: FaultError? = nil
        var resolved = 0
        for index: UInt64 in 0..<64 {
            do { try map.store(index, at: 0x100000 + index * page); resolved += 1 } catch { failure = error; break }
        }
        XCTAssertEqual(failure, .outOfMemory)
        XCTAssertEqual(resolved, 8, "64 pages cannot reserve 15 blocks of swap: nothing pages out")
        XCTAssertEqual(space.usedBlocks, 0)
        XCTAssertEqual(space.reservedPages, 0)
        XCTAssertGreaterThan(world.system.pageout.statistics.launderFailures, 0)
        world.audit()
        map.destroy()
    }

    func testCollapseOfPagedOutBackingObjectMigratesSlots() throws {
        let (world, space, _) = try world(limit: nil)
        let backing = world.object(pages: 16)
        for index in 0..<16 { world.put(0x100 + UInt64(index), in: backing, page: index) }
        pageOutEverything(world.system)
        let top = try backing.shadow(offset: 0, length: 16 * page)
        world.put(0x999, in: top, page: 2)
        pageOutEverything(world.system)
        XCTAssertEqual(space.usedBlocks, 17)
        top.collapse()
        XCTAssertNil(top.shadow)
        XCTAssertEqual(space.usedBlocks, 16, "shadowed block freed, the rest migrated")
        XCTAssertEqual(top.residentPageCount, 0)
        for index in 0..<16 { XCTAssertEqual(world.visible(top, page: index), index == 2 ? 0x999 : 0x100 + UInt64(index)) }
        world.audit([top])
        top.deallocate()
        XCTAssertEqual(space.usedBlocks, 0)
    }

    func testSwapOffEvacuatesShadowedObjectsOrRefusesWhenShort() throws {
        let (world, space, _) = try world(limit: nil)
        space.overcommitPages = 64
        let backing = world.object(pages: 12)
        for index in 0..<12 { world.put(0x300 + UInt64(index), in: backing, page: index) }
        backing.reference()
        let top = try backing.shadow(offset: 4 * page, length: 8 * page)
        world.put(0x777, in: top, page: 1)
        pageOutEverything(world.system)
        XCTAssertEqual(space.usedBlocks, 13)
        world.system.pageout.residentLimit = world.system.residentPageTotal + 6
        XCTAssertThrowsError(try world.system.swapOff(identifier: 1)) { XCTAssertEqual($0 as? SwapOffError, .outOfMemory) }
        XCTAssertEqual(space.usedBlocks, 13, "nothing moved")
        XCTAssertEqual(space.statistics.devices, 1)
        world.system.pageout.residentLimit = nil
        XCTAssertThrowsError(try world.system.swapOff(identifier: 9)) { XCTAssertEqual($0 as? SwapOffError, .swap(.noSuchDevice)) }
        try world.system.swapOff(identifier: 1)
        XCTAssertEqual(space.statistics.devices, 0)
        XCTAssertEqual(backing.residentPageCount, 12)
        XCTAssertEqual(top.residentPageCount, 1)
        for index in 0..<8 { XCTAssertEqual(world.visible(top, page: index), index == 1 ? 0x777 : 0x304 + UInt64(index)) }
        XCTAssertTrue(world.system.mappings.isModified(backing.page(at: 0)!), "evacuated pages are dirty")
        world.audit([backing, top])
        top.deallocate()
        backing.deallocate()
        XCTAssertEqual(space.reservedPages, 0)
    }

    func testDefaultBatchCallsServeSinglePagePagers() throws {
        let world = VMWorld()
        let pager = RAMPager()
        let pages = (0..<3).map { _ in try! world.frames.allocate(zeroed: true) }
        for (index, frame) in pages.enumerated() { frame.contents.storeBytes(of: UInt64(index + 10), as: UInt64.self) }
        let results = pager.pageOut(batch: pages.enumerated().map { (UInt64($0.offset) * page, $0.element) })
        XCTAssertEqual(results, [nil, nil, nil])
        XCTAssertEqual(pager.pageOuts, 3)
        XCTAssertEqual(pager.readAhead(around: page, within: 0..<(3 * page)) { _ in false }, page..<(2 * page), "no read-ahead by default")
        for frame in pages { frame.contents.storeBytes(of: UInt64(0), as: UInt64.self) }
        XCTAssertEqual(pager.pageIn(batch: Array(pages[1...2]), at: page..<(3 * page)), [nil, nil])
        XCTAssertEqual(pages[2].contents.load(as: UInt64.self), 12)
        XCTAssertEqual(pager.pageIn(batch: [pages[0]], at: (5 * page)..<(6 * page)), [.noData])
        for frame in pages { try world.frames.free(frame) }
    }
}
