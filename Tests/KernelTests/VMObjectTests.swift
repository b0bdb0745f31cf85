// VMObjectTests: vm_object on the arena: resident pages, references and iterative
// termination, shadow chains, collapse and bypass (with and without pagers), the object
// cache, coalesce and delayed copy. Every test ends with the auditor and a page count check.

import XCTest
@testable import Kernel

final class VMObjectTests: XCTestCase {
    private func pageOffset(_ index: Int) -> UInt64 { UInt64(index) << pageShift }

    func testInsertLookupRemoveAndRenameKeepEachPageInOneObject() {
        let world = VMWorld()
        let before = world.pagesInUse
        let a = world.object(pages: 8), b = world.object(pages: 8)
        let page = world.put(7, in: a, page: 3)
        XCTAssertEqual(a.page(at: pageOffset(3)), page)
        XCTAssertNil(a.page(at: pageOffset(2)))
        try! a.rename(at: pageOffset(3), to: b, at: pageOffset(5))
        XCTAssertNil(a.page(at: pageOffset(3)))
        XCTAssertEqual(b.page(at: pageOffset(5)), page)
        XCTAssertEqual(page.offset, pageOffset(5))
        world.audit([a, b])
        let removed = try! b.remove(at: pageOffset(5))
        XCTAssertEqual(removed, page)
        XCTAssertNil(page.object)
        try! a.insert(removed, at: 0)
        a.deallocate()
        b.deallocate()
        XCTAssertEqual(world.system.objects.count, 0)
        XCTAssertEqual(world.pagesInUse, before)
        world.audit()
    }

    func testBadObjectArgumentsAreTypedErrorsAndChangeNothing() {
        let world = VMWorld()
        let a = world.object(pages: 4), b = world.object(pages: 4)
        let page = world.put(1, in: a, page: 0)
        let loose = try! world.frames.allocate(zeroed: true)
        func expect(_ expected: ObjectError, _ body: () throws(ObjectError) -> Void, line: UInt = #line) {
            do { try body(); XCTFail("succeeded", line: line) } catch { XCTAssertEqual(error, expected, line: line) }
        }
        expect(.unaligned) { () throws(ObjectError) in try a.insert(loose, at: 12) }
        expect(.outOfRange) { () throws(ObjectError) in try a.insert(loose, at: pageOffset(4)) }
        expect(.offsetOccupied) { () throws(ObjectError) in try a.insert(loose, at: 0) }
        expect(.pageNotAvailable) { () throws(ObjectError) in try b.insert(page, at: 0) }
        expect(.notResident) { () throws(ObjectError) in _ = try a.remove(at: pageOffset(1)) }
        expect(.notResident) { () throws(ObjectError) in try a.rename(at: pageOffset(2), to: b, at: 0) }
        expect(.outOfRange) { () throws(ObjectError) in try a.removeRange(offset: pageOffset(2), length: pageOffset(3)) }
        expect(.outOfRange) { () throws(ObjectError) in try a.protectRange(offset: UInt64.max & ~(pageSize - 1), length: pageSize * 2, to: .readOnly) }
        expect(.noPager) { () throws(ObjectError) in try a.clean(offset: 0, length: pageOffset(4)) }
        expect(.unaligned) { () throws(ObjectError) in _ = try VMObject(system: world.system, size: 100) }
        XCTAssertEqual(a.residentPageCount, 1)
        XCTAssertEqual(b.residentPageCount, 0)
        XCTAssertEqual(page.object, a.identity)
        try! world.frames.free(loose)
        world.audit([a, b])
        a.deallocate(); b.deallocate()
        world.audit()
    }

    func testDeallocatingTheTopOfALongChainTerminatesItIteratively() {
        let world = VMWorld()
        let before = world.pagesInUse
        var top = world.object(pages: 1)
        world.put(1, in: top, page: 0)
        for index in 0..<20_000 {
            top = try! top.shadow(offset: 0, length: pageSize)
            if index % 1000 == 0 { world.put(UInt64(index), in: top, page: 0) }
        }
        XCTAssertEqual(top.chainDepth, 20_000)
        XCTAssertEqual(world.visible(top, page: 0), 19_000)
        top.deallocate()   // would overflow the stack if termination recursed
        XCTAssertEqual(world.system.objects.count, 0)
        XCTAssertEqual(world.pagesInUse, before)
        world.audit()
    }

    func testShadowReadsThroughUntilItsOwnPageHidesTheBackingOne() {
        let world = VMWorld()
        let base = world.object(pages: 8)
        world.put(11, in: base, page: 2)
        world.put(12, in: base, page: 5)
        base.reference()
        let shadow = try! base.shadow(offset: pageOffset(2), length: pageOffset(4))
        XCTAssertEqual(world.visible(shadow, page: 0), 11)
        XCTAssertEqual(world.visible(shadow, page: 3), 12)
        world.put(99, in: shadow, page: 3)
        XCTAssertEqual(world.visible(shadow, page: 3), 99)
        XCTAssertEqual(world.visible(base, page: 5), 12)
        XCTAssertEqual(shadow.chainDepth, 1)
        world.audit([base, shadow])
        shadow.deallocate()
        // base lost the shadow's reference; it is left with ours.
        XCTAssertEqual(base.referenceCount, 1)
        base.deallocate()
        world.audit()
    }

    func testCollapseMovesPagesTheShadowLacksAndFreesThoseItHides() {
        let world = VMWorld()
        let before = world.pagesInUse
        let backing = world.object(pages: 8)
        for index in 0..<8 { world.put(100 + UInt64(index), in: backing, page: index) }
        let shadow = try! backing.shadow(offset: pageOffset(2), length: pageOffset(4))   // sees backing pages 2...5
        world.put(7, in: shadow, page: 1)                                                // hides backing page 3
        let expected = (0..<4).map { world.visible(shadow, page: $0) }
        shadow.collapse()
        XCTAssertNil(shadow.shadow)
        XCTAssertEqual(world.system.statistics.collapses, 1)
        XCTAssertEqual(world.system.statistics.pagesMovedByCollapse, 3)
        XCTAssertEqual(world.system.statistics.pagesFreedByCollapse, 5)   // page 3 hidden, 0, 1, 6, 7 outside
        XCTAssertEqual((0..<4).map { world.visible(shadow, page: $0) }, expected)
        XCTAssertEqual(shadow.residentPageCount, 4)
        XCTAssertEqual(world.system.objects.count, 1)
        world.audit([shadow])
        shadow.deallocate()
        XCTAssertEqual(world.pagesInUse, before)
        world.audit()
    }

    func testCollapseAdoptsTheBackingPagerAndDropsDataTheShadowHides() {
        let world = VMWorld()
        let backing = world.object(pages: 8)
        let pager = RAMPager()
        try! backing.setPager(pager)
        for index in 0..<8 { pager.put(200 + UInt64(index), at: pageOffset(index)) }
        let shadow = try! backing.shadow(offset: pageOffset(4), length: pageOffset(4))
        world.put(5, in: shadow, page: 0)                      // newer than paged-out backing page 4
        let expected = (0..<4).map { world.visible(shadow, page: $0) }   // pages 1...3 page in
        XCTAssertEqual(expected, [5, 205, 206, 207])
        // Evict the paged-in copies again so the data lives only in the pager.
        for index in 5..<8 { try! backing.removeRangeKeepingPager(offset: pageOffset(index)) }
        shadow.collapse()
        XCTAssertNil(shadow.shadow)
        XCTAssertTrue(shadow.pager === pager)
        XCTAssertFalse(pager.terminated)
        XCTAssertEqual(pager.offsetsWithData(in: 0..<UInt64.max), [pageOffset(5), pageOffset(6), pageOffset(7)])
        XCTAssertEqual((0..<4).map { world.visible(shadow, page: $0) }, expected)
        world.audit([shadow])
        shadow.deallocate()
        XCTAssertTrue(pager.terminated)
        world.audit()
    }

    func testCollapseMergesTwoPagersKeepingTheShadowsNewerData() {
        let world = VMWorld()
        let backing = world.object(pages: 4), backingPager = RAMPager()
        try! backing.setPager(backingPager)
        for index in 0..<4 { backingPager.put(10 + UInt64(index), at: pageOffset(index)) }
        let shadow = try! backing.shadow(offset: 0, length: pageOffset(4))
        let shadowPager = RAMPager()
        try! shadow.setPager(shadowPager)
        shadowPager.put(77, at: pageOffset(1))
        shadow.collapse()
        XCTAssertNil(shadow.shadow)
        XCTAssertTrue(backingPager.terminated)
        XCTAssertEqual((0..<4).map { world.visible(shadow, page: $0) }, [10, 77, 12, 13])
        world.audit([shadow])
        shadow.deallocate()
        world.audit()
    }

    func testCollapseRefusedByAPagerFallsBackToBypassOrStops() {
        let world = VMWorld()
        let backing = world.object(pages: 2), backingPager = RAMPager()
        try! backing.setPager(backingPager)
        backingPager.put(3, at: 0)
        let shadow = try! backing.shadow(offset: 0, length: pageOffset(2))
        let shadowPager = RAMPager()
        shadowPager.refusesAbsorb = true
        try! shadow.setPager(shadowPager)
        shadow.collapse()
        XCTAssertTrue(shadow.shadow === backing, "incompatible pagers: the chain stays")
        XCTAssertEqual(world.visible(shadow, page: 0), 3)
        world.audit([shadow])
        shadow.deallocate()
        world.audit()
    }

    func testBypassSkipsABackingObjectTheShadowFullyCovers() {
        let world = VMWorld()
        let bottom = world.object(pages: 4)
        world.put(1, in: bottom, page: 0)
        world.put(2, in: bottom, page: 3)
        let middle = try! bottom.shadow(offset: 0, length: pageOffset(4))
        world.put(3, in: middle, page: 1)
        middle.reference()     // a second user: collapse is impossible, bypass is not
        let top = try! middle.shadow(offset: 0, length: pageOffset(4))
        world.put(4, in: top, page: 1)
        let expected = (0..<4).map { world.visible(top, page: $0) }
        top.collapse()
        XCTAssertTrue(top.shadow === bottom)
        XCTAssertEqual(world.system.statistics.bypasses, 1)
        XCTAssertEqual((0..<4).map { world.visible(top, page: $0) }, expected)
        XCTAssertEqual(middle.referenceCount, 1)
        world.audit([middle, top])
        top.deallocate()
        middle.deallocate()
        world.audit()
    }

    func testBypassIsRefusedWhenTheBackingObjectHasAPagedOutPageTheShadowLacks() {
        // 4.4BSD checked only resident pages here and lost the paged-out one.
        let world = VMWorld()
        let bottom = world.object(pages: 2)
        let middle = try! bottom.shadow(offset: 0, length: pageOffset(2))
        let pager = RAMPager()
        try! middle.setPager(pager)
        pager.put(42, at: pageOffset(1))
        middle.reference()
        let top = try! middle.shadow(offset: 0, length: pageOffset(2))
        top.collapse()
        XCTAssertTrue(top.shadow === middle)
        XCTAssertEqual(world.visible(top, page: 1), 42)
        world.audit([middle, top])
        top.deallocate()
        middle.deallocate()
        world.audit()
    }

    func testDeallocateCollapsesTheOnlyShadowLeft() {
        let world = VMWorld()
        let shared = world.object(pages: 2)
        world.put(5, in: shared, page: 0)
        shared.reference()
        let left = try! shared.shadow(offset: 0, length: pageOffset(2))
        let right = try! shared.shadow(offset: 0, length: pageOffset(2))
        world.put(6, in: right, page: 1)
        XCTAssertEqual(shared.referenceCount, 2)
        left.deallocate()   // shared keeps one reference, right's: right absorbs it
        XCTAssertNil(right.shadow)
        XCTAssertEqual(world.visible(right, page: 0), 5)
        XCTAssertEqual(world.visible(right, page: 1), 6)
        world.audit([right])
        right.deallocate()
        world.audit()
    }

    func testCacheKeepsUnreferencedObjectsInLRUOrderRevivesAndTrims() {
        let world = VMWorld()
        world.system.cache.limit = 2
        var objects: [VMObject] = []
        for key in 1...3 {
            let object = world.object(pages: 2)
            world.put(UInt64(key), in: object, page: 0)
            object.isCacheable = true
            object.cacheKey = UInt64(key)
            objects.append(object)
        }
        objects[0].deallocate()
        objects[1].deallocate()
        XCTAssertEqual(world.system.cache.count, 2)
        world.audit([objects[2]])
        let revived = world.system.cache.lookup(key: 1)
        XCTAssertTrue(revived === objects[0])
        XCTAssertEqual(revived?.referenceCount, 1)
        XCTAssertEqual(world.visible(objects[0], page: 0), 1, "pages survive in the cache")
        objects[0].deallocate()      // newest now: 1, then 2
        objects[2].deallocate()      // over the limit: 2 (oldest) goes
        XCTAssertEqual(world.system.cache.count, 2)
        XCTAssertTrue(objects[1].isTerminated)
        XCTAssertNil(world.system.cache.lookup(key: 2))
        XCTAssertEqual(world.system.cache.trim(freeingPages: 1, in: world.system), 1)
        XCTAssertTrue(objects[0].isTerminated, "trim takes the least recently used first")
        world.audit()
        world.system.cache.purge()
        XCTAssertEqual(world.system.objects.count, 0)
        world.audit()
    }

    func testCoalesceGrowsAPrivateAnonymousObjectAndRefusesASharedOne() {
        let world = VMWorld()
        let object = world.object(pages: 2)
        XCTAssertTrue(object.coalesce(offset: 0, length: pageOffset(2), extra: pageOffset(3)))
        XCTAssertEqual(object.size, pageOffset(5))
        object.reference()
        XCTAssertFalse(object.coalesce(offset: 0, length: pageOffset(5), extra: pageOffset(1)))
        XCTAssertEqual(object.size, pageOffset(5))
        object.deallocate()
        world.audit([object])
        object.deallocate()
    }

    func testCleanWritesOnlyModifiedPagesToThePager() throws {
        let world = VMWorld()
        let map = try VMMap(system: world.system)
        let object = world.object(pages: 4)
        let pager = RAMPager()
        try object.setPager(pager)
        let base = try map.map(object, at: 0x10000, length: pageOffset(4), protection: .readWrite)
        try map.store(5, at: base)
        _ = try map.load(base + pageOffset(1))
        try map.store(6, at: base + pageOffset(2))
        XCTAssertEqual(try object.clean(offset: 0, length: pageOffset(4)), 2)
        XCTAssertEqual(pager.word(at: 0), 5)
        XCTAssertEqual(pager.word(at: pageOffset(2)), 6)
        XCTAssertNil(pager.word(at: pageOffset(1)))
        XCTAssertEqual(try object.clean(offset: 0, length: pageOffset(4)), 0, "clean pages are not written again")
        try map.store(8, at: base)     // write-protected by clean: faults, dirties again
        XCTAssertEqual(try object.clean(offset: 0, length: pageOffset(4)), 1)
        XCTAssertEqual(pager.word(at: 0), 8)
        world.audit([object])
        object.deallocate()
        map.destroy()
        world.audit()
    }

    func testRemoveRangeAndProtectRangeActOnEveryMapping() throws {
        let world = VMWorld()
        let first = try VMMap(system: world.system), second = try VMMap(system: world.system)
        let object = world.object(pages: 4)
        let a = try first.map(object, at: 0x10000, length: pageOffset(4), protection: .readWrite, inheritance: .share)
        let b = try second.map(object, at: 0x40000, length: pageOffset(4), protection: .readWrite, inheritance: .share)
        try first.store(1, at: a)
        XCTAssertEqual(try second.load(b), 1)
        try second.store(2, at: b + pageOffset(1))
        try object.protectRange(offset: 0, length: pageOffset(4), to: .readOnly)
        XCTAssertEqual(try first.pmap.extract(VirtualAddress(a))?.protection.contains(.write), false)
        XCTAssertEqual(try second.pmap.extract(VirtualAddress(b + pageOffset(1)))?.protection.contains(.write), false)
        world.audit([object])
        try object.removeRange(offset: 0, length: pageOffset(2))
        XCTAssertNil(try first.pmap.extract(VirtualAddress(a)))
        XCTAssertNil(try second.pmap.extract(VirtualAddress(b)))
        XCTAssertEqual(try first.load(a + pageOffset(1)), 0, "removed pages zero-fill again")
        world.audit([object])
        object.deallocate()
        first.destroy()
        second.destroy()
        world.audit()
    }
}

extension VMObject {
    /// Test helper: drops the resident page at `offset` but keeps the pager's data (what a
    /// page-out followed by reclaim leaves).
    func removeRangeKeepingPager(offset: UInt64) throws(ObjectError) {
        let page = try remove(at: offset)
        system.releasePage(page)
    }
}
