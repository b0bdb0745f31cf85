// SwapHeader: the first page of every swap device's window — its size, who swapped it on,
// and which of its pages are quarantined (bad blocks), so that a block that failed a write
// stays out of use across swapoff, reboot and swapon.
// Layout (version 2, little-endian, one page):
//     0 magic u64 "SWIFTSWP"    8 version u32    12 page size u32    16 pageCount u64
//    24 identifier u64         32 slot u32      36 checksum u32 (of the page, this field zero)
//    40 quarantine count u32   44 flags u32 (bit 0: overflow)
//    48 quarantined window pages, u32 each, `count` of them; zero to the end of the page
// Invariants:
//  - The list names window pages, strictly ascending, each in headerPages..<pageCount, at
//    most `quarantineCapacity` of them (u32 is enough: swapon keeps every window below
//    SwapSlot.maximumBlocks pages).
//  - Overflow: the device quarantined more pages than the list holds. The list is then full
//    (its lowest pages) and swapon refuses the device (`SwapError.quarantineOverflow`), as
//    Linux refuses a header with more bad pages than it can list: the unlisted bad pages are
//    unknown, and a disk that lost that many blocks is not one to page to.
//  - Version 1 (no list) is still read, as a header with an empty quarantine; headers are
//    always written as version 2.
//  - `read` checks every field and throws a typed `SwapHeaderDefect` for any page contents;
//    it never traps.

/// Why a page is not a valid swap header (carried by `SwapError.badHeader`).
public enum SwapHeaderDefect: Equatable {
    /// No swap magic: a blank page or someone else's data (swapon initialises it).
    case wrongMagic
    /// A layout version this kernel does not know (a newer one: swapon leaves it alone).
    case unsupportedVersion(UInt32)
    /// Written with another page size.
    case wrongPageSize(UInt32)
    /// The page does not match its checksum (torn write or corruption).
    case checksumMismatch
    /// A window without a page past the header, or larger than the swap block space.
    case pageCountOutOfRange(UInt64)
    /// Flag bits no version defines.
    case unknownFlags(UInt32)
    /// More list entries than `quarantineCapacity`.
    case quarantineCountOutOfRange(UInt32)
    /// Overflow flagged although the list has room (a writer fills the list first).
    case overflowWithRoomInList(UInt32)
    /// A list entry naming the header page or a page past the window.
    case quarantinedPageOutOfRange(UInt32)
    /// A list entry not above the one before it (a duplicate, or unsorted).
    case quarantinedPagesNotAscending(UInt32)
    /// swapon: the page read back is a valid header, but not the one just written.
    case readBackMismatch
}

/// The header in the first page of every swap device's window.
public struct SwapHeader: Equatable {
    /// "SWIFTSWP", little-endian.
    public static var magic: UInt64 { 0x5057_5354_4649_5753 }
    /// Layout version written.
    public static var version: UInt32 { 2 }
    /// Quarantined pages the list holds (1012 with 4 KiB pages).
    public static var quarantineCapacity: Int { (Int(pageSize) - listOffset) / 4 }

    static var checksumOffset: Int { 36 }
    static var listOffset: Int { 48 }
    static var overflowFlag: UInt32 { 1 }

    /// Pages in the window, header included.
    public var pageCount: UInt64
    /// The identity swapon gave the device (caller-chosen, e.g. from a seeded generator).
    public var identifier: UInt64
    /// Interleave slot the device occupied.
    public var slot: UInt32
    /// Quarantined window pages, at most `quarantineCapacity` (`read` accepts only
    /// ascending pages inside the window past the header).
    public private(set) var quarantinedPages: [UInt32]
    /// More pages were quarantined than the list holds.
    public private(set) var quarantineOverflowed: Bool

    /// A header listing `quarantinedPages`; beyond `quarantineCapacity` pages it keeps the
    /// first ones and records the overflow instead.
    public init(pageCount: UInt64, identifier: UInt64, slot: UInt32, quarantinedPages: [UInt32] = [],
                quarantineOverflowed: Bool = false) {
        self.pageCount = pageCount
        self.identifier = identifier
        self.slot = slot
        let capacity = SwapHeader.quarantineCapacity
        self.quarantinedPages = Array(quarantinedPages.prefix(capacity))
        self.quarantineOverflowed = quarantineOverflowed || quarantinedPages.count > capacity
    }

    /// Writes the header into the page at `bytes`: the rest of the page zeroed, a checksum of
    /// the whole page closing it.
    public func write(to bytes: UnsafeMutableRawPointer) {
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: Int(pageSize))
        bytes.storeBytes(of: SwapHeader.magic, toByteOffset: 0, as: UInt64.self)
        bytes.storeBytes(of: SwapHeader.version, toByteOffset: 8, as: UInt32.self)
        bytes.storeBytes(of: UInt32(truncatingIfNeeded: pageSize), toByteOffset: 12, as: UInt32.self)
        bytes.storeBytes(of: pageCount, toByteOffset: 16, as: UInt64.self)
        bytes.storeBytes(of: identifier, toByteOffset: 24, as: UInt64.self)
        bytes.storeBytes(of: slot, toByteOffset: 32, as: UInt32.self)
        bytes.storeBytes(of: UInt32(quarantinedPages.count), toByteOffset: 40, as: UInt32.self)
        bytes.storeBytes(of: quarantineOverflowed ? SwapHeader.overflowFlag : 0, toByteOffset: 44, as: UInt32.self)
        for (index, page) in quarantinedPages.enumerated() {
            bytes.storeBytes(of: page, toByteOffset: SwapHeader.listOffset + 4 * index, as: UInt32.self)
        }
        // The checksum field is still zero here, as `checksum(of:)` computes it.
        bytes.storeBytes(of: SwapChecksum.of(bytes), toByteOffset: SwapHeader.checksumOffset, as: UInt32.self)
    }

    /// Reads and checks a header page (version 1 or 2). Throws `badHeader` with the first
    /// defect found, in field order: magic, version, page size, checksum, page count, flags,
    /// list count, overflow, list entries.
    public static func read(from bytes: UnsafeRawPointer) throws(SwapError) -> SwapHeader {
        guard bytes.load(fromByteOffset: 0, as: UInt64.self) == magic else { throw .badHeader(.wrongMagic) }
        let version = bytes.load(fromByteOffset: 8, as: UInt32.self)
        guard version == 1 || version == 2 else { throw .badHeader(.unsupportedVersion(version)) }
        let storedPageSize = bytes.load(fromByteOffset: 12, as: UInt32.self)
        guard storedPageSize == UInt32(truncatingIfNeeded: pageSize) else { throw .badHeader(.wrongPageSize(storedPageSize)) }
        guard checksum(of: bytes) == bytes.load(fromByteOffset: checksumOffset, as: UInt32.self) else {
            throw .badHeader(.checksumMismatch)
        }
        let pageCount = bytes.load(fromByteOffset: 16, as: UInt64.self)
        guard pageCount > SwapSpace.headerPages, pageCount <= SwapSlot.maximumBlocks else {
            throw .badHeader(.pageCountOutOfRange(pageCount))
        }
        var header = SwapHeader(pageCount: pageCount, identifier: bytes.load(fromByteOffset: 24, as: UInt64.self),
                                slot: bytes.load(fromByteOffset: 32, as: UInt32.self))
        if version == 1 { return header }
        let flags = bytes.load(fromByteOffset: 44, as: UInt32.self)
        guard flags & ~overflowFlag == 0 else { throw .badHeader(.unknownFlags(flags)) }
        let count = bytes.load(fromByteOffset: 40, as: UInt32.self)
        guard count <= UInt32(quarantineCapacity) else { throw .badHeader(.quarantineCountOutOfRange(count)) }
        let overflowed = flags & overflowFlag != 0
        guard !overflowed || count == UInt32(quarantineCapacity) else { throw .badHeader(.overflowWithRoomInList(count)) }
        var pages: [UInt32] = []
        pages.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            let page = bytes.load(fromByteOffset: listOffset + 4 * index, as: UInt32.self)
            guard UInt64(page) >= SwapSpace.headerPages, UInt64(page) < pageCount else {
                throw .badHeader(.quarantinedPageOutOfRange(page))
            }
            if let last = pages.last, page <= last { throw .badHeader(.quarantinedPagesNotAscending(page)) }
            pages.append(page)
        }
        header.quarantinedPages = pages
        header.quarantineOverflowed = overflowed
        return header
    }

    /// The checksum of the header page at `bytes`, computed with its checksum field zero.
    static func checksum(of bytes: UnsafeRawPointer) -> UInt32 {
        var copy = [UInt8](repeating: 0, count: Int(pageSize))
        return copy.withUnsafeMutableBytes { buffer -> UInt32 in
            buffer.baseAddress!.copyMemory(from: bytes, byteCount: Int(pageSize))
            buffer.baseAddress!.storeBytes(of: 0, toByteOffset: checksumOffset, as: UInt32.self)
            return SwapChecksum.of(buffer.baseAddress!)
        }
    }
}
