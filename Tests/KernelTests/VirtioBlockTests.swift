// VirtioBlockTests: the machine-independent virtio-blk driver against FakeVirtioBlockDevice
// (VirtioFakeDevice.swift) over fake physical memory: start-up handshake and its failure
// paths, request chains, out-of-order completion, interrupt-driven reaping, typed errors for
// device statuses and protocol violations, and request validation (BlockGeometry.validate)
// before anything reaches the device.

import XCTest
@testable import Kernel

final class VirtioBlockTests: XCTestCase {
    private var arena: PhysicalArena!
    private let sectors: UInt64 = 4096   // 2 MiB fake disk

    override func setUpWithError() throws {
        arena = PhysicalArena(byteCount: 32 << 20)
        try physicalPages.setUp(memoryMap: arena.wholeArenaMap())
    }

    override func tearDown() {
        arena = nil
    }

    // MARK: Helpers

    private typealias Driver = VirtioBlockDevice<FakeVirtioTransport>

    /// A started driver over `device`, its interrupts wired to the driver.
    private func attach(_ device: FakeVirtioBlockDevice, order: FakeVirtioTransport.CompletionOrder = .fifo,
                        interrupts: Bool = true) throws -> Driver {
        let driver = try Driver(transport: FakeVirtioTransport(device: device, completionOrder: order,
                                                               usesInterrupts: interrupts))
        device.onInterrupt = { [unowned driver] in driver.handleInterrupt() }
        return driver
    }

    private func expectAttachError(_ expected: BlockDeviceError, _ device: FakeVirtioBlockDevice,
                                   file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Driver(transport: FakeVirtioTransport(device: device)), file: file, line: line) {
            XCTAssertEqual($0 as? BlockDeviceError, expected, file: file, line: line)
        }
        XCTAssertNotEqual(device.status & VirtioStatus.failed, 0, "FAILED set after a refused start", file: file, line: line)
        XCTAssertEqual(physicalPages.usedPages, 0, "everything allocated was given back", file: file, line: line)
    }

    private func expectError(_ expected: BlockDeviceError, file: StaticString = #filePath, line: UInt = #line,
                             _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) {
            XCTAssertEqual($0 as? BlockDeviceError, expected, file: file, line: line)
        }
    }

    private func page(filledWith byte: UInt8? = nil) throws -> PhysicalAddress {
        let address = try physicalPages.allocate()
        if let byte { DirectMap.pointer(to: address).initializeMemory(as: UInt8.self, repeating: byte, count: 4096) }
        return address
    }

    private func bytes(at address: PhysicalAddress, count: Int = 4096) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: DirectMap.pointer(to: address), count: count))
    }

    /// Reaps until `count` completions arrived; returns them in delivery order.
    private func collect(_ driver: Driver, count: Int) -> [BlockCompletion] {
        var completions: [BlockCompletion] = []
        var rounds = 0
        while completions.count < count && rounds < 100 {
            driver.waitForCompletions()
            driver.reapCompletions { completions.append($0) }
            rounds += 1
        }
        return completions
    }

    // MARK: Start-up

    func testStartNegotiatesWantedFeaturesAndReadsGeometry() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.offeredFeatures |= VirtioFeature.ringEventIndex | VirtioFeature.ringIndirectDescriptors | (1 << 13)
        device.sizeMax = 65536 + 100
        device.offeredFeatures |= VirtioBlockFeature.sizeMax
        let driver = try attach(device)
        XCTAssertEqual(driver.features, VirtioFeature.version1 | VirtioBlockFeature.segmentMax | VirtioBlockFeature.blockSize
                       | VirtioBlockFeature.flush | VirtioBlockFeature.sizeMax, "only wanted features accepted")
        XCTAssertEqual(device.driverFeatures, driver.features)
        let a = VirtioStatus.acknowledge, d = VirtioStatus.driver, f = VirtioStatus.featuresOK, ok = VirtioStatus.driverOK
        XCTAssertEqual(device.statusHistory, [a, a | d, a | d | f, a | d | f | ok], "section 3.1.1 order")
        XCTAssertEqual(device.resetCount, 1)
        XCTAssertEqual(driver.geometry, BlockGeometry(blockSize: 512, blockCount: sectors, maxSegments: 254,
                                                      maxSegmentBytes: 65536, queueDepth: 85, supportsFlush: true,
                                                      isReadOnly: false))
        XCTAssertTrue(device.protocolViolations.isEmpty, "\(device.protocolViolations)")
    }

    func testModernDeviceWithoutVersion1IsRefused() {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.offeredFeatures &= ~VirtioFeature.version1
        expectAttachError(.unsupportedDevice, device)
    }

    func testDeviceRefusingFeaturesIsMarkedFailed() {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.refusesFeatures = true
        expectAttachError(.unsupportedDevice, device)
    }

    func testDeviceRefusingQueueIsMarkedFailedAndPagesReturned() {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.refusesQueue = true
        expectAttachError(.deviceFailed, device)
    }

    func testDeviceWithoutQueueIsRefused() {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.maximumQueueSize = 0
        expectAttachError(.deviceFailed, device)
    }

    func testBadBlockSizeIsRefused() {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.blockSize = 1000
        expectAttachError(.unsupportedDevice, device)
    }

    func testLegacyDeviceSkipsFeaturesOKAndNeedsNoVersion1() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.isLegacy = true
        device.offeredFeatures &= ~VirtioFeature.version1
        let driver = try attach(device)
        XCTAssertEqual(driver.features & VirtioFeature.version1, 0)
        XCTAssertFalse(device.statusHistory.contains { $0 & VirtioStatus.featuresOK != 0 })
        XCTAssertNotEqual(device.status & VirtioStatus.driverOK, 0)
    }

    func testConfigurationIsRereadWhenGenerationChanges() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.capacityAfterGenerationBump = 2048
        let driver = try attach(device)
        XCTAssertEqual(driver.geometry.blockCount, 2048, "the values after the change are used")
        XCTAssertGreaterThanOrEqual(device.configurationReads, 6, "fields read twice")
    }

    func testSmallQueueAndNoSegMaxLimitRequests() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.offeredFeatures &= ~VirtioBlockFeature.segmentMax
        device.maximumQueueSize = 100   // not a power of two: the driver takes 64
        let driver = try attach(device)
        XCTAssertEqual(driver.geometry.maxSegments, 1, "one segment without SEG_MAX")
        XCTAssertEqual(driver.geometry.queueDepth, 21)
        XCTAssertEqual(driver.freeDescriptorCount, 64)
    }

    // MARK: Requests

    func testWriteThenReadRoundTripsThroughTheDevice() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        let driver = try attach(device)
        let source = try page(filledWith: 0x3C)
        let target = try page(filledWith: 0)
        try driver.write(at: 40, from: CollectionOfOne(BlockSegment(pages: 1, at: source)))
        XCTAssertEqual(Array(device.disk[40 * 512 ..< 48 * 512]), [UInt8](repeating: 0x3C, count: 4096))
        try driver.read(at: 40, into: CollectionOfOne(BlockSegment(pages: 1, at: target)))
        XCTAssertEqual(bytes(at: target), [UInt8](repeating: 0x3C, count: 4096))
        XCTAssertEqual(driver.inFlightCount, 0)
        XCTAssertTrue(device.protocolViolations.isEmpty, "\(device.protocolViolations)")
    }

    func testRequestChainCarriesHeaderSegmentsAndStatus() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        let driver = try attach(device, order: .manual)
        let a = try page(), b = try page()
        try driver.submit(.read, at: 7, segments: [BlockSegment(address: a, byteCount: 1024),
                                                   BlockSegment(address: b, byteCount: 512)], tag: 1)
        try driver.submit(.write, at: 9, segments: CollectionOfOne(BlockSegment(address: b, byteCount: 512)), tag: 2)
        try driver.submit(.flush, at: 0, segments: EmptyCollection<BlockSegment>(), tag: 3)
        device.fetchAvailable()
        XCTAssertEqual(device.fetchedRequests.map { $0.type }, [VirtioBlockRequest.typeIn, VirtioBlockRequest.typeOut,
                                                                VirtioBlockRequest.typeFlush])
        XCTAssertEqual(device.fetchedRequests.map { $0.sector }, [7, 9, 0])
        XCTAssertEqual(device.fetchedRequests.map { $0.bytes }, [1536, 512, 0])
        XCTAssertEqual(device.fetchedRequests.map { $0.segments }, [2, 1, 0])
        XCTAssertTrue(device.protocolViolations.isEmpty, "descriptor directions: \(device.protocolViolations)")
        XCTAssertEqual(driver.freeDescriptorCount, 256 - 4 - 3 - 2)
        XCTAssertEqual(device.notificationCount, 3)
        device.completeAll()
        XCTAssertEqual(collect(driver, count: 3).map { $0.tag }, [1, 2, 3])
        XCTAssertEqual(device.flushCount, 1)
        XCTAssertEqual(driver.freeDescriptorCount, 256)
    }

    func testBlockNumbersAreConvertedToSectorsForLargeBlocks() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.blockSize = 4096
        let driver = try attach(device, order: .manual)
        XCTAssertEqual(driver.geometry.blockCount, sectors / 8)
        try driver.submit(.read, at: 3, segments: CollectionOfOne(BlockSegment(pages: 1, at: try page())), tag: 0)
        device.fetchAvailable()
        XCTAssertEqual(device.fetchedRequests.first?.sector, 24)
        expectError(.invalidLength) {
            try driver.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(address: try self.page(), byteCount: 512)),
                              tag: 0)
        }
    }

    func testSixteenRequestsCompletedInReverseReachTheirTags() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        for sector in 0..<Int(sectors) { device.disk.replaceSubrange(sector * 512 ..< sector * 512 + 512,
                                                                      with: repeatElement(UInt8(sector & 0xFF), count: 512)) }
        let driver = try attach(device, order: .reversed)
        var targets: [PhysicalAddress] = []
        for i in 0..<16 {
            let target = try page(filledWith: 0xEE)
            targets.append(target)
            try driver.submit(.read, at: UInt64(i * 8), segments: CollectionOfOne(BlockSegment(pages: 1, at: target)),
                              tag: UInt64(100 + i))
        }
        XCTAssertEqual(driver.inFlightCount, 16)
        let completions = collect(driver, count: 16)
        XCTAssertEqual(completions.map { $0.tag }, (0..<16).reversed().map { UInt64(100 + $0) })
        XCTAssertTrue(completions.allSatisfy { $0.succeeded })
        for (i, target) in targets.enumerated() {
            XCTAssertEqual(bytes(at: target, count: 512), [UInt8](repeating: UInt8((i * 8) & 0xFF), count: 512),
                           "request \(i) got its own data")
        }
        XCTAssertEqual(driver.peakInFlightCount, 16)
        XCTAssertEqual(driver.inFlightCount, 0)
    }

    func testQueueFullIsReportedWithoutChangingStateAndClearsAfterReaping() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.maximumQueueSize = 8
        let driver = try attach(device, order: .manual)
        let buffer = try page()
        try driver.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 1)
        try driver.submit(.read, at: 8, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 2)
        expectError(.queueFull) {
            try driver.submit(.read, at: 16, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 3)
        }
        XCTAssertEqual(driver.inFlightCount, 2)
        XCTAssertEqual(driver.submittedCount, 2)
        device.fetchAvailable()
        device.complete(positions: [1])
        XCTAssertEqual(collect(driver, count: 1).map { $0.tag }, [2])
        try driver.submit(.read, at: 16, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 3)
        device.fetchAvailable()
        device.completeAll()
        XCTAssertEqual(Set(collect(driver, count: 2).map { $0.tag }), [1, 3])
    }

    func testDeviceNoNotifyFlagSuppressesDoorbells() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.suppressesNotifications = true
        let driver = try attach(device)
        try driver.read(at: 0, into: CollectionOfOne(BlockSegment(pages: 1, at: try page())))
        XCTAssertEqual(driver.notificationCount, 0)
        XCTAssertEqual(device.notificationCount, 0)
        XCTAssertEqual(driver.submittedCount, 1)
    }

    // MARK: Interrupt-driven completion

    func testCompletionWaitsForItsInterrupt() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        let driver = try attach(device, order: .manual)
        try driver.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(pages: 1, at: try page())), tag: 5)
        device.fetchAvailable()
        device.completeAll(interrupt: false)
        XCTAssertEqual(driver.reapCompletions { _ in }, 0, "a used entry without its interrupt is not reaped yet")
        XCTAssertEqual(driver.inFlightCount, 1)
        device.raiseInterrupt()
        XCTAssertEqual(driver.interruptCount, 1)
        var tags: [UInt64] = []
        XCTAssertEqual(driver.reapCompletions { tags.append($0.tag) }, 1)
        XCTAssertEqual(tags, [5])
        XCTAssertEqual(device.interruptStatus, 0, "the handler acknowledged the interrupt")
    }

    func testInterruptDuringDrainAnnouncesLaterCompletions() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        let driver = try attach(device, order: .manual)
        let buffer = try page()
        try driver.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 1)
        try driver.submit(.read, at: 8, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 2)
        device.fetchAvailable()
        device.complete(positions: [0])
        var tags: [UInt64] = []
        driver.reapCompletions { completion in
            tags.append(completion.tag)
            // The device finishes the other request and interrupts while the driver drains.
            device.completeAll()
        }
        driver.waitForCompletions()   // must not sleep: the interrupt already announced it
        driver.reapCompletions { tags.append($0.tag) }
        XCTAssertEqual(tags, [1, 2])
    }

    func testPollingFallbackReapsWithoutInterrupts() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        let driver = try attach(device, order: .manual, interrupts: false)
        device.onInterrupt = nil
        try driver.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(pages: 1, at: try page())), tag: 9)
        device.fetchAvailable()
        device.completeAll()
        var tags: [UInt64] = []
        driver.reapCompletions { tags.append($0.tag) }
        XCTAssertEqual(tags, [9])
        XCTAssertEqual(driver.interruptCount, 0)
    }

    // MARK: Errors

    func testDeviceStatusesBecomeTypedErrors() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.ioErrorSectors = [17]
        let driver = try attach(device)
        let buffer = try page()
        expectError(.ioError) { try driver.read(at: 16, into: CollectionOfOne(BlockSegment(pages: 1, at: buffer))) }
        try driver.submitUnvalidated(type: 0x7E, sector: 0, segments: EmptyCollection<BlockSegment>(),
                                     deviceWritesData: false, tag: 4)
        XCTAssertEqual(collect(driver, count: 1).first?.error, .unsupportedRequest)
        try driver.submitUnvalidated(type: VirtioBlockRequest.typeIn, sector: sectors,
                                     segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)),
                                     deviceWritesData: true, tag: 5)
        XCTAssertEqual(collect(driver, count: 1).first?.error, .ioError)
        try driver.read(at: 0, into: CollectionOfOne(BlockSegment(pages: 1, at: buffer)))
        XCTAssertFalse(driver.hasFailed, "device errors do not break the device")
    }

    func testUnwrittenStatusIsDeviceFailed() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.skipsStatusWrite = true
        let driver = try attach(device)
        expectError(.deviceFailed) { try driver.read(at: 0, into: CollectionOfOne(BlockSegment(pages: 1, at: try self.page()))) }
    }

    func testBogusUsedIDResetsDeviceAndFailsEveryRequestInFlight() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        let driver = try attach(device, order: .manual)
        let buffer = try page()
        for tag in 0..<3 as Range<UInt64> {
            try driver.submit(.read, at: tag * 8, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: tag)
        }
        device.fetchAvailable()
        device.returnsBogusUsedID = true
        device.complete(positions: [0])
        let resetsBefore = device.resetCount
        let completions = collect(driver, count: 3)
        XCTAssertEqual(Set(completions.map { $0.tag }), [0, 1, 2])
        XCTAssertTrue(completions.allSatisfy { $0.error == .deviceFailed })
        XCTAssertTrue(driver.hasFailed)
        XCTAssertEqual(device.resetCount, resetsBefore + 1, "device reset before the requests were failed")
        XCTAssertEqual(driver.inFlightCount, 0)
        expectError(.deviceFailed) {
            try driver.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 9)
        }
    }

    func testSynchronousHelpersRefuseWhileRequestsAreInFlight() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        let driver = try attach(device, order: .manual)
        let buffer = try page()
        try driver.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(pages: 1, at: buffer)), tag: 1)
        expectError(.busy) { try driver.flush() }
        XCTAssertEqual(driver.submittedCount, 1)
    }

    func testShutDownResetsDeviceAndReturnsPages() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        let driver = try attach(device)
        XCTAssertGreaterThan(physicalPages.usedPages, 0)
        driver.shutDown()
        XCTAssertEqual(physicalPages.usedPages, 0)
        XCTAssertEqual(device.status, 0)
        expectError(.deviceFailed) { try driver.flush() }
    }

    // MARK: Validation

    func testInvalidRequestsNeverReachTheDevice() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.offeredFeatures |= VirtioBlockFeature.sizeMax
        device.sizeMax = 8192
        device.segmentMax = 4
        let driver = try attach(device)
        let buffer = try page()
        let one = CollectionOfOne(BlockSegment(pages: 1, at: buffer))
        expectError(.outOfRange) { try driver.submit(.read, at: self.sectors, segments: one, tag: 0) }
        expectError(.outOfRange) { try driver.submit(.write, at: self.sectors - 7, segments: one, tag: 0) }
        expectError(.outOfRange) { try driver.submit(.read, at: UInt64.max - 1, segments: one, tag: 0) }
        expectError(.invalidLength) {
            try driver.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(address: buffer, byteCount: 511)), tag: 0)
        }
        expectError(.invalidLength) { try driver.submit(.write, at: 0, segments: [BlockSegment](), tag: 0) }
        expectError(.invalidLength) { try driver.submit(.flush, at: 0, segments: one, tag: 0) }
        expectError(.tooManySegments) {
            try driver.submit(.read, at: 0, segments: [BlockSegment](repeating: BlockSegment(address: buffer, byteCount: 512),
                                                                     count: 5), tag: 0)
        }
        expectError(.segmentTooLarge) {
            try driver.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(address: buffer, byteCount: 16384)), tag: 0)
        }
        XCTAssertEqual(device.requestsSeen, 0)
        XCTAssertEqual(driver.submittedCount, 0)
        XCTAssertEqual(driver.inFlightCount, 0)
        try driver.read(at: sectors - 8, into: one)   // the last page is in range
    }

    func testReadOnlyAndFlushlessDevicesRefuseWritesAndFlushes() throws {
        let device = FakeVirtioBlockDevice(sectors: sectors)
        device.offeredFeatures = VirtioFeature.version1 | VirtioBlockFeature.readOnly
        let driver = try attach(device)
        XCTAssertTrue(driver.geometry.isReadOnly)
        expectError(.readOnly) { try driver.write(at: 0, from: CollectionOfOne(BlockSegment(pages: 1, at: try self.page()))) }
        expectError(.flushUnsupported) { try driver.flush() }
        XCTAssertEqual(device.requestsSeen, 0)
    }

    func testValidateReportsBlocksAndChecksInOrder() throws {
        let geometry = BlockGeometry(blockSize: 512, blockCount: 100, maxSegments: 2, maxSegmentBytes: 4096,
                                     queueDepth: 16, supportsFlush: false, isReadOnly: true)
        let a = BlockSegment(address: PhysicalAddress(0x1000), byteCount: 1024)
        XCTAssertEqual(try geometry.validate(.read, at: 98, segments: [a]), 2)
        XCTAssertEqual(try geometry.validate(.read, at: 0, segments: [a, a]), 4)
        XCTAssertThrowsError(try geometry.validate(.read, at: 99, segments: [a])) {
            XCTAssertEqual($0 as? BlockDeviceError, .outOfRange)
        }
        // Read-only wins over a bad length; a bad length wins over too many segments.
        XCTAssertThrowsError(try geometry.validate(.write, at: 0, segments: [BlockSegment(address: a.address, byteCount: 3)])) {
            XCTAssertEqual($0 as? BlockDeviceError, .readOnly)
        }
        XCTAssertThrowsError(try geometry.validate(.read, at: 0, segments: [a, a, BlockSegment(address: a.address, byteCount: 3)])) {
            XCTAssertEqual($0 as? BlockDeviceError, .invalidLength)
        }
        XCTAssertThrowsError(try geometry.validate(.flush, at: 0, segments: [BlockSegment]())) {
            XCTAssertEqual($0 as? BlockDeviceError, .flushUnsupported)
        }
        XCTAssertThrowsError(try geometry.validate(.read, at: 0,
                                                   segments: [BlockSegment(address: PhysicalAddress(UInt64.max - 511), byteCount: 1024)])) {
            XCTAssertEqual($0 as? BlockDeviceError, .segmentTooLarge)
        }
    }
}
