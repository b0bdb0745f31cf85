// SDHostSuite (Raspberry Pi 3B): proves the SDHCI driver against the SD image `make image`
// writes (scripts/make-sd-image.py) and `make test` attaches to QEMU raspi3b: identification,
// single- and multi-block reads of what the host wrote (MBR, FAT boot sector, the pattern at
// the start of the swap partition), write/read round trips, requests refused before the card,
// and card or controller failures arriving as typed errors with the card still usable after.
// Invariants: writes go only to the swap partition, from `scratchOffset` blocks on (the host
// pattern before it is only read). Partition positions come from the image's own MBR.

/// The SD image's layout as the suite relies on it; mirrors scripts/make-sd-image.py.
private enum SDTestImage {
    static let bootPartitionType: UInt8 = 0x0C      // FAT32 (LBA)
    static let swapPartitionType: UInt8 = 0x82      // Linux swap
    /// The host writes `patternBlocks` pattern blocks at the start of the swap partition.
    static let patternBlocks = 64
    static let patternMagic: UInt64 = 0x5344_494D_0000_0000   // "SDIM"
    /// First block (relative to the swap partition) the tests may write.
    static let scratchOffset: UInt64 = 128

    static func word(block: UInt64, index: Int) -> UInt64 { (block << 16 | UInt64(index)) ^ patternMagic }
}

let sdhciSuite = SelfTestSuite("sdhci", [
    SelfTest("card_identifies_in_transfer_state", cardIdentifiesInTransferState),
    SelfTest("reads_mbr_and_fat_boot_sector_written_by_host", readsMBRAndFATBootSector),
    SelfTest("multi_block_read_returns_host_pattern", multiBlockReadReturnsHostPattern),
    SelfTest("single_block_write_read_round_trips", singleBlockWriteReadRoundTrips),
    SelfTest("multi_block_write_over_discontiguous_pages_round_trips", multiBlockWriteRoundTrips),
    SelfTest("bad_requests_rejected_before_card", badRequestsRejectedBeforeCard),
    SelfTest("unanswered_command_times_out_as_typed_error", unansweredCommandTimesOut),
    SelfTest("address_past_card_end_reports_card_status_error", addressPastEndReportsCardStatus),
])

// MARK: Helpers

private func card(_ t: inout TestContext) -> PlatformSDCard? {
    do {
        return try Platform.sdCard()
    } catch {
        t.expect(false, "the SD card initialises")
        t.note("sdhci: \(error.name)")
        return nil
    }
}

private func page(_ t: inout TestContext, order: Int = 0) -> PhysicalAddress? {
    do {
        return try physicalPages.allocate(order: order)
    } catch {
        t.expect(false, "pages for the test buffers")
        return nil
    }
}

private func release(_ address: PhysicalAddress, order: Int = 0) {
    do { try physicalPages.free(address, order: order) } catch {
        preconditionFailure("SDHostSuite: freeing a test buffer failed")
    }
}

/// The image's partition table (read from the card), or nil after recording a failure.
private func partitionTable(_ disk: PlatformSDCard, _ buffer: PhysicalAddress, _ t: inout TestContext) -> MBRPartitionTable? {
    do {
        try disk.read(at: 0, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 512)))
    } catch {
        t.expect(false, "reading the MBR")
        t.note("read failed: \(error.name)")
        return nil
    }
    do {
        return try MBRPartitionTable(block: DirectMap.pointer(to: buffer), diskBlocks: disk.geometry.blockCount)
    } catch {
        t.expect(false, "the MBR parses")
        return nil
    }
}

/// Reads the MBR and returns the swap partition's first block, or nil after a failure.
private func swapPartitionStart(_ disk: PlatformSDCard, _ buffer: PhysicalAddress, _ t: inout TestContext) -> UInt64? {
    guard let table = partitionTable(disk, buffer, &t) else { return nil }
    guard let swap = table.first(ofType: MBRPartitionTable.linuxSwap), swap.blockCount > SDTestImage.scratchOffset + 64 else {
        t.expect(false, "the image has a swap partition")
        return nil
    }
    return swap.firstBlock
}

private func fill(_ address: PhysicalAddress, blocks: Int, seed: UInt64) {
    let words = DirectMap.pointer(to: address).assumingMemoryBound(to: UInt64.self)
    for index in 0..<blocks * 64 { words[index] = seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) }
}

private func mismatches(_ address: PhysicalAddress, blocks: Int, seed: UInt64) -> Int {
    let words = DirectMap.pointer(to: address).assumingMemoryBound(to: UInt64.self)
    var bad = 0
    for index in 0..<blocks * 64 where words[index] != seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) { bad += 1 }
    return bad
}

private func junk(_ address: PhysicalAddress, bytes: Int) {
    DirectMap.pointer(to: address).initializeMemory(as: UInt8.self, repeating: 0xA5, count: bytes)
}

// MARK: Tests

private func cardIdentifiesInTransferState(_ t: inout TestContext) {
    guard let disk = card(&t) else { return }
    t.expect(disk.identity.relativeAddress != 0, "the card published a relative address (CMD3)")
    t.expect(disk.identity.answeredInterfaceCondition, "the card answered CMD8 (physical layer >= 2.00)")
    t.expect(disk.geometry.blockCount >= 64 * 2048, "capacity from the CSD is at least the image's 64 MiB")
    t.expectEqual(disk.geometry.blockSize, 512, "block size")
    // CMD13: the card is selected and in the transfer state (CURRENT_STATE = 4, READY_FOR_DATA).
    do {
        let status = try disk.sendCommand(.sendStatus(disk.identity.relativeAddress))
        t.expectEqual((status >> 9) & 0xF, 4, "CURRENT_STATE from CMD13")
        t.expect(status & (1 << 8) != 0, "READY_FOR_DATA from CMD13")
    } catch {
        t.expect(false, "CMD13 answers")
        t.note("CMD13: \(error.name)")
    }
}

private func readsMBRAndFATBootSector(_ t: inout TestContext) {
    guard let disk = card(&t), let buffer = page(&t) else { return }
    defer { release(buffer) }
    junk(buffer, bytes: 512)
    guard let table = partitionTable(disk, buffer, &t) else { return }
    let mbr = DirectMap.pointer(to: buffer)
    t.expectEqual(table.partitions.count, 2, "partitions in the MBR")
    guard let boot = table.partitions.first else { return }
    t.expectEqual(boot.type, SDTestImage.bootPartitionType, "first partition is FAT32 (LBA)")
    t.expect(boot.isBootable, "the boot partition is marked bootable")
    t.expect(table.first(ofType: SDTestImage.swapPartitionType) != nil, "a swap partition follows")
    do {
        try disk.read(at: boot.firstBlock, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 512)))
    } catch {
        t.expect(false, "reading the FAT boot sector")
        return
    }
    t.expectEqual(mbr.load(fromByteOffset: 510, as: UInt8.self), 0x55, "FAT boot sector signature")
    t.expectEqual(mbr.load(fromByteOffset: 11, as: UInt16.self), 512, "FAT bytes per sector")
    let fat32 = mbr.loadUnaligned(fromByteOffset: 82, as: UInt64.self)   // "FAT32   "
    t.expectEqual(fat32, 0x2020_2032_3354_4146, "FAT32 file-system type string")
}

private func multiBlockReadReturnsHostPattern(_ t: inout TestContext) {
    guard let disk = card(&t), let buffer = page(&t, order: 4) else { return }
    defer { release(buffer, order: 4) }
    guard let swap = swapPartitionStart(disk, buffer, &t) else { return }
    let blocks = SDTestImage.patternBlocks
    junk(buffer, bytes: blocks * 512)
    let before = disk.commandCount
    do {
        try disk.read(at: swap, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: blocks * 512)))
    } catch {
        t.expect(false, "multi-block read of the host pattern")
        t.note("read failed: \(error.name)")
        return
    }
    t.expectEqual(disk.commandCount - before, 1, "one CMD18 (auto-CMD12 ends it) for the whole segment")
    let words = DirectMap.pointer(to: buffer).assumingMemoryBound(to: UInt64.self)
    var bad = 0
    for block in 0..<blocks {
        for index in 0..<64 where words[block * 64 + index] != SDTestImage.word(block: UInt64(block), index: index) {
            bad += 1
        }
    }
    t.expectEqual(bad, 0, "words differing from the host pattern")
}

private func singleBlockWriteReadRoundTrips(_ t: inout TestContext) {
    guard let disk = card(&t), let buffer = page(&t) else { return }
    defer { release(buffer) }
    guard let swap = swapPartitionStart(disk, buffer, &t) else { return }
    let block = swap + SDTestImage.scratchOffset
    let segment = CollectionOfOne(BlockSegment(address: buffer, byteCount: 512))
    fill(buffer, blocks: 1, seed: 17)
    do {
        try disk.write(at: block, from: segment)
        junk(buffer, bytes: 512)
        try disk.read(at: block, into: segment)
    } catch {
        t.expect(false, "single-block write and read")
        t.note("failed: \(error.name)")
        return
    }
    t.expectEqual(mismatches(buffer, blocks: 1, seed: 17), 0, "words differing after the round trip")
}

private func multiBlockWriteRoundTrips(_ t: inout TestContext) {
    guard let disk = card(&t), let first = page(&t), let second = page(&t) else { return }
    defer { release(first); release(second) }
    guard let swap = swapPartitionStart(disk, first, &t) else { return }
    let block = swap + SDTestImage.scratchOffset + 8
    // Two pages that are not adjacent in memory: one request, two CMD25 transfers.
    let segments = [BlockSegment(pages: 1, at: second), BlockSegment(pages: 1, at: first)]
    fill(second, blocks: 8, seed: 41)
    fill(first, blocks: 8, seed: 42)
    do {
        try disk.write(at: block, from: segments)
        junk(first, bytes: 4096)
        junk(second, bytes: 4096)
        try disk.read(at: block, into: [BlockSegment(pages: 1, at: first), BlockSegment(pages: 1, at: second)])
    } catch {
        t.expect(false, "multi-block write and read")
        t.note("failed: \(error.name)")
        return
    }
    // Read back in the other order: blocks 0-7 (from `second`) now land in `first`.
    t.expectEqual(mismatches(first, blocks: 8, seed: 41), 0, "words differing in blocks 0-7")
    t.expectEqual(mismatches(second, blocks: 8, seed: 42), 0, "words differing in blocks 8-15")
}

private func badRequestsRejectedBeforeCard(_ t: inout TestContext) {
    guard let disk = card(&t), let buffer = page(&t) else { return }
    defer { release(buffer) }
    let before = disk.commandCount
    let end = disk.geometry.blockCount
    func expectRefused(_ expected: BlockDeviceError, _ what: StaticString, _ t: inout TestContext,
                       _ body: () throws(BlockDeviceError) -> Void) {
        do {
            try body()
            t.expect(false, what)
        } catch {
            if error != expected {
                t.expect(false, what)
                t.note("expected \(expected.name), got \(error.name)")
            }
        }
    }
    expectRefused(.outOfRange, "a read past the last block", &t) { () throws(BlockDeviceError) in
        try disk.read(at: end - 1, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 1024)))
    }
    expectRefused(.invalidLength, "a segment that is not whole blocks", &t) { () throws(BlockDeviceError) in
        try disk.read(at: 0, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 100)))
    }
    expectRefused(.flushUnsupported, "a flush (the card has no cache command here)", &t) { () throws(BlockDeviceError) in
        try disk.flush()
    }
    expectRefused(.segmentTooLarge, "a segment longer than the limit", &t) { () throws(BlockDeviceError) in
        try disk.read(at: 0, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: disk.geometry.maxSegmentBytes + 512)))
    }
    t.expectEqual(disk.commandCount, before, "commands sent for refused requests")
}

private func unansweredCommandTimesOut(_ t: inout TestContext) {
    guard let disk = card(&t), let buffer = page(&t) else { return }
    defer { release(buffer) }
    // CMD2 is only legal in the ready state: a selected card ignores it, so no response comes.
    do {
        try disk.sendCommand(.allSendCID)
        t.expect(false, "CMD2 in the transfer state gets no response")
    } catch {
        t.expect(error == .commandTimeout, "the silence arrives as commandTimeout")
        if error != .commandTimeout { t.note("got \(error.name)") }
    }
    t.expect(disk.lastError == .commandTimeout, "lastError records the timeout")
    // The controller recovered: the card still reads.
    t.expect(swapPartitionStart(disk, buffer, &t) != nil, "the card reads after the timeout")
}

private func addressPastEndReportsCardStatus(_ t: inout TestContext) {
    guard let disk = card(&t), let buffer = page(&t) else { return }
    defer { release(buffer) }
    // Unchecked: only the card can refuse this address (OUT_OF_RANGE / ADDRESS_ERROR in R1).
    do {
        try disk.transfer(isWrite: false, block: disk.geometry.blockCount + 8, count: 1,
                          memory: DirectMap.pointer(to: buffer))
        t.expect(false, "a read past the card's end fails")
    } catch {
        t.expect(error == .cardStatusError, "the card's refusal arrives as cardStatusError")
        if error != .cardStatusError { t.note("got \(error.name)") }
        t.expect(error.blockError == .ioError, "as a block request it completes with ioError")
    }
    t.expect(swapPartitionStart(disk, buffer, &t) != nil, "the card reads after the refusal")
}
