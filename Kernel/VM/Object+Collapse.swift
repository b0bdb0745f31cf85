// Object+Collapse: keeping shadow chains short.
//  - Collapse: when this object's backing object is referenced only by this object, the
//    backing object's pages that this object lacks (resident or in its pager) move up, the
//    rest are freed, its pager's data moves up the same way, and the chain is spliced past it.
//  - Bypass: when this object already has (resident or in its pager) every page its backing
//    object could show it, it skips the backing object and references the one below instead.
// Both repeat down the chain until neither applies. 4.4BSD's bypass looked only at resident
// pages and lost paged-out ones; here a backing page "exists" if it is resident or its pager
// has data for it. Both Mach and 4.4BSD refuse to collapse when both objects have pagers;
// here the shadow's pager absorbs the backing pager's data (Pager.absorb) when it can.
// Invariants: no page is lost or duplicated: every backing page inside this object's window
// either moves to the same logical offset or is freed because this object has a newer one.
// Locks: (o) this object and its backing object; neither may have paging in progress.

extension VMObject {
    /// Collapses or bypasses backing objects while possible (see the file header). Called
    /// after a copy-on-write fault, when a backing object drops to one reference, and when
    /// a map entry is copied, as in the seeds.
    public func collapse() {
        while let backing = shadow {
            guard !isTerminated, backing.isAnonymous, !backing.isCached,
                  pagingInProgress == 0, backing.pagingInProgress == 0 else { return }
            if backing.referenceCount == 1 {
                precondition(backing.shadowers.count == 1 && backing.shadowers[0] === self,
                             "VMObject.collapse: backing object's one reference is not this shadow")
                guard mergePagerState(from: backing) else {
                    if !bypass(backing) { return }
                    continue
                }
                moveResidentPages(from: backing)
                spliceOut(backing)
                system.statistics.collapses += 1
            } else if !bypass(backing) {
                return
            }
        }
    }

    /// True if this object has, resident or in its pager, the page at its offset `offset`.
    func hasOwnData(at offset: UInt64) -> Bool {
        if residentPages[offset] != nil { return true }
        if let pager, pager.hasData(at: offset + pagerOffset) { return true }
        return false
    }

    /// The backing offsets this object can see: [shadowOffset, shadowOffset + size) clipped.
    private var window: Range<UInt64> {
        let end = shadowOffset.addingReportingOverflow(size)
        return shadowOffset..<(end.overflow ? UInt64.max & ~(pageSize - 1) : end.partialValue)
    }

    /// Moves the backing object's pager data into this object's pager (or adopts the backing
    /// pager if this object has none). False if the two pagers cannot merge; nothing changed.
    private func mergePagerState(from backing: VMObject) -> Bool {
        guard let backingPager = backing.pager else { return true }
        let window = self.window
        let sourceRange = (window.lowerBound + backing.pagerOffset)..<(window.upperBound + backing.pagerOffset)
        if let pager {
            let merged = pager.absorb(backingPager, range: sourceRange, destinationStart: pagerOffset) { destination in
                // destination is a pager offset of this object: newer data already here?
                self.residentPages[destination - self.pagerOffset] != nil
            }
            guard merged else { return false }
            backingPager.terminate()
        } else {
            // Adopt the backing pager: first drop what this object does not need from it.
            if sourceRange.lowerBound > backing.pagerOffset {
                backingPager.discard(backing.pagerOffset..<sourceRange.lowerBound)
            }
            backingPager.discard(sourceRange.upperBound..<UInt64.max)
            for pagerOffsetInSource in backingPager.offsetsWithData(in: sourceRange) {
                let offset = pagerOffsetInSource - sourceRange.lowerBound
                if residentPages[offset] != nil {
                    backingPager.discard(pagerOffsetInSource..<(pagerOffsetInSource + pageSize))
                }
            }
            pager = backingPager
            pagerOffset = sourceRange.lowerBound
        }
        backing.pager = nil
        return true
    }

    /// Moves each backing page this object lacks into this object; frees the others.
    private func moveResidentPages(from backing: VMObject) {
        let window = self.window
        for (backingOffset, page) in backing.residentPages {
            backing.detach(page)
            if window.contains(backingOffset) {
                let offset = backingOffset - shadowOffset
                if !hasOwnData(at: offset) {
                    attach(page, at: offset)
                    system.statistics.pagesMovedByCollapse += 1
                    continue
                }
            }
            // Shadowed by a newer page here, or outside the window: nobody can see it.
            precondition(page.wireCount == 0, "VMObject.collapse: wired page in a backing object")
            system.releasePage(page)
            system.statistics.pagesFreedByCollapse += 1
        }
        backing.residentPages = [:]
    }

    /// Splices `backing` (now empty, referenced only by this object) out of the chain: this
    /// object takes over its reference to the object below.
    private func spliceOut(_ backing: VMObject) {
        let below = backing.shadow
        shadow = below
        shadowOffset += backing.shadowOffset
        if let below {
            below.removeShadower(backing)
            below.addShadower(self)
            if below.copy === backing { below.copy = self }
        }
        backing.shadow = nil
        backing.shadowers = []
        if backing.copy === self { backing.copy = nil }
        backing.referenceCount = 0
        _ = backing.terminate()
    }

    /// Skips `backing` if nothing visible through it comes from it. True if it did.
    private func bypass(_ backing: VMObject) -> Bool {
        if backing.copy === self { return false }   // a copy object must keep seeing its source
        // A copy object still receives pushes from its source: what it shows can grow, so
        // nothing may skip it (both seeds' bypass lost those future pages).
        if let below = backing.shadow, below.copy === backing { return false }
        let window = self.window
        for (backingOffset, _) in backing.residentPages where window.contains(backingOffset) {
            if !hasOwnData(at: backingOffset - shadowOffset) { return false }
        }
        if let backingPager = backing.pager {
            let sourceRange = (window.lowerBound + backing.pagerOffset)..<(window.upperBound + backing.pagerOffset)
            for dataOffset in backingPager.offsetsWithData(in: sourceRange) {
                if !hasOwnData(at: dataOffset - sourceRange.lowerBound) { return false }
            }
        }
        let below = backing.shadow
        if let below {
            below.reference()
            below.addShadower(self)
        }
        backing.removeShadower(self)
        shadow = below
        shadowOffset += backing.shadowOffset
        system.statistics.bypasses += 1
        backing.deallocate()
        return true
    }
}
