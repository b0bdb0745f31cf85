// PageoutLaundryTests: the pageout daemon's asynchronous laundry on the host — a run starts
// cluster writes and returns with the pages still resident (busy, unmapped, laundering);
// a later run collects them; never more than `maxLaundryWrites` in flight; and everyone who
// needs a page in flight settles the laundry first: a fault keeps the page (clean, no
// pagein), unmapping frees it and its slot, swapoff pages it back, collapse migrates it, a
// failed write leaves it dirty and resident; an allocation with no room waits for a write.

import XCTest
@testable import Kernel

final class PageoutLaundryTests: XCTestCase {
    private let page = pageSize
    private let base: UInt64 = 0x100000

    private func world(swapPages: UInt64 = 2048) throws -> (VMWorld, SwapSpace, RAMDisk) {
        try swapTestWorld(swapPages: swapPages)
    }

    private func value(_ index: UInt64) -> UInt64 { index &* 0x9E37_79B9 ^ 0x5A5A }

    /// A map with `pages` dirty pages at `base`, page i holding value(i).
    private func dirtyMap(_ world: VMWorld, pages: UInt64) throws -> VMMap {
        let map = try VMMap(system: world.system)
        try map.map(nil, at: base, length: pages * page, protection: .readWrite)
        for index in 0..<pages { try map.store(value(index), at: base + index * page) }
        return map
    }

    private func launderingPages(_ object: VMObject) -> Int {
        var count = 0
        object.residentPages.forEach { _, page in
            if page.isLaundering { count += 1 }
            return true
        }
        return count
    }

    func testRunReturnsWithWritesInFlightAndALaterRunCollectsThem() throws {
        let (world, space, _) = try world()
        let map = try dirtyMap(world, pages: 64)
        let object = map.entries[0].object!
        startPageOutEverything(world.system)
        let daemon = world.system.pageout
        XCTAssertEqual(daemon.pagesInLaundry, 64, "the run started writes for every page")
        XCTAssertEqual(daemon.laundryWrites, 4, "four clusters of 16")
        XCTAssertEqual(launderingPages(object), 64)
        XCTAssertEqual(world.system.residentPageTotal, 64, "pages stay resident until collected")
        XCTAssertEqual((object.pager as? SwapPager)?.metadata.count, 0, "slots are recorded only when a write is collected")
        world.audit()
        daemon.run(urgent: true)
        XCTAssertEqual(daemon.pagesInLaundry, 0)
        XCTAssertEqual(object.laundryWrites, 0)
        XCTAssertEqual(object.pagingInProgress, 0)
        XCTAssertEqual(world.system.residentPageTotal, 0)
        XCTAssertEqual(space.usedBlocks, 64)
        XCTAssertEqual(daemon.statistics.laundryFinishedLater, 4)
        XCTAssertEqual(daemon.statistics.laundered, 64)
        world.audit()
        for index: UInt64 in 0..<64 { XCTAssertEqual(try map.load(base + index * page), value(index), "page \(index)") }
        map.destroy()
        XCTAssertEqual(space.usedBlocks, 0)
        XCTAssertEqual(space.reservedPages, 0)
    }

    func testWritesInFlightNeverExceedTheCap() throws {
        let (world, space, _) = try world()
        world.system.pageout.maxLaundryWrites = 2
        let map = try dirtyMap(world, pages: 96)
        startPageOutEverything(world.system)
        let daemon = world.system.pageout
        XCTAssertEqual(daemon.statistics.peakLaundryWrites, 2)
        XCTAssertLessThanOrEqual(daemon.laundryWrites, 2)
        XCTAssertGreaterThanOrEqual(daemon.statistics.laundryWaits, 4, "six clusters through two slots: four waits")
        world.audit()
        daemon.settle(nil)
        XCTAssertEqual(space.usedBlocks, 96)
        for index: UInt64 in 0..<96 { XCTAssertEqual(try map.load(base + index * page), value(index)) }
        map.destroy()
    }

    func testFaultOnPageInFlightKeepsItResidentAndCleanWithoutAPagein() throws {
        let (world, space, _) = try world()
        let map = try dirtyMap(world, pages: 16)
        let object = map.entries[0].object!
        startPageOutEverything(world.system)
        XCTAssertEqual(launderingPages(object), 16)
        let readsBefore = space.reads
        XCTAssertEqual(try map.load(base + 5 * page), value(5))
        XCTAssertEqual(space.reads, readsBefore, "the page never left memory")
        XCTAssertEqual(world.system.pageout.statistics.laundryPagesKept, 1)
        XCTAssertEqual(launderingPages(object), 0, "the object's laundry was settled")
        XCTAssertEqual(object.residentPageCount, 1, "the others were freed, the wanted one kept")
        let kept = object.page(at: 5 * page)!
        XCTAssertFalse(world.system.mappings.isModified(kept), "its data is in swap: clean")
        XCTAssertEqual(space.usedBlocks, 16)
        world.audit()
        try map.store(0xABCD, at: base + 5 * page)
        XCTAssertEqual(space.usedBlocks, 15, "the write dropped the now stale slot")
        XCTAssertEqual(try map.load(base + 5 * page), 0xABCD)
        XCTAssertEqual(try map.load(base + 6 * page), value(6))
        world.audit()
        map.destroy()
    }

    func testUnmapWithWritesInFlightFreesPagesSlotsAndReservation() throws {
        let (world, space, _) = try world()
        let inUseBefore = world.pagesInUse
        let map = try dirtyMap(world, pages: 48)
        startPageOutEverything(world.system)
        XCTAssertGreaterThan(world.system.pageout.laundryWrites, 0)
        map.destroy()
        XCTAssertEqual(world.system.pageout.laundryWrites, 0)
        XCTAssertEqual(world.system.pageout.pagesInLaundry, 0)
        XCTAssertEqual(world.system.residentPageTotal, 0)
        XCTAssertEqual(space.usedBlocks, 0)
        XCTAssertEqual(space.reservedPages, 0)
        XCTAssertLessThanOrEqual(world.pagesInUse, inUseBefore + 4, "no object page leaked (a few page-table pages may stay)")
        world.audit()
    }

    func testSwapOffWithWritesInFlightBringsEveryPageBack() throws {
        let (world, space, _) = try world()
        space.overcommitPages = 64   // the object keeps its reservation with no device left
        let map = try dirtyMap(world, pages: 40)
        startPageOutEverything(world.system)
        XCTAssertEqual(world.system.pageout.pagesInLaundry, 40)
        try world.system.swapOff(identifier: 1)
        XCTAssertEqual(space.statistics.devices, 0)
        XCTAssertEqual(world.system.pageout.pagesInLaundry, 0)
        XCTAssertEqual(map.entries[0].object!.residentPageCount, 40)
        world.audit()
        for index: UInt64 in 0..<40 { XCTAssertEqual(try map.load(base + index * page), value(index)) }
        map.destroy()
    }

    func testCollapseWithBackingPagesInFlightMigratesThem() throws {
        let (world, space, _) = try world()
        let backing = world.object(pages: 16)
        for index in 0..<16 { world.put(0x100 + UInt64(index), in: backing, page: index) }
        startPageOutEverything(world.system)
        XCTAssertEqual(backing.laundryWrites, 1)
        let top = try backing.shadow(offset: 0, length: 16 * page)
        world.put(0x999, in: top, page: 3)
        top.collapse()
        XCTAssertNil(top.shadow, "the laundry was settled and the chain collapsed")
        XCTAssertEqual(space.usedBlocks, 15, "the shadowed page's block freed, the rest migrated")
        for index in 0..<16 { XCTAssertEqual(world.visible(top, page: index), index == 3 ? 0x999 : 0x100 + UInt64(index)) }
        world.audit([top])
        top.deallocate()
        XCTAssertEqual(space.usedBlocks, 0)
    }

    func testFailedWriteInFlightLeavesPagesDirtyResidentAndActive() throws {
        let (world, space, ram) = try world(swapPages: 64)
        for sector in 0..<ram.geometry.blockCount { ram.failingWriteBlocks.insert(sector) }
        let map = try dirtyMap(world, pages: 8)
        let object = map.entries[0].object!
        startPageOutEverything(world.system)
        world.system.pageout.settle(nil)
        XCTAssertEqual(object.residentPageCount, 8, "nothing written, nothing freed")
        XCTAssertEqual(world.system.pageout.statistics.launderFailures, 8)
        object.residentPages.forEach { _, page in
            XCTAssertTrue(world.system.mappings.isModified(page))
            XCTAssertEqual(page.queue, .active)
            XCTAssertFalse(page.isBusy)
            return true
        }
        XCTAssertEqual(space.usedBlocks, 0)
        XCTAssertGreaterThan(space.statistics.badBlocks, 0, "the failed blocks were quarantined")
        world.audit()
        for index: UInt64 in 0..<8 { XCTAssertEqual(try map.load(base + index * page), value(index)) }
        map.destroy()
    }

    func testAllocationWithNoRoomWaitsForTheLaundry() throws {
        let (world, _, ram) = try world()
        ram.isSlow = true
        world.system.pageout.residentLimit = 24
        let map = try VMMap(system: world.system)
        try map.map(nil, at: base, length: 128 * page, protection: .readWrite)
        for index: UInt64 in 0..<128 {
            try map.store(value(index), at: base + index * page)
            XCTAssertLessThanOrEqual(world.system.residentPageTotal, 24)
        }
        let stats = world.system.pageout.statistics
        XCTAssertGreaterThan(stats.laundryWaits, 0, "some allocation found no room and waited for a write")
        XCTAssertGreaterThan(stats.laundryFinishedLater, 0)
        world.audit()
        for index: UInt64 in 0..<128 { XCTAssertEqual(try map.load(base + index * page), value(index), "page \(index)") }
        map.destroy()
    }
}
