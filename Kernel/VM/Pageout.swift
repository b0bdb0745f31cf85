// Pageout: the pageout daemon. Keeps free page frames between a minimum and a target by
// scanning the paging queues: the active queue's oldest unreferenced pages are deactivated;
// the inactive queue's pages get a second chance if the pmap saw them referenced (back to
// active), are freed at once if clean (their pager holds a valid copy and no mapping
// modified them), and are laundered otherwise: dirty anonymous pages go to the object's swap
// pager (created, with its swap reservation, at the first pageout) in clusters of up to
// `SwapPager.clusterPages` consecutive offsets, one I/O per cluster, then freed.
// There are no kernel threads: `VMSystem.allocatePage` runs it synchronously when free memory
// is below the minimum, and again when an allocation fails.
// Invariants: a page is freed only after it is unmapped everywhere and, if dirty, its data is
// in the pager; busy pages (a fault or copy is using them), wired pages, pages of objects
// with paging in progress and pages of non-anonymous objects are never taken; a page whose
// pageout failed stays resident, dirty and active. The daemon never recurses (a run started
// inside a run returns at once).
// Locks: (o) each victim's object lock, taken one object at a time; one CPU today.

/// Counters of the pageout daemon.
public struct PageoutStatistics {
    /// Runs of the daemon.
    public var runs = 0
    /// Inactive pages examined.
    public var scanned = 0
    /// Pages moved from active to inactive.
    public var deactivated = 0
    /// Inactive pages sent back to active because they were referenced (second chance).
    public var reactivated = 0
    /// Clean pages freed without I/O.
    public var freedClean = 0
    /// Dirty pages written to swap and freed.
    public var laundered = 0
    /// Pageout I/O requests (clusters handed to a pager).
    public var launderClusters = 0
    /// Pages whose pageout failed (swap full, I/O error, no reservation).
    public var launderFailures = 0
    public init() {}
}

/// The pageout daemon of one VMSystem.
public final class PageoutDaemon {
    unowned(unsafe) let system: VMSystem
    /// Below this many free pages the allocator runs the daemon before handing out a page.
    public var freeMinimum = 32
    /// A run stops once this many pages are free.
    public var freeTarget = 64
    /// If set, the most pages the VM's objects may hold: free memory is at most this minus
    /// the resident pages (low-memory tests and boots with a memory limit).
    public var residentLimit: Int? = nil
    /// Page frames object pages never take: kept for the kernel's own allocations (heap,
    /// page tables, pv entries, index nodes) while the daemon catches up. Without it a fault
    /// under pressure could take the last frame and the next heap allocation would trap.
    /// (FreeBSD's v_free_reserved.)
    public var freeReserved = 16
    public var statistics = PageoutStatistics()
    private var isRunning = false

    init(system: VMSystem) { self.system = system }

    /// Free pages as the daemon counts them: the frames object pages may still take (free
    /// frames minus the reserve), capped by the resident limit if there is one.
    public var freePages: Int {
        let frames = max(0, system.pages.count(of: .free) + physicalPages.freePages - freeReserved)
        guard let residentLimit else { return frames }
        return min(frames, max(0, residentLimit - system.residentPageTotal))
    }

    /// True when free memory is below the minimum.
    public var isBelowMinimum: Bool { freePages < freeMinimum }

    /// True if `count` pages can be handed out now without passing the resident limit.
    public func hasRoom(for count: Int) -> Bool {
        freePages >= count
    }

    /// Frees pages until `freeTarget` pages are free or nothing more can go: deactivates
    /// active pages to refill the inactive queue, then scans it (second chance, free clean,
    /// launder dirty). `urgent`: run even above the minimum (an allocation failed).
    /// Returns the pages freed.
    @discardableResult
    public func run(urgent: Bool = false) -> Int {
        guard !isRunning, urgent || isBelowMinimum else { return 0 }
        isRunning = true
        defer { isRunning = false }
        statistics.runs += 1
        var freed = 0
        // Two passes: the first may only clear referenced bits (second chance).
        for _ in 0..<3 {
            let shortage = freeTarget - freePages
            if shortage <= 0 { break }
            refillInactive(wanted: 2 * shortage)
            freed += scanInactive(shortage: shortage)
        }
        return freed
    }

    /// The object a resident page belongs to, or nil (not an object's page).
    private func owner(of page: Page) -> VMObject? {
        guard let identity = page.object else { return nil }
        return Unmanaged<VMObject>.fromOpaque(identity).takeUnretainedValue()
    }

    /// True if the daemon may take `page` now (see the invariants).
    private func isEvictable(_ page: Page) -> VMObject? {
        guard !page.isBusy, page.wireCount == 0, let object = owner(of: page),
              object.isAnonymous, object.pagingInProgress == 0, !object.isTerminated else { return nil }
        return object
    }

    /// Moves up to `wanted` unreferenced pages from the head of the active queue to the
    /// inactive queue; referenced ones have the bit cleared and go to the active tail.
    private func refillInactive(wanted: Int) {
        var budget = system.pages.count(of: .active)
        var moved = 0
        while moved < wanted, budget > 0, let page = system.pages.first(of: .active) {
            budget -= 1
            if system.mappings.isReferenced(page) {
                system.mappings.clearReferenced(page)
                try? system.pages.activate(page)
                continue
            }
            try? system.pages.deactivate(page)
            statistics.deactivated += 1
            moved += 1
        }
    }

    /// Scans the inactive queue once from its head. Returns the pages freed.
    private func scanInactive(shortage: Int) -> Int {
        var budget = system.pages.count(of: .inactive)
        var freed = 0
        while freed < shortage, budget > 0, let page = system.pages.first(of: .inactive) {
            budget -= 1
            statistics.scanned += 1
            guard let object = isEvictable(page) else {
                try? system.pages.activate(page)
                continue
            }
            if system.mappings.isReferenced(page) {
                system.mappings.clearReferenced(page)
                try? system.pages.activate(page)
                statistics.reactivated += 1
                continue
            }
            if isClean(page, in: object) {
                evict(page, from: object)
                statistics.freedClean += 1
                freed += 1
                continue
            }
            let laundered = launder(around: page, in: object)
            freed += laundered
            budget -= max(0, laundered - 1)
        }
        return freed
    }

    /// Clean: the pager holds its data and no mapping (or earlier unmapping) modified it.
    private func isClean(_ page: Page, in object: VMObject) -> Bool {
        object.pagerHasData(at: page.offset) && !system.mappings.isModified(page)
    }

    /// Unmaps `page`, takes it out of `object` and frees it.
    private func evict(_ page: Page, from object: VMObject) {
        do {
            let removed = try object.remove(at: page.offset)
            precondition(removed == page, "PageoutDaemon.evict: page not where its record says")
        } catch {
            preconditionFailure("PageoutDaemon.evict: resident page not in its object")
        }
        system.releasePage(page)
    }

    /// A pageout candidate next to the victim: inactive, evictable, unreferenced.
    private func isClusterable(_ page: Page?, in object: VMObject) -> Bool {
        guard let page, page.queue == .inactive, isEvictable(page) === object else { return false }
        return !system.mappings.isReferenced(page)
    }

    /// Writes `page` and its inactive, unreferenced neighbours in `object` (consecutive
    /// offsets, at most `SwapPager.clusterPages`) to the object's swap pager in one call,
    /// then frees every page written. A page that fails stays resident, dirty and active.
    /// Returns the pages freed.
    private func launder(around page: Page, in object: VMObject) -> Int {
        guard let pager = object.swapPager() else {
            try? system.pages.activate(page)
            statistics.launderFailures += 1
            return 0
        }
        let limit = UInt64(SwapPager.clusterPages)
        var low = page.offset
        var high = page.offset + pageSize
        while (high - low) >> pageShift < limit, low >= pageSize, isClusterable(object.page(at: low - pageSize), in: object) {
            low -= pageSize
        }
        while (high - low) >> pageShift < limit, high < object.size, isClusterable(object.page(at: high), in: object) {
            high += pageSize
        }
        var cluster: [(offset: UInt64, page: Page)] = []
        var offset = low
        while offset < high {
            if let member = object.page(at: offset) {
                // Unmapped first: no write can slip in after the copy is taken, and the
                // hardware's dirty bit is folded into the page record.
                system.mappings.removeAll(member)
                _ = system.pages.tryBusy(member)
                cluster.append((offset + object.pagerOffset, member))
            }
            offset += pageSize
        }
        object.pagingInProgress += 1
        let results = pager.pageOut(batch: cluster)
        object.pagingInProgress -= 1
        statistics.launderClusters += 1
        var freed = 0
        for (position, entry) in cluster.enumerated() {
            try? system.pages.unbusy(entry.page)
            if results[position] != nil {
                entry.page.markDirty()
                try? system.pages.activate(entry.page)
                statistics.launderFailures += 1
                continue
            }
            system.mappings.clearModified(entry.page)
            evict(entry.page, from: object)
            statistics.laundered += 1
            freed += 1
        }
        return freed
    }
}
