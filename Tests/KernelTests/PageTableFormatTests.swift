// PageTableFormatTests: the x86_64 and aarch64 formats as pure encoders. Every attribute
// combination round-trips at every leaf level; table entries round-trip; the bits land where
// the Intel SDM and the Arm ARM put them (checked with literal masks, not the formats' own
// constants); the aarch64 referenced/modified emulation rules; invalidation rules.

import XCTest
@testable import Kernel
import PageTableFormats

final class PageTableFormatTests: XCTestCase {
    private let protections: [Protection] = [.read, .write, .execute, [.read, .write], [.read, .execute],
                                             [.write, .execute], .all]

    /// Every encodable attribute combination for `isUser`.
    private func combinations(isUser: Bool) -> [LeafAttributes] {
        var result: [LeafAttributes] = []
        for protection in protections {
            for global in [false, true] {
                for memoryType in [MemoryType.normal, .device] {
                    for wired in [false, true] {
                        for managed in [false, true] {
                            for referenced in [false, true] {
                                for modified in protection.contains(.write) ? [false, true] : [false] {
                                    result.append(LeafAttributes(protection: protection, isUser: isUser, isGlobal: global,
                                                                 memoryType: memoryType, isWired: wired, isManaged: managed,
                                                                 isReferenced: referenced, isModified: modified))
                                }
                            }
                        }
                    }
                }
            }
        }
        return result
    }

    private func assertRoundTrips<F: PageTableFormat>(_ format: F, file: StaticString = #filePath, line: UInt = #line) {
        var checked = 0
        for level in 0..<format.levelCount where format.allowsLeaf(level: level) {
            let size = format.entrySize(level: level)
            let frame = PhysicalAddress(0x0000_0123_4000_0000 & ~(size - 1) | size * 3)
            for isUser in [false, true] {
                for attributes in combinations(isUser: isUser) {
                    let entry = format.leafEntry(frame, level: level, attributes: attributes)
                    var expected = attributes
                    expected.protection = attributes.protection.hardwareExpressible
                    XCTAssertEqual(format.kind(of: entry, level: level), .leaf, "kind at level \(level)", file: file, line: line)
                    XCTAssertEqual(format.leafAddress(of: entry, level: level), frame, "frame at level \(level)", file: file, line: line)
                    XCTAssertEqual(format.attributes(of: entry, level: level), expected, "attributes \(attributes) at level \(level)",
                                   file: file, line: line)
                    checked += 1
                }
            }
        }
        for level in 0..<(format.levelCount - 1) {
            for isUser in [false, true] {
                let table = PhysicalAddress(0x0000_00AB_CDEF_F000)
                let entry = format.tableEntry(table, level: level, isUser: isUser)
                XCTAssertEqual(format.kind(of: entry, level: level), .table, file: file, line: line)
                XCTAssertEqual(format.tableAddress(of: entry), table, file: file, line: line)
            }
        }
        for level in 0..<format.levelCount {
            XCTAssertEqual(format.kind(of: 0, level: level), .invalid, "zero entry at level \(level)", file: file, line: line)
        }
        XCTAssertGreaterThan(checked, 1000, file: file, line: line)
    }

    func testX86EveryAttributeCombinationRoundTrips() {
        assertRoundTrips(X86PageTableFormat())
        assertRoundTrips(X86PageTableFormat(supportsGiantPages: true))
    }

    func testARM64EveryAttributeCombinationRoundTripsInBothDirtyModes() {
        assertRoundTrips(ARM64PageTableFormat(hardwareDirtyBit: false))
        assertRoundTrips(ARM64PageTableFormat(hardwareDirtyBit: true))
    }

    func testIndexExtractionSplitsAddressIntoNineBitFields() {
        let address: UInt64 = (5 << 39) | (6 << 30) | (7 << 21) | (8 << 12) | 0x123
        for format in [AnyIndexer(X86PageTableFormat()), AnyIndexer(ARM64PageTableFormat())] {
            XCTAssertEqual((0..<4).map { format.index(address, $0) }, [5, 6, 7, 8])
            XCTAssertEqual((0..<4).map { format.shift($0) }, [39, 30, 21, 12])
        }
        XCTAssertEqual(X86PageTableFormat().index(of: AddressSpaceLayout.kernelStart, level: 0), 128)
        XCTAssertEqual(ARM64PageTableFormat().index(of: AddressSpaceLayout.kernelEnd - 1, level: 0), 255)
    }

    func testX86BitsWhereTheSDMPutsThem() {
        let format = X86PageTableFormat()
        let frame = PhysicalAddress(0x1234_5000)
        let user = format.leafEntry(frame, level: 3, attributes: LeafAttributes(protection: .readWrite, isUser: true))
        XCTAssertEqual(user & 0x1, 1, "P")
        XCTAssertEqual(user & 0x2, 0x2, "R/W")
        XCTAssertEqual(user & 0x4, 0x4, "U/S")
        XCTAssertEqual(user >> 63, 1, "XD for a non-executable page")
        XCTAssertEqual(user & 0x100, 0, "not global")
        XCTAssertEqual(user & 0x60, 0, "A and D clear on a fresh mapping")
        XCTAssertEqual(user & 0x000F_FFFF_FFFF_F000, 0x1234_5000)
        let kernelText = format.leafEntry(frame, level: 3, attributes: LeafAttributes(protection: .readExecute, isGlobal: true,
                                                                                   isReferenced: true))
        XCTAssertEqual(kernelText & 0x2, 0, "text not writable")
        XCTAssertEqual(kernelText >> 63, 0, "text executable")
        XCTAssertEqual(kernelText & 0x104, 0x100, "global, supervisor")
        XCTAssertEqual(kernelText & 0x20, 0x20, "A")
        let large = format.leafEntry(PhysicalAddress(0x4020_0000), level: 2, attributes: LeafAttributes(protection: .read, memoryType: .device))
        XCTAssertEqual(large & 0x80, 0x80, "PS on a 2 MiB page")
        XCTAssertEqual(large & 0x18, 0x18, "PCD|PWT for device memory")
        XCTAssertEqual(format.kind(of: 0x1234_5003, level: 2), .table, "PS clear at level 2 is a table")
        XCTAssertEqual(format.kind(of: 0x0000_0001, level: 0), .table, "PML4 entries are always tables")
        XCTAssertTrue(format.isCanonical(0x0000_7FFF_FFFF_FFFF) && format.isCanonical(0xFFFF_8000_0000_0000))
        XCTAssertFalse(format.isCanonical(0x0000_8000_0000_0000))
        XCTAssertFalse(format.allowsLeaf(level: 0))
        XCTAssertFalse(format.allowsLeaf(level: 1), "1 GiB pages only when the CPU has them")
    }

    func testARM64BitsWhereTheArmARMPutsThem() {
        let format = ARM64PageTableFormat()
        let frame = PhysicalAddress(0x4123_5000)
        let clean = format.leafEntry(frame, level: 3, attributes: LeafAttributes(protection: .readWrite, isUser: true))
        XCTAssertEqual(clean & 0x3, 0x3, "level-3 page descriptor")
        XCTAssertEqual((clean >> 2) & 0x7, 1, "AttrIndx 1: normal memory")
        XCTAssertEqual((clean >> 6) & 0x3, 0x3, "AP = 11: EL0 access, read-only until the first write")
        XCTAssertEqual((clean >> 8) & 0x3, 0x3, "inner shareable")
        XCTAssertEqual(clean & (1 << 10), 0, "AF clear on a fresh mapping")
        XCTAssertEqual(clean & (1 << 11), 1 << 11, "nG for user pages")
        XCTAssertEqual((clean >> 53) & 0x3, 0x3, "PXN and UXN for a non-executable user page")
        XCTAssertEqual(clean & (1 << 51), 0, "no DBM without hardware dirty management")
        XCTAssertEqual(clean & 0x0000_FFFF_FFFF_F000, 0x4123_5000)
        let dirty = format.leafEntry(frame, level: 3, attributes: LeafAttributes(protection: .readWrite, isUser: true,
                                                                              isReferenced: true, isModified: true))
        XCTAssertEqual((dirty >> 6) & 0x3, 0x1, "AP = 01 once dirty")
        XCTAssertEqual(dirty & (1 << 10), 1 << 10, "AF")
        let text = format.leafEntry(frame, level: 3, attributes: LeafAttributes(protection: .readExecute, isGlobal: true, isReferenced: true))
        XCTAssertEqual((text >> 6) & 0x3, 0x2, "AP = 10: EL1 read-only")
        XCTAssertEqual((text >> 53) & 0x3, 0x2, "UXN only: executable at EL1")
        XCTAssertEqual(text & (1 << 11), 0, "global")
        let device = format.leafEntry(PhysicalAddress(0x4000_0000), level: 1,
                                      attributes: LeafAttributes(protection: .readWrite, memoryType: .device, isModified: true))
        XCTAssertEqual(device & 0x3, 0x1, "level-1 block descriptor")
        XCTAssertEqual((device >> 2) & 0x7, 0, "AttrIndx 0: device")
        let hardware = ARM64PageTableFormat(hardwareDirtyBit: true)
        let dbm = hardware.leafEntry(frame, level: 3, attributes: LeafAttributes(protection: .readWrite))
        XCTAssertEqual(dbm & (1 << 51), 1 << 51, "DBM on writable pages with hardware dirty management")
        XCTAssertEqual(dbm & (1 << 7), 1 << 7, "still read-only until written")
        XCTAssertEqual(format.kind(of: 0x4123_5001, level: 3), .invalid, "0b01 at level 3 is reserved")
        XCTAssertEqual(format.kind(of: 0x4000_0001, level: 0), .invalid, "no blocks at level 0")
        let userTable = format.tableEntry(PhysicalAddress(0x5000), level: 0, isUser: true)
        XCTAssertEqual(userTable >> 59 & 1, 1, "PXNTable on user tables")
        let kernelTable = format.tableEntry(PhysicalAddress(0x5000), level: 0, isUser: false)
        XCTAssertEqual(kernelTable >> 60 & 0x3, 0x3, "UXNTable and APTable[0] on kernel tables")
        XCTAssertTrue(format.isCanonical(0x0000_FFFF_FFFF_FFFF))
        XCTAssertFalse(format.isCanonical(0x0001_0000_0000_0000))
    }

    func testARM64EmulationSetsAccessFlagAndDirtiesOnlyPermittedWrites() {
        let format = ARM64PageTableFormat()
        let frame = PhysicalAddress(0x4000_1000)
        let clean = format.leafEntry(frame, level: 3, attributes: LeafAttributes(protection: .readWrite, isUser: true))
        // A read of an unreferenced page: AF set, still clean.
        let read = format.resolvingEmulationFault(clean, access: .read)
        XCTAssertNotNil(read)
        XCTAssertEqual(read.map { format.attributes(of: $0, level: 3) },
                       LeafAttributes(protection: .readWrite, isUser: true, isReferenced: true, isModified: false))
        // A write: referenced and modified in one step.
        let written = format.resolvingEmulationFault(clean, access: .write)
        XCTAssertEqual(written.map { format.attributes(of: $0, level: 3).isModified }, true)
        XCTAssertEqual(written.map { format.attributes(of: $0, level: 3).isReferenced }, true)
        // Already referenced and dirty: a fault is not the pmap's.
        XCTAssertNil(format.resolvingEmulationFault(written!, access: .write))
        // A write to a read-only page: only AF (the retry faults for the real reason), then nothing.
        let readOnly = format.leafEntry(frame, level: 3, attributes: LeafAttributes(protection: .read))
        let touched = format.resolvingEmulationFault(readOnly, access: .write)
        XCTAssertEqual(touched.map { format.attributes(of: $0, level: 3) },
                       LeafAttributes(protection: .read, isReferenced: true))
        XCTAssertNil(format.resolvingEmulationFault(touched!, access: .write))
        // Executing a non-executable, referenced page is a real fault.
        let data = format.leafEntry(frame, level: 3, attributes: LeafAttributes(protection: .readWrite, isReferenced: true, isModified: true))
        XCTAssertNil(format.resolvingEmulationFault(data, access: .execute))
        // clearingModified makes a dirty page clean but keeps it writable; clearingReferenced clears AF.
        XCTAssertEqual(format.attributes(of: format.clearingModified(written!), level: 3).protection, .readWrite)
        XCTAssertFalse(format.attributes(of: format.clearingModified(written!), level: 3).isModified)
        XCTAssertFalse(format.attributes(of: format.clearingReferenced(written!), level: 3).isReferenced)
        // x86 never emulates.
        XCTAssertNil(X86PageTableFormat().resolvingEmulationFault(0x1234_5001, access: .write))
    }

    func testInvalidationNeededForEverythingButSettingReferencedBits() {
        let arm = ARM64PageTableFormat()
        let entry = arm.leafEntry(PhysicalAddress(0x5000), level: 3, attributes: LeafAttributes(protection: .readWrite))
        XCTAssertFalse(arm.changeNeedsInvalidation(from: entry, to: entry | (1 << 10)), "setting AF")
        XCTAssertTrue(arm.changeNeedsInvalidation(from: entry | (1 << 10), to: entry), "clearing AF")
        XCTAssertTrue(arm.changeNeedsInvalidation(from: entry, to: arm.resolvingEmulationFault(entry, access: .write)!),
                      "AP[2] cleared: permission faults may be cached")
        let x86 = X86PageTableFormat()
        let leaf = x86.leafEntry(PhysicalAddress(0x5000), level: 3, attributes: LeafAttributes(protection: .readWrite))
        XCTAssertFalse(x86.changeNeedsInvalidation(from: leaf, to: leaf | 0x60), "setting A and D")
        XCTAssertTrue(x86.changeNeedsInvalidation(from: leaf | 0x40, to: leaf), "clearing D")
        XCTAssertTrue(x86.changeNeedsInvalidation(from: leaf, to: leaf & ~0x2), "removing write")
    }
}

/// Index extraction of any format, for tests that loop over both.
private struct AnyIndexer {
    let index: (UInt64, Int) -> Int
    let shift: (Int) -> UInt64
    init<F: PageTableFormat>(_ format: F) {
        index = { format.index(of: $0, level: $1) }
        shift = { format.entryShift(level: $0) }
    }
}
