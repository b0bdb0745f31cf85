// Pmap+Tracking: the parts of the pmap that serve referenced/modified tracking and the
// reverse map: resolving the aarch64 emulation faults (access flag, first write to a clean
// page), and the per-mapping reads and rewrites ReverseMap performs for page-wide operations.
// Invariants: as in Pmap.swift; every rewrite goes through `store`, which invalidates the
// translation when the TLB may cache it, and a mapping that loses write permission first
// moves its modified bit into the page record.

extension Pmap {
    // MARK: Referenced/modified emulation

    /// Resolves a fault that only the pmap's referenced/modified emulation caused (aarch64
    /// without FEAT_HAFDBS: access-flag faults, first writes to clean writable pages), in the
    /// kernel pmap or the active user pmap, depending on the address. Returns false for every
    /// other fault: those are the installed fault handler's. Call it on the kernel pmap, from
    /// the trap path, before the handler.
    public func resolveEmulationFault(_ fault: PageFault) -> Bool {
        let address = fault.address
        let target: Pmap
        if address >= lowerBound && address < upperBound {
            target = self
        } else if isKernel, let user = activeUserPmap, address < user.upperBound {
            target = user
        } else {
            return false
        }
        guard let slot = target.pageTable.leaf(containing: address) else { return false }
        let old = slot.value
        guard let new = format.resolvingEmulationFault(old, access: fault.access) else { return false }
        target.store(new, replacing: old, in: slot.entry, at: address & ~(pageSize - 1))
        target.emulationFaultsResolved += 1
        return true
    }

    // MARK: Reverse-map support (ReverseMap only)

    /// Decoded attributes of the leaf at `address`, which a pv entry says is mapped.
    func leafAttributes(mapping address: UInt64) -> LeafAttributes {
        guard let slot = pageTable.leaf(containing: address) else { preconditionFailure("Pmap.leafAttributes: pv entry for an unmapped address") }
        return format.attributes(of: slot.value, level: slot.level)
    }

    /// Replaces the leaf at `address` (which a pv entry says is mapped) by `change(old)`.
    func rewriteLeaf(mapping address: UInt64, _ change: (UInt64) -> UInt64) {
        guard let slot = pageTable.leaf(containing: address) else { preconditionFailure("Pmap.rewriteLeaf: pv entry for an unmapped address") }
        let old = slot.value
        store(change(old), replacing: old, in: slot.entry, at: address)
    }

    /// Lowers the protection of the leaf at `address` to at most `allowed`.
    func restrictLeaf(mapping address: UInt64, to allowed: Protection) {
        guard let slot = pageTable.leaf(containing: address) else { preconditionFailure("Pmap.restrictLeaf: pv entry for an unmapped address") }
        let old = slot.value
        var attributes = format.attributes(of: old, level: slot.level)
        let lowered = attributes.protection.intersection(allowed)
        guard lowered != attributes.protection else { return }
        if !lowered.contains(.write) && attributes.isModified {
            harvest(attributes, frame: format.leafAddress(of: old, level: slot.level), referenced: false)
            attributes.isModified = false
        }
        attributes.protection = lowered
        store(format.leafEntry(format.leafAddress(of: old, level: slot.level), level: slot.level, attributes: attributes),
              replacing: old, in: slot.entry, at: address)
    }

    /// Removes the one mapping at `address` (for ReverseMap.removeAll).
    func removeMapping(at address: UInt64) {
        var changes = TableChanges()
        guard let old = pageTable.clearLeaf(containing: address, changes: &changes) else {
            preconditionFailure("Pmap.removeMapping: pv entry for an unmapped address")
        }
        forgetLeaf(old, at: address, level: format.leafLevel)
        var batch = InvalidationBatch(limit: format.rangeInvalidationLimit)
        batch.add(address)
        finish(batch, changes)
    }
}
