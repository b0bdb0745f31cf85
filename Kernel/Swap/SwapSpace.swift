// SwapSpace: the global swap block space over up to `maximumDevices` disks — swapon/swapoff,
// block allocation through one Blist, interleaving, bad-block quarantine, reservation
// accounting and swap-full hysteresis.
// Invariants:
//  - Interleave: global block g lies in stripe g / stripeBlocks; stripe s belongs to device
//    slot s % maximumDevices and is that device's stripe s / maximumDevices. Slots are fixed,
//    so a block's device never changes when other devices come and go; a 16-page cluster
//    that starts on a stripe boundary stays on one device, and consecutive clusters rotate
//    across devices.
//  - The Blist covers every stripe of every present device. A block is free in it iff it is
//    a non-header page of a present, non-draining device that is neither in use nor bad.
//    Everything else (empty slots, the tail past a short device, headers, quarantined blocks,
//    a draining device's blocks) is held allocated by `fill`, so the allocator can never hand
//    it out and `freeBlocks` needs no correction.
//  - `used` has a bit per device page for blocks handed out by `allocate` and not yet freed
//    or quarantined; usedBlocks is their sum. Quarantined blocks are listed in `badPages`
//    (window pages, ascending) and never return to the Blist (FreeBSD would reuse a block
//    that failed a write).
//  - The quarantine outlives swapoff: every quarantine rewrites the device's header
//    (SwapHeader.swift) from `badPages` through a page frame kept per device since swapon,
//    so the pageout error path needs no memory. When that write fails the header is stale
//    (`headerIsStale`): the next quarantine on the device and swapoff write it again, and a
//    header that stays stale only costs a failed write on the unlisted block after the next
//    swapon, which quarantines it again (the pager keeps the page until a write succeeds).
//  - swapon keeps the quarantine a valid header of ours lists (`HeaderPolicy.keepQuarantine`)
//    and initialises a page without the swap magic; any other defect, or an overflowed list,
//    refuses the device rather than overwrite a list it cannot read.
//  - Every public mutation validates first and throws without changing anything.
// Locks: none inside; one CPU. With SMP: one swap lock around every call.

/// Why a swap-space call was refused or failed.
public enum SwapError: Error, Equatable {
    /// Every device slot is taken.
    case tooManyDevices
    /// No device with that identifier is swapped on.
    case noSuchDevice
    /// A device with that identifier is already swapped on.
    case duplicateDevice
    /// The device's block size does not divide the page size.
    case unsupportedBlockSize
    /// The device refuses writes.
    case readOnlyDevice
    /// The window is outside the device, holds no page, or has no page beyond the header.
    case windowOutOfRange
    /// The global block space would exceed `SwapSlot.maximumBlocks`.
    case tooLarge
    /// The window's first page is not a valid swap header (see the defect), or the header
    /// read back after swapon is not the one written (`readBackMismatch`).
    case badHeader(SwapHeaderDefect)
    /// swapon: the device's header says more blocks were quarantined than it could list.
    case quarantineOverflow
    /// No page frame for a header buffer.
    case outOfMemory
    /// The device failed a transfer.
    case io(BlockDeviceError)
    /// swapoff: blocks of the device are still in use (none evacuated, or some left).
    case deviceBusy(blocksInUse: UInt64)
    /// No free swap block (or no device).
    case full
    /// A reservation beyond the limit, or a swapoff that would leave reservations uncovered.
    case overcommitted
    /// An unreserve of more than is reserved.
    case notReserved
    /// A block or run that is not in use (double free, or never allocated).
    case blockNotInUse
}

/// What `SwapSpace.statistics` reports.
public struct SwapStatistics: Equatable {
    /// Swapped-on devices.
    public var devices: Int
    /// Usable blocks: device pages minus headers minus quarantined blocks.
    public var totalBlocks: UInt64
    /// Blocks the allocator can hand out.
    public var freeBlocks: UInt64
    /// Blocks holding pages.
    public var usedBlocks: UInt64
    /// Blocks quarantined after write errors.
    public var badBlocks: UInt64
    /// Pages reserved by `reserve`, and the limit (total blocks plus overcommit).
    public var reservedPages: UInt64
    public var reservationLimit: UInt64
    /// Swap is treated as unavailable (below the low watermark, not yet back above high).
    public var isNearlyFull: Bool
    /// Longest run of free blocks.
    public var largestFreeRun: UInt64
}

/// The system's swap space.
public final class SwapSpace {
    /// Device slots (interleave ways).
    public static var maximumDevices: Int { 4 }
    /// Blocks per interleave stripe: one maximal pageout cluster.
    public static var stripeBlocks: UInt64 { 16 }
    /// Pages at the start of each device window reserved for the header.
    public static var headerPages: UInt64 { 1 }

    /// One swapped-on device. A class: allocation and free update a device's bitmap in
    /// place (a struct in an optional array slot is copied out and back, with its arrays).
    final class Device {
        var disk: SwapDisk
        var identifier: UInt64
        /// One bit per window page: handed out and not freed.
        var used: [UInt64]
        var usedCount: UInt64 = 0
        /// Quarantined window pages, ascending: what the header lists.
        var badPages: [UInt32]
        /// The page frame header rewrites go through (allocated at swapon, freed at swapoff).
        var headerFrame: PhysicalAddress
        /// The header on the device does not list every page of `badPages` yet.
        var headerIsStale = false
        /// swapoff in progress: frees keep blocks allocated in the Blist.
        var isDraining = false

        init(disk: SwapDisk, identifier: UInt64, badPages: [UInt32], headerFrame: PhysicalAddress) {
            self.disk = disk
            self.identifier = identifier
            self.badPages = badPages
            self.headerFrame = headerFrame
            used = [UInt64](repeating: 0, count: Int((disk.pageCount + 63) / 64))
        }

        func isUsed(_ page: UInt64) -> Bool { used[Int(page / 64)] & (1 << (page % 64)) != 0 }
        /// True if every page in `pages` is in the state `state` (used or not); a word at a time.
        func all(_ pages: Range<UInt64>, areUsed state: Bool) -> Bool {
            guard pages.upperBound <= disk.pageCount else { return false }
            var page = pages.lowerBound
            while page < pages.upperBound {
                let (word, mask, count) = Device.word(at: page, upTo: pages.upperBound)
                if used[word] & mask != (state ? mask : 0) { return false }
                page += count
            }
            return true
        }
        /// Sets every page in `pages` used or not, a word at a time, and counts them.
        func set(_ pages: Range<UInt64>, used state: Bool) {
            var page = pages.lowerBound
            while page < pages.upperBound {
                let (word, mask, count) = Device.word(at: page, upTo: pages.upperBound)
                if state { used[word] |= mask } else { used[word] &= ~mask }
                page += count
            }
            if state { usedCount += UInt64(pages.count) } else { usedCount -= UInt64(pages.count) }
        }
        /// The bitmap word holding `page`, the mask of its bits from `page` to `end` (at most
        /// to the word's end), and how many pages that is.
        private static func word(at page: UInt64, upTo end: UInt64) -> (Int, UInt64, UInt64) {
            let bit = page % 64
            let count = min(64 - bit, end - page)
            let mask = count == 64 ? ~UInt64(0) : ((1 << count) - 1) << bit
            return (Int(page / 64), mask, count)
        }
        /// Usable blocks: pages minus header minus bad.
        var usableBlocks: UInt64 { disk.pageCount - SwapSpace.headerPages - UInt64(badPages.count) }

        /// Position of the first entry of `badPages` not below `page`.
        private func badIndex(_ page: UInt64) -> Int {
            var low = 0
            var high = badPages.count
            while low < high {
                let middle = (low + high) / 2
                if UInt64(badPages[middle]) < page { low = middle + 1 } else { high = middle }
            }
            return low
        }

        func isBad(_ page: UInt64) -> Bool {
            let index = badIndex(page)
            return index < badPages.count && UInt64(badPages[index]) == page
        }

        /// Adds window page `page` (below pageCount, so it fits in 32 bits) to `badPages`.
        func markBad(_ page: UInt64) {
            badPages.insert(UInt32(page), at: badIndex(page))
        }

        /// The header describing this device in `slot`.
        func header(slot: Int) -> SwapHeader {
            SwapHeader(pageCount: disk.pageCount, identifier: identifier, slot: UInt32(slot), quarantinedPages: badPages)
        }
    }

    /// What swapon does with the header already on a device.
    public enum HeaderPolicy: Equatable {
        /// Keep the quarantine a valid header lists; a page without the swap magic (blank, or
        /// foreign data) gets a fresh header.
        case keepQuarantine
        /// Write a fresh header whatever the page holds, forgetting its quarantine (mkswap).
        case initialise
    }

    /// Whether a quarantine reached the device's header.
    public enum QuarantineRecord: Equatable {
        /// The header on the device lists the block.
        case persisted
        /// The header's list was full: it records the overflow, and the next swapon of the
        /// device refuses it (`SwapError.quarantineOverflow`).
        case overflowed
        /// The header write failed with the error: only memory holds the quarantine until a
        /// later header write succeeds (see `isHeaderStale(onDevice:)`).
        case inMemoryOnly(SwapError)
    }

    private var devices: [Device?] = [Device?](repeating: nil, count: SwapSpace.maximumDevices)
    private var blist: Blist? = nil
    /// Pages reserved by `reserve`.
    public private(set) var reservedPages: UInt64 = 0
    /// Pages the reservation limit exceeds the usable swap by (typically a share of RAM).
    public var overcommitPages: UInt64 = 0
    /// Swap-full hysteresis state (see `updateHysteresis`).
    public private(set) var isNearlyFull = true
    /// Transfers and failures, for the statistics and tests.
    public private(set) var reads: UInt64 = 0
    public private(set) var writes: UInt64 = 0
    public private(set) var readErrors: UInt64 = 0
    public private(set) var writeErrors: UInt64 = 0
    /// Header rewrites (after a quarantine, at swapoff) that failed.
    public private(set) var headerWriteErrors: UInt64 = 0

    public init() {}

    // MARK: Block geometry

    /// The global block of page `page` of the device in `slot`.
    static func globalBlock(slot: Int, page: UInt64) -> UInt64 {
        let stripe = page / stripeBlocks
        return (stripe * UInt64(maximumDevices) + UInt64(slot)) * stripeBlocks + page % stripeBlocks
    }

    /// The slot and device page of global block `block`.
    static func location(of block: UInt64) -> (slot: Int, page: UInt64) {
        let stripe = block / stripeBlocks
        return (Int(stripe % UInt64(maximumDevices)), (stripe / UInt64(maximumDevices)) * stripeBlocks + block % stripeBlocks)
    }

    /// The stripe piece of global blocks `block ..< end` that starts at `block`: its slot,
    /// its device pages (a piece never crosses a stripe, so they are consecutive on one
    /// device) and its length.
    static func piece(at block: UInt64, upTo end: UInt64) -> (slot: Int, pages: Range<UInt64>, count: UInt64) {
        let count = min(end, (block / stripeBlocks + 1) * stripeBlocks) - block
        let (slot, page) = location(of: block)
        return (slot, page..<(page + count), count)
    }

    /// Blist size covering every stripe of a device of `pages` pages in any slot.
    static func spanBlocks(pages: UInt64) -> UInt64 {
        let stripes = (pages + stripeBlocks - 1) / stripeBlocks
        return stripes * UInt64(maximumDevices) * stripeBlocks
    }

    /// Calls `body` with every run of global blocks (start, count) holding pages
    /// `from ..< to` of the device in `slot` (one run per stripe piece).
    private static func forEachRun(slot: Int, from: UInt64, to: UInt64, _ body: (UInt64, UInt64) -> Void) {
        var page = from
        while page < to {
            let stripeEnd = min(to, (page / stripeBlocks + 1) * stripeBlocks)
            body(globalBlock(slot: slot, page: page), stripeEnd - page)
            page = stripeEnd
        }
    }

    // MARK: Queries

    /// Identifiers of the swapped-on devices, by slot.
    public var deviceIdentifiers: [UInt64] { devices.compactMap { $0?.identifier } }

    /// Usable blocks over all devices (kept, not summed per call: every allocation and free
    /// reads it for the hysteresis).
    public private(set) var totalBlocks: UInt64 = 0
    /// Free blocks.
    public var freeBlocks: UInt64 { blist?.freeBlocks ?? 0 }
    /// Blocks in use.
    public var usedBlocks: UInt64 { devices.reduce(0) { $0 + ($1?.usedCount ?? 0) } }
    /// Quarantined blocks.
    public var badBlocks: UInt64 { devices.reduce(0) { $0 + UInt64($1?.badPages.count ?? 0) } }
    /// Reservation limit: usable blocks plus overcommit.
    public var reservationLimit: UInt64 { totalBlocks + overcommitPages }
    /// Low watermark: below it swap is "nearly full". About 3% of the swap, at least 8 blocks.
    public var lowWatermark: UInt64 { max(totalBlocks / 32, 8) }
    /// High watermark: only above it is swap available again (twice the low one).
    public var highWatermark: UInt64 { 2 * lowWatermark }

    /// A snapshot of the counters.
    public var statistics: SwapStatistics {
        SwapStatistics(devices: deviceIdentifiers.count, totalBlocks: totalBlocks, freeBlocks: freeBlocks,
                       usedBlocks: usedBlocks, badBlocks: badBlocks, reservedPages: reservedPages,
                       reservationLimit: reservationLimit, isNearlyFull: isNearlyFull,
                       largestFreeRun: blist?.largestFreeRun ?? 0)
    }

    /// True if `block` is handed out and not freed.
    public func isInUse(_ block: UInt64) -> Bool {
        let (slot, page) = SwapSpace.location(of: block)
        guard let device = devices[slot], page < device.disk.pageCount else { return false }
        return device.isUsed(page)
    }

    /// True if `block` is quarantined.
    public func isQuarantined(_ block: UInt64) -> Bool {
        let (slot, page) = SwapSpace.location(of: block)
        return devices[slot]?.isBad(page) ?? false
    }

    /// True if device `identifier`'s header does not list all of its quarantined blocks (its
    /// last rewrite failed). False for a device that is not on.
    public func isHeaderStale(onDevice identifier: UInt64) -> Bool {
        guard let slot = slot(of: identifier) else { return false }
        return devices[slot]!.headerIsStale
    }

    /// The in-use blocks of device `identifier`, ascending (what swapoff must evacuate).
    public func blocksInUse(onDevice identifier: UInt64) -> [UInt64] {
        guard let slot = slot(of: identifier), let device = devices[slot] else { return [] }
        var blocks: [UInt64] = []
        for page in 0..<device.disk.pageCount where device.isUsed(page) {
            blocks.append(SwapSpace.globalBlock(slot: slot, page: page))
        }
        return blocks
    }

    private func slot(of identifier: UInt64) -> Int? {
        devices.firstIndex { $0?.identifier == identifier }
    }

    // MARK: swapon / swapoff

    /// Adds `disk` to swap under `identifier`: reads the header on the window's first page
    /// (with `.keepQuarantine`), writes the device's header there (keeping the quarantine the
    /// old one listed, inside the window), reads it back and checks it, then makes the rest of
    /// the window allocatable but for the quarantined pages, interleaved with the other
    /// devices. Throws `duplicateDevice`, `tooManyDevices`, `windowOutOfRange` (no page beyond
    /// the header), `tooLarge`, `outOfMemory`, `io(error)`, `badHeader(defect)` (a damaged or
    /// unknown header of ours, or a bad read-back) or `quarantineOverflow`; nothing changes
    /// in the space when it throws.
    public func swapOn(_ disk: SwapDisk, identifier: UInt64, header policy: HeaderPolicy = .keepQuarantine) throws(SwapError) {
        guard slot(of: identifier) == nil else { throw .duplicateDevice }
        guard let slot = devices.firstIndex(where: { $0 == nil }) else { throw .tooManyDevices }
        guard disk.pageCount > SwapSpace.headerPages else { throw .windowOutOfRange }
        let span = SwapSpace.spanBlocks(pages: disk.pageCount)
        let newSize = max(blist?.blocks ?? 0, span)
        guard newSize <= SwapSlot.maximumBlocks, newSize <= Blist.maximumBlocks else { throw .tooLarge }
        let frame: PhysicalAddress
        do { frame = try physicalPages.allocate() } catch { throw .outOfMemory }
        var device = Device(disk: disk, identifier: identifier, badPages: [], headerFrame: frame)
        do throws(SwapError) {
            if policy == .keepQuarantine { device.badPages = try existingQuarantine(on: disk, frame: frame) }
            try writeHeader(device.header(slot: slot), on: disk, frame: frame, verify: true)
        } catch {
            try? physicalPages.free(frame)
            throw error
        }

        // From here nothing can fail: the Blist calls below are on ranges inside the tree.
        if var tree = blist {
            let oldSize = tree.blocks
            if newSize > oldSize {
                try! tree.resize(blocks: newSize)
                try! tree.fill(start: oldSize, count: newSize - oldSize)
            }
            blist = tree
        } else {
            var tree = try! Blist(blocks: newSize)
            try! tree.fill(start: 0, count: newSize)
            blist = tree
        }
        devices[slot] = device
        var page = SwapSpace.headerPages
        for bad in device.badPages {
            SwapSpace.forEachRun(slot: slot, from: page, to: UInt64(bad)) { start, count in try! blist!.free(start: start, count: count) }
            page = UInt64(bad) + 1
        }
        SwapSpace.forEachRun(slot: slot, from: page, to: disk.pageCount) { start, count in try! blist!.free(start: start, count: count) }
        devicesChanged()
    }

    /// The quarantined pages inside `disk`'s window that the header on its first page lists
    /// (read into `frame`): none for a page without the swap magic. Throws `io(error)`,
    /// `quarantineOverflow`, or `badHeader(defect)` for any other defect.
    private func existingQuarantine(on disk: SwapDisk, frame: PhysicalAddress) throws(SwapError) -> [UInt32] {
        do { try disk.transfer(.read, page: 0, frames: [frame]) } catch { throw .io(error) }
        let header: SwapHeader
        do { header = try SwapHeader.read(from: DirectMap.pointer(to: frame)) } catch {
            if error == .badHeader(.wrongMagic) { return [] }
            throw error
        }
        guard !header.quarantineOverflowed else { throw .quarantineOverflow }
        // A header from a longer window over the same start: its pages past this one are not ours.
        return header.quarantinedPages.filter { UInt64($0) < disk.pageCount }
    }

    /// Writes `header` to `disk`'s first page through `frame` and flushes it; `verify`: reads
    /// it back and checks it is the same header.
    private func writeHeader(_ header: SwapHeader, on disk: SwapDisk, frame: PhysicalAddress, verify: Bool) throws(SwapError) {
        let bytes = DirectMap.pointer(to: frame)
        header.write(to: bytes)
        do {
            try disk.transfer(.write, page: 0, frames: [frame])
            try disk.flush()
            if verify {
                bytes.initializeMemory(as: UInt8.self, repeating: 0, count: Int(pageSize))
                try disk.transfer(.read, page: 0, frames: [frame])
            }
        } catch {
            throw .io(error)
        }
        if verify {
            guard try SwapHeader.read(from: bytes) == header else { throw .badHeader(.readBackMismatch) }
        }
    }

    /// Rewrites the header of the device in `slot` from its quarantine (no read-back: this is
    /// the pageout error path), recording a failure as a stale header.
    private func persistQuarantine(slot: Int) -> QuarantineRecord {
        let device = devices[slot]!
        let header = device.header(slot: slot)
        do throws(SwapError) {
            try writeHeader(header, on: device.disk, frame: device.headerFrame, verify: false)
        } catch {
            devices[slot]!.headerIsStale = true
            headerWriteErrors += 1
            return .inMemoryOnly(error)
        }
        devices[slot]!.headerIsStale = false
        return header.quarantineOverflowed ? .overflowed : .persisted
    }

    /// Removes device `identifier`. While some of its blocks are in use it calls `evacuate`
    /// (if given) with them; evacuate must page their data back in and free the blocks
    /// (`free`), during which no new block is handed out on this device. Throws
    /// `noSuchDevice`; `overcommitted` when the remaining swap could not cover the
    /// reservations; `deviceBusy` when blocks are in use and there is no `evacuate`, or
    /// some remain after it. On a throw the device stays swapped on, allocatable as before
    /// (blocks evacuated by then simply became free).
    public func swapOff(identifier: UInt64, evacuate: ((SwapSpace, [UInt64]) -> Void)? = nil) throws(SwapError) {
        guard let slot = slot(of: identifier), let device = devices[slot] else { throw .noSuchDevice }
        guard reservedPages <= reservationLimit - device.usableBlocks else { throw .overcommitted }
        if device.usedCount > 0 {
            guard let evacuate else { throw .deviceBusy(blocksInUse: device.usedCount) }
            // Drain: hold every free block of the device allocated while evacuating.
            devices[slot]!.isDraining = true
            SwapSpace.forEachRun(slot: slot, from: SwapSpace.headerPages, to: device.disk.pageCount) { start, count in
                try! blist!.fill(start: start, count: count)
            }
            evacuate(self, blocksInUse(onDevice: identifier))
            let remaining = devices[slot]!.usedCount
            if remaining > 0 {
                devices[slot]!.isDraining = false
                releaseIdleBlocks(slot: slot)
                devicesChanged()
                throw .deviceBusy(blocksInUse: remaining)
            }
        } else {
            SwapSpace.forEachRun(slot: slot, from: SwapSpace.headerPages, to: device.disk.pageCount) { start, count in
                try! blist!.fill(start: start, count: count)
            }
        }
        // Last chance for a header a failed rewrite left stale; a failure is only counted
        // (the invariants at the top say why that is harmless).
        if devices[slot]!.headerIsStale { _ = persistQuarantine(slot: slot) }
        try? physicalPages.free(devices[slot]!.headerFrame)
        devices[slot] = nil
        // Shrink the tree to what the remaining devices span (its tail is all held).
        let span = devices.reduce(UInt64(0)) { max($0, $1.map { SwapSpace.spanBlocks(pages: $0.disk.pageCount) } ?? 0) }
        if span == 0 {
            blist = nil
        } else if span < blist!.blocks {
            let oldSize = blist!.blocks
            try! blist!.free(start: span, count: oldSize - span)
            try! blist!.resize(blocks: span)
        }
        devicesChanged()
    }

    /// Frees in the Blist every page of the device in `slot` that is neither header, used nor
    /// bad (undoing a drain).
    private func releaseIdleBlocks(slot: Int) {
        let device = devices[slot]!
        var page = SwapSpace.headerPages
        while page < device.disk.pageCount {
            if !device.isUsed(page) && !device.isBad(page) {
                try! blist!.free(start: SwapSpace.globalBlock(slot: slot, page: page), count: 1)
            }
            page += 1
        }
    }

    // MARK: Allocation

    /// Allocates the longest free run of at most `upTo` blocks (at least one) and returns it.
    /// Throws `full` when no block is free or no device is on.
    public func allocate(upTo: UInt64) throws(SwapError) -> BlockRun {
        guard upTo >= 1, blist != nil else { throw .full }
        let run: BlockRun
        do { run = try blist!.allocate(atLeast: 1, upTo: upTo) } catch { throw .full }
        // Whole stripe pieces at a time: an allocation is one or two pieces, not 16 blocks.
        var block = run.start
        while block < run.end {
            let piece = SwapSpace.piece(at: block, upTo: run.end)
            guard let device = devices[piece.slot], device.all(piece.pages, areUsed: false) else {
                preconditionFailure("SwapSpace.allocate: Blist handed out a held block")
            }
            device.set(piece.pages, used: true)
            block += piece.count
        }
        updateHysteresis()
        return run
    }

    /// Frees the in-use blocks `start ..< start + count`. Throws `blockNotInUse` (changing
    /// nothing) if any of them is not in use.
    public func free(start: UInt64, count: UInt64) throws(SwapError) {
        guard count >= 1, start.addingReportingOverflow(count).overflow == false else { throw .blockNotInUse }
        let end = start + count
        var block = start
        while block < end {
            let piece = SwapSpace.piece(at: block, upTo: end)
            guard let device = devices[piece.slot], device.all(piece.pages, areUsed: true) else { throw .blockNotInUse }
            block += piece.count
        }
        block = start
        while block < end {
            let piece = SwapSpace.piece(at: block, upTo: end)
            let device = devices[piece.slot]!
            device.set(piece.pages, used: false)
            // A draining device's blocks stay held in the Blist: the device is leaving.
            if !device.isDraining { try! blist!.free(start: block, count: piece.count) }
            block += piece.count
        }
        updateHysteresis()
    }

    /// Retires in-use `block` after a write error: it is never handed out again, no longer
    /// counts as usable, and the device's header is rewritten (and flushed) to list it before
    /// this returns, so the next swapon keeps it out too. Returns whether the header got it;
    /// the quarantine holds in memory either way. Throws `blockNotInUse` (changing nothing).
    @discardableResult
    public func quarantine(_ block: UInt64) throws(SwapError) -> QuarantineRecord {
        guard isInUse(block) else { throw .blockNotInUse }
        let (slot, page) = SwapSpace.location(of: block)
        let device = devices[slot]!
        device.set(page..<(page + 1), used: false)
        device.markBad(page)
        devicesChanged()
        return persistQuarantine(slot: slot)
    }

    // MARK: Reservation

    /// Reserves swap for `pages` pages of anonymous memory (at object creation or growth).
    /// Throws `overcommitted` when that would pass `reservationLimit`.
    public func reserve(_ pages: UInt64) throws(SwapError) {
        let (total, overflow) = reservedPages.addingReportingOverflow(pages)
        guard !overflow, total <= reservationLimit else { throw .overcommitted }
        reservedPages = total
    }

    /// Returns a reservation. Throws `notReserved` for more than is reserved.
    public func unreserve(_ pages: UInt64) throws(SwapError) {
        guard pages <= reservedPages else { throw .notReserved }
        reservedPages -= pages
    }

    /// Swap-full hysteresis (FreeBSD's swap_pager_almost_full, with watermarks that scale
    /// with the swap size instead of fixed page counts): nearly full below the low
    /// watermark, available again only above the high one, so the pageout daemon does not
    /// flap around one threshold.
    /// A device came, went or lost a block: recounts the usable blocks, then the hysteresis.
    private func devicesChanged() {
        totalBlocks = devices.reduce(0) { $0 + ($1?.usableBlocks ?? 0) }
        updateHysteresis()
    }

    private func updateHysteresis() {
        let free = freeBlocks
        let low = lowWatermark
        if blist == nil || free < low {
            isNearlyFull = true
        } else if free > 2 * low {
            isNearlyFull = false
        }
    }

    // MARK: I/O

    /// Reads blocks `start ..< start + frames.count` into `frames`, split at stripe
    /// boundaries into one transfer per piece (pieces run one after another; issuing them on
    /// all devices at once is left for the asynchronous pageout path). Throws `io(error)`
    /// (the first failure; every piece is still attempted, and the frames' contents are then
    /// undefined).
    public func read(start: UInt64, into frames: [PhysicalAddress]) throws(SwapError) {
        reads += 1
        do { try transfer(.read, start: start, frames: frames) } catch { readErrors += 1; throw error }
    }

    /// Writes `frames` to blocks `start ..< start + frames.count`. Throws as `read`.
    public func write(start: UInt64, from frames: [PhysicalAddress]) throws(SwapError) {
        writes += 1
        do { try transfer(.write, start: start, frames: frames) } catch { writeErrors += 1; throw error }
    }

    /// An asynchronous write started by `startWrite`: its requests per device, and the first
    /// failure seen so far.
    public struct PendingWrite {
        var tags: [(slot: Int, tags: [UInt64])] = []
        var failure: SwapError? = nil
        /// True when every request has completed (after `pollWrite`).
        public var isComplete: Bool { tags.allSatisfy { $0.tags.isEmpty } }
    }

    /// Starts writing `frames` to blocks `start ..< start + frames.count` on every device
    /// the run spans and returns without waiting (the frames stay the device's until
    /// `finishWrite` or a `pollWrite` that completes it). Never throws: a refused submit is
    /// the write's failure, reported when it finishes.
    public func startWrite(start: UInt64, from frames: [PhysicalAddress]) -> PendingWrite {
        writes += 1
        var pending = PendingWrite()
        var index = 0
        var block = start
        while index < frames.count {
            let inStripe = Int(SwapSpace.stripeBlocks - block % SwapSpace.stripeBlocks)
            let count = min(inStripe, frames.count - index)
            let (slot, page) = SwapSpace.location(of: block)
            guard let device = devices[slot], page + UInt64(count) <= device.disk.pageCount else {
                preconditionFailure("SwapSpace.startWrite: block outside every device")
            }
            var tags: [UInt64] = []
            do {
                try device.disk.start(.write, page: page, frames: Array(frames[index..<(index + count)]), tags: &tags)
            } catch {
                pending.failure = pending.failure ?? .io(error)
            }
            pending.tags.append((slot, tags))
            index += count
            block += UInt64(count)
        }
        return pending
    }

    /// Claims finished requests of `pending`; `wait`: until all have finished.
    public func pollWrite(_ pending: inout PendingWrite, wait: Bool) {
        for position in pending.tags.indices where !pending.tags[position].tags.isEmpty {
            guard let device = devices[pending.tags[position].slot] else {
                preconditionFailure("SwapSpace.pollWrite: device removed with writes in flight")
            }
            var failure: BlockDeviceError? = nil
            device.disk.poll(&pending.tags[position].tags, failure: &failure, wait: wait)
            if let failure, pending.failure == nil { pending.failure = .io(failure) }
        }
    }

    /// Waits for `pending` to complete. Throws its first failure, as `write` would.
    public func finishWrite(_ pending: PendingWrite) throws(SwapError) {
        var pending = pending
        pollWrite(&pending, wait: true)
        if let failure = pending.failure { writeErrors += 1; throw failure }
    }

    private func transfer(_ operation: BlockOperation, start: UInt64, frames: [PhysicalAddress]) throws(SwapError) {
        var index = 0
        var block = start
        var failure: SwapError? = nil
        while index < frames.count {
            let inStripe = Int(SwapSpace.stripeBlocks - block % SwapSpace.stripeBlocks)
            let count = min(inStripe, frames.count - index)
            let (slot, page) = SwapSpace.location(of: block)
            guard let device = devices[slot], page + UInt64(count) <= device.disk.pageCount else {
                preconditionFailure("SwapSpace.transfer: block outside every device")
            }
            do {
                try device.disk.transfer(operation, page: page, frames: Array(frames[index..<(index + count)]))
            } catch {
                failure = failure ?? .io(error)
            }
            index += count
            block += UInt64(count)
        }
        if let failure { throw failure }
    }
}
