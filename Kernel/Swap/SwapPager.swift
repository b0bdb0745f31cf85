// SwapPager: backing store of an anonymous VM object in swap space — per-object metadata
// (SwapMetadata), pagein with read-ahead, clustered pageout, error handling and checksums.
// Invariants:
//  - Every slot in `metadata` names a block that is in use in `space` and holds the page
//    whose checksum the slot records; no block is named by two slots (of any pager).
//  - A page's data is written to a new block before its old slot is replaced, so a failed
//    pageout never loses the previous copy; the old block is freed only after success.
//  - Pageout writes are asynchronous: `startPageOut` puts a batch's cluster writes on the
//    devices and returns, `finishPageOut` collects what completed; a slot is recorded only
//    after its write completed, and a failed cluster is retried at once page by page. The
//    synchronous `pageOut` keeps at most `maxWritesInFlight` cluster writes on the devices;
//    the pageout daemon keeps batches in flight across its runs (Kernel/VM/Pageout.swift).
//  - Write error: the failing block is quarantined (for good: SwapSpace lists it in the
//    device's header, so it stays out after swapoff and swapon), the page is retried on
//    another block (`writeAttempts` in all); if every attempt fails the page is reported and
//    stays dirty (the caller keeps it resident). Read error or checksum mismatch: only that page is
//    reported; other pages of the same read-ahead are unaffected.
//  - A pagein keeps the slot (the page is clean and can be dropped again without a write);
//    the VM discards it when the page is dirtied or freed.
//  - Read-ahead is symmetric (up to `readAheadPages` each way) unless the fault is where the
//    previous pagein's window ended (`sequentialNext`): then the access is sequential, as
//    FreeBSD's vm_fault detects it, and the whole window (`sequentialReadAheadPages`) goes
//    ahead, none behind (behind was just read).
// Offsets on the Pager protocol are bytes; internally everything is a page index.
// Locks: (o) the owning object's lock; SwapSpace calls are serialised by the caller.

/// Why a swap pager operation failed for a page.
public enum SwapPagerError: Error, Equatable {
    /// No swap block could be allocated (swap full, or no device).
    case noSpace
    /// The device failed the transfer (after the retries, for writes).
    case io(BlockDeviceError)
    /// The data read back does not match the checksum recorded at pageout.
    case corrupted
    /// The pager holds no data at that index.
    case noData
    /// The index is at or past `SwapMetadata.maximumIndex` (or the offset is not aligned).
    case offsetOutOfRange
    /// The page was written but its slot could not be recorded (no memory for metadata):
    /// the block went back and the page stays dirty.
    case outOfMemory

    /// The same failure as the VM's pager protocol names it.
    public var pagerError: PagerError {
        switch self {
        case .noSpace: return .noSpace
        case .noData, .offsetOutOfRange: return .noData
        case .io: return .ioError
        case .corrupted: return .corrupted
        case .outOfMemory: return .outOfMemory
        }
    }
}

/// The pages to read around a faulting page: indices `indices` live in consecutive swap
/// blocks starting at `firstBlock`.
public struct PageInPlan: Equatable {
    public var indices: Range<UInt64>
    public var firstBlock: UInt64

    public init(indices: Range<UInt64>, firstBlock: UInt64) {
        self.indices = indices
        self.firstBlock = firstBlock
    }
}

/// The swap pager of one object.
public final class SwapPager: Pager {
    /// Most pages read on each side of the faulting page.
    public static var readAheadPages: UInt64 { 7 }
    /// Most pages read ahead of a sequential fault (one pageout cluster's worth in all).
    public static var sequentialReadAheadPages: UInt64 { UInt64(clusterPages) - 1 }
    /// Most pages written by one pageout I/O.
    public static var clusterPages: Int { 16 }
    /// Blocks tried per page before a write error is reported.
    public static var writeAttempts: Int { 3 }

    /// The swap space the blocks come from.
    public let space: SwapSpace
    /// Page index -> slot.
    public private(set) var metadata: SwapMetadata
    /// Counters for tests and benchmarks.
    public private(set) var pageInReads: UInt64 = 0
    public private(set) var pageOutWrites: UInt64 = 0
    /// Pageins whose fault was sequential (read ahead only).
    public private(set) var sequentialPageIns: UInt64 = 0
    /// The index just past the last pagein's window: a fault there is sequential.
    private var sequentialNext: UInt64? = nil

    /// A pager over `space` for an object of about `pageCountHint` pages.
    public init(space: SwapSpace, pageCountHint: UInt64) {
        self.space = space
        metadata = SwapMetadata(pageCountHint: pageCountHint)
    }

    // MARK: Planning

    /// The read-ahead for a fault on `index`: the faulting page plus up to `readAheadPages`
    /// pages on each side whose blocks continue the faulting page's block contiguously,
    /// stopping at `bounds` (the object's pages) and at pages `isResident` says are present
    /// (their data is newer). A sequential fault (see the header) reads up to
    /// `sequentialReadAheadPages` ahead and none behind. Nil if the pager holds no data for
    /// `index`.
    public func readAheadPlan(around index: UInt64, within bounds: Range<UInt64>,
                              isResident: (UInt64) -> Bool) -> PageInPlan? {
        guard bounds.contains(index), let center = metadata.slot(at: index) else { return nil }
        let block = UInt64(center.block)
        let isSequential = index == sequentialNext
        let behind = isSequential ? 0 : SwapPager.readAheadPages
        let ahead = isSequential ? SwapPager.sequentialReadAheadPages : SwapPager.readAheadPages
        var low = index
        while index - low < behind, low > bounds.lowerBound, !isResident(low - 1),
              let slot = metadata.slot(at: low - 1), index - (low - 1) <= block,
              UInt64(slot.block) == block - (index - (low - 1)) {
            low -= 1
        }
        var high = index + 1
        while high - index - 1 < ahead, high < bounds.upperBound, !isResident(high),
              let slot = metadata.slot(at: high), UInt64(slot.block) == block + (high - index) {
            high += 1
        }
        return PageInPlan(indices: low..<high, firstBlock: block - (index - low))
    }

    /// Splits the ascending page indices `dirty` into pageout clusters: runs of consecutive
    /// indices of at most `clusterPages` pages (consecutive, so that a later fault's
    /// read-ahead finds them in consecutive blocks).
    public static func clusters(of dirty: [UInt64]) -> [Range<UInt64>] {
        var clusters: [Range<UInt64>] = []
        var start: UInt64? = nil
        var end: UInt64 = 0
        for index in dirty {
            if let first = start, index == end, end - first < UInt64(clusterPages) {
                end += 1
            } else {
                if let first = start { clusters.append(first..<end) }
                start = index
                end = index + 1
            }
        }
        if let first = start { clusters.append(first..<end) }
        return clusters
    }

    // MARK: Pagein

    /// Reads `plan` into `pages` (one page per index of the plan, in order) with one I/O,
    /// verifies every checksum, and returns one result per page: nil when the page holds its
    /// data, else why not. If the I/O fails, each page is retried alone so one bad block
    /// costs only its own page.
    public func pageIn(_ pages: [Page], plan: PageInPlan) -> [SwapPagerError?] {
        precondition(UInt64(pages.count) == UInt64(plan.indices.count), "SwapPager.pageIn: one page per planned index")
        var results = [SwapPagerError?](repeating: nil, count: pages.count)
        for (position, index) in plan.indices.enumerated() {
            guard let slot = metadata.slot(at: index), UInt64(slot.block) == plan.firstBlock + UInt64(position) else {
                preconditionFailure("SwapPager.pageIn: plan does not match the metadata")
            }
        }
        let frames = pages.map { $0.physicalAddress }
        pageInReads += 1
        if plan.indices.lowerBound == sequentialNext { sequentialPageIns += 1 }
        sequentialNext = plan.indices.upperBound
        do {
            try space.read(start: plan.firstBlock, into: frames)
        } catch {
            if pages.count == 1 {
                results[0] = SwapPager.ioError(error)
                return results
            }
            for position in pages.indices {
                pageInReads += 1
                do { try space.read(start: plan.firstBlock + UInt64(position), into: [frames[position]]) } catch {
                    results[position] = SwapPager.ioError(error)
                }
            }
        }
        for (position, index) in plan.indices.enumerated() where results[position] == nil {
            if SwapChecksum.of(pages[position].contents) != metadata.slot(at: index)!.checksum {
                results[position] = .corrupted
            }
        }
        return results
    }

    /// Reads page `index` alone into `page`. Throws `noData`, `io(error)` or `corrupted`.
    public func pageIn(_ page: Page, index: UInt64) throws(SwapPagerError) {
        guard let slot = metadata.slot(at: index) else { throw .noData }
        if let error = pageIn([page], plan: PageInPlan(indices: index..<(index + 1), firstBlock: UInt64(slot.block)))[0] {
            throw error
        }
    }

    // MARK: Pageout

    /// A pageout started by `startPageOut`: its pages, their results so far and its cluster
    /// writes still on the devices. The pages must not change until `finishPageOut` says the
    /// batch is finished (the devices read them).
    public struct PageOutBatch {
        public let pages: [(index: UInt64, page: Page)]
        /// One per page: nil when its data is in swap (final once the batch finished).
        public fileprivate(set) var results: [SwapPagerError?]
        fileprivate var writes: [ClusterWrite] = []
        /// Cluster writes still on the devices.
        public var writesInFlight: Int { writes.count }
        public var isFinished: Bool { writes.isEmpty }
    }

    /// Starts writing `pages` (ascending, distinct indices): consecutive indices go in
    /// clusters of up to `clusterPages` pages on consecutive blocks, each an asynchronous
    /// write, and it returns without waiting. Pages that cannot start (no block, index out of
    /// range) have their result already. Slots are recorded only by `finishPageOut`.
    public func startPageOut(_ pages: [(index: UInt64, page: Page)]) -> PageOutBatch {
        var batch = PageOutBatch(pages: pages, results: [SwapPagerError?](repeating: nil, count: pages.count))
        for (position, entry) in pages.enumerated() where entry.index >= SwapMetadata.maximumIndex {
            batch.results[position] = .offsetOutOfRange
        }
        for cluster in clusterPositions(of: pages, results: batch.results) {
            var cursor = cluster.lowerBound
            while cursor < cluster.upperBound {
                let run: BlockRun
                do { run = try space.allocate(upTo: UInt64(cluster.upperBound - cursor)) } catch {
                    for rest in cursor..<cluster.upperBound { batch.results[rest] = .noSpace }
                    break
                }
                let count = Int(run.count)
                batch.writes.append(startWrite(pages, cursor..<(cursor + count), at: run.start))
                cursor += count
            }
        }
        return batch
    }

    /// Positions of `pages` forming clusters: runs of consecutive indices without a result,
    /// at most `clusterPages` long.
    private func clusterPositions(of pages: [(index: UInt64, page: Page)], results: [SwapPagerError?]) -> [Range<Int>] {
        var clusters: [Range<Int>] = []
        var position = 0
        while position < pages.count {
            guard results[position] == nil else { position += 1; continue }
            var end = position + 1
            while end < pages.count, end - position < SwapPager.clusterPages, results[end] == nil,
                  pages[end].index == pages[end - 1].index + 1 {
                end += 1
            }
            clusters.append(position..<end)
            position = end
        }
        return clusters
    }

    /// Starts the write of `pages[positions]` to blocks from `block` (allocated for them).
    private func startWrite(_ pages: [(index: UInt64, page: Page)], _ positions: Range<Int>, at block: UInt64) -> ClusterWrite {
        var checksums: [UInt32] = []
        var frames: [PhysicalAddress] = []
        checksums.reserveCapacity(positions.count)
        frames.reserveCapacity(positions.count)
        for position in positions {
            checksums.append(SwapChecksum.of(pages[position].page.contents))
            frames.append(pages[position].page.physicalAddress)
        }
        pageOutWrites += 1
        writesInFlight += 1
        peakWritesInFlight = max(peakWritesInFlight, writesInFlight)
        return ClusterWrite(first: positions.lowerBound, blockStart: block, checksums: checksums,
                            pending: space.startWrite(start: block, from: frames))
    }

    /// Collects the writes of `batch` that have completed (waiting for all of them if
    /// `wait`): records their slots, and retries a failed cluster at once page by page (each
    /// page alone on its own block, quarantining bad ones). Returns true when the batch is
    /// finished and `batch.results` final.
    @discardableResult
    public func finishPageOut(_ batch: inout PageOutBatch, wait: Bool) -> Bool {
        var position = 0
        while position < batch.writes.count {
            space.pollWrite(&batch.writes[position].pending, wait: wait)
            guard batch.writes[position].pending.isComplete else {
                position += 1
                continue
            }
            let write = batch.writes.remove(at: position)
            writesInFlight -= 1
            complete(write, batch.pages, &batch.results)
        }
        return batch.isFinished
    }

    /// Writes `pages` (ascending, distinct indices) to swap and returns one result per page
    /// in input order: nil when the page's data is now in swap (the caller may mark it
    /// clean), else the error (the page must stay dirty and resident). Clusters are started
    /// with `startPageOut`, at most `maxWritesInFlight` cluster writes on the devices at
    /// once, and every one is finished before it returns.
    public func pageOut(_ pages: [(index: UInt64, page: Page)]) -> [SwapPagerError?] {
        var results = [SwapPagerError?](repeating: nil, count: pages.count)
        for (position, entry) in pages.enumerated() where entry.index >= SwapMetadata.maximumIndex {
            results[position] = .offsetOutOfRange
        }
        var inFlight: [(batch: PageOutBatch, first: Int)] = []
        func finishOldest() {
            var oldest = inFlight.removeFirst()
            finishPageOut(&oldest.batch, wait: true)
            for (offset, result) in oldest.batch.results.enumerated() { results[oldest.first + offset] = result }
        }
        for cluster in clusterPositions(of: pages, results: results) {
            while inFlight.reduce(0, { $0 + $1.batch.writesInFlight }) >= SwapPager.maxWritesInFlight { finishOldest() }
            inFlight.append((startPageOut(Array(pages[cluster])), cluster.lowerBound))
        }
        while !inFlight.isEmpty { finishOldest() }
        return results
    }

    /// Most cluster writes `pageOut` keeps on the devices at once.
    public static var maxWritesInFlight: Int { 4 }
    /// Cluster writes of this pager on the devices now.
    public private(set) var writesInFlight = 0
    /// The most cluster writes ever in flight together (tests, benchmarks).
    public private(set) var peakWritesInFlight = 0

    /// One asynchronous cluster write: pages[first ..< first + checksums.count] to blocks
    /// from blockStart.
    fileprivate struct ClusterWrite {
        var first: Int
        var blockStart: UInt64
        var checksums: [UInt32]
        var pending: SwapSpace.PendingWrite
    }

    /// Takes the completed `write`: records its slots on success (a slot that cannot be
    /// recorded is that page's failure), else retries each of its pages alone.
    private func complete(_ write: ClusterWrite, _ pages: [(index: UInt64, page: Page)], _ results: inout [SwapPagerError?]) {
        var failed = false
        do { try space.finishWrite(write.pending) } catch { failed = true }
        for offset in write.checksums.indices {
            let position = write.first + offset
            if failed {
                results[position] = writeAlone(pages[position], checksum: write.checksums[offset],
                                               firstBlock: write.blockStart + UInt64(offset))
            } else {
                let slot = SwapSlot(block: UInt32(write.blockStart) + UInt32(offset), checksum: write.checksums[offset])
                results[position] = record(slot, at: pages[position].index)
            }
        }
    }

    /// Writes one page to `firstBlock` (already allocated to it), quarantining each block that
    /// fails and trying freshly allocated ones, `writeAttempts` blocks in all.
    private func writeAlone(_ entry: (index: UInt64, page: Page), checksum: UInt32, firstBlock: UInt64) -> SwapPagerError? {
        var block = firstBlock
        var lastError = BlockDeviceError.ioError
        for attempt in 0..<SwapPager.writeAttempts {
            if attempt > 0 {
                do { block = try space.allocate(upTo: 1).start } catch { return .noSpace }
            }
            pageOutWrites += 1
            do {
                try space.write(start: block, from: [entry.page.physicalAddress])
                return record(SwapSlot(block: UInt32(block), checksum: checksum), at: entry.index)
            } catch {
                if case .io(let deviceError) = error { lastError = deviceError }
                do { try space.quarantine(block) } catch {
                    preconditionFailure("SwapPager.writeAlone: failed block not in use")
                }
            }
        }
        return .io(lastError)
    }

    /// Enters `slot` for `index`, freeing the block of the slot it replaces. When the
    /// metadata cannot grow, frees the slot's own block instead (the old copy stays valid)
    /// and returns `outOfMemory`.
    private func record(_ slot: SwapSlot, at index: UInt64) -> SwapPagerError? {
        do {
            if let old = try metadata.insert(slot, at: index) { release(old) }
            return nil
        } catch {
            release(slot)
            return .outOfMemory
        }
    }

    private func release(_ slot: SwapSlot) {
        do { try space.free(start: UInt64(slot.block), count: 1) } catch {
            preconditionFailure("SwapPager: a slot names a block that is not in use")
        }
    }

    private static func ioError(_ error: SwapError) -> SwapPagerError {
        if case .io(let deviceError) = error { return .io(deviceError) }
        return .io(.ioError)
    }

    // MARK: Forgetting

    /// Frees the blocks of every page in `indices` (pages dirtied again or freed).
    public func discard(indices: Range<UInt64>) {
        metadata.removeRange(indices) { _, slot in release(slot) }
    }

    /// Frees everything.
    public func releaseAll() {
        metadata.removeAll { _, slot in release(slot) }
    }

    /// Collapse: takes `source`'s slots for source indices `indices`, the slot of source
    /// index `s` landing at `s - indices.lowerBound + destinationStart`; where `hasNewer`
    /// says the surviving object has a resident page, or this pager already holds that
    /// index, the source's block is freed instead. Returns false, changing nothing, when the
    /// source uses another swap space, is this pager, or a destination index would pass
    /// `SwapMetadata.maximumIndex`.
    public func absorb(_ source: SwapPager, indices: Range<UInt64>, destinationStart: UInt64,
                       hasNewer: (UInt64) -> Bool) -> Bool {
        guard source !== self, source.space === space else { return false }
        guard !indices.isEmpty else { return true }
        let (last, overflow) = destinationStart.addingReportingOverflow(UInt64(indices.count))
        guard !overflow, last <= SwapMetadata.maximumIndex else { return false }
        do {
            try metadata.transfer(from: &source.metadata, range: indices, destinationStart: destinationStart,
                                  hasNewer: hasNewer, release: { release($0) })
        } catch {
            return false   // Out of metadata memory: what moved is here, the rest still there.
        }
        return true
    }

    // MARK: Pager protocol (byte offsets)

    private static func index(of offset: UInt64) -> UInt64? {
        guard offset & (pageSize - 1) == 0 else { return nil }
        let index = offset >> pageShift
        return index < SwapMetadata.maximumIndex ? index : nil
    }

    /// Page indices covering the byte range (partial pages included), clipped to the index limit.
    private static func indices(of range: Range<UInt64>) -> Range<UInt64> {
        let low = min(range.lowerBound >> pageShift, SwapMetadata.maximumIndex)
        let upper = range.upperBound >> pageShift + (range.upperBound & (pageSize - 1) == 0 ? 0 : 1)
        return low..<max(low, min(upper, SwapMetadata.maximumIndex))
    }

    public func hasData(at offset: UInt64) -> Bool {
        guard let index = SwapPager.index(of: offset) else { return false }
        return metadata.slot(at: index) != nil
    }

    public func pageIn(_ page: Page, at offset: UInt64) throws(PagerError) {
        guard let index = SwapPager.index(of: offset) else { throw .noData }
        do { try pageIn(page, index: index) } catch { throw error.pagerError }
    }

    public func pageOut(_ page: Page, at offset: UInt64) throws(PagerError) {
        guard let index = SwapPager.index(of: offset) else { throw .noSpace }
        if let error = pageOut([(index, page)])[0] { throw error.pagerError }
    }

    public func discard(_ range: Range<UInt64>) {
        discard(indices: SwapPager.indices(of: range))
    }

    public var dataPageCount: Int? { metadata.count }

    public func forEachOffsetWithData(in range: Range<UInt64>, _ body: (UInt64) -> Bool) -> Bool {
        metadata.forEachWhile(in: SwapPager.indices(of: range)) { index, _ in
            let offset = index << pageShift
            return !range.contains(offset) || body(offset)
        }
    }

    public func offsetsWithData(in range: Range<UInt64>) -> [UInt64] {
        var offsets: [UInt64] = []
        metadata.forEach(in: SwapPager.indices(of: range)) { index, _ in
            let offset = index << pageShift
            if range.contains(offset) { offsets.append(offset) }
        }
        return offsets
    }

    public func absorb(_ source: any Pager, range: Range<UInt64>, destinationStart: UInt64,
                       keep: (UInt64) -> Bool) -> Bool {
        guard let source = source as? SwapPager,
              range.lowerBound & (pageSize - 1) == 0, destinationStart & (pageSize - 1) == 0 else { return false }
        return absorb(source, indices: SwapPager.indices(of: range), destinationStart: destinationStart >> pageShift) { index in
            keep(index << pageShift)
        }
    }

    public func terminate() {
        releaseAll()
        if reservedPages > 0 {
            try? space.unreserve(reservedPages)
            reservedPages = 0
        }
    }

    // MARK: Batch Pager calls (byte offsets)

    public func readAhead(around offset: UInt64, within bounds: Range<UInt64>,
                          isResident: (UInt64) -> Bool) -> Range<UInt64> {
        guard let index = SwapPager.index(of: offset) else { return offset..<(offset + pageSize) }
        let pageBounds = SwapPager.indices(of: bounds)
        guard let plan = readAheadPlan(around: index, within: pageBounds, isResident: { isResident($0 << pageShift) }) else {
            return offset..<(offset + pageSize)
        }
        return (plan.indices.lowerBound << pageShift)..<(plan.indices.upperBound << pageShift)
    }

    public func pageIn(batch pages: [Page], at offsets: Range<UInt64>) -> [PagerError?] {
        let indices = SwapPager.indices(of: offsets)
        guard UInt64(indices.count) == UInt64(pages.count), let first = metadata.slot(at: indices.lowerBound) else {
            return [PagerError?](repeating: .noData, count: pages.count)
        }
        // Only a run on consecutive blocks is one read; otherwise page by page.
        var consecutive = true
        for (position, index) in indices.enumerated() where metadata.slot(at: index)?.block != first.block + UInt32(position) {
            consecutive = false
        }
        if consecutive {
            return pageIn(pages, plan: PageInPlan(indices: indices, firstBlock: UInt64(first.block))).map { $0?.pagerError }
        }
        var results = [PagerError?](repeating: nil, count: pages.count)
        for (position, index) in indices.enumerated() {
            do { try pageIn(pages[position], index: index) } catch { results[position] = error.pagerError }
        }
        return results
    }

    public func pageOut(batch pages: [(offset: UInt64, page: Page)]) -> [PagerError?] {
        var results = [PagerError?](repeating: nil, count: pages.count)
        var batch: [(index: UInt64, page: Page)] = []
        var positions: [Int] = []
        for (position, entry) in pages.enumerated() {
            guard let index = SwapPager.index(of: entry.offset) else { results[position] = .noSpace; continue }
            batch.append((index, entry.page))
            positions.append(position)
        }
        for (slot, result) in pageOut(batch).enumerated() { results[positions[slot]] = result?.pagerError }
        return results
    }

    // MARK: Reservation

    /// Swap pages reserved in `space` for this pager's object (returned by `terminate`).
    public private(set) var reservedPages: UInt64 = 0

    /// Reserves `pages` more swap pages for the object. Throws `overcommitted`.
    public func reserve(_ pages: UInt64) throws(SwapError) {
        try space.reserve(pages)
        reservedPages += pages
    }
}
