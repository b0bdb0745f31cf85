// Pmap+Kernel: building the kernel address space. Physical ranges are mapped with the largest
// leaves the format allows where both addresses are aligned (the direct map), and the kernel
// image is mapped W^X from its linker layout: text read-execute, read-only data read-only,
// data/bss/stacks read-write non-executable, with guard pages left unmapped.
// Invariants: these mappings are unmanaged (no pv entries), global, pre-referenced and
// pre-modified (kernel memory never takes emulation faults); each call validates everything
// first and, if memory runs out midway, removes what it mapped before throwing.

/// Where the linker put the kernel image (virtual addresses, page-aligned ranges).
public struct KernelImageLayout {
    /// Code: mapped read-execute.
    public var text: Range<UInt64>
    /// Constants: mapped read-only, non-executable.
    public var readOnlyData: Range<UInt64>
    /// Data, bss and stacks: mapped read-write, non-executable, except `guardPages`.
    public var writableData: Range<UInt64>
    /// Pages inside `writableData` left unmapped (below each kernel stack), sorted.
    public var guardPages: [UInt64]
    /// virtual - physical for every image address (wrapping arithmetic).
    public var virtualToPhysicalOffset: UInt64

    public init(text: Range<UInt64>, readOnlyData: Range<UInt64>, writableData: Range<UInt64>,
                guardPages: [UInt64], virtualToPhysicalOffset: UInt64) {
        self.text = text
        self.readOnlyData = readOnlyData
        self.writableData = writableData
        self.guardPages = guardPages
        self.virtualToPhysicalOffset = virtualToPhysicalOffset
    }

    /// The physical address of image address `virtual`.
    public func physicalAddress(of virtual: UInt64) -> PhysicalAddress {
        PhysicalAddress(virtual &- virtualToPhysicalOffset)
    }

    /// The physical range behind `range`.
    public func physicalRange(of range: Range<UInt64>) -> PhysicalRange {
        PhysicalRange(start: physicalAddress(of: range.lowerBound), end: physicalAddress(of: range.upperBound))
    }
}

extension Pmap {
    /// Maps the physical range at `address`, unmanaged, using leaves above 4 KiB where both
    /// addresses are aligned to them and `largePages` allows. Throws `unalignedAddress`,
    /// `nonCanonicalAddress`, `outsideAddressSpace`, `rangeOverflow`, `invalidProtection`,
    /// `writableAndExecutable`, `alreadyMapped` (if anything in the range is mapped),
    /// `outOfMemory` (after removing what it mapped), `destroyed`.
    public func enterRange(_ range: PhysicalRange, at address: VirtualAddress, protection: Protection,
                           memoryType: MemoryType = .normal, largePages: Bool = true) throws(PmapError) {
        guard range.start.isPageAligned && range.end.isPageAligned && range.start <= range.end else { throw .unalignedAddress }
        let byteCount = range.byteCount
        let end = try checkRange(address, byteCount)
        try checkProtection(protection)
        guard byteCount > 0 else { return }
        guard !pageTable.hasLeaf(from: address.value, to: end) else { throw .alreadyMapped }
        let attributes = unmanagedAttributes(protection: protection.hardwareExpressible, memoryType: memoryType, wired: false)
        var virtual = address.value
        var physical = range.start.value
        var changes = TableChanges()
        while virtual < end {
            var level = largePages ? largestLeafLevel(virtual: virtual, physical: physical, remaining: end - virtual) : format.leafLevel
            while true {
                let slot: PageTableSlot
                do {
                    slot = try pageTable.slot(for: virtual, level: level, isUser: !isKernel, changes: &changes)
                } catch {
                    tablePages += changes.created
                    finish(InvalidationBatch(limit: format.rangeInvalidationLimit), changes)
                    if isKernel { propagateRootEntries() }
                    if virtual > address.value {
                        do {
                            try remove(start: address, byteCount: virtual - address.value)
                        } catch {
                            preconditionFailure("Pmap.enterRange: cannot undo a partial mapping")
                        }
                    }
                    throw error
                }
                // An empty table left behind by earlier removals: map under it instead.
                if format.kind(of: slot.value, level: level) == .table {
                    level += 1
                    continue
                }
                pageTable.install(format.leafEntry(PhysicalAddress(physical), level: level, attributes: attributes), in: slot)
                break
            }
            let size = format.entrySize(level: level)
            residentPages += Int(size >> pageShift)
            if level != format.leafLevel { largeLeaves += 1 }
            virtual += size
            physical += size
        }
        tablePages += changes.created
        if changes.createdRootEntry && isKernel { propagateRootEntries() }
        hardware.publishTableStores()
    }

    /// The level of the largest leaf that fits at (virtual, physical) within `remaining` bytes.
    private func largestLeafLevel(virtual: UInt64, physical: UInt64, remaining: UInt64) -> Int {
        for level in 1..<format.leafLevel where format.allowsLeaf(level: level) {
            let size = format.entrySize(level: level)
            if virtual & (size - 1) == 0 && physical & (size - 1) == 0 && remaining >= size { return level }
        }
        return format.leafLevel
    }

    /// Maps the kernel image W^X with 4 KiB pages (so single pages can be changed later) and
    /// leaves its guard pages unmapped. Kernel pmap only. Throws `wrongPmapKind`,
    /// `unalignedAddress` (a range or guard page off a page boundary), `outsideAddressSpace`
    /// (a guard page outside the writable range), the `enterRange` errors; on `outOfMemory`
    /// nothing stays mapped.
    public func mapKernelImage(_ layout: KernelImageLayout) throws(PmapError) {
        guard isKernel else { throw .wrongPmapKind }
        let mask = pageSize - 1
        for range in [layout.text, layout.readOnlyData, layout.writableData] {
            guard range.lowerBound & mask == 0 && range.upperBound & mask == 0 else { throw .unalignedAddress }
            _ = try checkRange(VirtualAddress(range.lowerBound), UInt64(range.count))
            guard !pageTable.hasLeaf(from: range.lowerBound, to: range.upperBound) else { throw .alreadyMapped }
        }
        for guardPage in layout.guardPages {
            guard guardPage & mask == 0 else { throw .unalignedAddress }
            guard layout.writableData.contains(guardPage) else { throw .outsideAddressSpace }
        }
        var pieces: [(Range<UInt64>, Protection)] = [(layout.text, .readExecute), (layout.readOnlyData, .readOnly)]
        var cursor = layout.writableData.lowerBound
        for guardPage in layout.guardPages.sorted() {
            if guardPage > cursor { pieces.append((cursor..<guardPage, .readWrite)) }
            cursor = max(cursor, guardPage + pageSize)
        }
        if cursor < layout.writableData.upperBound { pieces.append((cursor..<layout.writableData.upperBound, .readWrite)) }
        var mapped = 0
        do {
            for (range, protection) in pieces where !range.isEmpty {
                try enterRange(layout.physicalRange(of: range), at: VirtualAddress(range.lowerBound),
                               protection: protection, largePages: false)
                mapped += 1
            }
        } catch {
            for (range, _) in pieces.prefix(mapped) where !range.isEmpty {
                do {
                    try remove(start: VirtualAddress(range.lowerBound), byteCount: UInt64(range.count))
                } catch {
                    preconditionFailure("Pmap.mapKernelImage: cannot undo a partial image mapping")
                }
            }
            throw error
        }
    }
}
