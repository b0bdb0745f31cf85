// SwapBench: swap pager costs on the virtio disk's benchmark region (sectors 8192..16383,
// the swap window the swap_pager suite uses), with a same-run baseline: raw sequential
// virtio-blk writes and reads of the same pages in the same 16-page requests, one at a time
// (`baseline_raw_write_16`, `baseline_raw_read_16`). Reported per page: pageout in clusters
// of 16 with asynchronous writes (`pageout_clustered`), pagein with read-ahead (a
// sequential scan faulting on each page not yet resident: `pagein_read_ahead`) and without
// (one read per page: `pagein_single`); device reads per fault both ways, in hundredths; metadata
// bytes per swapped page (this object, and a dense 32768-page object), in hundredths; and
// the most cluster writes in flight. Nothing judges the numbers; under TCG only ratios
// within one run mean anything. A failed transfer is counted in `errors`, never hidden.

let swapBenchmarks = BenchmarkSuite("swap") { bench in
    let disk: PlatformBlockDevice
    do throws(BlockDeviceError) { disk = try Platform.blockDevice(at: 0) } catch {
        bench.value("disk_attached", 0, unit: "bool")
        return
    }
    let firstSector = VirtioTestDisk.benchFirstSector
    let sectors = VirtioTestDisk.sectorCount - firstSector
    let space = SwapSpace()
    do throws(SwapError) {
        try space.swapOn(try SwapDisk.over(disk, firstBlock: firstSector, blockCount: sectors), identifier: 0x5357_4245_4E43_4801)
    } catch {
        bench.value("swapon", 0, unit: "bool")
        return
    }
    let pageCount = 512
    var pages: [Page] = []
    for index in 0..<pageCount {
        guard let page = try? pageFrames.allocate(zeroed: false) else { break }
        for word in 0..<Int(pageSize / 8) {
            page.contents.storeBytes(of: UInt64(index) << 32 ^ UInt64(word), toByteOffset: word * 8, as: UInt64.self)
        }
        pages.append(page)
    }
    defer { for page in pages { try? pageFrames.free(page) } }
    guard pages.count == pageCount else {
        bench.value("pages", UInt64(pages.count), unit: "pages")
        return
    }
    bench.value("pages", UInt64(pageCount), unit: "pages")
    var errors: UInt64 = 0

    // Baseline: the same pages, raw, 16 per request, sequential blocks, one request at a time.
    let sectorsPerPage = UInt64(VirtioTestDisk.sectorsPerPage)
    for (label, operation) in [("baseline_raw_write_16", BlockOperation.write), ("baseline_raw_read_16", .read)] as [(StaticString, BlockOperation)] {
        let start = bench.cycles()
        var first = 0
        while first < pageCount {
            let segments = (first..<(first + 16)).map { BlockSegment(pages: 1, at: pages[$0].physicalAddress) }
            do throws(BlockDeviceError) {
                try disk.perform(operation, at: firstSector + sectorsPerPage * (1 + UInt64(first)), segments: segments)
            } catch {
                errors += 1
            }
            first += 16
        }
        bench.report(label, operations: pageCount, cycles: bench.cycles() &- start)
    }
    // The baseline read overwrote the pages with what the baseline wrote: the same data.

    // Pageout: clustered, asynchronous.
    let pager = SwapPager(space: space, pageCountHint: UInt64(pageCount))
    let batch = pages.enumerated().map { (index: UInt64($0.offset), page: $0.element) }
    var failed = 0
    bench.measure("pageout_clustered", operations: pageCount) {
        failed = pager.pageOut(batch).filter { $0 != nil }.count
    }
    errors += UInt64(failed)
    bench.value("pageout_writes", pager.pageOutWrites, unit: "ios")
    bench.value("pageout_peak_writes_in_flight", UInt64(pager.peakWritesInFlight), unit: "writes")

    // Pagein with read-ahead: a sequential scan faults on each page not yet resident; the
    // fault reads the page and up to 7 neighbours each way on consecutive blocks in one I/O.
    var faults: UInt64 = 0
    var pagesRead: UInt64 = 0
    let readsBefore = pager.pageInReads
    var start = bench.cycles()
    var resident = [Bool](repeating: false, count: pageCount)
    for index in 0..<pageCount {
        if resident[index] { continue }
        guard let plan = pager.readAheadPlan(around: UInt64(index), within: 0..<UInt64(pageCount), isResident: { resident[Int($0)] }) else {
            errors += 1
            break
        }
        faults += 1
        let targets = plan.indices.map { pages[Int($0)] }
        errors += UInt64(pager.pageIn(targets, plan: plan).filter { $0 != nil }.count)
        for covered in plan.indices { resident[Int(covered)] = true }
        pagesRead += UInt64(plan.indices.count)
    }
    bench.report("pagein_read_ahead", operations: pageCount, cycles: bench.cycles() &- start)
    bench.value("pagein_read_ahead_ios_per_fault_x100", (pager.pageInReads - readsBefore) * 100 / max(faults, 1), unit: "hundredths")
    bench.value("pagein_read_ahead_faults", faults, unit: "faults")
    bench.value("pagein_read_ahead_pages_per_io_x100", pagesRead * 100 / max(pager.pageInReads - readsBefore, 1), unit: "hundredths")

    // Pagein without read-ahead: one fault, one read per page.
    let singleBefore = pager.pageInReads
    start = bench.cycles()
    for index in 0..<pageCount {
        do throws(SwapPagerError) { try pager.pageIn(pages[index], index: UInt64(index)) } catch { errors += 1 }
    }
    bench.report("pagein_single", operations: pageCount, cycles: bench.cycles() &- start)
    bench.value("pagein_single_ios_per_fault_x100", (pager.pageInReads - singleBefore) * 100 / UInt64(pageCount), unit: "hundredths")

    // Metadata bytes per swapped page: this object, and a dense large (hashed) one.
    bench.value("metadata_bytes_per_page_x100", UInt64(pager.metadata.memoryBytes) * 100 / UInt64(max(pager.metadata.count, 1)), unit: "hundredths")
    var dense = SwapMetadata(pageCountHint: 1 << 15)
    for index: UInt64 in 0..<(1 << 15) { _ = try? dense.insert(SwapSlot(block: UInt32(index), checksum: 0), at: index) }
    bench.value("metadata_dense_32768_bytes_per_page_x100", UInt64(dense.memoryBytes) * 100 / UInt64(dense.count), unit: "hundredths")
    dense.removeAll { _, _ in }

    pager.terminate()
    try? space.swapOff(identifier: 0x5357_4245_4E43_4801)
    bench.value("errors", errors, unit: "count")
}
