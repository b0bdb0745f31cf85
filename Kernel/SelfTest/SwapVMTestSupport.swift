// SwapVMTestSupport: what the pageout suite and the swap_pager suite share: where their swap
// lives (`Platform.swapTestDisk`, a window of the machine's test disk), a VM test bed with swap
// attached to the kernel VMSystem and the page frames available to the VM limited (the
// pageout daemon's `residentLimit`), so a working set larger than "memory" runs without
// booting with little RAM; and page patterns keyed by address and generation.
// Invariants: every swap test leaves the VMSystem without swap, without a resident limit and
// with the daemon's default targets; everything it created is released before swapoff, so
// swapoff finds no block in use and no reservation. Every swapon initialises the header, so a
// quarantine one test persisted on the shared window does not carry over to the next.
// Swap tests write only inside the window
// the platform hands out (virtio disk: scripts/disk_image.py BENCH_REGION; Raspberry Pi: the
// SD card's swap partition from block 1024 on, see Arch/aarch64/Board.swift).

/// Why the swap tests have no window to swap on.
enum SwapTestDiskError: Error {
    /// The machine has no test disk (or none was attached): the tests skip with this reason.
    case unavailable(StaticString)
    /// The disk is there but cannot hold the window: the tests fail with this reason.
    case unusable(StaticString)
}

/// The swap tests' window: `blockCount` device blocks on whatever disk the platform's
/// `swapTestDisk(slice:of:)` chooses, split in equal slices when a test needs several devices.
enum SwapTestWindow {
    /// Blocks in the whole window (4 MiB of 512-byte blocks).
    static let blockCount: UInt64 = 8192
    /// First block of the window on the virtio test disk: its benchmark scratch region
    /// (sectors 8192..16383, scripts/disk_image.py BENCH_REGION), which check-disk-image.py
    /// leaves free; the virtio_blk suite's sectors and the host region are never written.
    static let virtioFirstBlock: UInt64 = 8192
    /// Swap identifier of slice i is `identifier + i`.
    static let identifier: UInt64 = 0x5357_4150_0000_0001

    /// Slice `slice` of `slices` equal parts of device blocks [firstBlock, firstBlock + blockCount).
    static func slice<Device: BlockDevice>(_ device: Device, firstBlock: UInt64, slice: Int,
                                           of slices: Int) throws(SwapTestDiskError) -> SwapDisk {
        precondition(slices >= 1 && slice >= 0 && slice < slices, "SwapTestWindow: bad slice")
        guard device.geometry.blockCount >= firstBlock + blockCount else {
            throw .unusable("the test disk is too small for the swap window")
        }
        let length = blockCount / UInt64(slices)
        do {
            return try SwapDisk.over(device, firstBlock: firstBlock + UInt64(slice) * length, blockCount: length)
        } catch {
            throw .unusable("the test disk cannot hold a swap window")
        }
    }

    /// The window on the first virtio-blk disk (the machines with a virtio transport).
    static func onVirtioDisk(slice: Int, of slices: Int) throws(SwapTestDiskError) -> SwapDisk {
        let disk: PlatformBlockDevice
        do { disk = try Platform.blockDevice(at: 0) } catch {
            throw .unavailable("no virtio-blk disk attached: boot with the Makefile's QEMU command")
        }
        return try self.slice(disk, firstBlock: virtioFirstBlock, slice: slice, of: slices)
    }
}

/// A swap space on the test window (or `devices` equal slices of it, each its own device),
/// with the disks swapped on, or nil after recording why not (skip or failure).
func testSwapSpace(_ t: inout TestContext, devices: Int = 1) -> (SwapSpace, [SwapDisk])? {
    var disks: [SwapDisk] = []
    for index in 0..<devices {
        do throws(SwapTestDiskError) {
            disks.append(try Platform.swapTestDisk(slice: index, of: devices))
        } catch {
            switch error {
            case .unavailable(let reason): t.skip(reason)
            case .unusable(let reason): t.expect(false, reason)
            }
            return nil
        }
    }
    let space = SwapSpace()
    for (index, disk) in disks.enumerated() {
        do throws(SwapError) {
            try space.swapOn(disk, identifier: SwapTestWindow.identifier + UInt64(index), header: .initialise)
        } catch {
            t.expect(false, "swapon of the test window")
            for identifier in space.deviceIdentifiers { try? space.swapOff(identifier: identifier) }
            return nil
        }
    }
    return (space, disks)
}

/// A VM test with swap attached: `limit` pages of room above what is resident now (nil: no
/// limit). The body gets the swap space; tear-down releases the bed's maps and objects,
/// checks no swap block or reservation is left and swaps off.
func swapVMTest(_ name: StaticString, limit: Int?,
                _ body: @escaping (inout TestContext, VMTestBed, SwapSpace) -> Void) -> SelfTest {
    vmTest(name) { t, bed in
        guard let (space, _) = testSwapSpace(&t) else { return }
        let system = bed.system
        let daemon = system.pageout
        let saved = (daemon.freeMinimum, daemon.freeTarget)
        system.swapSpace = space
        daemon.freeMinimum = 4
        daemon.freeTarget = 16
        if let limit { daemon.residentLimit = system.residentPageTotal + limit }
        body(&t, bed, space)
        daemon.residentLimit = nil
        bed.releaseAll()
        (daemon.freeMinimum, daemon.freeTarget) = saved
        system.swapSpace = nil
        t.expectEqual(space.usedBlocks, 0, "no swap block left in use after tear-down")
        t.expectEqual(space.reservedPages, 0, "no swap reservation left after tear-down")
        for identifier in space.deviceIdentifiers {
            do throws(SwapError) { try space.swapOff(identifier: identifier) } catch { t.expect(false, "swapoff of the test window") }
        }
    }
}

/// Pages out every resident page of the VM's objects it can (a full pressure run).
func pageOutEverything(_ system: VMSystem) {
    startPageOutEverything(system)
    system.pageout.settle(nil)   // the laundry is asynchronous: collect every write the run started
}

/// One daemon run that wants every resident page gone; returns with its writes in flight.
func startPageOutEverything(_ system: VMSystem) {
    let daemon = system.pageout
    let saved = (daemon.residentLimit, daemon.freeTarget)
    daemon.residentLimit = system.residentPageTotal
    daemon.freeTarget = system.residentPageTotal
    daemon.run(urgent: true)
    (daemon.residentLimit, daemon.freeTarget) = saved
}

/// The word `word` of the page at `address` in generation `generation`.
func patternWord(_ address: UInt64, _ generation: UInt64, _ word: Int) -> UInt64 {
    (address &* 0x9E37_79B9_7F4A_7C15) ^ (generation << 56) ^ UInt64(word)
}

/// Fills `pages` pages from `base` through the MMU with generation `generation`.
func writePattern(base: UInt64, pages: Int, generation: UInt64) {
    for page in 0..<pages {
        let address = base + (UInt64(page) << pageShift)
        for word in 0..<Int(pageSize / 8) { userStore(address + UInt64(word * 8), patternWord(address, generation, word)) }
    }
}

/// Pages from `base` whose contents differ from generation `generation` (0 = all intact).
func patternMismatches(base: UInt64, pages: Int, generation: UInt64) -> Int {
    var bad = 0
    for page in 0..<pages {
        let address = base + (UInt64(page) << pageShift)
        for word in 0..<Int(pageSize / 8) where userLoad(address + UInt64(word * 8)) != patternWord(address, generation, word) {
            bad += 1
            break
        }
    }
    return bad
}

/// A map with `pages` pages of anonymous memory at vmTestBase, loaded into the MMU.
func swapTestMap(_ t: inout TestContext, _ bed: VMTestBed, pages: Int) -> VMMap? {
    guard let map = bed.newMap(&t) else { return nil }
    let mapped = t.vmSucceeds("map anonymous memory") { () throws(MapError) in
        try map.map(nil, at: vmTestBase, length: UInt64(pages) << pageShift, protection: .readWrite,
                    inheritance: .copy, copyStrategy: .symmetric)
    }
    guard mapped != nil else { return nil }
    bed.activate(&t, map)
    return map
}
