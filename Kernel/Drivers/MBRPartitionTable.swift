// MBRPartitionTable: the four primary entries of a DOS (MBR) partition table, read from a
// disk's first block. Used to find the swap partition on the Raspberry Pi's SD card (type
// 0x82, scripts/sd_image.py); extended partitions are not followed.
// Invariants: parsing only reads the 512 bytes it is given and checks every entry against
// the disk's size before anyone uses it.

/// Why a block does not hold a usable partition table.
public enum MBRError: Error, Equatable {
    /// Bytes 510-511 are not 0x55 0xAA.
    case missingSignature
    /// An entry reaches past the end of the disk (or overflows).
    case partitionOutOfRange
}

/// One primary partition.
public struct MBRPartition: Equatable {
    /// The partition type byte (0x0C FAT32 LBA, 0x82 Linux swap, ...).
    public var type: UInt8
    /// First block (LBA).
    public var firstBlock: UInt64
    /// Length in blocks.
    public var blockCount: UInt64
    /// The boot indicator (0x80) is set.
    public var isBootable: Bool

    public init(type: UInt8, firstBlock: UInt64, blockCount: UInt64, isBootable: Bool) {
        self.type = type
        self.firstBlock = firstBlock
        self.blockCount = blockCount
        self.isBootable = isBootable
    }
}

/// The used primary entries of an MBR, in table order.
public struct MBRPartitionTable {
    public static let fat32LBA: UInt8 = 0x0C
    public static let linuxSwap: UInt8 = 0x82

    public private(set) var partitions: [MBRPartition] = []

    /// Parses the MBR in the 512 bytes at `block` for a disk of `diskBlocks` blocks. Entries of
    /// type 0 or length 0 are unused and skipped. Throws `missingSignature` or
    /// `partitionOutOfRange`.
    public init(block: UnsafeRawPointer, diskBlocks: UInt64) throws(MBRError) {
        guard block.load(fromByteOffset: 510, as: UInt8.self) == 0x55,
              block.load(fromByteOffset: 511, as: UInt8.self) == 0xAA else { throw .missingSignature }
        for index in 0..<4 {
            let entry = 446 + 16 * index
            let type = block.load(fromByteOffset: entry + 4, as: UInt8.self)
            let first = UInt64(UInt32(littleEndian: block.loadUnaligned(fromByteOffset: entry + 8, as: UInt32.self)))
            let count = UInt64(UInt32(littleEndian: block.loadUnaligned(fromByteOffset: entry + 12, as: UInt32.self)))
            guard type != 0, count != 0 else { continue }
            guard first < diskBlocks, count <= diskBlocks - first else { throw .partitionOutOfRange }
            partitions.append(MBRPartition(type: type, firstBlock: first, blockCount: count,
                                           isBootable: block.load(fromByteOffset: entry, as: UInt8.self) == 0x80))
        }
    }

    /// The first partition of `type`, or nil.
    public func first(ofType type: UInt8) -> MBRPartition? {
        partitions.first { $0.type == type }
    }
}
