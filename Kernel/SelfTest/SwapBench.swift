// SwapBench: swap pager costs on the virtio disk's benchmark region (sectors 8192..16383,
// the swap window the swap_pager suite uses), with a same-run baseline: raw sequential
// virtio-blk writes and reads of the same pages in the same 16-page requests, one at a time
// (`baseline_raw_write_16`, `baseline_raw_read_16`). Reported per page: pageout in clusters
// of 16 with asynchronous writes (`pageout_clustered`), pagein with read-ahead (a
// sequential scan faulting on each page not yet resident: `pagein_read_ahead`) and without
// (one read per page: `pagein_single`); device reads per fault both ways, in hundredths; metadata
// bytes per swapped page (this object, and a dense 32768-page object), in hundredths; and
// the most cluster writes in flight. Then the VM end to end (`working_set_*`): a map four
// times the daemon's resident limit written one page after another through real faults
// (zero-fill, pageout daemon, laundry) and read back (faults, pagein with read-ahead); its
// swap throughput is reported as a ratio of the raw baseline's for the same pages moved,
// in hundredths, next to the same first touches with no limit (the fault cost alone). Nothing judges the numbers; under TCG only ratios within one run mean
// anything. A failed transfer or a wrong word read back is counted in `errors`, never hidden.

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
    var rawCycles: (write: UInt64, read: UInt64) = (0, 0)
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
        let elapsed = bench.cycles() &- start
        if operation == .write { rawCycles.write = elapsed } else { rawCycles.read = elapsed }
        bench.report(label, operations: pageCount, cycles: elapsed)
    }
    // The baseline read overwrote the pages with what the baseline wrote: the same data.
    // Raw reads in 8-page requests: what one sequential read-ahead fault asks the disk for.
    var start = bench.cycles()
    var first = 0
    while first < pageCount {
        let segments = (first..<(first + 8)).map { BlockSegment(pages: 1, at: pages[$0].physicalAddress) }
        do throws(BlockDeviceError) {
            try disk.perform(.read, at: firstSector + sectorsPerPage * (1 + UInt64(first)), segments: segments)
        } catch {
            errors += 1
        }
        first += 8
    }
    bench.report("baseline_raw_read_8", operations: pageCount, cycles: bench.cycles() &- start)
    // The per-page checksum every pageout computes and every pagein verifies.
    var checksums: UInt32 = 0
    bench.measure("checksum_page", operations: pageCount) {
        for page in pages { checksums ^= SwapChecksum.of(page.contents) }
    }
    if checksums == 0x5EED_0000 { bench.value("checksum_fold", UInt64(checksums), unit: "bits") }   // keeps the loop

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
    start = bench.cycles()
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
    errors += workingSetBench(bench, space, rawCyclesPerPage: (rawCycles.write / UInt64(pageCount), rawCycles.read / UInt64(pageCount)))
    try? space.swapOff(identifier: 0x5357_4245_4E43_4801)
    bench.value("errors", errors, unit: "count")
}

/// The working-set benchmark (see the header) over `space`. Returns the errors seen.
private func workingSetBench(_ bench: BenchmarkContext, _ space: SwapSpace, rawCyclesPerPage raw: (write: UInt64, read: UInt64)) -> UInt64 {
    let system = kernelVMSystem()
    guard let kernel = kernelPmap, let map = try? VMMap(system: system) else { return 1 }
    let pages = 768
    let limit = pages / 4
    let daemon = system.pageout
    let saved = (daemon.freeMinimum, daemon.freeTarget, daemon.residentLimit)
    system.swapSpace = space
    (daemon.freeMinimum, daemon.freeTarget) = (16, 64)
    daemon.residentLimit = system.residentPageTotal + limit
    let savedHandler = PageFaultDispatcher.handler
    var residentMap: VMMap? = nil
    PageFaultDispatcher.handler = { fault in
        (try? (residentMap ?? map).fault(at: fault.address, access: fault.access)) != nil ? .resolved : .unhandled
    }
    defer {
        PageFaultDispatcher.handler = savedHandler
        try? kernel.activate()
        map.destroy()
        system.swapSpace = nil
        (daemon.freeMinimum, daemon.freeTarget, daemon.residentLimit) = saved
    }
    var errors: UInt64 = 0
    guard (try? map.map(nil, at: vmTestBase, length: UInt64(pages) << pageShift, protection: .readWrite)) != nil else { return 1 }
    bench.value("working_set_pages", UInt64(pages), unit: "pages")
    bench.value("working_set_resident_limit", UInt64(limit), unit: "pages")
    // The same first touches with no limit: the fault cost the working set pays without swap.
    if let resident = try? VMMap(system: system),
       (try? resident.map(nil, at: vmTestBase, length: UInt64(pages) << pageShift, protection: .readWrite)) != nil,
       (try? resident.pmap.activate()) != nil {
        let limitSaved = daemon.residentLimit
        daemon.residentLimit = nil
        residentMap = resident
        bench.measure("working_set_resident_first_touch", operations: pages) {
            for index in 0..<pages { userStore(vmTestBase + UInt64(index) << pageShift, UInt64(index)) }
        }
        daemon.residentLimit = limitSaved
        residentMap = nil
        try? kernel.activate()   // never destroy the active address space
        resident.destroy()
    }
    guard (try? map.pmap.activate()) != nil else { return 1 }

    // Phase 1 writes every page (zero-fill faults; the daemon launders the oldest), phase 2
    // reads every page back (pagein faults with read-ahead; the daemon frees clean pages and
    // launders the dirty ones still resident). Each phase's raw equivalent is the baseline's
    // cost for the pages it wrote and read.
    var phases: [(cycles: UInt64, written: UInt64, read: UInt64, faults: UInt64, reads: UInt64)] = []
    for phase in 0..<2 {
        let before = (laundered: daemon.statistics.laundered, paged: system.statistics.pageIns + system.statistics.pagesReadAhead,
                      faults: system.statistics.pageInOperations, reads: space.reads)
        let start = bench.cycles()
        for index in 0..<pages {
            let address = vmTestBase + UInt64(index) << pageShift
            if phase == 0 {
                userStore(address, patternWord(address, 1, 0))
            } else if userLoad(address) != patternWord(address, 1, 0) {
                errors += 1
            }
        }
        daemon.settle(nil)
        phases.append((bench.cycles() &- start, UInt64(daemon.statistics.laundered - before.laundered),
                       UInt64(system.statistics.pageIns + system.statistics.pagesReadAhead - before.paged),
                       UInt64(system.statistics.pageInOperations - before.faults), space.reads - before.reads))
    }
    let out = phases[0], back = phases[1]
    bench.report("working_set_swap_out", operations: Int(out.written), cycles: out.cycles)
    bench.report("working_set_swap_in", operations: Int(back.read + back.written), cycles: back.cycles)
    bench.value("working_set_pages_written", out.written + back.written, unit: "pages")
    bench.value("working_set_pages_read", out.read + back.read, unit: "pages")
    bench.value("working_set_pagein_ios_per_fault_x100", back.reads * 100 / max(back.faults, 1), unit: "hundredths")
    bench.value("working_set_pages_per_pagein_x100", back.read * 100 / max(back.faults, 1), unit: "hundredths")
    let rawOut = out.written * raw.write + out.read * raw.read
    let rawBack = back.written * raw.write + back.read * raw.read
    bench.value("working_set_throughput_vs_raw_x100", (rawOut + rawBack) * 100 / max(out.cycles + back.cycles, 1), unit: "hundredths")
    bench.value("working_set_out_vs_raw_x100", rawOut * 100 / max(out.cycles, 1), unit: "hundredths")
    bench.value("working_set_in_vs_raw_x100", rawBack * 100 / max(back.cycles, 1), unit: "hundredths")
    bench.value("working_set_peak_laundry_writes", UInt64(daemon.statistics.peakLaundryWrites), unit: "writes")
    return errors
}
