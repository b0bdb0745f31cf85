// DeviceTree: a read-only, allocation-free view of a flattened devicetree blob (DTB, DTSpec v0.4
// chapter 5, header version 17): the machine description the aarch64 boot loader (QEMU `virt`,
// Raspberry Pi firmware) hands the kernel in x0.
// Invariants: nothing here allocates or writes the blob, because it runs before the heap exists
// (no Array, String or class; visitors are non-escaping closures; names are `StaticString`).
// Every read is bounds-checked against `totalsize` and the block it belongs to, so a corrupt
// blob yields a `DeviceTreeError`, never a fault. `init` walks the whole structure block once,
// so later walks of the same blob only fail on meaning (cell counts, missing nodes), not on form.
// No walk can hang: each step consumes at least one 4-byte token of a finite block, nesting is
// capped at `maximumDepth`, and no reference (phandle, alias) is followed more than one hop.
// Locks: none. (c) the blob is immutable and stays mapped while any view of it is in use.
//
// Property values and names are in DeviceTree+Values.swift; what the kernel asks of the tree
// (memory map, devices, interrupts, `/chosen`) is in DeviceTree+Queries.swift.

/// What is wrong with a devicetree blob, or with what was asked of it.
/// Offsets are byte offsets from the start of the blob, so a hex dump finds the culprit.
public enum DeviceTreeError: Error, Equatable {
    /// The buffer is shorter than the 40-byte version-17 header.
    case truncatedHeader
    /// The first word is not 0xd00dfeed.
    case badMagic
    /// The blob is older than version 17, or not backward compatible with it.
    case unsupportedVersion
    /// The header's `totalsize` is smaller than the header.
    case totalSizeTooSmall
    /// The header's `totalsize` is larger than the buffer it was found in.
    case totalSizeBeyondBuffer
    /// The header's `totalsize` exceeds `DeviceTree.maximumBlobSize` (`init(blob:)` only).
    case totalSizeTooLarge
    /// The structure block lies (partly) outside the blob or overlaps the header.
    case structBlockOutOfBounds
    /// The strings block lies (partly) outside the blob or overlaps the header.
    case stringsBlockOutOfBounds
    /// The memory reservation block starts outside the blob or overlaps the header.
    case reservationBlockOutOfBounds
    /// The reservation block is not 8-byte aligned, or the structure block not 4-byte aligned.
    case misalignedBlock
    /// The memory reservation block runs to the end of the blob without its (0, 0) terminator.
    case unterminatedReservationBlock
    /// The structure block ends inside the token at `offset` (or before FDT_END).
    case truncatedStructure(offset: Int)
    /// The word at `offset` is not a structure-block token.
    case badToken(offset: Int)
    /// A valid token in a place the grammar forbids (a property after a subnode, FDT_END_NODE
    /// without an open node, FDT_END inside a node, anything after the root node).
    case unexpectedToken(offset: Int)
    /// The node name of the FDT_BEGIN_NODE at `offset` has no NUL before the block ends.
    case unterminatedNodeName(offset: Int)
    /// The value of the property at `offset` runs past the end of the structure block.
    case propertyPastEnd(offset: Int)
    /// The name offset of the property at `offset` points outside the strings block.
    case propertyNameOutOfBounds(offset: Int)
    /// The name of the property at `offset` has no NUL before the strings block ends.
    case unterminatedPropertyName(offset: Int)
    /// The node at `offset` is nested deeper than `DeviceTree.maximumDepth`.
    case nestingTooDeep(offset: Int)
    /// The structure block holds no root node.
    case missingRootNode
    /// The `#address-cells` of the node at `offset` is malformed or more than two cells.
    case badAddressCells(offset: Int)
    /// The `#size-cells` of the node at `offset` is malformed or more than two cells.
    case badSizeCells(offset: Int)
    /// The property at `offset` is not a whole number of the entries it must hold.
    case badPropertyLength(offset: Int)
    /// A region decoded from the property (or reservation entry) at `offset` wraps past the top
    /// of the address space.
    case regionOverflows(offset: Int)
    /// An address cannot be translated through the bus node at `offset` (no `ranges`, or no
    /// entry of its `ranges` covers the address).
    case untranslatableAddress(offset: Int)
    /// The phandle property at `offset` is malformed or names no node.
    case badPhandle(offset: Int)
    /// The interrupt controller at `offset` has a missing or unusable `#interrupt-cells`.
    case badInterruptCells(offset: Int)
    /// No enabled `/memory` node describes any RAM.
    case missingMemoryNode

    /// A fixed description for panic messages (print `offset` beside it when there is one).
    public var message: StaticString {
        switch self {
        case .truncatedHeader: return "DeviceTree: blob shorter than its header"
        case .badMagic: return "DeviceTree: bad magic"
        case .unsupportedVersion: return "DeviceTree: unsupported version (need 17)"
        case .totalSizeTooSmall: return "DeviceTree: totalsize smaller than the header"
        case .totalSizeBeyondBuffer: return "DeviceTree: totalsize beyond buffer"
        case .totalSizeTooLarge: return "DeviceTree: totalsize above the maximum blob size"
        case .structBlockOutOfBounds: return "DeviceTree: structure block out of bounds"
        case .stringsBlockOutOfBounds: return "DeviceTree: strings block out of bounds"
        case .reservationBlockOutOfBounds: return "DeviceTree: memory reservation block out of bounds"
        case .misalignedBlock: return "DeviceTree: misaligned block"
        case .unterminatedReservationBlock: return "DeviceTree: memory reservation block not terminated"
        case .truncatedStructure: return "DeviceTree: structure block ends early"
        case .badToken: return "DeviceTree: bad token"
        case .unexpectedToken: return "DeviceTree: token out of place"
        case .unterminatedNodeName: return "DeviceTree: unterminated node name"
        case .propertyPastEnd: return "DeviceTree: property past end of structure block"
        case .propertyNameOutOfBounds: return "DeviceTree: property name outside strings block"
        case .unterminatedPropertyName: return "DeviceTree: unterminated property name"
        case .nestingTooDeep: return "DeviceTree: nodes nested too deep"
        case .missingRootNode: return "DeviceTree: no root node"
        case .badAddressCells: return "DeviceTree: bad #address-cells"
        case .badSizeCells: return "DeviceTree: bad #size-cells"
        case .badPropertyLength: return "DeviceTree: bad property length"
        case .regionOverflows: return "DeviceTree: region wraps the address space"
        case .untranslatableAddress: return "DeviceTree: address not translatable by parent ranges"
        case .badPhandle: return "DeviceTree: bad phandle reference"
        case .badInterruptCells: return "DeviceTree: bad #interrupt-cells"
        case .missingMemoryNode: return "DeviceTree: missing /memory"
        }
    }

    /// The blob offset the error points at, when it points at one.
    public var offset: Int? {
        switch self {
        case .truncatedStructure(let o), .badToken(let o), .unexpectedToken(let o),
             .unterminatedNodeName(let o), .propertyPastEnd(let o), .propertyNameOutOfBounds(let o),
             .unterminatedPropertyName(let o), .nestingTooDeep(let o), .badAddressCells(let o),
             .badSizeCells(let o), .badPropertyLength(let o), .regionOverflows(let o),
             .untranslatableAddress(let o), .badPhandle(let o), .badInterruptCells(let o):
            return o
        default:
            return nil
        }
    }
}

/// A validated flattened devicetree blob.
public struct DeviceTree {
    /// FDT_MAGIC, the first big-endian word of every blob.
    public static let magic: UInt32 = 0xd00d_feed
    /// Size of the version-17 header (ten big-endian words).
    public static let headerSize = 40
    /// The structure-block version this parser understands.
    public static let supportedVersion: UInt32 = 17
    /// How many nesting levels are accepted (the root is depth 0, so depths 0..<16). Real trees
    /// stay below 8; the cap keeps every node's ancestor chain in a fixed inline array.
    public static let maximumDepth = Lineage.count
    /// Largest `totalsize` `init(blob:)` trusts: the pointer comes without a length, so this
    /// bounds what a corrupt header can make us read (Linux arm64 uses the same 2 MiB cap).
    public static let maximumBlobSize = 2 * 1024 * 1024

    /// The blob, exactly `totalsize` bytes.
    public let bytes: UnsafeRawBufferPointer
    /// The header's `boot_cpuid_phys`.
    public let bootCPUPhysicalID: UInt32
    // Block bounds, as blob offsets; each was checked to lie inside `bytes`.
    let structStart: Int
    let structEnd: Int
    let stringsStart: Int
    let stringsEnd: Int
    let reservationStart: Int

    /// The header's `totalsize`: how many bytes the blob occupies.
    public var totalSize: Int { bytes.count }

    /// Views the blob at `blob`, reading its length from the header.
    /// The caller guarantees `blob` points at 40 readable bytes and, if they hold a plausible
    /// header, at `totalsize` readable bytes; `totalsize` above `maximumBlobSize` is rejected
    /// before anything past the header is read.
    /// Throws: any header or structure error (see `init(buffer:)`), or `totalSizeTooLarge`.
    public init(blob: UnsafeRawPointer) throws(DeviceTreeError) {
        let header = UnsafeRawBufferPointer(start: blob, count: Self.headerSize)
        guard Self.word(header, 0) == Self.magic else { throw .badMagic }
        let totalSize = Int(Self.word(header, HeaderField.totalSize))
        guard totalSize <= Self.maximumBlobSize else { throw .totalSizeTooLarge }
        try self.init(buffer: UnsafeRawBufferPointer(start: blob, count: max(totalSize, Self.headerSize)))
    }

    /// Views the blob at the start of `buffer` (which may be longer than the blob) and validates
    /// the header, the memory reservation block and the whole structure block.
    /// Throws: the first problem found, e.g. `badMagic`, `totalSizeBeyondBuffer`,
    /// `structBlockOutOfBounds`, `badToken(offset:)`, `unterminatedNodeName(offset:)`.
    public init(buffer: UnsafeRawBufferPointer) throws(DeviceTreeError) {
        guard buffer.count >= Self.headerSize, buffer.baseAddress != nil else { throw .truncatedHeader }
        guard Self.word(buffer, 0) == Self.magic else { throw .badMagic }
        let version = Self.word(buffer, HeaderField.version)
        let lastCompatibleVersion = Self.word(buffer, HeaderField.lastCompatibleVersion)
        guard version >= Self.supportedVersion, lastCompatibleVersion <= Self.supportedVersion else {
            throw .unsupportedVersion
        }
        let totalSize = Int(Self.word(buffer, HeaderField.totalSize))
        guard totalSize >= Self.headerSize else { throw .totalSizeTooSmall }
        guard totalSize <= buffer.count else { throw .totalSizeBeyondBuffer }

        // Header words are 32-bit, so these sums cannot overflow a 64-bit Int.
        let structOffset = Int(Self.word(buffer, HeaderField.structOffset))
        let structSize = Int(Self.word(buffer, HeaderField.structSize))
        let stringsOffset = Int(Self.word(buffer, HeaderField.stringsOffset))
        let stringsSize = Int(Self.word(buffer, HeaderField.stringsSize))
        let reservationOffset = Int(Self.word(buffer, HeaderField.reservationOffset))
        // DTSpec 5.3/5.4: reservation entries are 8-byte aligned, structure tokens 4-byte aligned.
        guard reservationOffset % 8 == 0, structOffset % 4 == 0 else { throw .misalignedBlock }
        guard reservationOffset >= Self.headerSize, reservationOffset <= totalSize else {
            throw .reservationBlockOutOfBounds
        }
        guard structOffset >= Self.headerSize, structOffset + structSize <= totalSize else {
            throw .structBlockOutOfBounds
        }
        guard stringsOffset >= Self.headerSize, stringsOffset + stringsSize <= totalSize else {
            throw .stringsBlockOutOfBounds
        }

        bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<totalSize])
        bootCPUPhysicalID = Self.word(buffer, HeaderField.bootCPUPhysicalID)
        structStart = structOffset
        structEnd = structOffset + structSize
        stringsStart = stringsOffset
        stringsEnd = stringsOffset + stringsSize
        reservationStart = reservationOffset

        try validateReservationBlock()
        _ = try walk(from: nil) { _ throws(DeviceTreeError) in true }
    }

    /// Header word offsets (DTSpec 5.2).
    enum HeaderField {
        static let totalSize = 4
        static let structOffset = 8
        static let stringsOffset = 12
        static let reservationOffset = 16
        static let version = 20
        static let lastCompatibleVersion = 24
        static let bootCPUPhysicalID = 28
        static let stringsSize = 32
        static let structSize = 36
    }

    /// Structure-block tokens (DTSpec 5.4.1).
    enum TokenValue {
        static let beginNode: UInt32 = 1
        static let endNode: UInt32 = 2
        static let property: UInt32 = 3
        static let nop: UInt32 = 4
        static let end: UInt32 = 9
    }

    /// The big-endian word at `offset` of `buffer`; the caller checked `offset + 4 <= count`.
    @inline(__always)
    static func word(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(bigEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// The big-endian word at blob offset `offset`; the caller checked it lies inside `bytes`.
    @inline(__always)
    func word(at offset: Int) -> UInt32 { Self.word(bytes, offset) }

    /// `offset` rounded up to the next 4-byte boundary.
    @inline(__always)
    static func alignedToWord(_ offset: Int) -> Int { (offset + 3) & ~3 }

    /// Offset of the first NUL in [start, end), or nil when there is none.
    func firstNul(from start: Int, to end: Int) -> Int? {
        var i = start
        while i < end {
            if bytes[i] == 0 { return i }
            i += 1
        }
        return nil
    }

    /// The bytes [start, start + count) of the blob; the caller checked the bounds.
    @inline(__always)
    func slice(_ start: Int, _ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[start..<(start + count)])
    }
}

// MARK: - Memory reservation block

extension DeviceTree {
    /// Checks that the reservation block's (0, 0) terminator lies inside the blob.
    func validateReservationBlock() throws(DeviceTreeError) {
        var offset = reservationStart
        while offset + 16 <= totalSize {
            if (word(at: offset) | word(at: offset + 4) | word(at: offset + 8) | word(at: offset + 12)) == 0 {
                return
            }
            offset += 16
        }
        throw .unterminatedReservationBlock
    }

    /// Calls `body` with each (address, size) entry of the memory reservation block, in blob
    /// order, until it returns false. Entries are raw: a size of zero is passed on.
    /// Throws: `regionOverflows(offset:)` for an entry that wraps the address space, or
    /// whatever `body` throws.
    public func forEachReservation(_ body: (DeviceTreeRegion) throws(DeviceTreeError) -> Bool) throws(DeviceTreeError) {
        var offset = reservationStart
        while offset + 16 <= totalSize {
            let address = UInt64(word(at: offset)) << 32 | UInt64(word(at: offset + 4))
            let size = UInt64(word(at: offset + 8)) << 32 | UInt64(word(at: offset + 12))
            if address == 0 && size == 0 { return }
            guard size <= UInt64.max - address else { throw .regionOverflows(offset: offset) }
            if try !body(DeviceTreeRegion(base: PhysicalAddress(address), size: size)) { return }
            offset += 16
        }
        throw .unterminatedReservationBlock
    }
}

// MARK: - Structure block

extension DeviceTree {
    /// One decoded structure-block token.
    struct Token {
        enum Kind { case beginNode, endNode, property, nop, end }
        var kind: Kind
        /// Offset of the token after this one (may lie past the block end; the next read checks).
        var next: Int
        /// Node name (in the structure block) or property name (in the strings block), sans NUL.
        var nameStart = 0
        var nameLength = 0
        /// Property value.
        var valueStart = 0
        var valueLength = 0
    }

    /// Decodes the token at blob offset `offset`, checking that it and its payload lie inside
    /// the structure block and that its names are NUL-terminated inside their blocks.
    func token(at offset: Int) throws(DeviceTreeError) -> Token {
        guard offset >= structStart, offset + 4 <= structEnd else { throw .truncatedStructure(offset: offset) }
        switch word(at: offset) {
        case TokenValue.beginNode:
            let nameStart = offset + 4
            guard let nul = firstNul(from: nameStart, to: structEnd) else {
                throw .unterminatedNodeName(offset: offset)
            }
            return Token(kind: .beginNode, next: Self.alignedToWord(nul + 1),
                         nameStart: nameStart, nameLength: nul - nameStart)
        case TokenValue.endNode:
            return Token(kind: .endNode, next: offset + 4)
        case TokenValue.property:
            guard offset + 12 <= structEnd else { throw .propertyPastEnd(offset: offset) }
            let length = Int(word(at: offset + 4))
            let nameOffset = Int(word(at: offset + 8))
            let valueStart = offset + 12
            guard length <= structEnd - valueStart else { throw .propertyPastEnd(offset: offset) }
            guard nameOffset < stringsEnd - stringsStart else { throw .propertyNameOutOfBounds(offset: offset) }
            let nameStart = stringsStart + nameOffset
            guard let nul = firstNul(from: nameStart, to: stringsEnd) else {
                throw .unterminatedPropertyName(offset: offset)
            }
            return Token(kind: .property, next: Self.alignedToWord(valueStart + length),
                         nameStart: nameStart, nameLength: nul - nameStart,
                         valueStart: valueStart, valueLength: length)
        case TokenValue.nop:
            return Token(kind: .nop, next: offset + 4)
        case TokenValue.end:
            return Token(kind: .end, next: offset + 4)
        default:
            throw .badToken(offset: offset)
        }
    }

    /// What a walk remembers about each open node: where it is and how its children's
    /// addresses are encoded.
    struct Frame {
        /// Blob offset of the node's FDT_BEGIN_NODE token.
        var offset: UInt32 = 0
        /// Length of the node's name, without the NUL.
        var nameLength: UInt32 = 0
        /// The node's `#address-cells` (2 when absent, `malformedCells` when not one u32).
        var addressCells: UInt32 = 2
        /// The node's `#size-cells` (1 when absent, `malformedCells` when not one u32).
        var sizeCells: UInt32 = 1
    }

    /// Stands for a cell-count property whose value is not exactly one u32.
    static let malformedCells = UInt32.max

    /// The open nodes from the root down, indexed by depth; its size is `maximumDepth`.
    typealias Lineage = InlineArray<16, Frame>

    /// Visits every node in blob order (parents before children, siblings in order), starting
    /// at the root, until `body` returns false.
    /// Throws: what `body` throws; structure errors only if the blob changed since `init`.
    public func forEachNode(_ body: (DeviceTreeNode) throws(DeviceTreeError) -> Bool) throws(DeviceTreeError) {
        _ = try walk(from: nil, body)
    }

    /// The root node.
    public func root() throws(DeviceTreeError) -> DeviceTreeNode {
        var found: DeviceTreeNode?
        try forEachNode { node throws(DeviceTreeError) in
            found = node
            return false
        }
        guard let found else { throw .missingRootNode }
        return found
    }

    /// Walks the subtree of `start` (the whole tree when nil), visiting `start` first, until
    /// `visit` returns false. Returns false when `visit` stopped the walk.
    /// A whole-tree walk also checks the grammar after the root: NOPs, then FDT_END.
    func walk(from start: DeviceTreeNode?,
              _ visit: (DeviceTreeNode) throws(DeviceTreeError) -> Bool) throws(DeviceTreeError) -> Bool {
        var lineage: Lineage
        var offset: Int
        let bottom: Int
        if let start {
            lineage = start.lineage
            offset = start.offset
            bottom = start.depth
        } else {
            lineage = Lineage(repeating: Frame())
            offset = structStart
            bottom = 0
            var first = try token(at: offset)
            while first.kind == .nop {
                offset = first.next
                first = try token(at: offset)
            }
            if first.kind == .end { throw .missingRootNode }
            guard first.kind == .beginNode else { throw .unexpectedToken(offset: offset) }
        }

        var depth = bottom - 1
        while true {
            let current = try token(at: offset)
            switch current.kind {
            case .nop:
                offset = current.next
            case .beginNode:
                depth += 1
                guard depth < Self.maximumDepth else { throw .nestingTooDeep(offset: offset) }
                var frame = Frame(offset: UInt32(offset), nameLength: UInt32(current.nameLength))
                offset = try scanProperties(from: current.next, into: &frame)
                lineage[depth] = frame
                if try !visit(DeviceTreeNode(tree: self, lineage: lineage, depth: depth)) { return false }
            case .endNode:
                depth -= 1
                offset = current.next
                if depth < bottom {
                    if start != nil { return true }
                    return try expectEnd(from: offset)
                }
            case .property, .end:
                // Properties were consumed when their node began, so this one follows a
                // subnode; FDT_END here leaves a node open.
                throw .unexpectedToken(offset: offset)
            }
        }
    }

    /// Checks that only NOPs and then FDT_END follow the root node.
    private func expectEnd(from start: Int) throws(DeviceTreeError) -> Bool {
        var offset = start
        while true {
            let current = try token(at: offset)
            switch current.kind {
            case .nop: offset = current.next
            case .end: return true
            default: throw .unexpectedToken(offset: offset)
            }
        }
    }

    /// Consumes the properties (and NOPs) of a node starting at `start`, recording its cell
    /// counts in `frame`; returns the offset of the first token that is neither.
    private func scanProperties(from start: Int, into frame: inout Frame) throws(DeviceTreeError) -> Int {
        var offset = start
        while true {
            let current = try token(at: offset)
            switch current.kind {
            case .nop:
                break
            case .property:
                let name = DeviceTreeString(slice(current.nameStart, current.nameLength))
                if name == "#address-cells" {
                    frame.addressCells = current.valueLength == 4 ? word(at: current.valueStart) : Self.malformedCells
                } else if name == "#size-cells" {
                    frame.sizeCells = current.valueLength == 4 ? word(at: current.valueStart) : Self.malformedCells
                }
            default:
                return offset
            }
            offset = current.next
        }
    }
}

// MARK: - Nodes

/// One node of a `DeviceTree`, with its chain of ancestors.
/// A value: it stays valid as long as the blob does, and costs no allocation.
public struct DeviceTreeNode {
    /// The tree this node belongs to.
    public let tree: DeviceTree
    /// Frames of the root ... this node (entries past `depth` are stale).
    let lineage: DeviceTree.Lineage
    /// Nesting depth: 0 for the root, 1 for its children, ...
    public let depth: Int

    var frame: DeviceTree.Frame { lineage[depth] }

    /// Blob offset of the node's FDT_BEGIN_NODE token (stable identity within one blob).
    public var offset: Int { Int(frame.offset) }

    /// The full node name, unit address included ("memory@40000000"); empty for the root.
    public var name: DeviceTreeString { DeviceTreeString(tree.slice(offset + 4, Int(frame.nameLength))) }

    /// The name without its unit address ("memory" for "memory@40000000").
    public var baseName: DeviceTreeString { name.prefix(upTo: UInt8(ascii: "@")) }

    /// The parent node, or nil for the root.
    public var parent: DeviceTreeNode? {
        depth == 0 ? nil : DeviceTreeNode(tree: tree, lineage: lineage, depth: depth - 1)
    }

    /// The ancestor at `depth` (0 = root); the caller passes 0...self.depth.
    func ancestor(atDepth level: Int) -> DeviceTreeNode {
        precondition(level >= 0 && level <= depth, "DeviceTreeNode.ancestor: depth out of range")
        return DeviceTreeNode(tree: tree, lineage: lineage, depth: level)
    }

    /// How many cells an address of a child of this node takes (`#address-cells`, default 2).
    /// Throws: `badAddressCells(offset:)` when the property is malformed or above 2.
    public func childAddressCells() throws(DeviceTreeError) -> Int {
        let cells = frame.addressCells
        guard cells <= 2 else { throw .badAddressCells(offset: offset) }
        return Int(cells)
    }

    /// How many cells a size of a child of this node takes (`#size-cells`, default 1).
    /// Throws: `badSizeCells(offset:)` when the property is malformed or above 2.
    public func childSizeCells() throws(DeviceTreeError) -> Int {
        let cells = frame.sizeCells
        guard cells <= 2 else { throw .badSizeCells(offset: offset) }
        return Int(cells)
    }

    /// Blob offset of the first token after the node name.
    var propertiesOffset: Int { DeviceTree.alignedToWord(offset + 4 + Int(frame.nameLength) + 1) }

    /// Calls `body` with each property of the node, in blob order, until it returns false.
    public func forEachProperty(_ body: (DeviceTreeProperty) throws(DeviceTreeError) -> Bool) throws(DeviceTreeError) {
        var cursor = propertiesOffset
        while true {
            let current = try tree.token(at: cursor)
            switch current.kind {
            case .nop:
                break
            case .property:
                let property = DeviceTreeProperty(
                    name: DeviceTreeString(tree.slice(current.nameStart, current.nameLength)),
                    value: tree.slice(current.valueStart, current.valueLength),
                    offset: cursor)
                if try !body(property) { return }
            default:
                return
            }
            cursor = current.next
        }
    }

    /// The property called `name`, or nil when the node has none.
    public func property(named name: StaticString) throws(DeviceTreeError) -> DeviceTreeProperty? {
        var found: DeviceTreeProperty?
        try forEachProperty { property throws(DeviceTreeError) in
            if property.name == name { found = property; return false }
            return true
        }
        return found
    }

    /// The property whose name equals `name` (a name read from the blob, e.g. an alias).
    public func property(named name: DeviceTreeString) throws(DeviceTreeError) -> DeviceTreeProperty? {
        var found: DeviceTreeProperty?
        try forEachProperty { property throws(DeviceTreeError) in
            if property.name == name { found = property; return false }
            return true
        }
        return found
    }

    /// True when the node's `compatible` string list holds `compatible` exactly.
    public func isCompatible(with compatible: StaticString) throws(DeviceTreeError) -> Bool {
        guard let property = try property(named: "compatible") else { return false }
        return property.containsString(compatible)
    }

    /// False when `status` says the device is not usable; true when it is "okay", "ok" or absent
    /// (DTSpec 2.3.4).
    public func isEnabled() throws(DeviceTreeError) -> Bool {
        guard let status = try property(named: "status") else { return true }
        guard let value = status.stringValue else { return false }
        return value == "okay" || value == "ok"
    }

    /// Visits every node of this node's subtree (this node first) in blob order until `body`
    /// returns false.
    public func forEachDescendant(_ body: (DeviceTreeNode) throws(DeviceTreeError) -> Bool) throws(DeviceTreeError) {
        _ = try tree.walk(from: self, body)
    }

    /// Visits the direct children of this node in blob order until `body` returns false.
    public func forEachChild(_ body: (DeviceTreeNode) throws(DeviceTreeError) -> Bool) throws(DeviceTreeError) {
        let childDepth = depth + 1
        _ = try tree.walk(from: self) { node throws(DeviceTreeError) in
            node.depth == childDepth ? try body(node) : true
        }
    }
}
