// Pageout: the pageout daemon. Keeps free page frames between a minimum and a target by
// scanning the paging queues: the active queue's oldest unreferenced pages are deactivated;
// the inactive queue's pages get a second chance if the pmap saw them referenced (back to
// active), are freed at once if clean (their pager holds a valid copy and no mapping
// modified them), and are laundered otherwise: dirty anonymous pages go to the object's swap
// pager (created, with its swap reservation, at the first pageout) in clusters of up to
// `SwapPager.clusterPages` consecutive offsets, one asynchronous I/O per cluster.
// Laundry is asynchronous: a run starts cluster writes (at most `maxLaundryWrites` in
// flight) and returns; the next run, an allocation that finds no room, or anyone who needs
// one of the pages collects finished writes and frees the pages written (FreeBSD's laundry
// queue, without a thread). Pages in flight count toward the target, so a run does not
// start more writes than the shortage needs.
// There are no kernel threads: `VMSystem.allocatePage` runs it synchronously when free memory
// is below the minimum, and again when an allocation fails.
// Invariants: a page is freed only after it is unmapped everywhere and, if dirty, its data is
// in the pager; busy pages (a fault or copy is using them), wired pages, pages of objects
// with page-ins in progress and pages of non-anonymous objects are never taken; a page whose
// pageout failed stays resident, dirty and active. A laundering page is busy, unmapped, on no
// queue and still resident in its object, which counts each of its laundry writes in both
// `pagingInProgress` and `laundryWrites`; nothing but the daemon changes such a page, and
// whoever wants it (a fault, removal, collapse, termination, swapoff) first settles the
// object's laundry (`settle`). The daemon never recurses (a run started inside a run
// returns at once).
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
    /// Laundry writes started and not yet collected, at their most (one run's or more).
    public var peakLaundryWrites = 0
    /// Laundry writes collected at a later run or call than the one that started them.
    public var laundryFinishedLater = 0
    /// Times someone waited for a laundry write (no room for an allocation, a fault on a
    /// page in flight, an object going away).
    public var laundryWaits = 0
    /// Pages a fault wanted while they were in flight, kept resident (clean) afterwards.
    public var laundryPagesKept = 0
    public init() {}
}

/// The pageout daemon of one VMSystem.
public final class PageoutDaemon {
    unowned(unsafe) let system: VMSystem
    /// Below this many free pages the allocator runs the daemon before handing out a page.
    public var freeMinimum = 32
    /// A run stops once this many pages are free (pages in the laundry count as free).
    public var freeTarget = 64
    /// If set, the most pages the VM's objects may hold: free memory is at most this minus
    /// the resident pages (low-memory tests and boots with a memory limit).
    public var residentLimit: Int? = nil
    /// Page frames object pages never take: kept for the kernel's own allocations (heap,
    /// page tables, pv entries, index nodes) while the daemon catches up. Without it a fault
    /// under pressure could take the last frame and the next heap allocation would trap.
    /// (FreeBSD's v_free_reserved.)
    public var freeReserved = 16
    /// Most laundry cluster writes on the devices at once; starting one more first waits for
    /// the oldest.
    public var maxLaundryWrites = 8
    public var statistics = PageoutStatistics()
    private var isRunning = false

    /// One cluster in flight: its object, the object's swap pager and the pager's batch.
    private struct LaundryWrite {
        let object: VMObject
        let pager: SwapPager
        var batch: SwapPager.PageOutBatch
        /// The run that started it (statistics: collected later or not).
        let run: Int
    }

    /// Laundry writes in flight, oldest first.
    private var laundry: [LaundryWrite] = []
    /// Pages of the writes in flight.
    public private(set) var pagesInLaundry = 0
    /// Laundry writes in flight.
    public var laundryWrites: Int { laundry.count }

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

    /// Frees pages until `freeTarget` pages are free (or on their way: in the laundry) or
    /// nothing more can go: collects finished laundry, deactivates active pages to refill
    /// the inactive queue, then scans it (second chance, free clean, launder dirty).
    /// `urgent`: run even above the minimum (an allocation failed). Returns the pages freed
    /// or put in the laundry.
    @discardableResult
    public func run(urgent: Bool = false) -> Int {
        guard !isRunning else { return 0 }
        collectLaundry()
        guard urgent || isBelowMinimum else { return 0 }
        isRunning = true
        defer { isRunning = false }
        statistics.runs += 1
        var freed = 0
        // Two passes: the first may only clear referenced bits (second chance).
        for _ in 0..<3 {
            let shortage = freeTarget - freePages - pagesInLaundry
            if shortage <= 0 { break }
            refillInactive(wanted: 2 * shortage)
            freed += scanInactive(shortage: shortage)
        }
        return freed
    }

    // MARK: Laundry in flight

    /// Collects every laundry write that has completed, without waiting.
    public func collectLaundry() {
        var position = 0
        while position < laundry.count {
            if laundry[position].pager.finishPageOut(&laundry[position].batch, wait: false) {
                finish(laundry.remove(at: position), keeping: nil)
            } else {
                position += 1
            }
        }
    }

    /// Waits for the oldest laundry write and collects it. Returns the pages it freed, nil
    /// if none is in flight.
    @discardableResult
    public func waitForLaundry() -> Int? {
        guard !laundry.isEmpty else { return nil }
        statistics.laundryWaits += 1
        var oldest = laundry.removeFirst()
        oldest.pager.finishPageOut(&oldest.batch, wait: true)
        return finish(oldest, keeping: nil)
    }

    /// Waits for every laundry write of `object` (all objects if nil) and collects them;
    /// `keeping` stays resident (clean, active) instead of being freed, because a fault
    /// wants it. Afterwards no page of `object` is laundering.
    public func settle(_ object: VMObject?, keeping: Page? = nil) {
        var position = 0
        var waited = false
        while position < laundry.count {
            guard object == nil || laundry[position].object === object else {
                position += 1
                continue
            }
            if !waited { statistics.laundryWaits += 1; waited = true }
            var write = laundry.remove(at: position)
            write.pager.finishPageOut(&write.batch, wait: true)
            finish(write, keeping: keeping)
        }
    }

    /// Takes back the pages of a finished write: written ones are freed (or kept, if
    /// `keeping`), failed ones stay resident, dirty and active. Returns the pages freed.
    @discardableResult
    private func finish(_ write: LaundryWrite, keeping: Page?) -> Int {
        var freed = 0
        write.object.pagingInProgress -= 1
        write.object.laundryWrites -= 1
        let collectedByItsRun = isRunning && write.run == statistics.runs
        if !collectedByItsRun { statistics.laundryFinishedLater += 1 }
        for (position, entry) in write.batch.pages.enumerated() {
            let page = entry.page
            page.setLaundering(false)
            do { try system.pages.unbusy(page) } catch {
                preconditionFailure("PageoutDaemon.finish: laundering page was not busy")
            }
            pagesInLaundry -= 1
            if write.batch.results[position] != nil {
                page.markDirty()
                try? system.pages.activate(page)
                statistics.launderFailures += 1
                continue
            }
            system.mappings.clearModified(page)
            statistics.laundered += 1
            if page == keeping {
                try? system.pages.activate(page)
                statistics.laundryPagesKept += 1
            } else {
                evict(page, from: write.object)
                freed += 1
            }
        }
        return freed
    }

    // MARK: Scanning

    /// The object a resident page belongs to, or nil (not an object's page).
    private func owner(of page: Page) -> VMObject? {
        guard let identity = page.object else { return nil }
        return Unmanaged<VMObject>.fromOpaque(identity).takeUnretainedValue()
    }

    /// True if the daemon may take `page` now (see the invariants). Other laundry writes of
    /// the same object do not stop it; a page-in or clean in progress does.
    private func isEvictable(_ page: Page) -> VMObject? {
        guard !page.isBusy, page.wireCount == 0, let object = owner(of: page), object.isAnonymous,
              object.pagingInProgress == object.laundryWrites, !object.isTerminated else { return nil }
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

    /// Scans the inactive queue once from its head. Returns the pages freed or put in the
    /// laundry.
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
            let started = launder(around: page, in: object)
            freed += started
            budget -= max(0, started - 1)
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

    /// Starts writing `page` and its inactive, unreferenced neighbours in `object`
    /// (consecutive offsets, at most `SwapPager.clusterPages`) to the object's swap pager as
    /// one laundry write; the pages are freed when it is collected. Returns the pages
    /// started (0 if the object cannot get a swap pager: the page goes back to active).
    private func launder(around page: Page, in object: VMObject) -> Int {
        guard let pager = object.swapPager() else {
            try? system.pages.activate(page)
            statistics.launderFailures += 1
            return 0
        }
        while laundry.count >= maxLaundryWrites { waitForLaundry() }
        let cluster = gatherCluster(around: page, in: object)
        object.pagingInProgress += 1
        object.laundryWrites += 1
        let write = LaundryWrite(object: object, pager: pager, batch: pager.startPageOut(cluster), run: statistics.runs)
        statistics.launderClusters += 1
        pagesInLaundry += cluster.count
        guard !write.batch.isFinished else {
            // Nothing went to a device (no swap block): the results are final already.
            finish(write, keeping: nil)
            return write.batch.results.count { $0 == nil }
        }
        laundry.append(write)
        statistics.peakLaundryWrites = max(statistics.peakLaundryWrites, laundry.count)
        return cluster.count
    }

    /// The cluster around `page`: its clusterable neighbours, each unmapped (so no write can
    /// slip in after the device takes its copy, and the hardware's dirty bit is folded into
    /// the record), busy, laundering and off the queues. Swap page indices, ascending.
    private func gatherCluster(around page: Page, in object: VMObject) -> [(index: UInt64, page: Page)] {
        let limit = UInt64(SwapPager.clusterPages)
        var low = page.offset
        var high = page.offset + pageSize
        while (high - low) >> pageShift < limit, low >= pageSize, isClusterable(object.page(at: low - pageSize), in: object) {
            low -= pageSize
        }
        while (high - low) >> pageShift < limit, high < object.size, isClusterable(object.page(at: high), in: object) {
            high += pageSize
        }
        var cluster: [(index: UInt64, page: Page)] = []
        cluster.reserveCapacity(Int((high - low) >> pageShift))
        var offset = low
        while offset < high {
            if let member = object.page(at: offset) {
                system.mappings.removeAll(member)
                guard system.pages.tryBusy(member) else { preconditionFailure("PageoutDaemon: cluster page already busy") }
                member.setLaundering(true)
                try? system.pages.dequeue(member)
                cluster.append(((offset + object.pagerOffset) >> pageShift, member))
            }
            offset += pageSize
        }
        return cluster
    }
}
