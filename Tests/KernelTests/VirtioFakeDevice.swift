// VirtioFakeDevice: the device half of a virtio-blk device over a split virtqueue, in host
// memory, for unit tests of the machine-independent driver. It reads the rings and buffers
// through `DirectMap` (a PhysicalArena), exactly where a real device would DMA, keeps a RAM
// disk, and completes requests when and in the order a test says. It also checks what the
// driver put in the rings (descriptor flags, header and status sizes) and counts violations.
// Fault injection: refuse features or queues, report IOERR for chosen sectors, return a
// bogus used id, skip the status write, change the configuration generation mid-read.

import Kernel

final class FakeVirtioBlockDevice {
    // MARK: Configuration a test sets before attach
    var offeredFeatures: UInt64 = VirtioFeature.version1 | VirtioBlockFeature.segmentMax
        | VirtioBlockFeature.blockSize | VirtioBlockFeature.flush
    var isLegacy = false
    var maximumQueueSize = 256
    var segmentMax: UInt32 = 254
    var sizeMax: UInt32 = 0
    var blockSize: UInt32 = 512
    /// Capacity in 512-byte sectors.
    var capacity: UInt64
    var refusesFeatures = false
    var refusesQueue = false
    /// Bumps the configuration generation during the first `bumpsGenerationOnce` reads and
    /// changes the capacity to this value when it does.
    var capacityAfterGenerationBump: UInt64?

    // MARK: Fault injection while running
    var ioErrorSectors: Set<UInt64> = []
    var returnsBogusUsedID = false
    var skipsStatusWrite = false
    var suppressesNotifications = false

    // MARK: What a test observes
    var disk: [UInt8]
    private(set) var status: UInt8 = 0
    private(set) var statusHistory: [UInt8] = []
    private(set) var driverFeatures: UInt64 = 0
    private(set) var resetCount = 0
    private(set) var notificationCount = 0
    private(set) var requestsSeen = 0
    private(set) var flushCount = 0
    private(set) var protocolViolations: [String] = []
    private(set) var configurationReads = 0
    private(set) var generation: UInt32 = 0
    /// (type, sector, data bytes, segment count) of each request fetched, in fetch order.
    private(set) var fetchedRequests: [(type: UInt32, sector: UInt64, bytes: Int, segments: Int)] = []

    /// Run by `raiseInterrupt`: the test wires it to the driver's `handleInterrupt`.
    var onInterrupt: (() -> Void)?
    private(set) var interruptStatus: UInt8 = 0

    // Queue state.
    private(set) var queueSize = 0
    private var descriptorArea = PhysicalAddress(0)
    private var driverArea = PhysicalAddress(0)
    private var deviceArea = PhysicalAddress(0)
    private var lastAvailableIndex: UInt16 = 0
    private var usedIndex: UInt16 = 0
    private(set) var isQueueReady = false

    /// A request fetched from the available ring and not yet completed.
    struct Pending {
        var head: UInt16
        var type: UInt32
        var sector: UInt64
        var data: [(address: PhysicalAddress, length: Int, writable: Bool)]
        var status: PhysicalAddress?
    }
    private(set) var pending: [Pending] = []

    init(sectors: UInt64) {
        capacity = sectors
        disk = [UInt8](repeating: 0, count: Int(sectors) * 512)
    }

    // MARK: Transport side

    func reset() {
        resetCount += 1
        status = 0
        driverFeatures = 0
        isQueueReady = false
        pending = []
        lastAvailableIndex = 0
        usedIndex = 0
        interruptStatus = 0
    }

    func setStatus(_ value: UInt8) {
        var value = value
        if value & VirtioStatus.featuresOK != 0 && status & VirtioStatus.featuresOK == 0 && refusesFeatures {
            value &= ~VirtioStatus.featuresOK
        }
        status = value
        statusHistory.append(value)
    }

    func setDriverFeatures(_ features: UInt64) {
        if features & ~offeredFeatures != 0 { protocolViolations.append("driver accepted features not offered") }
        driverFeatures = features
    }

    func readConfiguration(at offset: Int, width: Int) -> UInt64 {
        configurationReads += 1
        if let bumped = capacityAfterGenerationBump {
            capacityAfterGenerationBump = nil
            capacity = bumped
            generation &+= 1
        }
        var bytes = [UInt8](repeating: 0, count: 24)
        withUnsafeBytes(of: capacity.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        withUnsafeBytes(of: sizeMax.littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
        withUnsafeBytes(of: segmentMax.littleEndian) { bytes.replaceSubrange(12..<16, with: $0) }
        withUnsafeBytes(of: blockSize.littleEndian) { bytes.replaceSubrange(20..<24, with: $0) }
        var value: UInt64 = 0
        for i in 0..<width where offset + i < bytes.count { value |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        return value
    }

    func activate(size: Int, descriptor: PhysicalAddress, driver: PhysicalAddress, device: PhysicalAddress) -> Bool {
        guard !refusesQueue, size <= maximumQueueSize, size & (size - 1) == 0 else { return false }
        queueSize = size
        descriptorArea = descriptor
        driverArea = driver
        deviceArea = device
        isQueueReady = true
        if suppressesNotifications { setUsedFlags(SplitVirtqueue.usedFlagNoNotify) }
        return true
    }

    func notify() {
        notificationCount += 1
        if status & VirtioStatus.driverOK == 0 { protocolViolations.append("notified before DRIVER_OK") }
    }

    /// Reads and clears the interrupt status, as virtio-mmio's InterruptStatus/ACK pair.
    func acknowledgeInterrupt() -> UInt8 {
        let value = interruptStatus
        interruptStatus = 0
        return value
    }

    func setUsedFlags(_ flags: UInt16) {
        DirectMap.pointer(to: deviceArea).storeBytes(of: flags.littleEndian, as: UInt16.self)
    }

    // MARK: Device side

    private func load<T: FixedWidthInteger>(_ address: PhysicalAddress, offset: Int = 0, as: T.Type) -> T {
        T(littleEndian: DirectMap.pointer(to: address).loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Moves every newly available chain to `pending`, validating its shape.
    func fetchAvailable() {
        guard isQueueReady else { return }
        let availableIndex: UInt16 = load(driverArea, offset: 2, as: UInt16.self)
        while lastAvailableIndex != availableIndex {
            let slot = Int(lastAvailableIndex) % queueSize
            let head: UInt16 = load(driverArea, offset: 4 + 2 * slot, as: UInt16.self)
            lastAvailableIndex &+= 1
            pending.append(parseChain(head))
            requestsSeen += 1
        }
    }

    private func parseChain(_ head: UInt16) -> Pending {
        var buffers: [(address: PhysicalAddress, length: Int, writable: Bool)] = []
        var index = head
        var steps = 0
        while true {
            guard Int(index) < queueSize, steps < queueSize else {
                protocolViolations.append("chain leaves the table or loops")
                break
            }
            let descriptor = descriptorArea.advanced(by: UInt64(index) * 16)
            let address: UInt64 = load(descriptor, as: UInt64.self)
            let length: UInt32 = load(descriptor, offset: 8, as: UInt32.self)
            let flags: UInt16 = load(descriptor, offset: 12, as: UInt16.self)
            let next: UInt16 = load(descriptor, offset: 14, as: UInt16.self)
            buffers.append((PhysicalAddress(address), Int(length), flags & SplitVirtqueue.DescriptorFlag.write != 0))
            steps += 1
            if flags & SplitVirtqueue.DescriptorFlag.next == 0 { break }
            index = next
        }
        var request = Pending(head: head, type: 0, sector: 0, data: [], status: nil)
        guard buffers.count >= 2, buffers[0].length == 16, !buffers[0].writable,
              buffers.last!.length == 1, buffers.last!.writable else {
            protocolViolations.append("chain is not header(16, readable) + data + status(1, writable)")
            return request
        }
        request.type = load(buffers[0].address, as: UInt32.self)
        request.sector = load(buffers[0].address, offset: 8, as: UInt64.self)
        request.data = Array(buffers[1..<(buffers.count - 1)])
        request.status = buffers.last!.address
        let wantsWritable = request.type == VirtioBlockRequest.typeIn || request.type == VirtioBlockRequest.typeGetID
        for buffer in request.data where buffer.writable != wantsWritable {
            protocolViolations.append("data descriptor direction does not match the request type")
        }
        fetchedRequests.append((request.type, request.sector, request.data.reduce(0) { $0 + $1.length }, request.data.count))
        return request
    }

    /// Completes pending requests at `positions` (indices into `pending`, in that order),
    /// performing their I/O, then raises one interrupt.
    func complete(positions: [Int], interrupt: Bool = true) {
        let chosen = positions.map { pending[$0] }
        pending = pending.enumerated().filter { !positions.contains($0.offset) }.map { $0.element }
        for request in chosen { finish(request) }
        if interrupt && !chosen.isEmpty { raiseInterrupt() }
    }

    /// Completes everything pending, newest first when `reversed`.
    func completeAll(reversed: Bool = false, interrupt: Bool = true) {
        let positions = Array(pending.indices)
        complete(positions: reversed ? positions.reversed() : positions, interrupt: interrupt)
    }

    func raiseInterrupt() {
        interruptStatus |= 1
        onInterrupt?()
    }

    private func finish(_ request: Pending) {
        var result = VirtioBlockRequest.statusOK
        let bytes = request.data.reduce(0) { $0 + $1.length }
        switch request.type {
        case VirtioBlockRequest.typeIn, VirtioBlockRequest.typeOut:
            let sectors = UInt64(bytes / 512)
            let inRange = bytes % 512 == 0 && request.sector <= capacity && sectors <= capacity - request.sector
            let hitsError = (request.sector..<(request.sector + sectors)).contains { ioErrorSectors.contains($0) }
            if !inRange || hitsError {
                result = VirtioBlockRequest.statusIOError
                break
            }
            var offset = Int(request.sector) * 512
            for buffer in request.data {
                let memory = DirectMap.pointer(to: buffer.address)
                if request.type == VirtioBlockRequest.typeIn {
                    disk.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress! + offset, byteCount: buffer.length) }
                } else {
                    disk.withUnsafeMutableBytes { ($0.baseAddress! + offset).copyMemory(from: memory, byteCount: buffer.length) }
                }
                offset += buffer.length
            }
        case VirtioBlockRequest.typeFlush:
            flushCount += 1
        default:
            result = VirtioBlockRequest.statusUnsupported
        }
        if let status = request.status, !skipsStatusWrite {
            DirectMap.pointer(to: status).storeBytes(of: result, as: UInt8.self)
        }
        let slot = Int(usedIndex) % queueSize
        let entry = DirectMap.pointer(to: deviceArea).advanced(by: 4 + 8 * slot)
        let id = returnsBogusUsedID ? UInt32(queueSize + 7) : UInt32(request.head)
        entry.storeBytes(of: id.littleEndian, as: UInt32.self)
        let written = request.type == VirtioBlockRequest.typeIn ? bytes + 1 : 1
        entry.storeBytes(of: UInt32(written).littleEndian, toByteOffset: 4, as: UInt32.self)
        usedIndex &+= 1
        DirectMap.pointer(to: deviceArea).storeBytes(of: usedIndex.littleEndian, toByteOffset: 2, as: UInt16.self)
    }
}

/// A transport over a `FakeVirtioBlockDevice`. `waitForInterrupt` plays the role of the CPU
/// sleeping while the device works: the device fetches what is available and completes it
/// (in `completionOrder`), then interrupts.
struct FakeVirtioTransport: VirtioTransport {
    enum CompletionOrder { case fifo, reversed, manual }

    let device: FakeVirtioBlockDevice
    var completionOrder: CompletionOrder = .fifo
    var usesInterrupts = true

    var isLegacy: Bool { device.isLegacy }
    func reset() { device.reset() }
    func status() -> UInt8 { device.status }
    func setStatus(_ status: UInt8) { device.setStatus(status) }
    func deviceFeatures() -> UInt64 { device.isLegacy ? device.offeredFeatures & 0xFFFF_FFFF : device.offeredFeatures }
    func setDriverFeatures(_ features: UInt64) { device.setDriverFeatures(features) }
    func configurationGeneration() -> UInt32 { device.generation }
    func readConfiguration<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        T(truncatingIfNeeded: device.readConfiguration(at: offset, width: T.bitWidth / 8))
    }
    func maximumQueueSize(_ index: Int) -> Int { index == 0 ? device.maximumQueueSize : 0 }
    func activateQueue(_ index: Int, _ queue: SplitVirtqueue) -> Bool {
        index == 0 && device.activate(size: queue.size, descriptor: queue.descriptorArea,
                                      driver: queue.driverArea, device: queue.deviceArea)
    }
    func notify(queue index: Int) { device.notify() }
    func acknowledgeInterrupt() -> Bool { device.acknowledgeInterrupt() & 1 != 0 }
    /// The fake device finishes requests only when the driver waits.
    func takePendingInterrupts() {}
    func waitForInterrupt() {
        device.fetchAvailable()
        switch completionOrder {
        case .fifo: device.completeAll()
        case .reversed: device.completeAll(reversed: true)
        case .manual: break
        }
    }
}
