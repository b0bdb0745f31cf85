// VMMapTests: vm_map and vm_fault on the arena through the software MMU of VMTestWorld:
// argument checking, find-free-space, clipping and merging, coalesce, protection and
// maximum protection, wiring, fork with every inheritance and copy strategy, and chain
// depth under nested forks. Every test ends with the auditor.

import XCTest
@testable import Kernel

final class VMMapTests: XCTestCase {
    private let page = pageSize

    private func expectMapError(_ expected: MapError, line: UInt = #line, _ body: () throws(MapError) -> Void) {
        do { try body(); XCTFail("succeeded, expected \(expected)", line: line) } catch { XCTAssertEqual(error, expected, line: line) }
    }

    private func expectFaultError(_ expected: FaultError, line: UInt = #line, _ body: () throws(FaultError) -> Void) {
        do { try body(); XCTFail("succeeded, expected \(expected)", line: line) } catch { XCTAssertEqual(error, expected, line: line) }
    }

    func testBadMapArgumentsAreTypedErrorsAndChangeNothing() throws {
        let world = VMWorld()
        let map = try VMMap(system: world.system)
        let object = world.object(pages: 4)
        try map.map(nil, at: 0x20000, length: 4 * page, protection: .readWrite)
        expectMapError(.unaligned) { () throws(MapError) in try map.map(nil, at: 0x30001, length: page, protection: .readWrite) }
        expectMapError(.unaligned) { () throws(MapError) in try map.map(nil, at: 0x30000, length: 100, protection: .readWrite) }
        expectMapError(.outOfRange) { () throws(MapError) in try map.map(nil, at: 0x30000, length: 0, protection: .readWrite) }
        expectMapError(.outOfRange) { () throws(MapError) in try map.map(nil, at: 0, length: page, protection: .readWrite) }
        expectMapError(.outOfRange) { () throws(MapError) in try map.map(nil, at: AddressSpaceLayout.userEnd - page, length: 2 * page, protection: .readWrite) }
        expectMapError(.outOfRange) { () throws(MapError) in try map.map(nil, at: UInt64.max & ~(pageSize - 1), length: 2 * page, protection: .readWrite) }
        expectMapError(.overlapping) { () throws(MapError) in try map.map(nil, at: 0x1F000, length: 2 * page, protection: .readWrite) }
        expectMapError(.protectionExceedsMaximum) { () throws(MapError) in try map.map(nil, at: 0x30000, length: page, protection: .readWrite, maxProtection: .readOnly) }
        expectMapError(.object(.outOfRange)) { () throws(MapError) in try map.map(object, offset: 2 * page, at: 0x30000, length: 4 * page, protection: .readWrite) }
        expectMapError(.notMapped) { () throws(MapError) in try map.protect(start: 0x20000, length: 8 * page, to: .readOnly) }
        expectMapError(.protectionExceedsMaximum) { () throws(MapError) in
            try map.map(nil, at: 0x40000, length: page, protection: .readOnly, maxProtection: .readOnly)
            try map.protect(start: 0x40000, length: page, to: .readWrite)
        }
        expectMapError(.notWired) { () throws(MapError) in try map.unwire(start: 0x20000, length: page) }
        XCTAssertEqual(map.entries.count, 2)
        XCTAssertEqual(object.referenceCount, 1)
        world.audit([object])
        object.deallocate()
        map.destroy()
        world.audit()
    }

    func testFaultsOutsideEntriesOrAgainstProtectionAreErrorsNotPanics() throws {
        let world = VMWorld()
        let map = try VMMap(system: world.system)
        try map.map(nil, at: 0x10000, length: page, protection: .readOnly)
        expectFaultError(.notMapped) { () throws(FaultError) in try map.fault(at: 0x20000, access: .read) }
        expectFaultError(.protectionViolation) { () throws(FaultError) in try map.fault(at: 0x10000, access: .write) }
        expectFaultError(.protectionViolation) { () throws(FaultError) in try map.fault(at: 0x10008, access: .execute) }
        XCTAssertEqual(try map.load(0x10000), 0)
        world.audit()
        map.destroy()
    }

    func testFindFreeSpaceReturnsTheFirstAlignedGap() throws {
        let world = VMWorld()
        let map = try VMMap(system: world.system, lowerBound: 0x10000, upperBound: 0x100000)
        try map.map(nil, at: 0x10000, length: 2 * page, protection: .readWrite)
        try map.map(nil, at: 0x14000, length: page, protection: .readOnly)
        XCTAssertEqual(map.findFreeSpace(length: 2 * page), 0x12000)
        XCTAssertEqual(map.findFreeSpace(length: 3 * page), 0x15000)
        XCTAssertEqual(map.findFreeSpace(length: page, alignment: 0x10000), 0x20000)
        XCTAssertNil(map.findFreeSpace(length: 0x100000))
        let placed = try map.map(nil, at: nil, length: 2 * page, protection: .readWrite)
        XCTAssertEqual(placed, 0x12000)
        world.audit()
        map.destroy()
    }

    func testUnmapInTheMiddleClipsTheEntryAndKeepsBothEnds() throws {
        let world = VMWorld()
        let map = try VMMap(system: world.system)
        let base = try map.map(nil, at: 0x100000, length: 8 * page, protection: .readWrite)
        for index in 0..<8 { try map.store(UInt64(index + 1), at: base + UInt64(index) * page) }
        try map.unmap(start: base + 3 * page, length: 2 * page)
        XCTAssertEqual(map.entries.count, 2)
        XCTAssertEqual(map.entries[0].object?.referenceCount, 2, "both halves reference the object")
        XCTAssertEqual(try map.load(base + 2 * page), 3)
        XCTAssertEqual(try map.load(base + 5 * page), 6)
        expectFaultError(.notMapped) { () throws(FaultError) in _ = try map.load(base + 3 * page) }
        world.audit()
        try map.unmap(start: base, length: 8 * page)
        XCTAssertEqual(map.entries.count, 0)
        XCTAssertEqual(world.system.objects.count, 0)
        world.audit()
        map.destroy()
    }

    func testProtectClipsAndMergesBackAndEnforcesMaximumProtection() throws {
        let world = VMWorld()
        let map = try VMMap(system: world.system)
        let base = try map.map(nil, at: 0x100000, length: 4 * page, protection: .readWrite)
        try map.store(9, at: base + page)
        try map.protect(start: base + page, length: page, to: .readOnly)
        XCTAssertEqual(map.entries.count, 3)
        XCTAssertEqual(try map.pmap.extract(VirtualAddress(base + page))?.protection.contains(.write), false)
        expectFaultError(.protectionViolation) { () throws(FaultError) in try map.store(1, at: base + page) }
        XCTAssertEqual(try map.load(base + page), 9)
        try map.protect(start: base + page, length: page, to: .readWrite)
        XCTAssertEqual(map.entries.count, 1, "identical neighbours merge again")
        try map.store(10, at: base + page)
        try map.protect(start: base, length: 4 * page, to: .readOnly, setMaximum: true)
        expectMapError(.protectionExceedsMaximum) { () throws(MapError) in try map.protect(start: base, length: page, to: .readWrite) }
        XCTAssertEqual(map.entries[0].protection, .readOnly)
        world.audit()
        map.destroy()
    }

    func testFreshAnonymousMemoryCoalescesWithThePreviousEntry() throws {
        let world = VMWorld()
        let map = try VMMap(system: world.system)
        let base = try map.map(nil, at: 0x100000, length: 2 * page, protection: .readWrite)
        try map.store(1, at: base)
        try map.map(nil, at: base + 2 * page, length: 3 * page, protection: .readWrite)
        XCTAssertEqual(map.entries.count, 1)
        XCTAssertEqual(map.entries[0].object?.size, 5 * page)
        try map.store(2, at: base + 4 * page)
        XCTAssertEqual(try map.load(base), 1)
        world.audit()
        map.destroy()
        XCTAssertEqual(world.system.objects.count, 0)
    }

    func testZeroFillThenCopyOnWriteForkIsolatesBothSides() throws {
        let world = VMWorld()
        let parent = try VMMap(system: world.system)
        let base = try parent.map(nil, at: 0x100000, length: 4 * page, protection: .readWrite)
        XCTAssertEqual(try parent.load(base), 0)
        XCTAssertEqual(world.system.statistics.zeroFillFaults, 1)
        try parent.store(1, at: base)
        try parent.store(2, at: base + page)
        let child = try parent.fork()
        world.audit()
        XCTAssertEqual(try child.load(base), 1)
        try child.store(3, at: base)
        try parent.store(4, at: base + page)
        XCTAssertEqual(try parent.load(base), 1)
        XCTAssertEqual(try child.load(base), 3)
        XCTAssertEqual(try parent.load(base + page), 4)
        XCTAssertEqual(try child.load(base + page), 2)
        XCTAssertGreaterThanOrEqual(world.system.statistics.copyOnWriteFaults, 1)
        world.audit()
        child.destroy()
        world.audit()
        // The child's exit leaves the parent's shadow as the only user: collapsed.
        XCTAssertLessThanOrEqual(parent.maximumChainDepth, 0)
        XCTAssertEqual(try parent.load(base), 1)
        parent.destroy()
        XCTAssertEqual(world.system.objects.count, 0)
    }

    func testSharedAndUninheritedEntriesFollowTheirInheritance() throws {
        let world = VMWorld()
        let parent = try VMMap(system: world.system)
        let shared = try parent.map(nil, at: 0x100000, length: 2 * page, protection: .readWrite, inheritance: .share)
        let hidden = try parent.map(nil, at: 0x200000, length: page, protection: .readWrite, inheritance: .none)
        try parent.store(5, at: shared)
        try parent.store(6, at: hidden)
        let child = try parent.fork()
        try child.store(7, at: shared)
        XCTAssertEqual(try parent.load(shared), 7)
        try parent.store(8, at: shared + page)
        XCTAssertEqual(try child.load(shared + page), 8)
        expectFaultError(.notMapped) { () throws(FaultError) in _ = try child.load(hidden) }
        world.audit()
        parent.destroy()
        XCTAssertEqual(try child.load(shared), 7)
        child.destroy()
        world.audit()
    }

    func testSharingAnEntryThatNeedsCopyGivesBothSidesTheSameShadow() throws {
        let world = VMWorld()
        let first = try VMMap(system: world.system)
        let base = try first.map(nil, at: 0x100000, length: page, protection: .readWrite)
        try first.store(1, at: base)
        let second = try first.fork()                       // copy: both need copy
        try second.inherit(start: base, length: page, .share)
        let third = try second.fork()                       // share: second's shadow is made now
        try third.store(2, at: base)
        XCTAssertEqual(try second.load(base), 2)
        XCTAssertEqual(try first.load(base), 1)
        world.audit()
        third.destroy(); second.destroy(); first.destroy()
        world.audit()
        XCTAssertEqual(world.system.objects.count, 0)
    }

    func testDelayedCopyKeepsTheChildsSnapshotWhileTheParentWrites() throws {
        let world = VMWorld()
        let parent = try VMMap(system: world.system)
        let base = try parent.map(nil, at: 0x100000, length: 4 * page, protection: .readWrite, copyStrategy: .delayed)
        try parent.store(1, at: base)
        let child = try parent.fork()
        XCTAssertNotNil(parent.entries[0].object?.copy)
        XCTAssertFalse(parent.entries[0].needsCopy, "the parent keeps writing its own object")
        XCTAssertEqual(try child.load(base), 1)
        try parent.store(2, at: base)                  // resident page: pushed to the copy first
        try parent.store(3, at: base + page)           // zero page: zeros pushed first
        XCTAssertEqual(try child.load(base), 1)
        XCTAssertEqual(try child.load(base + page), 0)
        XCTAssertEqual(world.system.statistics.copyPushes, 2)
        let grandchild = try parent.fork()             // second copy: the old copy shadows the new one
        try parent.store(4, at: base)
        XCTAssertEqual(try grandchild.load(base), 2)
        XCTAssertEqual(try child.load(base), 1)
        try child.store(5, at: base + 2 * page)
        XCTAssertEqual(try parent.load(base + 2 * page), 0)
        world.audit()
        parent.destroy()
        XCTAssertEqual(try child.load(base), 1)
        XCTAssertEqual(try grandchild.load(base + page), 3)
        world.audit()
        child.destroy(); grandchild.destroy()
        world.audit()
        XCTAssertEqual(world.system.objects.count, 0)
    }

    func testWireFaultsEverythingInResolvesCopyOnWriteAndForkCopiesEagerly() throws {
        let world = VMWorld()
        let parent = try VMMap(system: world.system)
        let base = try parent.map(nil, at: 0x100000, length: 4 * page, protection: .readWrite)
        try parent.store(1, at: base)
        let child = try parent.fork()
        try parent.wire(start: base, length: 4 * page)
        XCTAssertFalse(parent.entries[0].needsCopy)
        for index in 0..<4 {
            let translation = try XCTUnwrap(try parent.pmap.extract(VirtualAddress(base + UInt64(index) * page)))
            XCTAssertTrue(translation.isWired)
            XCTAssertTrue(translation.protection.contains(.write))
            XCTAssertEqual(world.frames.page(at: translation.physicalAddress)?.wireCount, 1)
        }
        try parent.store(2, at: base)
        XCTAssertEqual(try child.load(base), 1)
        let second = try parent.fork()                 // wired entry: the child gets copies now
        XCTAssertFalse(second.entries[0].needsCopy)
        try parent.store(3, at: base)
        XCTAssertEqual(try second.load(base), 2)
        world.audit()
        try parent.unwire(start: base, length: 4 * page)
        XCTAssertEqual(world.frames.count(of: .wired) - world.kernel.tablePages, world.frames.count(of: .wired) - world.kernel.tablePages)
        for index in 0..<4 {
            let translation = try XCTUnwrap(try parent.pmap.extract(VirtualAddress(base + UInt64(index) * page)))
            XCTAssertFalse(translation.isWired)
            XCTAssertEqual(world.frames.page(at: translation.physicalAddress)?.wireCount, 0)
        }
        world.audit()
        parent.destroy(); child.destroy(); second.destroy()
        world.audit()
    }

    func testChainsShrinkBackAfterForkedChildrenExit() throws {
        let world = VMWorld()
        let parent = try VMMap(system: world.system)
        let base = try parent.map(nil, at: 0x100000, length: 8 * page, protection: .readWrite)
        for index in 0..<8 { try parent.store(UInt64(index), at: base + UInt64(index) * page) }
        var deepest = 0
        for round in 0..<50 {
            let child = try parent.fork()
            try child.store(UInt64(1000 + round), at: base)
            try parent.store(UInt64(round), at: base + page)
            deepest = max(deepest, parent.maximumChainDepth, child.maximumChainDepth)
            child.destroy()
        }
        XCTAssertLessThanOrEqual(deepest, 2)
        XCTAssertEqual(parent.maximumChainDepth, 0, "after the children exit the chain collapsed")
        XCTAssertEqual(world.system.objects.count, 1)
        XCTAssertEqual(try parent.load(base + page), 49)
        world.audit()
        parent.destroy()
    }

    func testNestedForksStayWithinTheDepthBoundAndKeepEveryGenerationsData() throws {
        // Each generation writes its own page, so no shadow ever covers its backing object
        // (no bypass): without the bound the chain would grow by one per generation.
        let world = VMWorld()
        var maps = [try VMMap(system: world.system)]
        let base = try maps[0].map(nil, at: 0x100000, length: 64 * page, protection: .readWrite)
        try maps[0].store(1000, at: base)
        var deepest = 0
        for generation in 1...40 {
            let child = try maps[generation - 1].fork()
            try child.store(UInt64(1000 + generation), at: base + UInt64(generation) * page)
            maps.append(child)
            deepest = max(deepest, maps.map { $0.maximumChainDepth }.max() ?? 0)
        }
        XCTAssertLessThanOrEqual(deepest, world.system.maximumChainDepth + 1)
        XCTAssertGreaterThan(world.system.statistics.flattens, 0)
        for (generation, map) in maps.enumerated() {
            for index in 0...41 {
                XCTAssertEqual(try map.load(base + UInt64(index) * page), index <= generation ? UInt64(1000 + index) : 0)
            }
        }
        world.audit()
        for map in maps.reversed() { map.destroy() }
        XCTAssertEqual(world.system.objects.count, 0)
        world.audit()
    }

    func testManyEntriesAreFoundByBinarySearch() throws {
        let world = VMWorld()
        let map = try VMMap(system: world.system)
        for index in 0..<500 {
            try map.map(nil, at: 0x100000 + UInt64(index) * 2 * page, length: page,
                        protection: index % 2 == 0 ? .readWrite : .readOnly)
        }
        XCTAssertEqual(map.entries.count, 500)
        for index in stride(from: 499, through: 0, by: -7) {
            let address = 0x100000 + UInt64(index) * 2 * page
            XCTAssertEqual(map.entry(containing: address + 8)?.start, address)
            XCTAssertNil(map.entry(containing: address + page))
        }
        world.audit()
        map.destroy()
    }

    func testFaultPagesInFromThePagerAndZeroFillsTheRest() throws {
        let world = VMWorld()
        let map = try VMMap(system: world.system)
        let object = world.object(pages: 4)
        let pager = RAMPager()
        try object.setPager(pager)
        pager.put(0x51, at: 2 * page)
        try map.map(object, at: 0x10000, length: 4 * page, protection: .readWrite)
        XCTAssertEqual(try map.load(0x10000 + 2 * page), 0x51)
        XCTAssertEqual(pager.pageIns, 1)
        XCTAssertEqual(try map.load(0x10000 + 3 * page), 0)
        XCTAssertEqual(world.system.statistics.pageIns, 1)
        world.audit([object])
        object.deallocate()
        map.destroy()
        world.audit()
    }

    func testRunningOutOfMemoryIsATypedFaultErrorAndLeavesAConsistentVM() throws {
        let world = VMWorld(megabytes: 4)
        let before = world.pagesInUse
        let map = try VMMap(system: world.system)
        let base = try map.map(nil, at: 0x100000, length: 4096 * page, protection: .readWrite)
        var written = 0
        var failure: FaultError? = nil
        for index in 0..<4096 {
            do {
                try map.store(UInt64(index), at: base + UInt64(index) * page)
                written += 1
            } catch {
                failure = error
                break
            }
        }
        XCTAssertEqual(failure, .outOfMemory)
        XCTAssertGreaterThan(written, 100)
        world.audit()
        XCTAssertEqual(try map.load(base + UInt64(written - 1) * page), UInt64(written - 1), "pages written before the failure keep their data")
        map.destroy()
        world.frames.drainFreeQueue()
        XCTAssertLessThanOrEqual(world.pagesInUse, before + world.kernel.reverseMap.poolPages)
        XCTAssertEqual(world.system.objects.count, 0)
        world.audit()
    }
}
