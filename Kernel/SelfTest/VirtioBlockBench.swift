// VirtioBlockBench: virtio-blk throughput and IOPS on the swap disk, in cycles per request:
// sequential 64 KiB reads and writes at queue depth 1, and random 4 KiB reads and writes at
// queue depth 1 and 16, plus flush latency and a 64 KiB memory copy for scale. All I/O stays
// in the disk's benchmark region (VirtioTestDisk.benchFirstSector..<sectorCount, 4 MiB).
// Parameters are printed as `value` lines; nothing here judges the numbers, and under TCG
// only ratios within one run mean anything. A failed request is counted and printed, never
// hidden: `errors` must be 0 for the numbers to stand.

/// The virtio-blk benchmark suite.
let virtioBlockBenchmarks = BenchmarkSuite("virtio_blk") { bench in
    let disk: PlatformBlockDevice
    do throws(BlockDeviceError) {
        disk = try Platform.blockDevice(at: 0)
    } catch {
        bench.value("disk_attached", 0, unit: "bool")
        return
    }
    let firstSector = VirtioTestDisk.benchFirstSector
    let regionSectors = VirtioTestDisk.sectorCount - firstSector
    let bigBytes = 64 << 10
    let bigSectors = UInt64(bigBytes / VirtioTestDisk.sectorBytes)
    let smallSectors = UInt64(VirtioTestDisk.sectorsPerPage)
    let sequentialOps = 4 * Int(regionSectors / bigSectors)   // four passes over the region
    let randomOps = 1024
    let depth = 16
    bench.value("disk_attached", 1, unit: "bool")
    bench.value("block_size", UInt64(disk.geometry.blockSize), unit: "bytes")
    bench.value("region", regionSectors * UInt64(VirtioTestDisk.sectorBytes), unit: "bytes")
    bench.value("sequential_request", UInt64(bigBytes), unit: "bytes")
    bench.value("random_request", pageSize, unit: "bytes")
    bench.value("high_queue_depth", UInt64(depth), unit: "requests")
    bench.value("uses_interrupts", disk.transport.usesInterrupts ? 1 : 0, unit: "bool")

    guard let buffers = try? physicalPages.allocate(order: 4) else {
        bench.value("buffer_pages", 0, unit: "pages")
        return
    }
    defer { try? physicalPages.free(buffers, order: 4) }
    let bufferBytes = DirectMap.pointer(to: buffers)
    bufferBytes.initializeMemory(as: UInt8.self, repeating: 0x5A, count: bigBytes)
    var errors = 0

    // Scale: the same 64 KiB moved by the CPU.
    guard let copyTarget = try? physicalPages.allocate(order: 4) else { return }
    let copyBytes = DirectMap.pointer(to: copyTarget)
    bench.measure("memory_copy_64k", operations: 256) {
        for _ in 0..<256 { copyBytes.copyMemory(from: bufferBytes, byteCount: bigBytes) }
    }
    try? physicalPages.free(copyTarget, order: 4)

    let big = CollectionOfOne(BlockSegment(address: buffers, byteCount: bigBytes))
    for operation in [BlockOperation.read, .write] {
        let start = bench.cycles()
        for i in 0..<sequentialOps {
            let sector = firstSector + UInt64(i) % (regionSectors / bigSectors) * bigSectors
            do throws(BlockDeviceError) {
                try disk.perform(operation, at: sector, segments: big)
            } catch {
                errors += 1
            }
        }
        bench.report(operation == .read ? "seq_read_64k_qd1" : "seq_write_64k_qd1",
                     operations: sequentialOps, cycles: bench.cycles() &- start)
    }

    for operation in [BlockOperation.read, .write] {
        for queueDepth in [1, depth] {
            let interruptsBefore = disk.interruptCount
            let (cycles, waited, failed) = randomRequests(disk, operation, count: randomOps, depth: queueDepth,
                                                          buffers: buffers, firstSector: firstSector,
                                                          slots: Int(regionSectors / smallSectors), cycles: bench.cycles)
            errors += failed
            let label: StaticString
            switch (operation, queueDepth) {
            case (.read, 1): label = "rand_read_4k_qd1"
            case (.read, _): label = "rand_read_4k_qd16"
            case (_, 1): label = "rand_write_4k_qd1"
            default: label = "rand_write_4k_qd16"
            }
            bench.report(label, operations: randomOps, cycles: cycles)
            let waitLabel: StaticString
            switch (operation, queueDepth) {
            case (.read, 1): waitLabel = "rand_read_4k_qd1_percent_asleep"
            case (.read, _): waitLabel = "rand_read_4k_qd16_percent_asleep"
            case (_, 1): waitLabel = "rand_write_4k_qd1_percent_asleep"
            default: waitLabel = "rand_write_4k_qd16_percent_asleep"
            }
            bench.value(waitLabel, waited * 100 / max(cycles, 1), unit: "percent")
            if queueDepth == depth {
                bench.value(operation == .read ? "rand_read_4k_qd16_interrupts_per_1000"
                                               : "rand_write_4k_qd16_interrupts_per_1000",
                            UInt64((disk.interruptCount - interruptsBefore) * 1000 / randomOps), unit: "interrupts")
            }
        }
    }

    let flushes = 64
    let flushStart = bench.cycles()
    for _ in 0..<flushes {
        do throws(BlockDeviceError) { try disk.flush() } catch { errors += 1 }
    }
    bench.report("flush", operations: flushes, cycles: bench.cycles() &- flushStart)
    bench.value("errors", UInt64(errors), unit: "requests")
}

/// Runs `count` 4 KiB requests at pseudo-random page slots of the benchmark region, keeping
/// up to `depth` in flight (each in its own page of `buffers`); returns the cycles taken, the
/// part of them spent waiting for the device's interrupt (the rest is driver and submission
/// work on the CPU), and the number of requests that failed or could not be submitted.
private func randomRequests(_ disk: PlatformBlockDevice, _ operation: BlockOperation, count: Int, depth: Int,
                            buffers: PhysicalAddress, firstSector: UInt64, slots: Int,
                            cycles: () -> UInt64) -> (UInt64, UInt64, Int) {
    var freeBuffers = [UInt64](0..<UInt64(depth))
    var random: UInt64 = 0x2545_F491_4F6C_DD1D   // xorshift64 state: the same sequence every run
    var submitted = 0
    var completed = 0
    var failed = 0
    var waited: UInt64 = 0
    let start = cycles()
    while completed + failed < count {
        while submitted < count, let buffer = freeBuffers.popLast() {
            random ^= random << 13
            random ^= random >> 7
            random ^= random << 17
            let sector = firstSector + random % UInt64(slots) * UInt64(VirtioTestDisk.sectorsPerPage)
            let segment = BlockSegment(pages: 1, at: buffers.advanced(by: buffer * pageSize))
            do throws(BlockDeviceError) {
                try disk.submit(operation, at: sector, segments: CollectionOfOne(segment), tag: buffer)
            } catch {
                freeBuffers.append(buffer)
                failed += count - submitted   // stop: count the rest as failed rather than spin
                submitted = count
                break
            }
            submitted += 1
        }
        if disk.inFlightCount == 0 { break }
        let sleep = cycles()
        disk.waitForCompletions()
        waited &+= cycles() &- sleep
        disk.reapCompletions { completion in
            if completion.succeeded { completed += 1 } else { failed += 1 }
            freeBuffers.append(completion.tag)
        }
    }
    return (cycles() &- start, waited, failed)
}
