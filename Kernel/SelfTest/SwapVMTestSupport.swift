// SwapVMTestSupport: what the pageout suite and the swap_pager suite's VM tests share: a VM
// test bed with swap (the swap_pager suite's disk window) attached to the kernel VMSystem and
// the page frames available to the VM limited (the pageout daemon's `residentLimit`), so a
// working set larger than "memory" runs without booting with little RAM; and page patterns
// keyed by address and generation.
// Invariants: every swap test leaves the VMSystem without swap, without a resident limit and
// with the daemon's default targets; everything it created is released before swapoff, so
// swapoff finds no block in use and no reservation.

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
