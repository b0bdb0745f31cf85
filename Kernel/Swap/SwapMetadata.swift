// SwapMetadata: where each paged-out page of one object lives — page index -> swap slot
// (a swap block and the checksum of the page written there).
// Invariants:
//  - A slot is packed in one word: block in the high 32 bits, checksum in the low 32;
//    `emptySlot` (all ones) means "no data". Block UInt32.max is therefore never a swap block
//    (SwapSpace caps the global block space below it).
//  - Small objects (at most `directLimit` pages, given at creation) keep a direct array indexed
//    by page index. Anything else is hashed: runs of `runPages` consecutive page indices,
//    named by key = index / runPages, live in a pool of page-sized chunks; an open-addressed
//    table (linear probing, backward-shift deletion, no tombstones) maps key -> pool run. A
//    direct array is exactly run 0, so converting it on the first index past it is a move.
//  - A run is in the table iff at least one of its slots is full; empty runs go back to the
//    pool's free list at once. `count` is the number of full slots, `runCount` of live runs.
//  - Table load stays at most 7/8 (probe sequences stay short) and, after a growth, at least
//    7/10: the table grows by a quarter, not by doubling, because its 8 bytes per bucket are
//    the whole overhead over 8 bytes per page. Any size works (bucket = high word of
//    hash * size), so the table need not be a power of two. Shrunk below 1/4.
// Why this shape: FreeBSD's swblk keeps 32 64-bit block numbers plus a pctrie node per run
// (8.25+ bytes per page, no checksum); NetBSD's uao hash keeps 16 int slots plus list links
// per element. Here a page costs 8 bytes *including* a checksum, the hash costs 8 bytes per
// bucket and the pool wastes at most one page, so a densely swapped object pays ~8.3 bytes
// per page (about 8.4 for a densely swapped object, measured by `memoryBytes` in
// SwapMetadataTests).
// Locks: none inside; the owning pager's object lock (o) serialises every call.

/// One paged-out page: the swap block holding it and the checksum of its contents.
public struct SwapSlot: Equatable {
    /// Global swap block (SwapSpace numbering), below `SwapSlot.maximumBlocks`.
    public var block: UInt32
    /// Checksum of the page as it was written (`SwapChecksum.of`).
    public var checksum: UInt32

    /// A slot for `block` holding a page whose checksum is `checksum`.
    public init(block: UInt32, checksum: UInt32) {
        self.block = block
        self.checksum = checksum
    }

    /// Swap blocks are numbered below this (UInt32.max is the empty marker).
    public static var maximumBlocks: UInt64 { UInt64(UInt32.max) }

    /// The packed word (block high, checksum low).
    var packed: UInt64 { UInt64(block) << 32 | UInt64(checksum) }

    init(packed: UInt64) {
        block = UInt32(truncatingIfNeeded: packed >> 32)
        checksum = UInt32(truncatingIfNeeded: packed)
    }
}

/// Per-object map from page index to swap slot: a direct array for small objects, a hash of
/// fixed runs for large ones (see the file header).
public struct SwapMetadata {
    /// Page indices per hashed run.
    public static var runPages: UInt64 { 32 }
    /// Objects of at most this many pages use the direct array.
    public static var directLimit: UInt64 { runPages }
    /// Page indices must be below this (2^45 pages: 128 PiB of object).
    public static var maximumIndex: UInt64 { 1 << 45 }
    /// Most runs one object's pool can hold (2^24 runs: 2 TiB swapped per object).
    public static var maximumRuns: Int { 1 << 24 }

    static var emptySlot: UInt64 { ~0 }
    static var emptyBucket: UInt64 { ~0 }
    static var runShift: UInt64 { 5 }
    static var runsPerChunk: Int { 16 }
    static var slotsPerChunk: Int { runsPerChunk * Int(runPages) }
    static var poolIndexBits: UInt64 { 24 }
    static var poolIndexMask: UInt64 { (1 << poolIndexBits) - 1 }
    static var noFreeRun: Int { -1 }
    static var minimumTableSize: Int { 8 }

    /// Full slots.
    public private(set) var count = 0
    /// Live hashed runs (0 while direct).
    public private(set) var runCount = 0
    /// True once the hashed structure is in use.
    public private(set) var isHashed: Bool

    /// Direct mode: slot i is page index i.
    private var direct: [UInt64]
    /// Hashed mode: buckets of key << 24 | pool run, or `emptyBucket`.
    private var table: [UInt64] = []
    /// Hashed mode: the run pool, `runsPerChunk` runs of `runPages` slots per chunk (4 KiB).
    private var chunks: [[UInt64]] = []
    /// Pool runs ever handed out (the rest of the last chunk is untouched).
    private var poolRuns = 0
    /// Head of the free-run list; a free run's first slot links to the next.
    private var freeRun = SwapMetadata.noFreeRun

    /// Empty metadata for an object of `pageCountHint` pages: direct if it is at most
    /// `directLimit`, else hashed. Any index below `maximumIndex` may be used whatever the
    /// hint; a direct array converts to the hash on the first index past it.
    public init(pageCountHint: UInt64) {
        if pageCountHint >= 1 && pageCountHint <= SwapMetadata.directLimit {
            isHashed = false
            direct = [UInt64](repeating: SwapMetadata.emptySlot, count: Int(pageCountHint))
        } else {
            isHashed = true
            direct = []
        }
    }

    /// True when no page has a slot.
    public var isEmpty: Bool { count == 0 }

    /// Heap bytes the structure holds (array payloads plus their headers), for the
    /// bytes-per-swapped-page report.
    public var memoryBytes: Int {
        let header = 32  // a Swift array's heap header, rounded
        var bytes = direct.capacity == 0 ? 0 : direct.capacity * 8 + header
        if !table.isEmpty { bytes += table.capacity * 8 + header }
        if !chunks.isEmpty { bytes += chunks.capacity * 8 + header + chunks.count * (SwapMetadata.slotsPerChunk * 8 + header) }
        return bytes
    }

    // MARK: Lookup

    /// The slot of page `index`, or nil. O(1) expected.
    public func slot(at index: UInt64) -> SwapSlot? {
        let word = packedSlot(at: index)
        return word == SwapMetadata.emptySlot ? nil : SwapSlot(packed: word)
    }

    private func packedSlot(at index: UInt64) -> UInt64 {
        if !isHashed {
            return index < UInt64(direct.count) ? direct[Int(index)] : SwapMetadata.emptySlot
        }
        guard let run = findRun(key: index >> SwapMetadata.runShift)?.run else { return SwapMetadata.emptySlot }
        return slotWord(run: run, lane: Int(index & (SwapMetadata.runPages - 1)))
    }

    // MARK: Insert and remove

    /// Records `slot` for page `index` and returns the slot it replaces (whose block the caller
    /// must free), or nil. Precondition: `index < maximumIndex`, `slot.block` below
    /// `SwapSlot.maximumBlocks`, and the pool not at `maximumRuns` (callers check the first two
    /// at their public boundary; SwapPager refuses offsets past `maximumIndex`).
    @discardableResult
    public mutating func insert(_ slot: SwapSlot, at index: UInt64) -> SwapSlot? {
        precondition(index < SwapMetadata.maximumIndex, "SwapMetadata.insert: index past maximumIndex")
        precondition(UInt64(slot.block) < SwapSlot.maximumBlocks, "SwapMetadata.insert: block is the empty marker")
        if !isHashed {
            if index < UInt64(direct.count) {
                let old = direct[Int(index)]
                direct[Int(index)] = slot.packed
                if old == SwapMetadata.emptySlot { count += 1; return nil }
                return SwapSlot(packed: old)
            }
            convertToHashed()
        }
        let key = index >> SwapMetadata.runShift
        let lane = Int(index & (SwapMetadata.runPages - 1))
        let run = findRun(key: key)?.run ?? addRun(key: key)
        let old = slotWord(run: run, lane: lane)
        setSlotWord(slot.packed, run: run, lane: lane)
        if old == SwapMetadata.emptySlot { count += 1; return nil }
        return SwapSlot(packed: old)
    }

    /// Forgets page `index` and returns its slot (the caller frees the block), or nil.
    @discardableResult
    public mutating func remove(at index: UInt64) -> SwapSlot? {
        if !isHashed {
            guard index < UInt64(direct.count), direct[Int(index)] != SwapMetadata.emptySlot else { return nil }
            let old = direct[Int(index)]
            direct[Int(index)] = SwapMetadata.emptySlot
            count -= 1
            return SwapSlot(packed: old)
        }
        guard let found = findRun(key: index >> SwapMetadata.runShift) else { return nil }
        let lane = Int(index & (SwapMetadata.runPages - 1))
        let old = slotWord(run: found.run, lane: lane)
        guard old != SwapMetadata.emptySlot else { return nil }
        setSlotWord(SwapMetadata.emptySlot, run: found.run, lane: lane)
        count -= 1
        if runIsEmpty(found.run) { removeRun(bucket: found.bucket) }
        return SwapSlot(packed: old)
    }

    /// Forgets every page in `range`, handing each removed (index, slot) to `body` in
    /// ascending index order so the caller can free the blocks.
    public mutating func removeRange(_ range: Range<UInt64>, _ body: (UInt64, SwapSlot) -> Void) {
        var victims: [UInt64] = []
        forEach(in: range) { index, slot in
            victims.append(index)
            body(index, slot)
        }
        for index in victims { remove(at: index) }
    }

    /// Forgets everything, handing each slot to `body` (in no particular order), and returns
    /// the memory.
    public mutating func removeAll(_ body: (UInt64, SwapSlot) -> Void) {
        forEachUnordered(body)
        self = SwapMetadata(pageCountHint: isHashed ? 0 : UInt64(direct.count))
    }

    // MARK: Iteration

    /// Calls `body` with every (index, slot) whose index lies in `range`, ascending.
    /// O(range / runPages) when the range spans fewer runs than are live, else
    /// O(runs log runs).
    public func forEach(in range: Range<UInt64>, _ body: (UInt64, SwapSlot) -> Void) {
        guard !range.isEmpty, count > 0 else { return }
        if !isHashed {
            let end = min(range.upperBound, UInt64(direct.count))
            var index = range.lowerBound
            while index < end {
                let word = direct[Int(index)]
                if word != SwapMetadata.emptySlot { body(index, SwapSlot(packed: word)) }
                index += 1
            }
            return
        }
        let firstKey = range.lowerBound >> SwapMetadata.runShift
        let lastKey = (range.upperBound - 1) >> SwapMetadata.runShift
        var keys: [UInt64] = []
        if lastKey - firstKey < UInt64(runCount) {
            var key = firstKey
            while key <= lastKey {
                if findRun(key: key) != nil { keys.append(key) }
                key += 1
            }
        } else {
            for bucket in table where bucket != SwapMetadata.emptyBucket {
                let key = bucket >> SwapMetadata.poolIndexBits
                if key >= firstKey && key <= lastKey { keys.append(key) }
            }
            keys.sort()
        }
        for key in keys {
            guard let run = findRun(key: key)?.run else { continue }
            for lane in 0..<Int(SwapMetadata.runPages) {
                let index = key << SwapMetadata.runShift | UInt64(lane)
                guard range.contains(index) else { continue }
                let word = slotWord(run: run, lane: lane)
                if word != SwapMetadata.emptySlot { body(index, SwapSlot(packed: word)) }
            }
        }
    }

    /// Calls `body` with every (index, slot), in no particular order. O(slots held).
    public func forEachUnordered(_ body: (UInt64, SwapSlot) -> Void) {
        if !isHashed {
            forEach(in: 0..<UInt64(direct.count), body)
            return
        }
        for bucket in table where bucket != SwapMetadata.emptyBucket {
            let key = bucket >> SwapMetadata.poolIndexBits
            let run = Int(bucket & SwapMetadata.poolIndexMask)
            for lane in 0..<Int(SwapMetadata.runPages) {
                let word = slotWord(run: run, lane: lane)
                if word != SwapMetadata.emptySlot { body(key << SwapMetadata.runShift | UInt64(lane), SwapSlot(packed: word)) }
            }
        }
    }

    // MARK: Collapse

    /// Collapse support (the mechanism of FreeBSD's swap_pager_copy): moves `source`'s slots
    /// for source indices in `range` into this metadata, the slot of source index `s` landing
    /// at `s - range.lowerBound + destinationStart`. Where `hasNewer(destinationIndex)` is
    /// true (the surviving object has a resident page there) or this metadata already holds a
    /// slot there (the survivor's own paged-out copy is newer), the source slot is handed to
    /// `release` instead (the caller frees its block). Slots outside `range` stay in `source`.
    /// Precondition: every destination index is below `maximumIndex` (the pager checks).
    public mutating func transfer(from source: inout SwapMetadata, range: Range<UInt64>,
                                  destinationStart: UInt64, hasNewer: (UInt64) -> Bool,
                                  release: (SwapSlot) -> Void) {
        var moved: [(index: UInt64, slot: SwapSlot)] = []
        source.removeRange(range) { index, slot in moved.append((index, slot)) }
        for (index, slot) in moved {
            let destination = index - range.lowerBound + destinationStart
            if hasNewer(destination) || self.slot(at: destination) != nil {
                release(slot)
            } else {
                insert(slot, at: destination)
            }
        }
    }

    // MARK: Hashed internals

    private func slotWord(run: Int, lane: Int) -> UInt64 {
        chunks[run / SwapMetadata.runsPerChunk][(run % SwapMetadata.runsPerChunk) * Int(SwapMetadata.runPages) + lane]
    }

    private mutating func setSlotWord(_ word: UInt64, run: Int, lane: Int) {
        chunks[run / SwapMetadata.runsPerChunk][(run % SwapMetadata.runsPerChunk) * Int(SwapMetadata.runPages) + lane] = word
    }

    private func runIsEmpty(_ run: Int) -> Bool {
        for lane in 0..<Int(SwapMetadata.runPages) where slotWord(run: run, lane: lane) != SwapMetadata.emptySlot {
            return false
        }
        return true
    }

    /// Home bucket of `key` in a table of `size` buckets: Fibonacci hashing (so sequential
    /// keys, the common case of one object's consecutive runs, spread evenly), scaled to any
    /// size by taking the high word of hash * size.
    private static func home(of key: UInt64, size: Int) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15).multipliedFullWidth(by: UInt64(size)).high)
    }

    /// The bucket after `bucket`, wrapping.
    @inline(__always) private func nextBucket(_ bucket: Int) -> Int {
        bucket + 1 == table.count ? 0 : bucket + 1
    }

    /// The bucket and pool run of `key`, or nil.
    private func findRun(key: UInt64) -> (bucket: Int, run: Int)? {
        guard !table.isEmpty else { return nil }
        var bucket = SwapMetadata.home(of: key, size: table.count)
        while true {
            let word = table[bucket]
            if word == SwapMetadata.emptyBucket { return nil }
            if word >> SwapMetadata.poolIndexBits == key { return (bucket, Int(word & SwapMetadata.poolIndexMask)) }
            bucket = nextBucket(bucket)
        }
    }

    /// Takes a pool run for `key` (all slots empty) and enters it in the table.
    private mutating func addRun(key: UInt64) -> Int {
        if (runCount + 1) * 8 > table.count * 7 {
            rehash(size: max(SwapMetadata.minimumTableSize, table.count + table.count / 4))
        }
        let run = takePoolRun()
        placeInTable(key << SwapMetadata.poolIndexBits | UInt64(run))
        runCount += 1
        return run
    }

    private mutating func placeInTable(_ word: UInt64) {
        var bucket = SwapMetadata.home(of: word >> SwapMetadata.poolIndexBits, size: table.count)
        while table[bucket] != SwapMetadata.emptyBucket { bucket = nextBucket(bucket) }
        table[bucket] = word
    }

    /// Removes the (empty) run in `bucket` from the table, closing the probe gap by shifting
    /// later members of the cluster back (no tombstones), and returns the run to the pool.
    private mutating func removeRun(bucket start: Int) {
        let run = Int(table[start] & SwapMetadata.poolIndexMask)
        let size = table.count
        var hole = start
        var probe = nextBucket(start)
        while table[probe] != SwapMetadata.emptyBucket {
            let home = SwapMetadata.home(of: table[probe] >> SwapMetadata.poolIndexBits, size: table.count)
            // The entry may move into the hole iff its home is not cyclically in (hole, probe].
            let distanceToProbe = (probe - home + size) % size
            let distanceToHole = (probe - hole + size) % size
            if distanceToProbe >= distanceToHole {
                table[hole] = table[probe]
                hole = probe
            }
            probe = nextBucket(probe)
        }
        table[hole] = SwapMetadata.emptyBucket
        runCount -= 1
        releasePoolRun(run)
        if runCount == 0 {
            // Nothing left: give every page back (keeps long-lived objects from pinning pools).
            table = []
            chunks = []
            poolRuns = 0
            freeRun = SwapMetadata.noFreeRun
        } else if table.count > SwapMetadata.minimumTableSize && runCount * 4 < table.count {
            rehash(size: max(SwapMetadata.minimumTableSize, runCount * 2))
        }
    }

    private mutating func rehash(size: Int) {
        let old = table
        table = [UInt64](repeating: SwapMetadata.emptyBucket, count: size)
        for word in old where word != SwapMetadata.emptyBucket { placeInTable(word) }
    }

    private mutating func takePoolRun() -> Int {
        if freeRun != SwapMetadata.noFreeRun {
            let run = freeRun
            let next = slotWord(run: run, lane: 0)
            freeRun = next == SwapMetadata.emptySlot ? SwapMetadata.noFreeRun : Int(next)
            setSlotWord(SwapMetadata.emptySlot, run: run, lane: 0)
            return run
        }
        precondition(poolRuns < SwapMetadata.maximumRuns, "SwapMetadata.insert: run pool exhausted")
        if poolRuns == chunks.count * SwapMetadata.runsPerChunk {
            chunks.append([UInt64](repeating: SwapMetadata.emptySlot, count: SwapMetadata.slotsPerChunk))
        }
        poolRuns += 1
        return poolRuns - 1
    }

    /// Links an empty run onto the free list through its first slot.
    private mutating func releasePoolRun(_ run: Int) {
        let link = freeRun == SwapMetadata.noFreeRun ? SwapMetadata.emptySlot : UInt64(freeRun)
        setSlotWord(link, run: run, lane: 0)
        freeRun = run
    }

    /// Moves the direct array into hashed run 0 (the direct array covers indices below
    /// `directLimit` = `runPages`, exactly run 0).
    private mutating func convertToHashed() {
        let old = direct
        isHashed = true
        direct = []
        guard count > 0 else { return }
        let run = addRun(key: 0)
        for (lane, word) in old.enumerated() where word != SwapMetadata.emptySlot {
            setSlotWord(word, run: run, lane: lane)
        }
    }

    /// Checks the structure against its invariants (tests and the auditor); nil if sound.
    public func invariantViolation() -> StaticString? {
        var full = 0
        if !isHashed {
            for word in direct where word != SwapMetadata.emptySlot { full += 1 }
            return full == count ? nil : "SwapMetadata: count differs from full direct slots"
        }
        var runs = 0
        for (bucket, word) in table.enumerated() where word != SwapMetadata.emptyBucket {
            runs += 1
            let key = word >> SwapMetadata.poolIndexBits
            guard let found = findRun(key: key), found.bucket == bucket else { return "SwapMetadata: run not reachable from its home bucket" }
            let run = Int(word & SwapMetadata.poolIndexMask)
            if runIsEmpty(run) { return "SwapMetadata: empty run left in the table" }
            for lane in 0..<Int(SwapMetadata.runPages) where slotWord(run: run, lane: lane) != SwapMetadata.emptySlot { full += 1 }
        }
        if runs != runCount { return "SwapMetadata: runCount differs from the table" }
        if full != count { return "SwapMetadata: count differs from full slots" }
        if !table.isEmpty && runCount * 8 > table.count * 7 { return "SwapMetadata: table overloaded" }
        return nil
    }
}

/// The per-page checksum kept in swap metadata and verified on pagein.
public enum SwapChecksum {
    /// A 32-bit checksum of `pageSize` bytes at `bytes`: four independent multiply-rotate
    /// lanes over 64-bit words (so the loop is not one long dependency chain), folded. Any
    /// single changed word, a zeroed page or swapped words change it (positions are mixed in).
    public static func of(_ bytes: UnsafeRawPointer) -> UInt32 {
        let words = Int(pageSize) / 8
        var lanes: (UInt64, UInt64, UInt64, UInt64) = (0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344,
                                                       0xA409_3822_299F_31D0, 0x082E_FA98_EC4E_6C89)
        let prime: UInt64 = 0x9E37_79B9_7F4A_7C15
        var index = 0
        while index < words {
            let a = bytes.load(fromByteOffset: index * 8, as: UInt64.self)
            let b = bytes.load(fromByteOffset: index * 8 + 8, as: UInt64.self)
            let c = bytes.load(fromByteOffset: index * 8 + 16, as: UInt64.self)
            let d = bytes.load(fromByteOffset: index * 8 + 24, as: UInt64.self)
            lanes.0 = ((lanes.0 ^ a) &* prime).rotateLeft(31)
            lanes.1 = ((lanes.1 ^ b) &* prime).rotateLeft(29)
            lanes.2 = ((lanes.2 ^ c) &* prime).rotateLeft(27)
            lanes.3 = ((lanes.3 ^ d) &* prime).rotateLeft(23)
            index += 4
        }
        var hash = lanes.0 ^ lanes.1.rotateLeft(16) ^ lanes.2.rotateLeft(32) ^ lanes.3.rotateLeft(48)
        hash ^= hash >> 33
        hash &*= 0xFF51_AFD7_ED55_8CCD
        hash ^= hash >> 33
        return UInt32(truncatingIfNeeded: hash ^ (hash >> 32))
    }
}

extension UInt64 {
    /// Rotates left by `count` bits (0 < count < 64).
    @inline(__always) fileprivate func rotateLeft(_ count: UInt64) -> UInt64 {
        (self << count) | (self >> (64 - count))
    }
}
