// DeviceTreeBuilder: a test-only writer of flattened devicetree blobs (DTSpec v0.4 chapter 5),
// so tests describe machines in code instead of shipping binary files.
// Invariants: the blob is laid out as dtc does it: header, memory reservation block (at 40,
// 8-byte aligned), structure block, strings block; property names are deduplicated in the
// strings block; every token offset a method returns is a blob offset, valid because
// reservations must all be added before the first token.

struct DeviceTreeBuilder {
    /// Header fields, written as given so tests can make them wrong.
    var magic: UInt32 = 0xd00d_feed
    var version: UInt32 = 17
    var lastCompatibleVersion: UInt32 = 16
    var bootCPUPhysicalID: UInt32 = 0
    /// Whether `build()` closes the structure block with FDT_END.
    var appendsEndToken = true

    private(set) var reservations: [(address: UInt64, size: UInt64)] = []
    private var structure: [UInt8] = []
    private var strings: [UInt8] = []
    private var stringOffsets: [String: Int] = [:]

    /// Blob offset of the structure block.
    var structOffset: Int { 40 + 16 * (reservations.count + 1) }
    /// Blob offset of the next token to be written.
    var nextTokenOffset: Int { structOffset + structure.count }

    /// Adds a memory reservation entry; call before writing any token.
    mutating func reserve(address: UInt64, size: UInt64) {
        precondition(structure.isEmpty, "DeviceTreeBuilder.reserve: add reservations before tokens")
        reservations.append((address, size))
    }

    /// Writes FDT_BEGIN_NODE with `name`; returns its blob offset.
    @discardableResult
    mutating func beginNode(_ name: String) -> Int {
        let offset = nextTokenOffset
        appendWord(1)
        structure.append(contentsOf: Array(name.utf8) + [0])
        pad()
        return offset
    }

    /// Writes FDT_END_NODE; returns its blob offset.
    @discardableResult
    mutating func endNode() -> Int {
        let offset = nextTokenOffset
        appendWord(2)
        return offset
    }

    /// Writes FDT_NOP; returns its blob offset.
    @discardableResult
    mutating func nop() -> Int {
        let offset = nextTokenOffset
        appendWord(4)
        return offset
    }

    /// Writes a raw 32-bit word into the structure block (for malformed tokens).
    @discardableResult
    mutating func rawWord(_ value: UInt32) -> Int {
        let offset = nextTokenOffset
        appendWord(value)
        return offset
    }

    /// Writes FDT_PROP with raw value bytes; returns its blob offset.
    @discardableResult
    mutating func property(_ name: String, bytes: [UInt8]) -> Int {
        let offset = nextTokenOffset
        appendWord(3)
        appendWord(UInt32(bytes.count))
        appendWord(UInt32(stringOffset(name)))
        structure.append(contentsOf: bytes)
        pad()
        return offset
    }

    /// A property of big-endian 32-bit cells.
    @discardableResult
    mutating func property(_ name: String, cells: [UInt32]) -> Int {
        property(name, bytes: cells.flatMap(Self.bigEndianBytes))
    }

    /// A property holding a NUL-terminated string list.
    @discardableResult
    mutating func property(_ name: String, strings list: [String]) -> Int {
        property(name, bytes: list.flatMap { Array($0.utf8) + [0] })
    }

    /// A property holding one NUL-terminated string.
    @discardableResult
    mutating func property(_ name: String, string: String) -> Int {
        property(name, strings: [string])
    }

    /// An empty (flag) property such as `ranges;`.
    @discardableResult
    mutating func flag(_ name: String) -> Int {
        property(name, bytes: [])
    }

    /// Writes a node whose properties and children `body` writes; returns its blob offset.
    @discardableResult
    mutating func node(_ name: String, _ body: (inout DeviceTreeBuilder) -> Void = { _ in }) -> Int {
        let offset = beginNode(name)
        body(&self)
        endNode()
        return offset
    }

    /// The finished blob.
    func build() -> [UInt8] {
        var reservationBlock: [UInt8] = []
        for entry in reservations + [(address: 0, size: 0)] {
            reservationBlock += Self.bigEndianBytes(UInt32(truncatingIfNeeded: entry.address >> 32))
            reservationBlock += Self.bigEndianBytes(UInt32(truncatingIfNeeded: entry.address))
            reservationBlock += Self.bigEndianBytes(UInt32(truncatingIfNeeded: entry.size >> 32))
            reservationBlock += Self.bigEndianBytes(UInt32(truncatingIfNeeded: entry.size))
        }
        var structureBlock = structure
        if appendsEndToken { structureBlock += Self.bigEndianBytes(9) }
        let structOffset = 40 + reservationBlock.count
        let stringsOffset = structOffset + structureBlock.count
        let totalSize = stringsOffset + strings.count
        let header: [UInt32] = [
            magic, UInt32(totalSize), UInt32(structOffset), UInt32(stringsOffset), 40,
            version, lastCompatibleVersion, bootCPUPhysicalID,
            UInt32(strings.count), UInt32(structureBlock.count),
        ]
        return header.flatMap(Self.bigEndianBytes) + reservationBlock + structureBlock + strings
    }

    static func bigEndianBytes(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    /// `value` as the two cells of a 64-bit address or size.
    static func cells64(_ value: UInt64) -> [UInt32] {
        [UInt32(value >> 32), UInt32(truncatingIfNeeded: value)]
    }

    private mutating func appendWord(_ value: UInt32) {
        structure += Self.bigEndianBytes(value)
    }

    private mutating func pad() {
        while structure.count % 4 != 0 { structure.append(0) }
    }

    private mutating func stringOffset(_ name: String) -> Int {
        if let offset = stringOffsets[name] { return offset }
        let offset = strings.count
        strings += Array(name.utf8) + [0]
        stringOffsets[name] = offset
        return offset
    }
}

extension DeviceTreeBuilder {
    /// Header word offsets, for tests that corrupt a header.
    enum Field {
        static let magic = 0
        static let totalSize = 4
        static let structOffset = 8
        static let stringsOffset = 12
        static let reservationOffset = 16
        static let version = 20
        static let lastCompatibleVersion = 24
        static let stringsSize = 32
        static let structSize = 36
    }
}

extension Array where Element == UInt8 {
    /// The big-endian word at `offset`.
    func deviceTreeWord(at offset: Int) -> UInt32 {
        self[offset..<(offset + 4)].reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Overwrites the big-endian word at `offset`.
    mutating func setDeviceTreeWord(at offset: Int, _ value: UInt32) {
        replaceSubrange(offset..<(offset + 4), with: DeviceTreeBuilder.bigEndianBytes(value))
    }
}
