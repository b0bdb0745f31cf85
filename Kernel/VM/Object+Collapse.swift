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
// Locks: (o) this object and its backing object; neither may have paging in progress (their
// laundry is settled first).

extension VMObject {
    /// Collapses or bypasses backing objects while possible (see the file header). Called
    /// after a copy-on-write fault, when a backing object drops to one reference, and when
    /// a map entry is copied, as in the seeds.
    public func collapse() {
        while let backing = shadow {
            guard !isTerminated, backing.isAnonymous, !backing.isCached else { return }
            // Pages in the laundry are the daemon's until their writes are collected.
            settleLaundry()
            backing.settleLaundry()
            guard pagingInProgress == 0, backing.pagingInProgress == 0 else { return }
            if backing.referenceCount == 1 {
                precondition(backing.shadowers.count == 1 && backing.shadowers[0] === self,
                             "VMObject.collapse: backing object's one reference is not this shadow")
                guard mergePagerState(from: backing) else {
                    if !bypass(backing) { return }
                    continue
                }
                guard moveResidentPages(from: backing) else { return }
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
            // Data this object's resident pages hide is stale for it.
            residentPages.forEach { offset, _ in
                let hidden = offset + sourceRange.lowerBound
                backingPager.discard(hidden..<(hidden + pageSize))
                return true
            }
            pager = backingPager
            pagerOffset = sourceRange.lowerBound
        }
        backing.pager = nil
        return true
    }

    /// Moves each backing page this object lacks into this object; frees the others. False
    /// when this object's page index cannot grow: the pages not moved yet stay in `backing`,
    /// which this object alone references, so the chain still shows every one of them (its
    /// pager data already moved up, and this object's copy of an offset wins over the
    /// backing page as before); the collapse stops there and a later one finishes it.
    private func moveResidentPages(from backing: VMObject) -> Bool {
        let window = self.window
        var cursor: UInt64 = 0
        while let (backingOffset, page) = backing.residentPages.first(atOrAfter: cursor) {
            cursor = backingOffset + pageSize
            if window.contains(backingOffset) && !hasOwnData(at: backingOffset - shadowOffset) {
                let offset = backingOffset - shadowOffset
                do { try residentPages.insert(page, at: offset) } catch { return false }
                backing.residentPages.remove(at: backingOffset)
                backing.detach(page)
                claim(page, at: offset)
                system.statistics.pagesMovedByCollapse += 1
                continue
            }
            // Shadowed by a newer page here, or outside the window: nobody can see it.
            precondition(page.wireCount == 0, "VMObject.collapse: wired page in a backing object")
            backing.residentPages.remove(at: backingOffset)
            backing.detach(page)
            system.releasePage(page)
            system.statistics.pagesFreedByCollapse += 1
        }
        return true
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

    /// True if counting alone shows this object cannot hide everything `backing` shows it:
    /// when the window is all of `backing`, it shows at least max(resident, paged) distinct
    /// pages, and this object has at most resident + paged. Turns the per-fault bypass check
    /// of a large shared object from a scan into O(1) until the scan can succeed.
    private func cannotCover(_ backing: VMObject, window: Range<UInt64>) -> Bool {
        guard window.lowerBound == 0, window.upperBound >= backing.size else { return false }
        var backingShows = backing.residentPages.count
        if let backingPager = backing.pager {
            guard let paged = backingPager.dataPageCount else { return false }
            backingShows = max(backingShows, paged)
        }
        var mine = residentPages.count
        if let pager {
            guard let paged = pager.dataPageCount else { return false }
            mine += paged
        }
        return mine < backingShows
    }

    /// Skips `backing` if nothing visible through it comes from it. True if it did.
    private func bypass(_ backing: VMObject) -> Bool {
        if backing.copy === self { return false }   // a copy object must keep seeing its source
        // A copy object still receives pushes from its source: what it shows can grow, so
        // nothing may skip it (both seeds' bypass lost those future pages).
        if let below = backing.shadow, below.copy === backing { return false }
        let window = self.window
        if cannotCover(backing, window: window) { return false }
        let coversResident = backing.residentPages.forEach(in: window) { backingOffset, _ in
            self.hasOwnData(at: backingOffset - self.shadowOffset)
        }
        guard coversResident else { return false }
        if let backingPager = backing.pager {
            let sourceRange = (window.lowerBound + backing.pagerOffset)..<(window.upperBound + backing.pagerOffset)
            let coversPaged = backingPager.forEachOffsetWithData(in: sourceRange) { dataOffset in
                self.hasOwnData(at: dataOffset - sourceRange.lowerBound)
            }
            guard coversPaged else { return false }
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
