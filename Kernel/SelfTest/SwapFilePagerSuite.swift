// SwapFilePagerSuite: the swap-file pager (Kernel/VM/SwapFilePager.swift) against the real
// virtio-blk disk: a read-only mapping of the disk's host region (sectors 0..4095, the HOST
// pattern scripts/disk_image.py writes; the kernel only reads it), read through real MMU
// faults. Proves the device's own bytes arrive (XNU's pager returns zeros), read-ahead makes
// one I/O per fault cluster, clean pages are dropped and read again, a writable shared
// mapping is refused with a typed error and a private one is copy-on-write.
// Invariants: nothing here writes the disk. Without a virtio disk every test is skipped.

let swapFilePagerSuite = SelfTestSuite("swap_file_pager", [
    vmTest("swap_file_fault_reads_real_device_data_with_read_ahead", swapFileFaultReadsRealDeviceData),
    vmTest("swap_file_writable_shared_mapping_refused", swapFileWritableSharedMappingRefused),
    vmTest("swap_file_clean_pages_dropped_and_read_again", swapFileCleanPagesDroppedAndReadAgain),
    vmTest("swap_file_private_write_is_copy_on_write", swapFilePrivateWriteIsCopyOnWrite),
])

/// Pages of the host region mapped by the tests, and the region page the mapping starts at.
private let mappedPages = 16
private let firstRegionPage: UInt64 = 5

/// A swap-file pager over the disk's host region, or nil after a skip or failure.
private func hostRegionPager(_ t: inout TestContext) -> SwapFilePager? {
    guard Platform.blockDeviceSlotCount > 0 else {
        t.skip("this machine has no virtio transport: swap_file_pager does not apply")
        return nil
    }
    let disk: PlatformBlockDevice
    do { disk = try Platform.blockDevice(at: 0) } catch {
        t.skip("no virtio-blk disk attached: boot with the Makefile's QEMU command")
        return nil
    }
    do {
        return try SwapFilePager.over(disk, firstBlock: 0, blockCount: VirtioTestDisk.hostRegionEnd)
    } catch {
        t.expect(false, "swap-file pager over the host region")
        return nil
    }
}

/// Maps `mappedPages` region pages from `firstRegionPage` at vmTestBase and activates the map.
private func mapRegion(_ t: inout TestContext, _ bed: VMTestBed, _ pager: SwapFilePager,
                       protection: Protection = .readOnly, copyOnWrite: Bool = false) -> VMMap? {
    guard let map = bed.newMap(&t) else { return nil }
    do {
        try pager.map(into: map, offset: firstRegionPage << pageShift, at: vmTestBase,
                      length: UInt64(mappedPages) << pageShift, protection: protection, copyOnWrite: copyOnWrite)
    } catch {
        t.expect(false, "map the swap region")
        return nil
    }
    bed.activate(&t, map)
    return map
}

/// Mapped pages whose words (read through the MMU) differ from the HOST pattern the host wrote.
private func hostPatternMismatches(pages: Range<Int>) -> Int {
    var bad = 0
    let sectorsPerPage = UInt64(VirtioTestDisk.sectorsPerPage)
    let wordsPerSector = VirtioTestDisk.sectorBytes / 8
    for page in pages {
        let address = vmTestBase + (UInt64(page) << pageShift)
        let firstSector = (firstRegionPage + UInt64(page)) * sectorsPerPage
        var intact = true
        for word in 0..<Int(pageSize / 8) {
            let expected = VirtioTestDisk.word(sector: firstSector + UInt64(word / wordsPerSector),
                                               index: word % wordsPerSector, magic: VirtioTestDisk.hostMagic)
            if userLoad(address + UInt64(word * 8)) != expected { intact = false; break }
        }
        if !intact { bad += 1 }
    }
    return bad
}

private func swapFileFaultReadsRealDeviceData(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let pager = hostRegionPager(&t), mapRegion(&t, bed, pager) != nil else { return }
    let faults = bed.system.statistics.faults
    // Fault in the middle: 7 behind and 7 ahead come with it in one device read.
    t.expectEqual(hostPatternMismatches(pages: 8..<9), 0, "the faulting page holds the device's bytes")
    t.expectEqual(pager.reads, 1, "one device read for the fault")
    t.expectEqual(pager.pagesRead, 15, "the page and 7 read-ahead on each side")
    t.expectEqual(hostPatternMismatches(pages: 0..<mappedPages), 0, "every mapped page holds the device's bytes")
    t.expect(pager.reads <= 2, "page 0's side came in one more read at most")
    t.expect(bed.system.statistics.faults - faults >= 2, "real MMU faults resolved them")
}

private func swapFileWritableSharedMappingRefused(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let pager = hostRegionPager(&t), let map = bed.newMap(&t) else { return }
    let objects = bed.system.objects.count
    var refused = false
    do {
        try pager.map(into: map, at: vmTestBase, length: pageSize, protection: .readWrite)
    } catch {
        refused = error == .writableSharedMapping
    }
    t.expect(refused, "a writable shared mapping is refused with writableSharedMapping")
    t.expectEqual(map.entries.count, 0, "nothing was mapped")
    t.expectEqual(bed.system.objects.count, objects, "no object was left behind")
    // A read-only mapping cannot be made writable later, and a store through it faults.
    guard let readOnly = mapRegion(&t, bed, pager) else { return }
    var protectRefused = false
    do { try readOnly.protect(start: vmTestBase, length: pageSize, to: .readWrite) } catch {
        protectRefused = error == .protectionExceedsMaximum
    }
    t.expect(protectRefused, "protect to write exceeds the maximum protection")
    t.expect(!probeStore(vmTestBase, 0x5757), "a store through the read-only mapping faults")
    t.expectEqual(bed.takeUnresolvedFaults(), 1, "the store was refused by vm_fault")
    t.expectEqual(hostPatternMismatches(pages: 0..<1), 0, "the page still holds the device's bytes")
}

private func swapFileCleanPagesDroppedAndReadAgain(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let pager = hostRegionPager(&t), let map = mapRegion(&t, bed, pager) else { return }
    t.expectEqual(hostPatternMismatches(pages: 0..<mappedPages), 0, "first read")
    guard let object = map.entries.first?.object else { t.expect(false, "the entry has its object"); return }
    t.expect(object.residentPageCount >= mappedPages, "pages resident")
    pageOutEverything(bed.system)
    t.expectEqual(object.residentPageCount, 0, "clean pages were dropped without a write")
    let reads = pager.reads
    t.expectEqual(hostPatternMismatches(pages: 0..<mappedPages), 0, "read again from the device")
    t.expect(pager.reads > reads, "the device was read again")
}

private func swapFilePrivateWriteIsCopyOnWrite(_ t: inout TestContext, _ bed: VMTestBed) {
    guard let pager = hostRegionPager(&t), let map = mapRegion(&t, bed, pager, protection: .readWrite, copyOnWrite: true) else { return }
    t.expectEqual(hostPatternMismatches(pages: 1..<2), 0, "device bytes before the write")
    userStore(vmTestBase + (1 << pageShift), 0xC0FFEE)
    t.expectEqual(userLoad(vmTestBase + (1 << pageShift)), 0xC0FFEE, "the private copy took the write")
    t.expectEqual(hostPatternMismatches(pages: 2..<3), 0, "other pages still show the device")
    t.expect(map.entries.first?.object != nil, "the entry has its object")
    // The device region itself is unchanged: read it through the pager into a fresh page.
    guard let page = try? bed.system.pages.allocate(zeroed: true) else { t.expect(false, "a page"); return }
    do { try pager.read(page: firstRegionPage + 1, into: [page.physicalAddress]) } catch { t.expect(false, "direct read") }
    let expected = VirtioTestDisk.word(sector: (firstRegionPage + 1) * UInt64(VirtioTestDisk.sectorsPerPage), index: 0,
                                       magic: VirtioTestDisk.hostMagic)
    t.expectEqual(page.contents.load(as: UInt64.self), expected, "the device still holds the host pattern")
    try? bed.system.pages.free(page)
}
