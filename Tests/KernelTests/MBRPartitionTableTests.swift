// MBRPartitionTableTests: the DOS partition table reader the Pi uses to find its swap
// partition: entries in order, unused entries skipped, boot flag, and typed errors for a
// missing signature or an entry past the end of the disk.

import XCTest
@testable import Kernel

final class MBRPartitionTableTests: XCTestCase {
    /// An MBR with `entries` (type, first, count, bootable) in slots 0...
    private func mbr(_ entries: [(UInt8, UInt32, UInt32, Bool)], signature: Bool = true) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: 512)
        for (index, entry) in entries.enumerated() {
            let offset = 446 + 16 * index
            block[offset] = entry.3 ? 0x80 : 0
            block[offset + 4] = entry.0
            withUnsafeBytes(of: entry.1.littleEndian) { for i in 0..<4 { block[offset + 8 + i] = $0[i] } }
            withUnsafeBytes(of: entry.2.littleEndian) { for i in 0..<4 { block[offset + 12 + i] = $0[i] } }
        }
        if signature { block[510] = 0x55; block[511] = 0xAA }
        return block
    }

    private func parse(_ block: [UInt8], diskBlocks: UInt64) throws -> MBRPartitionTable {
        try block.withUnsafeBytes { try MBRPartitionTable(block: $0.baseAddress!, diskBlocks: diskBlocks) }
    }

    func testSDImageLayoutFindsBootAndSwapPartitions() throws {
        let table = try parse(mbr([(0x0C, 8192, 131072, true), (0x82, 139264, 122880, false)]), diskBlocks: 262144)
        XCTAssertEqual(table.partitions, [MBRPartition(type: 0x0C, firstBlock: 8192, blockCount: 131072, isBootable: true),
                                          MBRPartition(type: 0x82, firstBlock: 139264, blockCount: 122880, isBootable: false)])
        XCTAssertEqual(table.first(ofType: MBRPartitionTable.linuxSwap)?.firstBlock, 139264)
    }

    func testUnusedEntriesAreSkipped() throws {
        let table = try parse(mbr([(0, 0, 0, false), (0x82, 100, 0, false), (0x83, 2048, 100, false)]), diskBlocks: 4096)
        XCTAssertEqual(table.partitions.map(\.type), [0x83])
        XCTAssertNil(table.first(ofType: MBRPartitionTable.linuxSwap))
    }

    func testMissingSignatureAndOutOfRangeEntriesAreTypedErrors() {
        XCTAssertThrowsError(try parse(mbr([(0x82, 1, 1, false)], signature: false), diskBlocks: 100)) {
            XCTAssertEqual($0 as? MBRError, .missingSignature)
        }
        XCTAssertThrowsError(try parse(mbr([(0x82, 50, 51, false)]), diskBlocks: 100)) {
            XCTAssertEqual($0 as? MBRError, .partitionOutOfRange)
        }
        XCTAssertThrowsError(try parse(mbr([(0x82, 100, 1, false)]), diskBlocks: 100)) {
            XCTAssertEqual($0 as? MBRError, .partitionOutOfRange)
        }
    }
}
