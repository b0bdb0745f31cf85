// SwapHeaderTests: the on-disk swap header, version 2 — byte layout, round trips with the
// quarantine list (empty, full, overflowing), version 1 pages still read, every parse defect
// as its typed error, and random pages that never trap.

import XCTest
@testable import Kernel

final class SwapHeaderTests: XCTestCase {
    /// `header` written into a fresh page.
    private func page(_ header: SwapHeader) -> [UInt8] {
        var bytes = [UInt8](repeating: 0xEE, count: Int(pageSize))
        bytes.withUnsafeMutableBytes { header.write(to: $0.baseAddress!) }
        return bytes
    }

    private func parse(_ bytes: [UInt8]) throws -> SwapHeader {
        try bytes.withUnsafeBytes { try SwapHeader.read(from: $0.baseAddress!) }
    }

    private func load<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, as type: T.Type) -> T {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }

    /// Stores `value` at `offset`, then (by default) recomputes the checksum as a writer would.
    private func poke<T: FixedWidthInteger>(_ bytes: inout [UInt8], _ offset: Int, _ value: T, reseal: Bool = true) {
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: value, toByteOffset: offset, as: T.self) }
        if reseal {
            let sum = bytes.withUnsafeBytes { SwapHeader.checksum(of: $0.baseAddress!) }
            bytes.withUnsafeMutableBytes { $0.storeBytes(of: sum, toByteOffset: 36, as: UInt32.self) }
        }
    }

    private func expectDefect(_ expected: SwapHeaderDefect, _ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(bytes), file: file, line: line) {
            XCTAssertEqual($0 as? SwapError, .badHeader(expected), file: file, line: line)
        }
    }

    func testVersion2LayoutRoundTripsTheQuarantineList() throws {
        let header = SwapHeader(pageCount: 64, identifier: 0x1234_5678_9ABC, slot: 2, quarantinedPages: [1, 5, 63])
        let bytes = page(header)
        XCTAssertEqual(load(bytes, 0, as: UInt64.self), SwapHeader.magic)
        XCTAssertEqual(Array(bytes[0..<8]), Array("SWIFTSWP".utf8))
        XCTAssertEqual(load(bytes, 8, as: UInt32.self), 2, "written as version 2")
        XCTAssertEqual(load(bytes, 12, as: UInt32.self), UInt32(pageSize))
        XCTAssertEqual(load(bytes, 16, as: UInt64.self), 64)
        XCTAssertEqual(load(bytes, 24, as: UInt64.self), 0x1234_5678_9ABC)
        XCTAssertEqual(load(bytes, 32, as: UInt32.self), 2)
        XCTAssertEqual(load(bytes, 40, as: UInt32.self), 3, "count")
        XCTAssertEqual(load(bytes, 44, as: UInt32.self), 0, "no overflow")
        XCTAssertEqual([48, 52, 56].map { load(bytes, $0, as: UInt32.self) }, [1, 5, 63])
        XCTAssertTrue(bytes[60...].allSatisfy { $0 == 0 }, "zero past the list")
        let read = try parse(bytes)
        XCTAssertEqual(read, header)
        XCTAssertEqual(read.quarantinedPages, [1, 5, 63])
        XCTAssertFalse(read.quarantineOverflowed)
        XCTAssertEqual(try parse(page(SwapHeader(pageCount: 2, identifier: 0, slot: 0))).quarantinedPages, [], "empty list")
    }

    func testFullListRoundTripsAndOneMoreOverflows() throws {
        let capacity = SwapHeader.quarantineCapacity
        XCTAssertEqual(capacity, (Int(pageSize) - 48) / 4)
        let full = (1...UInt32(capacity)).map { $0 * 2 }
        let header = SwapHeader(pageCount: 4096, identifier: 9, slot: 0, quarantinedPages: full)
        XCTAssertFalse(header.quarantineOverflowed, "exactly full still fits")
        XCTAssertEqual(try parse(page(header)), header)

        let over = SwapHeader(pageCount: 4096, identifier: 9, slot: 0, quarantinedPages: full + [4000])
        XCTAssertTrue(over.quarantineOverflowed)
        XCTAssertEqual(over.quarantinedPages, full, "the list keeps the first pages, the flag says the rest")
        let bytes = page(over)
        XCTAssertEqual(load(bytes, 40, as: UInt32.self), UInt32(capacity))
        XCTAssertEqual(load(bytes, 44, as: UInt32.self), 1, "overflow flag")
        let read = try parse(bytes)
        XCTAssertEqual(read, over)
        XCTAssertTrue(read.quarantineOverflowed)
    }

    func testVersion1HeaderReadsWithAnEmptyQuarantine() throws {
        var bytes = page(SwapHeader(pageCount: 100, identifier: 7, slot: 1))
        poke(&bytes, 8, UInt32(1))
        XCTAssertEqual(try parse(bytes), SwapHeader(pageCount: 100, identifier: 7, slot: 1))
        // Version 1 had no list: whatever lies past its fields is not read as one.
        poke(&bytes, 40, UInt32(5000))
        poke(&bytes, 44, UInt32(0xFF))
        XCTAssertEqual(try parse(bytes).quarantinedPages, [])
    }

    func testEveryDefectIsItsOwnTypedError() {
        let good = page(SwapHeader(pageCount: 64, identifier: 1, slot: 0, quarantinedPages: [3, 9]))
        var bytes = good

        expectDefect(.wrongMagic, [UInt8](repeating: 0, count: Int(pageSize)))
        poke(&bytes, 0, UInt64(0x5057_5354_4649_5754))
        expectDefect(.wrongMagic, bytes)

        for version: UInt32 in [0, 3, 0xFFFF_FFFF] {
            bytes = good
            poke(&bytes, 8, version)
            expectDefect(.unsupportedVersion(version), bytes)
        }
        bytes = good
        poke(&bytes, 12, UInt32(16384))
        expectDefect(.wrongPageSize(16384), bytes)

        bytes = good
        bytes[2000] ^= 1
        expectDefect(.checksumMismatch, bytes)
        bytes = good
        poke(&bytes, 52, UInt32(4), reseal: false)
        expectDefect(.checksumMismatch, bytes)

        for count: UInt64 in [0, 1, SwapSlot.maximumBlocks + 1, .max] {
            bytes = good
            poke(&bytes, 16, count)
            expectDefect(.pageCountOutOfRange(count), bytes)
        }

        bytes = good
        poke(&bytes, 44, UInt32(2))
        expectDefect(.unknownFlags(2), bytes)
        bytes = good
        poke(&bytes, 40, UInt32(SwapHeader.quarantineCapacity + 1))
        expectDefect(.quarantineCountOutOfRange(UInt32(SwapHeader.quarantineCapacity + 1)), bytes)
        bytes = good
        poke(&bytes, 40, UInt32.max)
        expectDefect(.quarantineCountOutOfRange(.max), bytes)
        bytes = good
        poke(&bytes, 44, UInt32(1))
        expectDefect(.overflowWithRoomInList(2), bytes)

        for (list, bad) in [([0, 5], 0), ([5, 64], 64), ([UInt32.max], UInt32.max)] as [([UInt32], UInt32)] {
            expectDefect(.quarantinedPageOutOfRange(bad), page(SwapHeader(pageCount: 64, identifier: 1, slot: 0, quarantinedPages: list)))
        }
        expectDefect(.quarantinedPagesNotAscending(5), page(SwapHeader(pageCount: 64, identifier: 1, slot: 0, quarantinedPages: [2, 5, 5])))
        expectDefect(.quarantinedPagesNotAscending(3), page(SwapHeader(pageCount: 64, identifier: 1, slot: 0, quarantinedPages: [7, 3])))
        // A count that reaches past the listed pages reads the zero after them: page 0.
        bytes = good
        poke(&bytes, 40, UInt32(3))
        expectDefect(.quarantinedPageOutOfRange(0), bytes)
    }

    func testRandomHeaderPagesNeverTrapAndParseOnlyToValidHeaders() {
        var generator = SplitMix(seed: 0x5357_4150_4844_5232)
        var acceptedWithList = 0
        for round in 0..<2000 {
            var bytes = (0..<Int(pageSize)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            // Plausible headers, so that parsing gets past the magic and the checksum.
            poke(&bytes, 0, SwapHeader.magic, reseal: false)
            poke(&bytes, 8, UInt32(1 + round % 3), reseal: false)
            poke(&bytes, 12, UInt32(pageSize), reseal: false)
            poke(&bytes, 16, generator.next() % 2 == 0 ? generator.next() % 5000 : generator.next(), reseal: false)
            let count = UInt32(generator.next() % (generator.next() % 2 == 0 ? 8 : UInt64(SwapHeader.quarantineCapacity + 8)))
            poke(&bytes, 40, count, reseal: false)
            poke(&bytes, 44, UInt32(generator.next() % 4 == 0 ? generator.next() % 3 : 0), reseal: false)
            if round % 2 == 0 {
                var page = UInt32(generator.next() % 4)
                for index in 0..<min(Int(count), SwapHeader.quarantineCapacity) {
                    poke(&bytes, 48 + 4 * index, page, reseal: false)
                    page &+= UInt32(generator.next() % 16 == 0 ? 0 : 1 + generator.next() % 5)  // 0: a duplicate
                }
            }
            poke(&bytes, 0, SwapHeader.magic)
            do {
                let header = try parse(bytes)
                if !header.quarantinedPages.isEmpty { acceptedWithList += 1 }
                XCTAssertGreaterThan(header.pageCount, SwapSpace.headerPages)
                XCTAssertLessThanOrEqual(header.quarantinedPages.count, SwapHeader.quarantineCapacity)
                XCTAssertTrue(header.quarantinedPages.allSatisfy { $0 >= 1 && UInt64($0) < header.pageCount })
                XCTAssertEqual(header.quarantinedPages, Array(Set(header.quarantinedPages)).sorted())
                XCTAssertEqual(try parse(page(header)), header, "an accepted header round-trips")
            } catch {
                guard case .badHeader? = error as? SwapError else { return XCTFail("untyped error \(error)") }
            }
        }
        XCTAssertGreaterThan(acceptedWithList, 20, "some random lists are valid, so every check ran on them")
    }
}

/// A seeded 64-bit generator (SplitMix64), so a failing round can be replayed.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
