// DeviceTree+Queries: what the kernel asks of the devicetree at boot: the physical memory map,
// devices by `compatible` with their CPU-physical registers, interrupts, and `/chosen`.
// Invariants: like DeviceTree.swift, nothing here allocates; `reg` is decoded with the parent's
// `#address-cells`/`#size-cells` and translated to a CPU physical address through every
// ancestor's `ranges` (DTSpec 2.3.8), so a device behind a bus window (Raspberry Pi 3 /soc maps
// bus 0x7e000000 to 0x3f000000) comes out where the CPU sees it. References (phandles, aliases)
// are followed one hop only, so a cyclic blob cannot loop.
// Locks: none.

/// A range of physical addresses decoded from the blob: `size` bytes from `base`.
/// Never wraps: `base + size` fits in 64 bits (decoders throw `regionOverflows` otherwise).
public struct DeviceTreeRegion: Equatable {
    /// First byte (a CPU physical address once translated).
    public var base: PhysicalAddress
    /// Length in bytes (may be zero).
    public var size: UInt64

    public init(base: PhysicalAddress, size: UInt64) {
        self.base = base
        self.size = size
    }

    /// The region as [base, base + size).
    public var range: PhysicalRange { PhysicalRange(start: base, end: base.advanced(by: size)) }
}

// MARK: - Registers and address translation

extension DeviceTreeNode {
    /// Calls `body` with each (address, size) entry of the node's `reg`, translated to a CPU
    /// physical address, until it returns false. A node without `reg` (or the root) has none.
    /// Throws: `badAddressCells`/`badSizeCells` (parent's cells unusable), `badPropertyLength`
    /// (`reg` not whole entries), `untranslatableAddress` (an ancestor bus is not memory-mapped,
    /// e.g. /cpus or an I2C controller), `regionOverflows`.
    public func forEachRegion(_ body: (DeviceTreeRegion) throws(DeviceTreeError) -> Bool) throws(DeviceTreeError) {
        try forEachRegEntry(translated: true, body)
    }

    /// Calls `body` with each entry of `reg` as written, in the parent's address space (a CPU's
    /// MPIDR, a bus-local address), until it returns false.
    /// Throws: as `forEachRegion`, except `untranslatableAddress`.
    public func forEachUntranslatedRegion(_ body: (DeviceTreeRegion) throws(DeviceTreeError) -> Bool) throws(DeviceTreeError) {
        try forEachRegEntry(translated: false, body)
    }

    /// The `index`th entry of `reg`, translated; nil when `reg` has fewer entries.
    /// Throws: as `forEachRegion`.
    public func region(at index: Int) throws(DeviceTreeError) -> DeviceTreeRegion? {
        try regEntry(at: index, translated: true)
    }

    /// The `index`th entry of `reg` in the parent's address space; nil when there are fewer.
    /// Throws: as `forEachUntranslatedRegion`.
    public func untranslatedRegion(at index: Int) throws(DeviceTreeError) -> DeviceTreeRegion? {
        try regEntry(at: index, translated: false)
    }

    /// Number of entries in `reg`. Throws: as `forEachUntranslatedRegion`.
    public func regionCount() throws(DeviceTreeError) -> Int {
        var count = 0
        try forEachRegEntry(translated: false) { _ throws(DeviceTreeError) in
            count += 1
            return true
        }
        return count
    }

    private func regEntry(at index: Int, translated: Bool) throws(DeviceTreeError) -> DeviceTreeRegion? {
        var seen = 0
        var found: DeviceTreeRegion?
        try forEachRegEntry(translated: translated) { region throws(DeviceTreeError) in
            if seen == index { found = region; return false }
            seen += 1
            return true
        }
        return found
    }

    /// Decodes `reg` with the parent's cell counts, translating each address when asked.
    private func forEachRegEntry(translated: Bool,
                                 _ body: (DeviceTreeRegion) throws(DeviceTreeError) -> Bool) throws(DeviceTreeError) {
        guard depth > 0, let reg = try property(named: "reg") else { return }
        let bus = ancestor(atDepth: depth - 1)
        let addressCells = try bus.childAddressCells()
        let sizeCells = try bus.childSizeCells()
        let entryCells = addressCells + sizeCells
        guard entryCells > 0 ? reg.value.count % (entryCells * 4) == 0 : reg.isEmpty else {
            throw .badPropertyLength(offset: reg.offset)
        }
        var cell = 0
        while cell < reg.cellCount {
            guard let address = reg.number(at: cell, cells: addressCells),
                  let size = reg.number(at: cell + addressCells, cells: sizeCells) else {
                throw .badPropertyLength(offset: reg.offset)
            }
            let base = translated ? try translate(address, fromChildOf: depth - 1) : address
            guard size <= UInt64.max - base else { throw .regionOverflows(offset: reg.offset) }
            if try !body(DeviceTreeRegion(base: PhysicalAddress(base), size: size)) { return }
            cell += entryCells
        }
    }

    /// Translates `address`, an address in the child address space of the ancestor at depth
    /// `level`, up through each ancestor's `ranges` to the root's (CPU physical) address space.
    /// An empty `ranges` is the identity; a missing one means the bus is not memory-mapped.
    func translate(_ address: UInt64, fromChildOf level: Int) throws(DeviceTreeError) -> UInt64 {
        var address = address
        var busDepth = level
        // The root's children are already in CPU physical space: the root has no parent bus.
        while busDepth > 0 {
            let bus = ancestor(atDepth: busDepth)
            let parentBus = ancestor(atDepth: busDepth - 1)
            guard let ranges = try bus.property(named: "ranges") else {
                throw .untranslatableAddress(offset: bus.offset)
            }
            if !ranges.isEmpty {
                address = try Self.map(address, through: ranges,
                                       childCells: try bus.childAddressCells(),
                                       parentCells: try parentBus.childAddressCells(),
                                       sizeCells: try bus.childSizeCells(),
                                       bus: bus.offset)
            }
            busDepth -= 1
        }
        return address
    }

    /// Maps `address` through the (child, parent, length) triples of a non-empty `ranges`.
    private static func map(_ address: UInt64, through ranges: DeviceTreeProperty, childCells: Int,
                            parentCells: Int, sizeCells: Int, bus: Int) throws(DeviceTreeError) -> UInt64 {
        let entryCells = childCells + parentCells + sizeCells
        guard entryCells > 0, ranges.value.count % (entryCells * 4) == 0 else {
            throw .badPropertyLength(offset: ranges.offset)
        }
        var cell = 0
        while cell < ranges.cellCount {
            guard let childBase = ranges.number(at: cell, cells: childCells),
                  let parentBase = ranges.number(at: cell + childCells, cells: parentCells),
                  let length = ranges.number(at: cell + childCells + parentCells, cells: sizeCells) else {
                throw .badPropertyLength(offset: ranges.offset)
            }
            if address >= childBase && address - childBase < length {
                let delta = address - childBase
                guard delta <= UInt64.max - parentBase else { throw .regionOverflows(offset: ranges.offset) }
                return parentBase + delta
            }
            cell += entryCells
        }
        throw .untranslatableAddress(offset: bus)
    }
}

// MARK: - Memory map

extension DeviceTree {
    /// The blob's own physical extent, through the direct map (it must not be overwritten
    /// while this view is in use).
    public var physicalRange: PhysicalRange {
        let start = DirectMap.physicalAddress(of: bytes.baseAddress!)
        return PhysicalRange(start: start, end: start.advanced(by: UInt64(totalSize)))
    }

    /// The RAM the blob describes and what inside it is taken, normalized.
    /// Usable: the `reg` of every enabled `/memory` node (named "memory" or with
    /// `device_type = "memory"`), decoded with the root's cell counts.
    /// Reserved: the header's memory reservation block, the `reg` of every enabled child of
    /// `/reserved-memory` (entries with only `size` are placed by the OS and are not reported),
    /// and the blob itself. The kernel image is the caller's to reserve.
    /// Ranges past `PhysicalRangeList.capacity` set `overflowed`.
    /// Throws: `missingMemoryNode` when no RAM is described; any decoding error of those
    /// properties (`badAddressCells`, `badPropertyLength`, `regionOverflows`, ...).
    public func memoryMap() throws(DeviceTreeError) -> MemoryMap {
        var map = MemoryMap()
        var foundMemory = false
        try forEachNode { node throws(DeviceTreeError) in
            if node.depth == 1, try node.isMemory(), try node.isEnabled() {
                try node.forEachRegion { region throws(DeviceTreeError) in
                    if region.size > 0 { foundMemory = true }
                    map.addUsable(region.range)
                    return true
                }
            } else if node.depth == 2, node.ancestor(atDepth: 1).name == "reserved-memory", try node.isEnabled() {
                try node.forEachRegion { region throws(DeviceTreeError) in
                    map.addReserved(region.range)
                    return true
                }
            }
            return true
        }
        guard foundMemory else { throw .missingMemoryNode }
        try forEachReservation { region throws(DeviceTreeError) in
            map.addReserved(region.range)
            return true
        }
        map.addReserved(physicalRange)
        map.normalize()
        return map
    }
}

extension DeviceTreeNode {
    /// True for a memory node: `device_type = "memory"`, or named "memory" / "memory@...".
    func isMemory() throws(DeviceTreeError) -> Bool {
        if baseName == "memory" { return true }
        guard let deviceType = try property(named: "device_type")?.stringValue else { return false }
        return deviceType == "memory"
    }
}

// MARK: - Devices

/// An enabled node matched by `compatible`, with its first register window.
public struct DeviceTreeDevice {
    /// The node (for further properties, more `reg` entries, interrupts).
    public let node: DeviceTreeNode
    /// The first `reg` entry as a CPU physical region, or nil when the node has no `reg`.
    public let region: DeviceTreeRegion?

    /// The node's interrupts; see `DeviceTreeNode.interrupts()`.
    public func interrupts() throws(DeviceTreeError) -> DeviceTreeInterrupts? { try node.interrupts() }
}

extension DeviceTree {
    /// Calls `body` with each enabled node whose `compatible` holds `compatible`, in blob order
    /// (QEMU `virt` lists its 32 "virtio,mmio" slots by ascending address), until it returns
    /// false. Disabled nodes (`status = "disabled"`) are skipped.
    /// Throws: what decoding the first `reg` entry throws, or what `body` throws.
    public func forEachDevice(compatibleWith compatible: StaticString,
                              _ body: (DeviceTreeDevice) throws(DeviceTreeError) -> Bool) throws(DeviceTreeError) {
        try forEachNode { node throws(DeviceTreeError) in
            guard try node.isCompatible(with: compatible), try node.isEnabled() else { return true }
            return try body(DeviceTreeDevice(node: node, region: try node.region(at: 0)))
        }
    }

    /// The first enabled node compatible with `compatible` ("arm,pl011", "arm,gic-400",
    /// "arm,cortex-a15-gic", ...), with its first register window; nil when there is none.
    public func firstDevice(compatibleWith compatible: StaticString) throws(DeviceTreeError) -> DeviceTreeDevice? {
        var found: DeviceTreeDevice?
        try forEachDevice(compatibleWith: compatible) { device throws(DeviceTreeError) in
            found = device
            return false
        }
        return found
    }

    /// The node whose `phandle` (or legacy `linux,phandle`) is `phandle`; nil when none is.
    /// 0 and 0xffffffff are never valid phandles.
    public func node(withPhandle phandle: UInt32) throws(DeviceTreeError) -> DeviceTreeNode? {
        guard phandle != 0, phandle != UInt32.max else { return nil }
        var found: DeviceTreeNode?
        try forEachNode { node throws(DeviceTreeError) in
            var own = try node.property(named: "phandle")
            if own == nil { own = try node.property(named: "linux,phandle") }
            if own?.u32Value == phandle { found = node; return false }
            return true
        }
        return found
    }
}

// MARK: - Interrupts

/// A node's `interrupts` property split into specifiers of its interrupt parent's
/// `#interrupt-cells` cells each (for a GIC: type, number, flags).
public struct DeviceTreeInterrupts {
    /// The raw `interrupts` property.
    public let property: DeviceTreeProperty
    /// Cells per interrupt specifier (`#interrupt-cells` of the interrupt parent, at least 1).
    public let cellsPerInterrupt: Int
    /// The interrupt controller the specifiers belong to.
    public let controller: DeviceTreeNode

    /// Number of specifiers.
    public var count: Int { property.cellCount / cellsPerInterrupt }

    /// Cell `cell` of specifier `index`, or nil when either is out of range.
    public func cell(_ cell: Int, ofInterrupt index: Int) -> UInt32? {
        guard index >= 0, index < count, cell >= 0, cell < cellsPerInterrupt else { return nil }
        return property.u32(at: index * cellsPerInterrupt + cell)
    }
}

extension DeviceTreeNode {
    /// The node's interrupt parent: the target of the nearest `interrupt-parent` on this node
    /// or an ancestor (DTSpec 2.4.1); nil when none names one.
    /// Throws: `badPhandle(offset:)` when that property is not one cell or names no node.
    public func interruptParent() throws(DeviceTreeError) -> DeviceTreeNode? {
        var level = depth
        while level >= 0 {
            if let reference = try ancestor(atDepth: level).property(named: "interrupt-parent") {
                guard let phandle = reference.u32Value,
                      let parent = try tree.node(withPhandle: phandle) else {
                    throw .badPhandle(offset: reference.offset)
                }
                return parent
            }
            level -= 1
        }
        return nil
    }

    /// The node's `interrupts`, split by its interrupt parent's `#interrupt-cells`; nil when
    /// the node has no `interrupts` (`interrupts-extended` is not decoded).
    /// Throws: `badPhandle` (no usable interrupt parent), `badInterruptCells` (the controller's
    /// `#interrupt-cells` is missing, not one cell, 0 or above 16), `badPropertyLength` (`interrupts` is
    /// not whole specifiers).
    public func interrupts() throws(DeviceTreeError) -> DeviceTreeInterrupts? {
        guard let interrupts = try property(named: "interrupts") else { return nil }
        guard let controller = try interruptParent() else { throw .badPhandle(offset: interrupts.offset) }
        // Linux caps a specifier at 16 cells (MAX_PHANDLE_ARGS); no binding comes close.
        guard let cells = try controller.property(named: "#interrupt-cells")?.u32Value, cells > 0, cells <= 16 else {
            throw .badInterruptCells(offset: controller.offset)
        }
        guard interrupts.value.count % (Int(cells) * 4) == 0 else {
            throw .badPropertyLength(offset: interrupts.offset)
        }
        return DeviceTreeInterrupts(property: interrupts, cellsPerInterrupt: Int(cells), controller: controller)
    }
}

// MARK: - Paths and /chosen

extension DeviceTree {
    /// The node at `path` ("/chosen", "/soc/serial@7e201000", or "alias/rest" through
    /// `/aliases`); nil when there is none. A component without a unit address matches a node
    /// with one ("/memory" finds "memory@40000000"), as in libfdt.
    public func node(atPath path: StaticString) throws(DeviceTreeError) -> DeviceTreeNode? {
        let result: Result<DeviceTreeNode?, DeviceTreeError> = path.withUTF8Buffer { utf8 in
            do throws(DeviceTreeError) {
                return .success(try node(atPath: DeviceTreeString(UnsafeRawBufferPointer(utf8))))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The node at `path`, a path read from the blob (`stdout-path`, an alias value).
    /// An alias is resolved once: its value must be an absolute path.
    public func node(atPath path: DeviceTreeString) throws(DeviceTreeError) -> DeviceTreeNode? {
        let slash = UInt8(ascii: "/")
        if !path.isEmpty && path[0] == slash {
            return try descendant(of: root(), path: path)
        }
        let aliasName = path.prefix(upTo: slash)
        guard !aliasName.isEmpty,
              let aliases = try node(atPath: "/aliases"),
              let target = try aliases.property(named: aliasName)?.stringValue,
              !target.isEmpty, target[0] == slash,
              let aliased = try descendant(of: root(), path: target) else { return nil }
        guard let rest = path.suffix(after: slash) else { return aliased }
        return try descendant(of: aliased, path: rest)
    }

    /// Follows the '/'-separated components of `path` down from `start`.
    private func descendant(of start: DeviceTreeNode, path: DeviceTreeString) throws(DeviceTreeError) -> DeviceTreeNode? {
        let slash = UInt8(ascii: "/")
        var current = start
        var remaining = path
        while true {
            var skip = 0
            while skip < remaining.count && remaining[skip] == slash { skip += 1 }
            remaining = remaining.dropFirst(skip)
            if remaining.isEmpty { return current }
            let component = remaining.prefix(upTo: slash)
            var match: DeviceTreeNode?
            try current.forEachChild { child throws(DeviceTreeError) in
                // A base name holds no '@', so it only matches a component without a unit address.
                if child.name == component || child.baseName == component {
                    match = child
                    return false
                }
                return true
            }
            guard let next = match else { return nil }
            current = next
            remaining = remaining.dropFirst(component.count)
        }
    }

    /// `/chosen`'s `stdout-path` (or legacy `linux,stdout-path`) without its ":options"
    /// suffix ("/pl011@9000000", "serial0"); nil when absent.
    public func stdoutPath() throws(DeviceTreeError) -> DeviceTreeString? {
        guard let chosen = try node(atPath: "/chosen") else { return nil }
        var property = try chosen.property(named: "stdout-path")
        if property == nil { property = try chosen.property(named: "linux,stdout-path") }
        return property?.stringValue?.prefix(upTo: UInt8(ascii: ":"))
    }

    /// The node `stdout-path` names (through `/aliases` when needed); nil when absent or dangling.
    public func stdoutNode() throws(DeviceTreeError) -> DeviceTreeNode? {
        guard let path = try stdoutPath() else { return nil }
        return try node(atPath: path)
    }
}
