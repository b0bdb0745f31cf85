// Fault: vm_fault. Resolves one page fault of a map: finds the entry, checks the access
// against its protection, gives a needs-copy entry its own shadow on a write, walks the shadow
// chain for the page (paging in from a pager on the way), zero-fills or copies on write into
// the top object, pushes the old contents into a delayed-copy object before the top object's
// page changes, and maps the result with pmap.enter.
// Invariants: a page is mapped writable only if it belongs to the entry's top object, the
// entry does not need copy, and no copy object still needs its current contents; a page
// from lower in the chain is mapped read-only. After a copy-on-write the top object is
// collapsed (as the seeds do), so chains shrink as their pages are copied up.
// Locks: (m) map lock held across the fault, (o) object locks along the chain.

/// Why a fault could not be resolved; the access is an error for its thread (SIGSEGV/SIGBUS).
public enum FaultError: Error, Equatable {
    /// No entry covers the address.
    case notMapped
    /// The entry's protection forbids the access.
    case protectionViolation
    /// No page frame (or page-table page) left, even after trimming the object cache.
    case outOfMemory
    /// The pager could not bring the page in.
    case pager(PagerError)
}

extension VMMap {
    /// Resolves a fault at `address` (any byte of the page) for `access`. `wiring`: map the
    /// page wired and wire it (VMMap.wire). Throws `notMapped`, `protectionViolation`,
    /// `outOfMemory`, `pager(_)`; the map and objects are unchanged by a thrown fault except
    /// for pages brought in and shadows created, which are valid state either way.
    public func fault(at address: UInt64, access: FaultAccess, wiring: Bool = false) throws(FaultError) {
        let va = address & ~(pageSize - 1)
        guard let index = index(containing: va) else { throw .notMapped }
        let needed: Protection
        switch access {
        case .read: needed = .read
        case .write: needed = .write
        case .execute: needed = .execute
        }
        guard entries[index].protection.contains(needed) else { throw .protectionViolation }
        system.statistics.faults += 1
        if entries[index].object == nil {
            entries[index].object = createObject(for: entries[index])
            entries[index].offset = 0
        }
        try boundChain(of: index)
        // Wiring resolves copy-on-write even for a read: a wired page must be the entry's own
        // (Mach's wiring of a needs-copy entry does the same), never a page of an object below.
        if (access == .write || wiring) && entries[index].needsCopy {
            do {
                try resolveNeedsCopy(index)
            } catch {
                throw .outOfMemory
            }
        }
        let entry = entries[index]
        guard let top = entry.object else { preconditionFailure("VMMap.fault: entry without an object") }
        let offset = entry.objectOffset(of: va)
        let source: PageSource
        do {
            source = try top.lookup(offset)
        } catch {
            throw Self.faultError(error)
        }
        var protection = entry.protection
        if entry.needsCopy { protection.remove(.write) }

        switch source {
        case .frame(let frame):
            if case .physical = top.kind {
                try enterFrame(frame, at: va, protection: protection, wiring: wiring)
                return
            }
            if access != .write && !wiring {
                protection.remove(.write)
                try enterFrame(frame, at: va, protection: protection, wiring: wiring)
                return
            }
        case .resident(let page, let owner, _):
            if owner === top {
                if access == .write {
                    if try pushToCopy(of: top, offset: offset, source: source) { system.mappings.removeAll(page) }
                    // Dirtied again: its swap copy is stale, the block goes back now.
                    top.discardPagerData(at: offset)
                } else if !copyHasOwnData(of: top, offset: offset) {
                    protection.remove(.write)   // the first write must push to the copy object
                } else if top.pagerHasData(at: offset) {
                    protection.remove(.write)   // the first write must discard the swap copy
                }
                try enterPage(page, at: va, protection: protection, access: access, wiring: wiring, entryIsWired: entry.wiredCount > 0)
                return
            }
            if access != .write && !wiring {
                protection.remove(.write)
                try enterPage(page, at: va, protection: protection, access: access, wiring: wiring, entryIsWired: entry.wiredCount > 0)
                return
            }
        case .zero:
            break
        }

        // The top object gets its own page: zeros, or a copy of what lies below (a write).
        var pushed = false
        if access == .write || wiring { pushed = try pushToCopy(of: top, offset: offset, source: source) }
        guard let page = top.copyOfPage(source) else { throw .outOfMemory }
        do { try top.attach(page, at: offset) } catch {
            system.releasePage(page)   // No index node for it: the access fails, nothing else changed.
            throw .outOfMemory
        }
        if case .resident(let lower, _, _) = source, pushed || top.referenceCount > 1 || !top.shadowers.isEmpty {
            // Others may map the lower page through the top object (a sharer, a shadow, a
            // copy object): from now on they must see the top's page, so they refault.
            system.mappings.removeAll(lower)
        }
        try? system.pages.activate(page)
        if case .zero = source {
            system.statistics.zeroFillFaults += 1
        } else {
            system.statistics.copyOnWriteFaults += 1
        }
        if access != .write && !copyHasOwnData(of: top, offset: offset) { protection.remove(.write) }
        // A lower page may be mapped read-only here: the new page replaces it. (Nothing maps
        // a zero-fill page yet: the chain had no page to map.)
        if case .zero = source {} else {
            do {
                try pmap.remove(start: VirtualAddress(va), byteCount: pageSize)
            } catch {
                preconditionFailure("VMMap.fault: pmap refused to remove a mapped page")
            }
        }
        try enterPage(page, at: va, protection: protection, access: access, wiring: wiring, entryIsWired: entry.wiredCount > 0)
        if case .resident = source { top.collapse() }
    }

    /// Keeps the chain under entry `index` within the depth bound: past it, an entry that
    /// sees a snapshot (needs copy) or owns its object alone moves to a flat copy of what it
    /// sees. Chains grow without a fork at this entry when delayed copies are stacked (each
    /// older copy object shadows the newer one), so the fork-time check is not enough.
    private func boundChain(of index: Int) throws(FaultError) {
        guard let object = entries[index].object else { return }
        let depth = object.chainDepth
        let entry = entries[index]
        let isPrivate = !entry.needsCopy && object.referenceCount == 1 && object.shadowers.isEmpty && object.copy == nil
        guard depth > system.maximumChainDepth, entry.wiredCount == 0, entry.needsCopy || isPrivate else {
            // Within the bound, or shared in place (flattening would split the sharers).
            system.statistics.deepestChainAtFault = max(system.statistics.deepestChainAtFault, depth)
            return
        }
        let flat: VMObject
        do {
            flat = try object.flattenedCopy(offset: entry.offset, length: entry.length)
        } catch {
            throw Self.faultError(error)
        }
        removeTranslations(entry.start, entry.end)
        entries[index].object = flat
        entries[index].offset = 0
        entries[index].needsCopy = false
        object.deallocate()
        system.statistics.deepestChainAtFault = max(system.statistics.deepestChainAtFault, flat.chainDepth)
    }

    /// True if the top object's copy object (if any) no longer needs its page at `offset`
    /// (it has its own, resident or paged out), or there is no copy object.
    private func copyHasOwnData(of top: VMObject, offset: UInt64) -> Bool {
        guard let copy = top.copy else { return true }
        guard offset >= copy.shadowOffset, offset - copy.shadowOffset < copy.size else { return true }
        return copy.hasOwnData(at: offset - copy.shadowOffset)
    }

    /// Before the top object's page at `offset` changes, gives its copy object the current
    /// contents if it has none of its own. Returns true if it pushed. Throws `outOfMemory`
    /// (then the write must not happen: the copy would lose its snapshot).
    private func pushToCopy(of top: VMObject, offset: UInt64, source: PageSource) throws(FaultError) -> Bool {
        guard let copy = top.copy, !copyHasOwnData(of: top, offset: offset) else { return false }
        guard let page = copy.copyOfPage(source) else { throw .outOfMemory }
        do { try copy.attach(page, at: offset - copy.shadowOffset) } catch {
            system.releasePage(page)
            throw .outOfMemory
        }
        try? system.pages.activate(page)
        system.statistics.copyPushes += 1
        return true
    }

    private func enterPage(_ page: Page, at va: UInt64, protection: Protection, access faultAccess: FaultAccess,
                           wiring: Bool, entryIsWired: Bool) throws(FaultError) {
        var accessed: Protection
        switch faultAccess {
        case .read: accessed = .read
        case .write: accessed = [.read, .write]
        case .execute: accessed = [.read, .execute]
        }
        accessed = accessed.intersection(protection.hardwareExpressible)
        do {
            // A wired entry's translations stay marked wired when they are re-entered.
            try pmap.enter(page, at: VirtualAddress(va), protection: protection, wired: wiring || entryIsWired, access: accessed)
        } catch {
            throw error == .outOfMemory ? .outOfMemory : Self.pmapFailure(error)
        }
        // The page's wire count counts wirings of entries (one per `wire`), not translations.
        if wiring {
            do {
                try system.pages.wire(page)
            } catch {
                preconditionFailure("VMMap.fault: cannot wire an object page")
            }
        }
    }

    private func enterFrame(_ frame: PhysicalAddress, at va: UInt64, protection: Protection,
                            wiring: Bool) throws(FaultError) {
        do {
            try pmap.remove(start: VirtualAddress(va), byteCount: pageSize)
            try pmap.enter(physical: frame, at: VirtualAddress(va), protection: protection, memoryType: .normal, wired: wiring)
        } catch {
            throw error == .outOfMemory ? .outOfMemory : Self.pmapFailure(error)
        }
    }

    private static func pmapFailure(_ error: PmapError) -> FaultError {
        preconditionFailure("VMMap.fault: pmap refused a validated mapping")
    }

    static func faultError(_ error: ObjectError) -> FaultError {
        switch error {
        case .pager(let pagerError): return .pager(pagerError)
        default: return .outOfMemory
        }
    }
}
