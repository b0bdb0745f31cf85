// PmapTests: the generic pmap over real x86_64 and aarch64 page tables built in a host arena.
// Tables are checked by an independent walker that decodes raw bits (not the formats' code);
// TLB invalidation is counted by a recording MMU; the reverse map is checked against a model
// under random enter/remove/protect/pageProtect/removeAll/destroy (seed printed on failure).

import XCTest
@testable import Kernel
import PageTableFormats

/// Records every MMU operation the pmap asks for.
final class RecordingMMU: MMUOperations {
    var publishes = 0
    var invalidations: [(address: UInt64, tableCaches: Bool)] = []
    var fullFlushes: [Bool] = []
    var completions = 0
    var activations: [PhysicalAddress] = []

    func publishTableStores() { publishes += 1 }
    func invalidate(_ address: VirtualAddress, includingTableCaches: Bool) {
        invalidations.append((address.value, includingTableCaches))
    }
    func invalidateAll(includingGlobal: Bool) { fullFlushes.append(includingGlobal) }
    func completeInvalidation() { completions += 1 }
    func activate(root: PhysicalAddress) { activations.append(root) }

    func reset() {
        publishes = 0
        invalidations = []
        fullFlushes = []
        completions = 0
    }
}

/// What an independent walk of raw entries found.
struct RawWalk: Equatable {
    var level: Int
    var entry: UInt64
    var physicalAddress: UInt64
}

/// Walks x86_64 tables from raw bits (SDM 4.5): P = bit 0, PS = bit 7 at levels 1-2.
func walkX86(root: PhysicalAddress, _ address: UInt64) -> RawWalk? {
    var table = root.value
    for level in 0..<4 {
        let index = (address >> (39 - 9 * UInt64(level))) & 511
        let entry = DirectMap.pointer(to: PhysicalAddress(table + index * 8)).load(as: UInt64.self)
        guard entry & 1 != 0 else { return nil }
        if level == 3 || (level > 0 && entry & 0x80 != 0) {
            let size: UInt64 = 1 << (39 - 9 * UInt64(level))
            return RawWalk(level: level, entry: entry,
                           physicalAddress: (entry & 0x000F_FFFF_FFFF_F000 & ~(size - 1)) | (address & (size - 1)))
        }
        table = entry & 0x000F_FFFF_FFFF_F000
    }
    return nil
}

/// Walks aarch64 tables from raw bits (Arm ARM D8.3): bit 0 valid, bit 1 table/page.
func walkARM64(root: PhysicalAddress, _ address: UInt64) -> RawWalk? {
    var table = root.value
    for level in 0..<4 {
        let index = (address >> (39 - 9 * UInt64(level))) & 511
        let entry = DirectMap.pointer(to: PhysicalAddress(table + index * 8)).load(as: UInt64.self)
        guard entry & 1 != 0 else { return nil }
        let isTableOrPage = entry & 2 != 0
        if level == 3 || !isTableOrPage {
            guard level == 3 ? isTableOrPage : level > 0 else { return nil }
            let size: UInt64 = 1 << (39 - 9 * UInt64(level))
            return RawWalk(level: level, entry: entry,
                           physicalAddress: (entry & 0x0000_FFFF_FFFF_F000 & ~(size - 1)) | (address & (size - 1)))
        }
        table = entry & 0x0000_FFFF_FFFF_F000
    }
    return nil
}

/// An arena with a page allocator, page frames and a kernel pmap of format F.
final class PmapWorld<F: PageTableFormat> {
    let arena: PhysicalArena
    let frames: PageFrames
    let mmu = RecordingMMU()
    let kernel: Pmap<F, RecordingMMU>
    let walk: (PhysicalAddress, UInt64) -> RawWalk?

    init(_ format: F, megabytes: UInt64 = 32, walk: @escaping (PhysicalAddress, UInt64) -> RawWalk?) throws {
        arena = PhysicalArena(byteCount: megabytes << 20)
        try physicalPages.setUp(memoryMap: arena.wholeArenaMap())
        frames = try PageFrames()
        kernel = try Pmap(kernelWith: format, hardware: mmu, pages: frames)
        self.walk = walk
    }

    var reverseMap: ReverseMap<F, RecordingMMU> { kernel.reverseMap }

    func page(filledWith pattern: UInt64 = 0) throws -> Page {
        let page = try frames.allocate(zeroed: true)
        try frames.activate(page)
        page.contents.initializeMemory(as: UInt64.self, repeating: pattern, count: 512)
        return page
    }
}

final class PmapTests: XCTestCase {
    private let userBase: UInt64 = 0x0000_0010_0000_0000
    private let kernelScratch = AddressSpaceLayout.scratchWindowBase

    private func expectError<T>(_ expected: PmapError, _ what: String = "", file: StaticString = #filePath, line: UInt = #line,
                                _ body: () throws(PmapError) -> T) {
        do {
            _ = try body()
            XCTFail("\(what): expected \(expected), but the call succeeded", file: file, line: line)
        } catch {
            XCTAssertEqual(error, expected, what, file: file, line: line)
        }
    }

    private func assertConsistent<F>(_ world: PmapWorld<F>, _ pages: [Page], file: StaticString = #filePath, line: UInt = #line) {
        for page in pages {
            if let broken = world.reverseMap.invariantViolation(of: page) { XCTFail("\(broken)", file: file, line: line) }
        }
        if let broken = world.frames.invariantViolation() { XCTFail("\(broken)", file: file, line: line) }
    }

    private func x86World(megabytes: UInt64 = 32) throws -> PmapWorld<X86PageTableFormat> {
        try PmapWorld(X86PageTableFormat(), megabytes: megabytes, walk: walkX86)
    }

    private func armWorld(hardwareDirty: Bool = false, megabytes: UInt64 = 32) throws -> PmapWorld<ARM64PageTableFormat> {
        try PmapWorld(ARM64PageTableFormat(hardwareDirtyBit: hardwareDirty), megabytes: megabytes, walk: walkARM64)
    }

    // MARK: Tables built and walked

    private func checkEnterBuildsRealTables<F>(_ world: PmapWorld<F>, expectUserBits: (UInt64) -> Bool) throws {
        let user = try Pmap(userOf: world.kernel)
        let page = try world.page(filledWith: 1)
        let addresses: [UInt64] = [userBase, userBase + 0x1000, userBase + 0x20_0000, 0x3FFF_FFFF_F000]
        for address in addresses { try user.enter(page, at: VirtualAddress(address), protection: .readWrite) }
        for address in addresses {
            let walk = try XCTUnwrap(world.walk(user.root, address + 0x18))
            XCTAssertEqual(walk.level, 3)
            XCTAssertEqual(walk.physicalAddress, page.physicalAddress.value + 0x18)
            XCTAssertTrue(expectUserBits(walk.entry), String(walk.entry, radix: 16))
        }
        XCTAssertNil(world.walk(user.root, userBase + 0x2000), "neighbour unmapped")
        XCTAssertEqual(user.tablePages, 1 + 3 + 1 + 3, "root, a path for the first two, a table for the third, a path for the last")
        XCTAssertEqual(page.mappingCount, 4)
        // Removing the middle page of a table keeps it; removing its last page frees it.
        try user.remove(start: VirtualAddress(userBase + 0x1000), byteCount: 0x1000)
        XCTAssertEqual(user.tablePages, 8)
        try user.remove(start: VirtualAddress(userBase + 0x20_0000), byteCount: 0x1000)
        XCTAssertEqual(user.tablePages, 7, "an emptied last-level table is freed")
        try user.remove(start: VirtualAddress(0x3FFF_FFFF_F000), byteCount: 0x1000)
        XCTAssertEqual(user.tablePages, 4, "its whole path up to the root is freed")
        XCTAssertNil(world.walk(user.root, 0x3FFF_FFFF_F000))
        XCTAssertNotNil(world.walk(user.root, userBase))
        try user.destroy()
        XCTAssertEqual(page.mappingCount, 0)
        XCTAssertEqual(world.frames.count(of: .wired), 1 + world.reverseMap.poolPages, "only the kernel root and the pv pool stay wired")
        assertConsistent(world, [page])
    }

    func testX86EnterBuildsTablesTheHardwareWalks() throws {
        let world = try x86World()
        // P, R/W, U/S set, XD set, G clear, A/D clear.
        try checkEnterBuildsRealTables(world) { $0 & 0x7 == 0x7 && $0 >> 63 == 1 && $0 & 0x160 == 0 }
    }

    func testARM64EnterBuildsTablesTheHardwareWalks() throws {
        let world = try armWorld()
        // Page descriptor, AP = 11 (clean), nG, PXN|UXN, AF clear.
        try checkEnterBuildsRealTables(world) { $0 & 0x3 == 0x3 && ($0 >> 6) & 3 == 3 && $0 & (1 << 11) != 0 && ($0 >> 53) & 3 == 3 && $0 & (1 << 10) == 0 }
    }

    private func checkDirectMapAndImage<F>(_ world: PmapWorld<F>, largest: UInt64) throws {
        let kernel = world.kernel
        // A direct map of 2 GiB + 6 MiB + 12 KiB: the largest leaves where aligned, then smaller.
        let length: UInt64 = (2 << 30) + (6 << 20) + 0x3000
        try kernel.enterRange(PhysicalRange(start: PhysicalAddress(0), end: PhysicalAddress(length)),
                              at: VirtualAddress(AddressSpaceLayout.directMapBase), protection: .readWrite)
        XCTAssertEqual(kernel.residentPages, Int(length >> 12))
        XCTAssertEqual(world.walk(kernel.root, AddressSpaceLayout.directMapBase + 0x1234_5678)?.physicalAddress, 0x1234_5678)
        XCTAssertEqual(world.walk(kernel.root, AddressSpaceLayout.directMapBase + 0x1234_5678).map { UInt64(1) << (39 - 9 * UInt64($0.level)) },
                       largest)
        XCTAssertEqual(world.walk(kernel.root, AddressSpaceLayout.directMapBase + (2 << 30) + (6 << 20) + 0x2000)?.level, 3)
        XCTAssertNil(world.walk(kernel.root, AddressSpaceLayout.directMapBase + length))
        expectError(.partialLargePage, "4 KiB inside a large page") { () throws(PmapError) in
            try kernel.remove(start: VirtualAddress(AddressSpaceLayout.directMapBase + 0x1000), byteCount: 0x1000)
        }
        expectError(.partialLargePage, "protect inside a large page") { () throws(PmapError) in
            try kernel.protect(start: VirtualAddress(AddressSpaceLayout.directMapBase + 0x1000), byteCount: 0x1000, to: .readOnly)
        }
        expectError(.alreadyMapped, "overlapping range") { () throws(PmapError) in
            try kernel.enterRange(PhysicalRange(start: PhysicalAddress(0), end: PhysicalAddress(0x1000)),
                                  at: VirtualAddress(AddressSpaceLayout.directMapBase + 0x40_0000), protection: .readOnly)
        }
        // The kernel image, W^X, with a guard page.
        let image: UInt64 = 0x0000_7FFF_8010_0000
        let layout = KernelImageLayout(text: image..<(image + 0x5000), readOnlyData: (image + 0x5000)..<(image + 0x8000),
                                       writableData: (image + 0x8000)..<(image + 0x10000), guardPages: [image + 0xB000],
                                       virtualToPhysicalOffset: image - 0x10_0000)
        try kernel.mapKernelImage(layout)
        var address = image
        while address < image + 0x10000 {
            let translation = try kernel.extract(VirtualAddress(address))
            if address == image + 0xB000 {
                XCTAssertNil(translation, "guard page unmapped")
            } else {
                let t = try XCTUnwrap(translation)
                let expected: Protection = address < image + 0x5000 ? .readExecute : (address < image + 0x8000 ? .readOnly : .readWrite)
                XCTAssertEqual(t.protection, expected, String(address, radix: 16))
                XCTAssertEqual(t.physicalAddress.value, address - layout.virtualToPhysicalOffset)
                XCTAssertEqual(t.pageSize, 0x1000)
                XCTAssertFalse(t.isManaged)
            }
            address += 0x1000
        }
        expectError(.writableAndExecutable) { () throws(PmapError) in
            try kernel.protect(start: VirtualAddress(image), byteCount: 0x1000, to: .all)
        }
        expectError(.unalignedAddress) { () throws(PmapError) in
            try kernel.mapKernelImage(KernelImageLayout(text: (image + 1)..<(image + 0x1000), readOnlyData: image..<image,
                                                         writableData: image..<image, guardPages: [], virtualToPhysicalOffset: 0))
        }
    }

    func testX86DirectMapUsesLargePagesAndImageIsWX() throws {
        try checkDirectMapAndImage(try x86World(), largest: 2 << 20)
    }

    func testARM64DirectMapUsesBlocksAndImageIsWX() throws {
        try checkDirectMapAndImage(try armWorld(), largest: 1 << 30)
    }

    func testKernelRootEntriesReachEveryUserPmap() throws {
        let world = try x86World()
        let first = try Pmap(userOf: world.kernel)
        let page = try world.page()
        // A kernel mapping in a top-level slot no kernel mapping used before.
        try world.kernel.enter(page, at: VirtualAddress(kernelScratch), protection: .readWrite)
        let second = try Pmap(userOf: world.kernel)
        for user in [first, second] {
            XCTAssertEqual(walkX86(root: user.root, kernelScratch)?.physicalAddress, page.physicalAddress.value,
                           "kernel mapping visible through a user root")
        }
        try world.kernel.remove(start: VirtualAddress(kernelScratch), byteCount: 0x1000)
        XCTAssertNil(walkX86(root: first.root, kernelScratch))
        try first.destroy()
        try second.destroy()
        XCTAssertEqual(world.kernel.userPmapCount, 0)
    }

    // MARK: Errors

    private func checkBadArguments<F>(_ world: PmapWorld<F>) throws {
        let kernel = world.kernel
        let user = try Pmap(userOf: kernel)
        let page = try world.page(filledWith: 1), other = try world.page(filledWith: 2)
        let va = VirtualAddress(userBase)
        try user.enter(page, at: va, protection: .readWrite)
        let tables = world.frames.count(of: .wired), entries = world.reverseMap.entriesInUse
        world.mmu.reset()
        expectError(.unalignedAddress) { () throws(PmapError) in try user.enter(other, at: va.advanced(by: 1), protection: .read) }
        expectError(.unalignedAddress) { () throws(PmapError) in try user.enter(physical: PhysicalAddress(0x1001), at: VirtualAddress(userBase + 0x1000), protection: .read) }
        expectError(.unalignedAddress) { () throws(PmapError) in try user.remove(start: va, byteCount: 0x800) }
        expectError(.nonCanonicalAddress) { () throws(PmapError) in try user.enter(other, at: VirtualAddress(0x0001_0000_0000_0000), protection: .read) }
        expectError(.nonCanonicalAddress) { () throws(PmapError) in try kernel.extract(VirtualAddress(0x8000_0000_0000_0000)) }
        expectError(.outsideAddressSpace) { () throws(PmapError) in try user.enter(other, at: VirtualAddress(AddressSpaceLayout.kernelStart), protection: .read) }
        expectError(.outsideAddressSpace) { () throws(PmapError) in try kernel.enter(other, at: va, protection: .read) }
        expectError(.outsideAddressSpace) { () throws(PmapError) in try user.extract(VirtualAddress(AddressSpaceLayout.kernelEnd - 1)) }
        expectError(.rangeOverflow) { () throws(PmapError) in try user.remove(start: VirtualAddress(AddressSpaceLayout.userEnd - 0x1000), byteCount: 0x2000) }
        expectError(.rangeOverflow) { () throws(PmapError) in try kernel.protect(start: VirtualAddress(kernelScratch), byteCount: ~UInt64(0xFFF), to: .read) }
        expectError(.alreadyMapped) { () throws(PmapError) in try user.enter(other, at: va, protection: .read) }
        expectError(.alreadyMapped) { () throws(PmapError) in try user.enter(physical: other.physicalAddress, at: va, protection: .read) }
        expectError(.invalidProtection) { () throws(PmapError) in try user.enter(other, at: va.advanced(by: 0x1000), protection: .none) }
        expectError(.invalidProtection) { () throws(PmapError) in
            try user.enter(other, at: va.advanced(by: 0x1000), protection: .readOnly, access: .execute)
        }
        expectError(.writableAndExecutable) { () throws(PmapError) in try kernel.enter(other, at: VirtualAddress(kernelScratch), protection: .all) }
        expectError(.notMapped) { () throws(PmapError) in try user.setWired(true, at: va.advanced(by: 0x1000)) }
        expectError(.wrongPmapKind) { () throws(PmapError) in try kernel.destroy() }
        expectError(.wrongPmapKind) { () throws(PmapError) in try Pmap(userOf: user) }
        try user.activate()
        expectError(.addressSpaceActive) { () throws(PmapError) in try user.destroy() }
        XCTAssertEqual(world.mmu.invalidations.count + world.mmu.fullFlushes.count, 0, "refused calls touched no TLB")
        XCTAssertEqual(world.frames.count(of: .wired), tables, "refused calls allocated no table")
        XCTAssertEqual(world.reverseMap.entriesInUse, entries, "refused calls allocated no pv entry")
        XCTAssertEqual(try user.extract(va)?.physicalAddress, page.physicalAddress, "mapping intact")
        XCTAssertEqual(user.residentPages, 1)
        // User mappings may be writable and executable; re-entering the same page updates it.
        try user.enter(page, at: va, protection: .all, wired: true)
        XCTAssertEqual(try user.extract(va)?.protection, .all)
        XCTAssertEqual(user.wiredPages, 1)
        try kernel.activate()
        try user.destroy()
        expectError(.destroyed) { () throws(PmapError) in try user.extract(va) }
        expectError(.destroyed) { () throws(PmapError) in try user.activate() }
        expectError(.destroyed) { () throws(PmapError) in try user.destroy() }
        assertConsistent(world, [page, other])
    }

    func testX86BadArgumentsAreTypedErrorsWithoutChange() throws { try checkBadArguments(try x86World()) }
    func testARM64BadArgumentsAreTypedErrorsWithoutChange() throws { try checkBadArguments(try armWorld()) }

    /// Takes every free page so the next allocation fails; returns them for freeing.
    private func exhaust(_ frames: PageFrames) -> [Page] {
        var taken: [Page] = []
        while let page = try? frames.allocate(zeroed: false) { taken.append(page) }
        return taken
    }

    func testOutOfMemoryUnwindsTablesAndLeavesPmapUnchanged() throws {
        let world = try x86World(megabytes: 8)
        let user = try Pmap(userOf: world.kernel)
        let page = try world.page()
        try user.enter(page, at: VirtualAddress(userBase), protection: .readWrite)   // grows the pv pool once
        let taken = exhaust(world.frames)
        // Three tables are needed for an address in a new top-level slot; give it only two.
        try world.frames.free(taken[0])
        try world.frames.free(taken[1])
        let wired = world.frames.count(of: .wired), free = world.frames.count(of: .free), entries = world.reverseMap.entriesInUse
        expectError(.outOfMemory) { () throws(PmapError) in try user.enter(page, at: VirtualAddress(0x0000_2000_0000_0000), protection: .read) }
        XCTAssertEqual(user.tablePages, 4, "no table left behind")
        XCTAssertEqual(world.frames.count(of: .wired), wired)
        XCTAssertEqual(world.frames.count(of: .free), free, "the tables it created went back")
        XCTAssertEqual(world.reverseMap.entriesInUse, entries, "its pv entry went back")
        XCTAssertEqual(user.residentPages, 1)
        XCTAssertNil(try user.extract(VirtualAddress(0x0000_2000_0000_0000)))
        // The same enter succeeds once memory is back.
        for page in taken[2...] { try world.frames.free(page) }
        try user.enter(page, at: VirtualAddress(0x0000_2000_0000_0000), protection: .read)
        XCTAssertEqual(user.tablePages, 7)
        try user.destroy()
        assertConsistent(world, [page])
    }

    func testEnterRangeOutOfMemoryRemovesWhatItMapped() throws {
        let world = try armWorld(megabytes: 8)
        let taken = exhaust(world.frames)
        try world.frames.free(taken[0])
        try world.frames.free(taken[1])
        try world.frames.free(taken[2])
        // 4 MiB of 4 KiB pages at a 2 MiB boundary needs 2 last-level tables plus their path.
        expectError(.outOfMemory) { () throws(PmapError) in
            try world.kernel.enterRange(PhysicalRange(start: PhysicalAddress(0x1000), end: PhysicalAddress(0x40_1000)),
                                        at: VirtualAddress(kernelScratch + 0x1000), protection: .readOnly)
        }
        XCTAssertEqual(world.kernel.residentPages, 0)
        XCTAssertNil(try world.kernel.extract(VirtualAddress(kernelScratch + 0x1000)))
        for page in taken[3...] { try world.frames.free(page) }
        assertConsistent(world, [])
    }

    // MARK: TLB invalidation

    func testInvalidationOnlyWhereTranslationsCanBeCached() throws {
        let world = try x86World()
        let mmu = world.mmu
        let user = try Pmap(userOf: world.kernel)
        let page = try world.page()
        let va = VirtualAddress(userBase)
        try user.enter(page, at: va, protection: .readWrite)
        XCTAssertEqual(mmu.invalidations.count, 0, "a new mapping needs no invalidation")
        try user.protect(start: va, byteCount: 0x1000, to: .readOnly)
        try user.remove(start: va, byteCount: 0x1000)
        XCTAssertEqual(mmu.invalidations.count + mmu.fullFlushes.count, 0, "an inactive user pmap is not in the TLB")
        try user.activate()
        XCTAssertEqual(mmu.activations.last, user.root)
        try user.enter(page, at: va, protection: .readWrite)
        try user.protect(start: va, byteCount: 0x1000, to: .readOnly)
        XCTAssertEqual(mmu.invalidations.map { $0.address }, [va.value], "protect of the active pmap invalidates the page")
        try user.protect(start: va, byteCount: 0x1000, to: .readOnly)
        XCTAssertEqual(mmu.invalidations.count, 1, "no change, no invalidation")
        mmu.reset()
        try user.remove(start: va, byteCount: 0x1000)
        XCTAssertEqual(mmu.invalidations.map { $0.address }.first, va.value, "remove invalidates the page")
        XCTAssertTrue(mmu.invalidations.dropFirst().allSatisfy { $0.tableCaches }, "freed tables invalidate walk caches")
        XCTAssertGreaterThan(mmu.completions, 0)
        // Over the batch limit: one flush of user translations.
        for index in 0..<40 { try user.enter(page, at: va.advanced(by: UInt64(index) << 12), protection: .readWrite) }
        mmu.reset()
        try user.protect(start: va, byteCount: 40 << 12, to: .readOnly)
        XCTAssertEqual(mmu.fullFlushes, [false], "a 40-page change flushes non-global translations once")
        XCTAssertEqual(mmu.invalidations.count, 0)
        // Kernel mappings are global and always cached.
        try world.kernel.activate()
        mmu.reset()
        try world.kernel.enter(page, at: VirtualAddress(kernelScratch), protection: .readWrite)
        try world.kernel.protect(start: VirtualAddress(kernelScratch), byteCount: 0x1000, to: .readOnly)
        XCTAssertEqual(mmu.invalidations.first?.address, kernelScratch, "kernel changes invalidate in every address space")
        for index in 1..<40 { try world.kernel.enter(page, at: VirtualAddress(kernelScratch + UInt64(index) << 12), protection: .readWrite) }
        mmu.reset()
        try world.kernel.remove(start: VirtualAddress(kernelScratch), byteCount: 40 << 12)
        XCTAssertEqual(mmu.fullFlushes, [true], "a large kernel change flushes global translations too")
        // Page-wide operations invalidate each mapping they change.
        try world.kernel.enter(page, at: VirtualAddress(kernelScratch), protection: .readWrite, access: .readWrite)
        mmu.reset()
        world.reverseMap.clearModified(page)
        XCTAssertEqual(mmu.invalidations.map { $0.address }, [kernelScratch], "clearModified invalidates the dirty kernel mapping only")
        try world.kernel.remove(start: VirtualAddress(kernelScratch), byteCount: 0x1000)
        try user.destroy()
        assertConsistent(world, [page])
    }

    // MARK: Referenced/modified

    private func checkReferencedModified<F>(_ world: PmapWorld<F>, emulated: Bool) throws {
        let kernel = world.kernel, reverse = world.reverseMap
        let user = try Pmap(userOf: kernel)
        try user.activate()
        let page = try world.page()
        let va = VirtualAddress(userBase)
        try user.enter(page, at: va, protection: .readWrite)
        XCTAssertFalse(reverse.isReferenced(page))
        XCTAssertFalse(reverse.isModified(page))
        // A simulated write fault: the aarch64 software emulation resolves it itself.
        let write = PageFault(address: va.value + 8, access: .write, reason: .accessFlag, fromUser: false)
        XCTAssertEqual(kernel.resolveEmulationFault(write), emulated)
        XCTAssertEqual(reverse.isModified(page), emulated)
        XCTAssertEqual(reverse.isReferenced(page), emulated)
        if emulated {
            XCTAssertEqual(world.mmu.invalidations.last?.address, va.value, "a permission change is invalidated")
            XCTAssertFalse(kernel.resolveEmulationFault(write), "a second fault is not the pmap's")
            XCTAssertEqual(user.emulationFaultsResolved, 1)
        }
        // The kernel pmap answers for the active user pmap only.
        try kernel.activate()
        XCTAssertFalse(kernel.resolveEmulationFault(PageFault(address: va.value, access: .read, reason: .accessFlag, fromUser: false)))
        try user.enter(page, at: va, protection: .readWrite, access: .readWrite)
        XCTAssertTrue(reverse.isModified(page) && reverse.isReferenced(page), "an enter for a write access pre-sets both")
        reverse.clearModified(page)
        reverse.clearReferenced(page)
        XCTAssertFalse(reverse.isModified(page) || reverse.isReferenced(page))
        XCTAssertEqual(try user.extract(va)?.protection, .readWrite, "clearModified keeps the mapping writable")
        // Write-protecting a dirty mapping keeps the page dirty (in its record).
        try user.enter(page, at: va, protection: .readWrite, access: .write)
        reverse.pageProtect(page, to: .readOnly)
        XCTAssertTrue(page.isDirty && reverse.isModified(page))
        XCTAssertEqual(try user.extract(va)?.protection, .read)
        try user.destroy()
        XCTAssertTrue(reverse.isReferenced(page), "bits harvested from destroyed mappings")
        assertConsistent(world, [page])
    }

    func testX86ReferencedModifiedAreHardwareBits() throws { try checkReferencedModified(try x86World(), emulated: false) }
    func testARM64SoftwareEmulationResolvesItsOwnFaults() throws { try checkReferencedModified(try armWorld(), emulated: true) }

    // MARK: Reverse map under random operations

    private struct Key: Hashable {
        var pmap: Int
        var address: UInt64
    }

    private func checkRandomOperations<F>(_ world: PmapWorld<F>, seed: UInt64) throws {
        var random = SplitMix64Generator(seed: seed)
        let context = "seed \(seed)"
        var pmaps = [world.kernel, try Pmap(userOf: world.kernel), try Pmap(userOf: world.kernel), try Pmap(userOf: world.kernel)]
        var pages: [Page] = []
        for index in 0..<12 { pages.append(try world.page(filledWith: UInt64(index))) }
        var model: [Key: (page: Int, protection: Protection)] = [:]
        // Addresses across three last-level tables, two level-2 tables and two top-level slots.
        func address(_ pmap: Int, _ slot: Int) -> UInt64 {
            let base = pmap == 0 ? kernelScratch : userBase
            let spread: [UInt64] = [0, 0x1000, 0x2000, 0x3000, 0x1F_F000, 0x20_0000, 0x20_1000, 0x4000_0000, 0x4000_1000,
                                    0x80_0000_0000, 0x80_0000_1000, 0x80_0000_2000]
            return base + spread[slot]
        }
        let protections: [Protection] = [.readOnly, .readWrite, .readExecute, .all]
        for step in 0..<3000 {
            let pmapIndex = Int(random.next() % UInt64(pmaps.count))
            let map = pmaps[pmapIndex]
            let slot = Int(random.next() % 12)
            let va = address(pmapIndex, slot)
            var protection = protections[Int(random.next() % 4)]
            if map.isKernel && protection == .all { protection = .readWrite }
            switch random.next() % 10 {
            case 0, 1, 2, 3:
                let pageIndex = Int(random.next() % UInt64(pages.count))
                let key = Key(pmap: pmapIndex, address: va)
                do {
                    try map.enter(pages[pageIndex], at: VirtualAddress(va), protection: protection, wired: random.next() % 2 == 0)
                    XCTAssertTrue(model[key] == nil || model[key]!.page == pageIndex, "\(context) step \(step): enter over another page")
                    model[key] = (pageIndex, protection.hardwareExpressible)
                } catch {
                    XCTAssertEqual(error, .alreadyMapped, context)
                    XCTAssertNotEqual(model[key]?.page, pageIndex, "\(context) step \(step): refused re-enter of the same page")
                }
            case 4, 5:
                let length = (random.next() % 8 + 1) << 12
                try map.remove(start: VirtualAddress(va), byteCount: length)
                for key in model.keys where key.pmap == pmapIndex && key.address >= va && key.address < va + length { model[key] = nil }
            case 6:
                let length = (random.next() % 8 + 1) << 12
                let newProtection = random.next() % 5 == 0 ? Protection.none : protection
                try map.protect(start: VirtualAddress(va), byteCount: length, to: newProtection)
                for (key, value) in model where key.pmap == pmapIndex && key.address >= va && key.address < va + length {
                    model[key] = newProtection.isEmpty ? nil : (value.page, newProtection.hardwareExpressible)
                }
            case 7:
                let pageIndex = Int(random.next() % UInt64(pages.count))
                let restriction: Protection = random.next() % 3 == 0 ? .none : .readOnly
                world.reverseMap.pageProtect(pages[pageIndex], to: restriction)
                for (key, value) in model where value.page == pageIndex {
                    model[key] = restriction.isEmpty ? nil : (pageIndex, value.protection.intersection(.readOnly))
                }
            case 8:
                let pageIndex = Int(random.next() % UInt64(pages.count))
                if random.next() % 2 == 0 { world.reverseMap.clearModified(pages[pageIndex]) } else { world.reverseMap.removeAll(pages[pageIndex]) }
                if world.reverseMap.mappingCount(of: pages[pageIndex]) == 0 {
                    for (key, value) in model where value.page == pageIndex { model[key] = nil }
                }
            default:
                // Replace a user pmap: destroy (inactive) and create a new one.
                guard pmapIndex > 0 else { break }
                try map.destroy()
                for key in model.keys where key.pmap == pmapIndex { model[key] = nil }
                pmaps[pmapIndex] = try Pmap(userOf: world.kernel)
            }
            // The reverse map lists exactly the model's mappings, and the tables agree.
            for (index, page) in pages.enumerated() {
                var listed: Set<Key> = []
                world.reverseMap.forEachMapping(of: page) { map, address in
                    let owner = pmaps.firstIndex { $0 === map } ?? -1
                    listed.insert(Key(pmap: owner, address: address.value))
                }
                let expected = Set(model.filter { $0.value.page == index }.keys)
                XCTAssertEqual(listed, expected, "\(context) step \(step): pv list of page \(index)")
                if let broken = world.reverseMap.invariantViolation(of: page) { XCTFail("\(context) step \(step): \(broken)") }
            }
            for (key, value) in model {
                let translation = try pmaps[key.pmap].extract(VirtualAddress(key.address))
                XCTAssertEqual(translation?.physicalAddress, pages[value.page].physicalAddress, "\(context) step \(step)")
                XCTAssertEqual(translation?.protection, value.protection, "\(context) step \(step)")
                XCTAssertEqual(world.walk(pmaps[key.pmap].root, key.address)?.physicalAddress, pages[value.page].physicalAddress.value,
                               "\(context) step \(step): raw walk")
            }
            for (index, map) in pmaps.enumerated() {
                XCTAssertEqual(map.residentPages, model.keys.filter { $0.pmap == index }.count, "\(context) step \(step): resident")
            }
            if testRun?.failureCount ?? 0 > 0 { return }
        }
        for map in pmaps.dropFirst() { try map.destroy() }
        for page in pages { world.reverseMap.removeAll(page) }
        XCTAssertEqual(world.reverseMap.entriesInUse, 0)
        assertConsistent(world, pages)
        XCTAssertEqual(world.frames.count(of: .wired), world.kernel.tablePages + world.reverseMap.poolPages, "\(context): wired pages")
    }

    func testX86ReverseMapMatchesModelUnderRandomOperations() throws {
        for seed: UInt64 in [1, 2, 3] { try checkRandomOperations(try x86World(), seed: seed) }
    }

    func testARM64ReverseMapMatchesModelUnderRandomOperations() throws {
        for seed: UInt64 in [4, 5] { try checkRandomOperations(try armWorld(), seed: seed) }
        try checkRandomOperations(try armWorld(hardwareDirty: true), seed: 6)
    }
}
