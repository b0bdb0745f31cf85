// VirtioBlockSuite: proves the virtio-blk driver does real device I/O on the swap disk that
// `make test` attaches (scripts/make-disk-image.py): reads what the host wrote, writes and
// reads back, moves multi-page and discontiguous requests, keeps many requests in flight,
// flushes, completes by interrupt, and refuses bad requests with the right typed error before
// they reach the device. After the run, scripts/check-disk-image.py verifies on the host
// that the kernel's writes are in the image and that nothing else changed.
// Invariants: the tests only write the sectors `VirtioTestDisk` assigns them, always with the
// KERNEL pattern; every rejected request is aimed at the untouched region, so one that
// reached the device would show up in the host check. Without a disk every test is skipped
// (the host check then fails under `make test`).

/// The test disk's layout and patterns; mirrors scripts/disk_image.py.
enum VirtioTestDisk {
    static let sectorBytes = 512
    static let sectorCount: UInt64 = 16384
    static let hostMagic: UInt64 = 0x484F_5354_0000_0000
    static let kernelMagic: UInt64 = 0x4B45_524E_0000_0000
    /// [0, hostRegionEnd): the host pattern; only read.
    static let hostRegionEnd: UInt64 = 4096
    static let roundTripSector: UInt64 = 4096       // 8 sectors
    static let multiPageSector: UInt64 = 4104       // 128 sectors
    static let inFlightSector: UInt64 = 4232        // 256 sectors: 32 requests of 8
    static let flushSector: UInt64 = 4488           // 8 sectors
    /// First sector no self-test may write; rejected requests aim here.
    static let untouchedSector: UInt64 = 5000
    /// [benchFirstSector, sectorCount): benchmark scratch.
    static let benchFirstSector: UInt64 = 8192

    static var sectorsPerPage: Int { Int(pageSize) / sectorBytes }

    /// Word `k` of `sector` in the pattern with `magic`.
    static func word(sector: UInt64, index: Int, magic: UInt64) -> UInt64 {
        (sector << 16 | UInt64(index)) ^ magic
    }

    /// Writes the pattern of `sectors` sectors from `firstSector` into memory at `address`.
    static func fill(_ address: PhysicalAddress, sectors: Int, from firstSector: UInt64, magic: UInt64) {
        let bytes = DirectMap.pointer(to: address)
        for s in 0..<sectors {
            for k in 0..<sectorBytes / 8 {
                bytes.storeBytes(of: word(sector: firstSector + UInt64(s), index: k, magic: magic),
                                 toByteOffset: (s * sectorBytes / 8 + k) * 8, as: UInt64.self)
            }
        }
    }

    /// Number of sectors in memory at `address` that do not hold the expected pattern.
    static func mismatchedSectors(_ address: PhysicalAddress, sectors: Int, from firstSector: UInt64,
                                  magic: UInt64) -> Int {
        let bytes = DirectMap.pointer(to: address)
        var bad = 0
        for s in 0..<sectors {
            for k in 0..<sectorBytes / 8
                where bytes.load(fromByteOffset: (s * sectorBytes / 8 + k) * 8, as: UInt64.self)
                    != word(sector: firstSector + UInt64(s), index: k, magic: magic) {
                bad += 1
                break
            }
        }
        return bad
    }

    /// Fills `pages` pages at `address` with a junk byte, so a read that did not happen fails.
    static func junk(_ address: PhysicalAddress, pages: Int) {
        DirectMap.pointer(to: address).initializeMemory(as: UInt8.self, repeating: 0xA5, count: pages * Int(pageSize))
    }

    /// True when `pages` pages at `address` still hold only the junk byte.
    static func isJunk(_ address: PhysicalAddress, pages: Int) -> Bool {
        let bytes = DirectMap.pointer(to: address)
        for offset in 0..<pages * Int(pageSize) where bytes.load(fromByteOffset: offset, as: UInt8.self) != 0xA5 {
            return false
        }
        return true
    }
}

let virtioBlockSuite = SelfTestSuite("virtio_blk", [
    SelfTest("capacity_and_features_match_the_image", capacityAndFeaturesMatchTheImage),
    SelfTest("reads_pattern_written_by_host", readsPatternWrittenByHost),
    SelfTest("write_then_read_round_trips", writeThenReadRoundTrips),
    SelfTest("multi_page_request_moves_discontiguous_pages", multiPageRequestMovesDiscontiguousPages),
    SelfTest("many_requests_in_flight_complete_in_any_order", manyRequestsInFlightCompleteInAnyOrder),
    SelfTest("flush_after_write_succeeds", flushAfterWriteSucceeds),
    SelfTest("completion_is_signalled_by_interrupt", completionIsSignalledByInterrupt),
    SelfTest("out_of_range_requests_rejected_before_device", outOfRangeRequestsRejectedBeforeDevice),
    SelfTest("invalid_requests_rejected_before_device", invalidRequestsRejectedBeforeDevice),
    SelfTest("device_ioerr_and_unsupp_become_typed_errors", deviceErrorsBecomeTypedErrors),
    SelfTest("missing_device_reports_no_device", missingDeviceReportsNoDevice),
])

// MARK: Helpers

/// The swap disk, or nil after recording why not (skip without a disk, fail if it broke).
private func attachedDisk(_ t: inout TestContext) -> PlatformBlockDevice? {
    guard Platform.blockDeviceSlotCount > 0 else {
        t.skip("this machine has no virtio transport: virtio_blk does not apply")
        return nil
    }
    do {
        let disk = try Platform.blockDevice(at: 0)
        guard disk.geometry.blockSize == VirtioTestDisk.sectorBytes else {
            t.expectEqual(disk.geometry.blockSize, VirtioTestDisk.sectorBytes, "disk block size")
            return nil
        }
        guard !disk.hasFailed, disk.inFlightCount == 0 else {
            t.expect(false, "disk usable and idle (an earlier test left it broken or busy)")
            return nil
        }
        return disk
    } catch {
        if error == .noDevice {
            t.skip("no virtio-blk disk attached: boot with the Makefile's QEMU command")
        } else {
            t.expect(false, "the virtio-blk disk starts")
            t.note("attach failed: \(error.name)")
        }
        return nil
    }
}

/// 2^order fresh pages, or nil after recording a failure.
private func pages(order: Int, _ t: inout TestContext) -> PhysicalAddress? {
    do {
        return try physicalPages.allocate(order: order)
    } catch {
        t.expect(false, "pages for the test buffers")
        return nil
    }
}

private func release(_ address: PhysicalAddress, order: Int) {
    do { try physicalPages.free(address, order: order) } catch {
        preconditionFailure("VirtioBlockSuite: freeing a test buffer failed")
    }
}

/// Records a failure unless `body` throws exactly `expected`.
private func expectError(_ expected: BlockDeviceError, _ what: StaticString, _ t: inout TestContext,
                         file: StaticString = #fileID, line: UInt = #line,
                         _ body: () throws(BlockDeviceError) -> Void) {
    do {
        try body()
        t.expect(false, what, file: file, line: line)
        t.note("expected \(expected.name), but the request was accepted")
    } catch {
        if error != expected {
            t.expect(false, what, file: file, line: line)
            t.note("expected \(expected.name), got \(error.name)")
        }
    }
}

/// Records a failure (with the error's name) unless `body` succeeds.
private func expectSuccess(_ what: StaticString, _ t: inout TestContext, file: StaticString = #fileID,
                           line: UInt = #line, _ body: () throws(BlockDeviceError) -> Void) {
    do {
        try body()
    } catch {
        t.expect(false, what, file: file, line: line)
        t.note("failed with \(error.name)")
    }
}

// MARK: Tests

private func capacityAndFeaturesMatchTheImage(_ t: inout TestContext) {
    guard let disk = attachedDisk(&t) else { return }
    let geometry = disk.geometry
    t.expectEqual(geometry.blockCount, VirtioTestDisk.sectorCount, "capacity in 512-byte blocks")
    t.expect(disk.transport.isLegacy || disk.features & VirtioFeature.version1 != 0,
             "VERSION_1 negotiated on a modern transport")
    t.expect(geometry.supportsFlush, "FLUSH negotiated")
    t.expect(!geometry.isReadOnly, "disk is writable")
    t.expect(geometry.queueDepth >= 16, "queue depth at least 16")
    t.expect(geometry.maxSegments >= 16, "at least 16 segments per request (SEG_MAX)")
    t.note("blocks \(geometry.blockCount) x \(geometry.blockSize), queue depth \(geometry.queueDepth), "
           + "segments \(geometry.maxSegments), features 0x\(String(disk.features, radix: 16))")
}

private func readsPatternWrittenByHost(_ t: inout TestContext) {
    guard let disk = attachedDisk(&t), let buffer = pages(order: 4, &t) else { return }
    defer { release(buffer, order: 4) }
    // The first page, a 64 KiB run in the middle, and the last page of the host region.
    let runs: [(sector: UInt64, pages: Int)] = [(0, 1), (1024, 16), (VirtioTestDisk.hostRegionEnd - 8, 1)]
    for run in runs {
        VirtioTestDisk.junk(buffer, pages: run.pages)
        expectSuccess("read of the host region", &t) { () throws(BlockDeviceError) in
            try disk.read(at: run.sector, into: CollectionOfOne(BlockSegment(pages: run.pages, at: buffer)))
        }
        let sectors = run.pages * VirtioTestDisk.sectorsPerPage
        t.expectEqual(VirtioTestDisk.mismatchedSectors(buffer, sectors: sectors, from: run.sector,
                                                      magic: VirtioTestDisk.hostMagic), 0,
                      "sectors not holding the host pattern")
    }
}

private func writeThenReadRoundTrips(_ t: inout TestContext) {
    guard let disk = attachedDisk(&t), let source = pages(order: 0, &t) else { return }
    defer { release(source, order: 0) }
    guard let target = pages(order: 0, &t) else { return }
    defer { release(target, order: 0) }
    let sector = VirtioTestDisk.roundTripSector
    VirtioTestDisk.fill(source, sectors: 8, from: sector, magic: VirtioTestDisk.kernelMagic)
    VirtioTestDisk.junk(target, pages: 1)
    expectSuccess("write", &t) { () throws(BlockDeviceError) in
        try disk.write(at: sector, from: CollectionOfOne(BlockSegment(pages: 1, at: source)))
    }
    expectSuccess("read back", &t) { () throws(BlockDeviceError) in
        try disk.read(at: sector, into: CollectionOfOne(BlockSegment(pages: 1, at: target)))
    }
    t.expectEqual(VirtioTestDisk.mismatchedSectors(target, sectors: 8, from: sector, magic: VirtioTestDisk.kernelMagic),
                  0, "sectors read back differing from those written")
}

private func multiPageRequestMovesDiscontiguousPages(_ t: inout TestContext) {
    // 16 pages (128 sectors) written from 8 two-page segments with one-page holes between
    // them, read back as one 16-page segment, then read again into 16 single pages scattered
    // in reverse order; the holes must stay untouched.
    guard let disk = attachedDisk(&t), let block = pages(order: 5, &t) else { return }
    defer { release(block, order: 5) }
    guard let contiguous = pages(order: 4, &t) else { return }
    defer { release(contiguous, order: 4) }
    let sector = VirtioTestDisk.multiPageSector
    let page = Int(pageSize)
    VirtioTestDisk.junk(block, pages: 32)
    var writeSegments: [BlockSegment] = []
    for i in 0..<8 {
        let address = block.advanced(by: UInt64(i * 3 * page))
        VirtioTestDisk.fill(address, sectors: 16, from: sector + UInt64(i * 16), magic: VirtioTestDisk.kernelMagic)
        writeSegments.append(BlockSegment(pages: 2, at: address))
    }
    expectSuccess("write of 8 discontiguous segments", &t) { () throws(BlockDeviceError) in
        try disk.write(at: sector, from: writeSegments)
    }
    VirtioTestDisk.junk(contiguous, pages: 16)
    expectSuccess("read into one 16-page segment", &t) { () throws(BlockDeviceError) in
        try disk.read(at: sector, into: CollectionOfOne(BlockSegment(pages: 16, at: contiguous)))
    }
    t.expectEqual(VirtioTestDisk.mismatchedSectors(contiguous, sectors: 128, from: sector,
                                                  magic: VirtioTestDisk.kernelMagic),
                  0, "sectors of the contiguous read back differing")

    // Data page i goes to page 2 * (15 - i) of the block: scattered, backwards, holes between.
    VirtioTestDisk.junk(block, pages: 32)
    let readSegments = (0..<16).map { BlockSegment(pages: 1, at: block.advanced(by: UInt64(2 * (15 - $0) * page))) }
    expectSuccess("read into 16 scattered segments", &t) { () throws(BlockDeviceError) in
        try disk.read(at: sector, into: readSegments)
    }
    var misplaced = 0
    var holesTouched = 0
    for i in 0..<16 {
        misplaced += VirtioTestDisk.mismatchedSectors(readSegments[i].address, sectors: 8, from: sector + UInt64(i * 8),
                                                      magic: VirtioTestDisk.kernelMagic)
        if !VirtioTestDisk.isJunk(block.advanced(by: UInt64((2 * i + 1) * page)), pages: 1) { holesTouched += 1 }
    }
    t.expectEqual(misplaced, 0, "sectors of the scattered read differing")
    t.expectEqual(holesTouched, 0, "hole pages the device wrote into")
}

private func manyRequestsInFlightCompleteInAnyOrder(_ t: inout TestContext) {
    // 32 one-page writes submitted before any is reaped, then 32 one-page reads the same way
    // (a 64 KiB read first, so the small ones have something to overtake). Every tag must
    // complete exactly once, successfully, with the right data, whatever order the device
    // finishes them in.
    let count = 32
    guard let disk = attachedDisk(&t), let buffers = pages(order: 5, &t) else { return }
    defer { release(buffers, order: 5) }
    guard let big = pages(order: 4, &t) else { return }
    defer { release(big, order: 4) }
    let first = VirtioTestDisk.inFlightSector
    let page = UInt64(pageSize)

    for phase in 0..<2 {
        let isWrite = phase == 0
        for i in 0..<count {
            let address = buffers.advanced(by: UInt64(i) * page)
            if isWrite {
                VirtioTestDisk.fill(address, sectors: 8, from: first + UInt64(i * 8), magic: VirtioTestDisk.kernelMagic)
            } else {
                VirtioTestDisk.junk(address, pages: 1)
            }
        }
        var submitted = 0
        var submitFailure: BlockDeviceError?
        do throws(BlockDeviceError) {
            if !isWrite {
                try disk.submit(.read, at: 1024, segments: CollectionOfOne(BlockSegment(pages: 16, at: big)), tag: 1000)
            }
            for i in 0..<count {
                try disk.submit(isWrite ? .write : .read, at: first + UInt64(i * 8),
                                segments: CollectionOfOne(BlockSegment(pages: 1, at: buffers.advanced(by: UInt64(i) * page))),
                                tag: UInt64(i))
                submitted += 1
            }
        } catch {
            submitFailure = error
        }
        t.expectEqual(submitted, count, "requests accepted before any was reaped")
        if let submitFailure { t.note("submit failed with \(submitFailure.name)") }
        t.expect(disk.inFlightCount >= 16, "at least 16 requests in flight at once")
        let inFlightAfterSubmit = disk.inFlightCount

        var seen = [Int](repeating: 0, count: count)
        var order: [Int] = []
        var failures = 0
        var bigDone = isWrite
        while disk.inFlightCount > 0 {
            disk.waitForCompletions()
            disk.reapCompletions { completion in
                if !completion.succeeded { failures += 1 }
                if completion.tag == 1000 { bigDone = true; return }
                if completion.tag < UInt64(count) {
                    seen[Int(completion.tag)] += 1
                    order.append(Int(completion.tag))
                }
            }
            if disk.hasFailed { break }
        }
        t.expectEqual(failures, 0, "requests that failed")
        t.expect(bigDone, "the 64 KiB read completed")
        var wrongCounts = 0
        for i in 0..<count where seen[i] != 1 { wrongCounts += 1 }
        t.expectEqual(wrongCounts, 0, "tags not completed exactly once")
        var inversions = 0
        for i in 1..<order.count where order[i] < order[i - 1] { inversions += 1 }
        t.note("\(isWrite ? "writes" : "reads"): \(inFlightAfterSubmit) in flight, completed with "
               + "\(inversions) order inversions, \(disk.interruptCount) interrupts so far")
        if !isWrite {
            var bad = 0
            for i in 0..<count {
                bad += VirtioTestDisk.mismatchedSectors(buffers.advanced(by: UInt64(i) * page), sectors: 8,
                                                        from: first + UInt64(i * 8), magic: VirtioTestDisk.kernelMagic)
            }
            t.expectEqual(bad, 0, "sectors read back differing")
            t.expectEqual(VirtioTestDisk.mismatchedSectors(big, sectors: 128, from: 1024, magic: VirtioTestDisk.hostMagic),
                          0, "sectors of the 64 KiB read differing")
        }
    }
    t.expect(disk.peakInFlightCount >= 32, "peak in flight reached 32")
}

private func flushAfterWriteSucceeds(_ t: inout TestContext) {
    guard let disk = attachedDisk(&t), let source = pages(order: 0, &t) else { return }
    defer { release(source, order: 0) }
    let sector = VirtioTestDisk.flushSector
    VirtioTestDisk.fill(source, sectors: 8, from: sector, magic: VirtioTestDisk.kernelMagic)
    let before = disk.submittedCount
    expectSuccess("write before the flush", &t) { () throws(BlockDeviceError) in
        try disk.write(at: sector, from: CollectionOfOne(BlockSegment(pages: 1, at: source)))
    }
    expectSuccess("flush", &t) { () throws(BlockDeviceError) in try disk.flush() }
    t.expectEqual(disk.submittedCount - before, 2, "requests that reached the device (write, flush)")
    expectError(.invalidLength, "flush carrying data refused", &t) { () throws(BlockDeviceError) in
        try disk.submit(.flush, at: 0, segments: CollectionOfOne(BlockSegment(pages: 1, at: source)), tag: 0)
    }
}

private func completionIsSignalledByInterrupt(_ t: inout TestContext) {
    guard let disk = attachedDisk(&t), let buffer = pages(order: 0, &t) else { return }
    defer { release(buffer, order: 0) }
    t.expect(disk.transport.usesInterrupts, "transport routes completions to an interrupt (not the polling fallback)")
    let deviceInterrupts = disk.interruptCount
    let platformInterrupts = Platform.externalInterruptCount
    expectSuccess("read", &t) { () throws(BlockDeviceError) in
        try disk.read(at: 0, into: CollectionOfOne(BlockSegment(pages: 1, at: buffer)))
    }
    t.expect(disk.interruptCount > deviceInterrupts, "the device's interrupt handler ran")
    t.expect(Platform.externalInterruptCount > platformInterrupts, "the platform took an external interrupt")
}

private func outOfRangeRequestsRejectedBeforeDevice(_ t: inout TestContext) {
    guard let disk = attachedDisk(&t), let buffer = pages(order: 1, &t) else { return }
    defer { release(buffer, order: 1) }
    let end = disk.geometry.blockCount
    let before = disk.submittedCount
    expectError(.outOfRange, "read at the first block past the end", &t) { () throws(BlockDeviceError) in
        try disk.submit(.read, at: end, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 0)
    }
    expectError(.outOfRange, "read straddling the end", &t) { () throws(BlockDeviceError) in
        try disk.submit(.read, at: end - 4, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 0)
    }
    expectError(.outOfRange, "write straddling the end", &t) { () throws(BlockDeviceError) in
        try disk.submit(.write, at: end - 1, segments: CollectionOfOne(BlockSegment(pages: 2, at: buffer)), tag: 0)
    }
    expectError(.outOfRange, "read whose end overflows 64 bits", &t) { () throws(BlockDeviceError) in
        try disk.submit(.read, at: UInt64.max - 3, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 0)
    }
    t.expectEqual(disk.submittedCount, before, "rejected requests that reached the device")
    t.expectEqual(disk.inFlightCount, 0, "requests in flight after rejections")
    // The last block itself is in range.
    expectSuccess("read of the last block", &t) { () throws(BlockDeviceError) in
        try disk.read(at: end - 1, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 512)))
    }
}

private func invalidRequestsRejectedBeforeDevice(_ t: inout TestContext) {
    guard let disk = attachedDisk(&t), let buffer = pages(order: 1, &t) else { return }
    defer { release(buffer, order: 1) }
    // Aimed at the untouched region: if any reached the device, the host check sees it.
    let sector = VirtioTestDisk.untouchedSector
    VirtioTestDisk.fill(buffer, sectors: 16, from: sector, magic: VirtioTestDisk.kernelMagic)
    let before = disk.submittedCount
    expectError(.invalidLength, "write of 100 bytes (not whole blocks)", &t) { () throws(BlockDeviceError) in
        try disk.submit(.write, at: sector, segments: CollectionOfOne(BlockSegment(address: buffer, byteCount: 100)), tag: 0)
    }
    expectError(.invalidLength, "write with a second segment of 513 bytes", &t) { () throws(BlockDeviceError) in
        try disk.submit(.write, at: sector, segments: [BlockSegment(address: buffer, byteCount: 512),
                                                       BlockSegment(address: buffer, byteCount: 513)], tag: 0)
    }
    expectError(.invalidLength, "write of an empty segment", &t) { () throws(BlockDeviceError) in
        try disk.submit(.write, at: sector, segments: CollectionOfOne(BlockSegment(address: buffer, byteCount: 0)), tag: 0)
    }
    expectError(.invalidLength, "write without segments", &t) { () throws(BlockDeviceError) in
        try disk.submit(.write, at: sector, segments: EmptyCollection<BlockSegment>(), tag: 0)
    }
    let tooMany = [BlockSegment](repeating: BlockSegment(address: buffer, byteCount: 512),
                                 count: disk.geometry.maxSegments + 1)
    expectError(.tooManySegments, "write with one segment more than SEG_MAX allows", &t) { () throws(BlockDeviceError) in
        try disk.submit(.write, at: sector, segments: tooMany, tag: 0)
    }
    expectError(.segmentTooLarge, "segment wrapping the physical address space", &t) { () throws(BlockDeviceError) in
        try disk.submit(.read, at: sector,
                        segments: CollectionOfOne(BlockSegment(address: PhysicalAddress(UInt64.max - 4095), byteCount: 8192)),
                        tag: 0)
    }
    t.expectEqual(disk.submittedCount, before, "rejected requests that reached the device")
    // Exactly SEG_MAX segments is fine (reads, so the untouched region stays untouched).
    let most = [BlockSegment](repeating: BlockSegment(address: buffer, byteCount: 512), count: disk.geometry.maxSegments)
    expectSuccess("read with exactly SEG_MAX segments", &t) { () throws(BlockDeviceError) in
        try disk.read(at: sector, into: most)
    }
}

private func deviceErrorsBecomeTypedErrors(_ t: inout TestContext) {
    // Requests the driver would refuse, posted past validation so the device itself answers.
    guard let disk = attachedDisk(&t), let buffer = pages(order: 0, &t) else { return }
    defer { release(buffer, order: 0) }
    var pastEndError: BlockDeviceError?
    var unknownTypeError: BlockDeviceError?
    var completed = 0
    do throws(BlockDeviceError) {
        try disk.submitUnvalidated(type: VirtioBlockRequest.typeIn, sector: disk.geometry.blockCount,
                                   segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)),
                                   deviceWritesData: true, tag: 1)
        try disk.submitUnvalidated(type: 0x7E, sector: 0, segments: EmptyCollection<BlockSegment>(),
                                   deviceWritesData: false, tag: 2)
    } catch {
        t.expect(false, "unvalidated requests posted")
        t.note("failed with \(error.name)")
    }
    while disk.inFlightCount > 0 && !disk.hasFailed {
        disk.waitForCompletions()
        disk.reapCompletions { completion in
            completed += 1
            if completion.tag == 1 { pastEndError = completion.error }
            if completion.tag == 2 { unknownTypeError = completion.error }
        }
    }
    t.expectEqual(completed, 2, "completions of the two requests")
    t.expect(pastEndError == .ioError, "read past the end: the device's IOERR arrives as ioError")
    t.expect(unknownTypeError == .unsupportedRequest, "unknown request type: UNSUPP arrives as unsupportedRequest")
    // The device keeps working after reporting errors.
    expectSuccess("read after the device reported errors", &t) { () throws(BlockDeviceError) in
        try disk.read(at: 0, into: CollectionOfOne(BlockSegment(pages: 1, at: buffer)))
    }
    t.expectEqual(VirtioTestDisk.mismatchedSectors(buffer, sectors: 8, from: 0, magic: VirtioTestDisk.hostMagic), 0,
                  "sectors of the read after errors differing")
}

private func missingDeviceReportsNoDevice(_ t: inout TestContext) {
    guard let disk = attachedDisk(&t) else { return }
    expectError(.noDevice, "a second disk that is not there", &t) { () throws(BlockDeviceError) in
        _ = try Platform.blockDevice(at: 1)
    }
    // Every other probe slot holds no virtio-blk device: empty slots, other device kinds.
    let attachedSlot = Platform.probeSlot(of: disk)
    var probed = 0
    for slot in 0..<Platform.blockDeviceSlotCount where slot != attachedSlot {
        expectError(.noDevice, "probing a slot without a virtio-blk device", &t) { () throws(BlockDeviceError) in
            try Platform.probeBlockDevice(slot: slot)
        }
        probed += 1
    }
    expectError(.noDevice, "probing a slot number that does not exist", &t) { () throws(BlockDeviceError) in
        try Platform.probeBlockDevice(slot: Platform.blockDeviceSlotCount)
    }
    t.expect(probed > 0, "some empty slots were probed")
    // Probing must not have disturbed the attached disk.
    t.expect(!disk.hasFailed, "attached disk still healthy")
}
