// VirtioBlock: the virtio block device driver (virtio 1.x, section 5.2), over any transport.
// One request queue; each request is a descriptor chain: a 16-byte header the device reads
// (type, reserved, sector), the caller's data segments by physical address, and one status
// byte the device writes.
// Invariants:
//  - Each request owns one slot: a header and a status byte in the driver's request pages,
//    and the caller's tag. A slot is busy from `submit` until its completion is handed back;
//    `slotOfHead` maps the chain head the device returns to the slot.
//  - The status byte is set to `statusNotWritten` before posting, so a device that returns a
//    chain without writing the status is caught (`deviceFailed`), not read as success.
//  - Completion is interrupt-driven: the used ring is drained only after an interrupt has
//    announced new entries (`interruptCount` moved past `drainedInterruptCount`), as Linux's
//    virtblk_done runs from the interrupt. The count is advanced before draining, so an
//    interrupt that arrives during a drain announces a later one. Interrupts stay masked
//    outside waits, so a reap that finds nothing announced first opens a window for a
//    pending one (`takePendingInterrupts`): polling sees completions without sleeping. Only
//    a transport without interrupts (the documented polling fallback) drains whenever the
//    ring has entries.
//  - Interrupt context only acknowledges the device and counts (`handleInterrupt`); the used
//    ring is drained in thread context by `reapCompletions`, so the queue needs no lock when
//    interrupts are enabled outside waits.
//  - Once the device breaks the protocol it is reset (stopping its DMA), every request in
//    flight completes with `deviceFailed`, and every later `submit` throws `deviceFailed`.
// Locks: none; one CPU, and see above for interrupt context.

/// virtio-blk feature bits (section 5.2.3).
public enum VirtioBlockFeature {
    /// `size_max` is valid: the longest segment.
    public static let sizeMax: UInt64 = 1 << 1
    /// `seg_max` is valid: the most data segments per request.
    public static let segmentMax: UInt64 = 1 << 2
    /// The device is read-only.
    public static let readOnly: UInt64 = 1 << 5
    /// `blk_size` is valid: the logical block size.
    public static let blockSize: UInt64 = 1 << 6
    /// The device has a cache flush command.
    public static let flush: UInt64 = 1 << 9
}

/// virtio-blk request types and status values (section 5.2.6).
public enum VirtioBlockRequest {
    public static let typeIn: UInt32 = 0
    public static let typeOut: UInt32 = 1
    public static let typeFlush: UInt32 = 4
    public static let typeGetID: UInt32 = 8
    public static let statusOK: UInt8 = 0
    public static let statusIOError: UInt8 = 1
    public static let statusUnsupported: UInt8 = 2
    /// Written by the driver before posting; no device ever writes it.
    public static let statusNotWritten: UInt8 = 0xFF
    /// Bytes of the request header (type u32, reserved u32, sector u64).
    public static let headerBytes = 16
    /// virtio-blk addresses in 512-byte sectors whatever the logical block size.
    public static let sectorBytes = 512
}

/// Offsets in the virtio-blk configuration space (section 5.2.4).
enum VirtioBlockConfiguration {
    static let capacity = 0       // u64, in 512-byte sectors
    static let sizeMax = 8        // u32
    static let segmentMax = 12    // u32
    static let blockSize = 20     // u32
}

/// A virtio block device driven through `Transport`.
public final class VirtioBlockDevice<Transport: VirtioTransport>: BlockDevice {
    /// Features the driver uses when offered; VERSION_1 is also required on a modern transport.
    public static var wantedFeatures: UInt64 {
        VirtioFeature.version1 | VirtioFeature.accessPlatform | VirtioBlockFeature.sizeMax
            | VirtioBlockFeature.segmentMax | VirtioBlockFeature.readOnly | VirtioBlockFeature.blockSize
            | VirtioBlockFeature.flush
    }
    /// Largest queue the driver sets up: 256 descriptors hold 85 single-segment requests.
    public static var maximumQueueSize: Int { 256 }
    /// The request queue's index.
    static var requestQueue: Int { 0 }

    /// The bus interface of the device.
    public let transport: Transport
    /// Sizes and limits read from the configuration space at start-up.
    public let geometry: BlockGeometry
    /// The features both sides agreed on.
    public let features: UInt64

    /// Interrupts taken for this device (used-buffer or configuration).
    public private(set) var interruptCount = 0
    /// `interruptCount` when the used ring was last drained.
    private var drainedInterruptCount = 0
    /// Requests handed to the device since attach.
    public private(set) var submittedCount = 0
    /// Notifications (doorbell writes) sent; fewer than `submittedCount` when the device
    /// asked not to be notified while it was already working.
    public private(set) var notificationCount = 0
    /// Most requests in flight at once since attach.
    public private(set) var peakInFlightCount = 0
    /// True once the device broke the protocol and was reset; every request fails from then on.
    public private(set) var hasFailed = false

    private let queue: SplitVirtqueue
    /// Slot i's header is at offset 16 * i, its status byte at `statusOffset + i`.
    private let requestMemory: PhysicalAddress
    private let requestPageOrder: Int
    private let statusOffset: Int
    private let slotCount: Int
    private var freeSlots: [UInt16]
    private var slotTags: [UInt64]
    private var slotIsBusy: [Bool]
    private var slotOfHead: [UInt16]
    private var isShutDown = false

    /// Starts the device: reset, acknowledge, feature negotiation, configuration read, queue
    /// set-up, DRIVER_OK (section 3.1.1). On any failure the device is left with FAILED set
    /// and everything allocated is given back.
    ///
    /// The caller has checked that the transport's device is a block device. Throws
    /// `unsupportedDevice` (no VERSION_1 on a modern transport, features refused, a block size
    /// or segment size limit the driver cannot use), `deviceFailed` (no request queue, queue
    /// set-up refused, the device failing DRIVER_OK), `outOfMemory`.
    public init(transport: Transport) throws(BlockDeviceError) {
        self.transport = transport
        transport.reset()
        transport.setStatus(VirtioStatus.acknowledge)
        transport.setStatus(VirtioStatus.acknowledge | VirtioStatus.driver)

        let offered = transport.deviceFeatures()
        guard transport.isLegacy || offered & VirtioFeature.version1 != 0 else {
            throw Self.fail(transport, .unsupportedDevice)
        }
        let accepted = offered & Self.wantedFeatures
        transport.setDriverFeatures(accepted)
        if !transport.isLegacy {
            transport.setStatus(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)
            guard transport.status() & VirtioStatus.featuresOK != 0 else {
                throw Self.fail(transport, .unsupportedDevice)
            }
        }
        features = accepted

        let geometry: BlockGeometry
        let queueSize: Int
        do throws(BlockDeviceError) {
            let maximum = transport.maximumQueueSize(Self.requestQueue)
            guard maximum >= 4 else { throw .deviceFailed }
            // The largest power of two the device takes, at most `maximumQueueSize`.
            queueSize = 1 << (Int.bitWidth - 1 - min(maximum, Self.maximumQueueSize).leadingZeroBitCount)
            geometry = try Self.readGeometry(transport, features: accepted, queueSize: queueSize)
        } catch {
            throw Self.fail(transport, error)
        }
        self.geometry = geometry

        let queue: SplitVirtqueue
        do {
            queue = try SplitVirtqueue(size: queueSize)
        } catch {
            throw Self.fail(transport, .outOfMemory)
        }
        self.queue = queue
        slotCount = queueSize
        statusOffset = queueSize * VirtioBlockRequest.headerBytes
        requestPageOrder = PageAllocator.order(
            forPages: (statusOffset + queueSize + Int(pageSize) - 1) / Int(pageSize))!
        do {
            requestMemory = try physicalPages.allocateZeroed(order: requestPageOrder)
        } catch {
            queue.releaseMemory()
            throw Self.fail(transport, .outOfMemory)
        }
        freeSlots = (0..<queueSize).reversed().map { UInt16($0) }
        slotTags = [UInt64](repeating: 0, count: queueSize)
        slotIsBusy = [Bool](repeating: false, count: queueSize)
        slotOfHead = [UInt16](repeating: 0, count: queueSize)

        guard transport.activateQueue(Self.requestQueue, queue) else {
            releaseMemory()
            throw Self.fail(transport, .deviceFailed)
        }
        transport.setStatus(transport.status() | VirtioStatus.driverOK)
        guard transport.status() & (VirtioStatus.deviceNeedsReset | VirtioStatus.failed) == 0 else {
            releaseMemory()
            throw Self.fail(transport, .deviceFailed)
        }
    }

    /// Sets FAILED (section 3.1.1: the driver gave up) and returns `error` to throw.
    private static func fail(_ transport: Transport, _ error: BlockDeviceError) -> BlockDeviceError {
        transport.setStatus(transport.status() | VirtioStatus.failed)
        return error
    }

    /// Reads capacity and limits, repeating until the configuration generation is stable.
    private static func readGeometry(_ transport: Transport, features: UInt64,
                                     queueSize: Int) throws(BlockDeviceError) -> BlockGeometry {
        var capacity: UInt64 = 0
        var sizeMax: UInt32 = 0
        var segmentMax: UInt32 = 0
        var blockSize: UInt32 = UInt32(VirtioBlockRequest.sectorBytes)
        var generation: UInt32
        repeat {
            generation = transport.configurationGeneration()
            capacity = transport.readConfiguration(UInt64.self, at: VirtioBlockConfiguration.capacity)
            if features & VirtioBlockFeature.sizeMax != 0 {
                sizeMax = transport.readConfiguration(UInt32.self, at: VirtioBlockConfiguration.sizeMax)
            }
            if features & VirtioBlockFeature.segmentMax != 0 {
                segmentMax = transport.readConfiguration(UInt32.self, at: VirtioBlockConfiguration.segmentMax)
            }
            if features & VirtioBlockFeature.blockSize != 0 {
                blockSize = transport.readConfiguration(UInt32.self, at: VirtioBlockConfiguration.blockSize)
            }
        } while transport.configurationGeneration() != generation

        guard blockSize >= 512, blockSize <= 65536, blockSize & (blockSize - 1) == 0 else {
            throw .unsupportedDevice
        }
        let size = Int(blockSize)
        // Without SEG_MAX the device promises nothing beyond one segment (as Linux assumes).
        // A chain also holds the header and the status, so at most queueSize - 2 segments.
        let segments = min(segmentMax == 0 ? 1 : Int(segmentMax), queueSize - 2)
        let segmentBytes = (sizeMax == 0 ? Int(UInt32.max) : Int(sizeMax)) & ~(size - 1)
        guard segmentBytes >= size else { throw .unsupportedDevice }
        return BlockGeometry(blockSize: size,
                             blockCount: capacity / UInt64(size / VirtioBlockRequest.sectorBytes),
                             maxSegments: segments, maxSegmentBytes: segmentBytes,
                             queueDepth: queueSize / 3,
                             supportsFlush: features & VirtioBlockFeature.flush != 0,
                             isReadOnly: features & VirtioBlockFeature.readOnly != 0)
    }

    private func releaseMemory() {
        queue.releaseMemory()
        do {
            try physicalPages.free(requestMemory, order: requestPageOrder)
        } catch {
            preconditionFailure("VirtioBlockDevice.releaseMemory: request pages were not allocated")
        }
    }

    /// Resets the device (stopping all its DMA) and gives its rings back. Requests still in
    /// flight are lost: reap them first. The device is unusable afterwards.
    public func shutDown() {
        guard !isShutDown else { return }
        isShutDown = true
        hasFailed = true
        transport.reset()
        releaseMemory()
    }

    // MARK: BlockDevice

    public var inFlightCount: Int { slotCount - freeSlots.count }

    /// Descriptors free in the request queue (each request takes its segments + 2).
    public var freeDescriptorCount: Int { queue.freeCount }

    public func submit<Segments: Collection>(_ operation: BlockOperation, at block: UInt64, segments: Segments,
                                             tag: UInt64) throws(BlockDeviceError)
        where Segments.Element == BlockSegment {
        guard !hasFailed else { throw .deviceFailed }
        _ = try geometry.validate(operation, at: block, segments: segments)
        let sectorsPerBlock = UInt64(geometry.blockSize / VirtioBlockRequest.sectorBytes)
        switch operation {
        case .read:
            try post(type: VirtioBlockRequest.typeIn, sector: block * sectorsPerBlock, segments: segments,
                     deviceWritesData: true, tag: tag)
        case .write:
            try post(type: VirtioBlockRequest.typeOut, sector: block * sectorsPerBlock, segments: segments,
                     deviceWritesData: false, tag: tag)
        case .flush:
            try post(type: VirtioBlockRequest.typeFlush, sector: 0, segments: segments,
                     deviceWritesData: false, tag: tag)
        }
    }

    /// Posts a request of any `type` without `BlockGeometry.validate`: the self-tests use it
    /// to make the device itself report IOERR (a sector past the end) and UNSUPP (an unknown
    /// type), proving those statuses reach the caller as typed errors. Segments are still
    /// counted against the queue. Throws `deviceFailed`, `tooManySegments` (more than the
    /// queue can ever hold) or `queueFull`.
    public func submitUnvalidated<Segments: Collection>(type: UInt32, sector: UInt64, segments: Segments,
                                                        deviceWritesData: Bool, tag: UInt64) throws(BlockDeviceError)
        where Segments.Element == BlockSegment {
        guard !hasFailed else { throw .deviceFailed }
        guard segments.count + 2 <= queue.size else { throw .tooManySegments }
        try post(type: type, sector: sector, segments: segments, deviceWritesData: deviceWritesData, tag: tag)
    }

    /// Fills a slot's header, posts header + segments + status as one chain, and notifies
    /// the device unless it asked not to be. Throws `queueFull`; nothing changes then.
    private func post<Segments: Collection>(type: UInt32, sector: UInt64, segments: Segments,
                                            deviceWritesData: Bool, tag: UInt64) throws(BlockDeviceError)
        where Segments.Element == BlockSegment {
        let segmentCount = segments.count
        guard let slot = freeSlots.last, segmentCount + 2 <= queue.freeCount else { throw .queueFull }
        let header = requestMemory.advanced(by: UInt64(Int(slot) * VirtioBlockRequest.headerBytes))
        let status = requestMemory.advanced(by: UInt64(statusOffset + Int(slot)))
        let headerBytes = DirectMap.pointer(to: header)
        headerBytes.storeBytes(of: type.littleEndian, as: UInt32.self)
        headerBytes.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        headerBytes.storeBytes(of: sector.littleEndian, toByteOffset: 8, as: UInt64.self)
        DirectMap.pointer(to: status).storeBytes(of: VirtioBlockRequest.statusNotWritten, as: UInt8.self)

        var next = segments.startIndex
        let head: UInt16
        do {
            head = try queue.post(count: segmentCount + 2) { position in
                if position == 0 {
                    return VirtqueueBuffer(address: header, length: UInt32(VirtioBlockRequest.headerBytes),
                                           isDeviceWritable: false)
                }
                if position == segmentCount + 1 {
                    return VirtqueueBuffer(address: status, length: 1, isDeviceWritable: true)
                }
                let segment = segments[next]
                next = segments.index(after: next)
                return VirtqueueBuffer(address: segment.address, length: UInt32(truncatingIfNeeded: segment.byteCount),
                                       isDeviceWritable: deviceWritesData)
            }
        } catch {
            preconditionFailure("VirtioBlockDevice.post: queue refused a chain that fits")
        }
        freeSlots.removeLast()
        slotTags[Int(slot)] = tag
        slotIsBusy[Int(slot)] = true
        slotOfHead[Int(head)] = slot
        submittedCount += 1
        peakInFlightCount = max(peakInFlightCount, inFlightCount)
        if queue.needsNotification {
            notificationCount += 1
            transport.notify(queue: Self.requestQueue)
        }
    }

    /// True when the device has announced completions that are not drained yet: by an
    /// interrupt, or (polling fallback only) by used entries in the ring.
    private var completionsAnnounced: Bool {
        transport.usesInterrupts ? interruptCount != drainedInterruptCount : queue.hasUsedElements
    }

    /// Hands back every request whose completion the device has announced (see the header:
    /// with interrupts, entries the device has not signalled yet wait for their interrupt).
    @discardableResult
    public func reapCompletions(_ body: (BlockCompletion) -> Void) -> Int {
        var reaped = 0
        // Interrupts are masked outside waits: a poll first lets a pending one in.
        if transport.usesInterrupts && inFlightCount > 0 && interruptCount == drainedInterruptCount {
            transport.takePendingInterrupts()
        }
        let announced = completionsAnnounced
        drainedInterruptCount = interruptCount
        while announced, let used = queue.popUsed() {
            let slot = slotOfHead[Int(used.head)]
            precondition(slotIsBusy[Int(slot)], "VirtioBlockDevice.reapCompletions: completed slot is not busy")
            let status = DirectMap.pointer(to: requestMemory).load(fromByteOffset: statusOffset + Int(slot),
                                                                   as: UInt8.self)
            let result: Result<Void, BlockDeviceError>
            switch status {
            case VirtioBlockRequest.statusOK: result = .success(())
            case VirtioBlockRequest.statusIOError: result = .failure(.ioError)
            case VirtioBlockRequest.statusUnsupported: result = .failure(.unsupportedRequest)
            default: result = .failure(.deviceFailed)
            }
            let tag = releaseSlot(slot)
            reaped += 1
            body(BlockCompletion(tag: tag, result: result))
        }
        if queue.isBroken && !hasFailed {
            // The device returned something no request matches: stop it before failing the
            // requests in flight, so it cannot DMA into memory their owners get back.
            hasFailed = true
            transport.reset()
        }
        if hasFailed {
            for slot in 0..<slotCount where slotIsBusy[slot] {
                let tag = releaseSlot(UInt16(slot))
                reaped += 1
                body(BlockCompletion(tag: tag, result: .failure(.deviceFailed)))
            }
        }
        return reaped
    }

    private func releaseSlot(_ slot: UInt16) -> UInt64 {
        slotIsBusy[Int(slot)] = false
        freeSlots.append(slot)
        return slotTags[Int(slot)]
    }

    public func waitForCompletions() {
        while inFlightCount > 0 && !hasFailed && !completionsAnnounced {
            transport.waitForInterrupt()
        }
    }

    // MARK: Interrupts

    /// The interrupt handler: acknowledges the device and counts. Called by the platform's
    /// interrupt dispatch with interrupts masked; touches no ring (see the header).
    public func handleInterrupt() {
        _ = transport.acknowledgeInterrupt()
        interruptCount += 1
    }
}
