// SDHostControllerTests: the machine-independent SDHCI driver against FakeSDHost: the
// identification sequence for SDSC and SDHC cards, CSD capacity decoding, byte versus block
// addressing, single and multi-block transfers through the block-device interface, and every
// failure turned into a typed error with the card still usable afterwards.
// Also: the VideoCore mailbox property message encoding (FirmwareProperty).

import XCTest
@testable import Kernel

final class SDHostControllerTests: XCTestCase {
    private var arena: PhysicalArena!

    override func setUpWithError() throws {
        arena = PhysicalArena(byteCount: 8 << 20)
        try physicalPages.setUp(memoryMap: arena.wholeArenaMap())
    }

    override func tearDown() {
        arena = nil
    }

    private typealias Driver = SDHostController<FakeSDHost>

    private func attach(_ host: FakeSDHost) throws -> Driver {
        try Driver(registers: host, baseClockHz: 250_000_000)
    }

    private func expectInitError(_ expected: SDCardError, _ host: FakeSDHost, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try attach(host), file: file, line: line) {
            XCTAssertEqual($0 as? SDCardError, expected, file: file, line: line)
        }
    }

    private func page() throws -> PhysicalAddress { try physicalPages.allocate(order: 0) }

    private func bytes(_ address: PhysicalAddress, _ count: Int) -> [UInt8] {
        let pointer = DirectMap.pointer(to: address)
        return (0..<count).map { pointer.load(fromByteOffset: $0, as: UInt8.self) }
    }

    // MARK: Identification

    func testSDSCCardIdentifiesInSpecOrderWithCSDCapacity() throws {
        let host = FakeSDHost(blocks: 8192, highCapacity: false)
        let card = try attach(host)
        XCTAssertEqual(Array(host.commandLog.prefix(2)), [0, 8], "CMD0 then CMD8")
        XCTAssertEqual(Array(host.commandLog.suffix(5)), [2, 3, 9, 7, 16], "CID, RCA, CSD, select, block length")
        XCTAssertEqual(card.geometry.blockCount, 8192, "capacity from a CSD 1.0")
        XCTAssertEqual(card.identity.relativeAddress, host.relativeAddress)
        XCTAssertFalse(card.identity.isHighCapacity)
        XCTAssertTrue(card.identity.answeredInterfaceCondition)
    }

    func testSDHCCardReportsBlockAddressingAndCSD2Capacity() throws {
        let host = FakeSDHost(blocks: 4096, highCapacity: true)
        let card = try attach(host)
        XCTAssertTrue(card.identity.isHighCapacity)
        XCTAssertEqual(card.geometry.blockCount, 4096, "capacity from a CSD 2.0")
    }

    func testACMD41IsRepeatedUntilTheCardPowersUp() throws {
        let host = FakeSDHost(blocks: 2048, highCapacity: false)
        host.powerUpBusyCount = 5
        _ = try attach(host)
        XCTAssertEqual(host.commandLog.filter { $0 == 41 }.count, 6)
        XCTAssertEqual(host.commandLog.filter { $0 == 55 }.count, 6, "each ACMD41 is preceded by CMD55")
    }

    func testCardWithoutCMD8IsTakenAsVersion1() throws {
        let host = FakeSDHost(blocks: 2048, highCapacity: false)
        host.answersCMD8 = false
        let card = try attach(host)
        XCTAssertFalse(card.identity.answeredInterfaceCondition)
        XCTAssertEqual(card.geometry.blockCount, 2048)
    }

    func testInitialisationFailuresAreTyped() {
        let empty = FakeSDHost(blocks: 2048, highCapacity: false)
        empty.hasCard = false
        expectInitError(.noCard, empty)

        let hung = FakeSDHost(blocks: 2048, highCapacity: false)
        hung.resetHangs = true
        expectInitError(.controllerTimeout, hung)

        let slow = FakeSDHost(blocks: 2048, highCapacity: false)
        slow.powerUpBusyCount = 10_000
        expectInitError(.initialisationTimeout, slow)

        let silent = FakeSDHost(blocks: 2048, highCapacity: false)
        silent.silentCommands = [2]
        expectInitError(.commandTimeout, silent)
    }

    // MARK: Transfers

    func testWriteThenReadRoundTripsOverTwoSegments() throws {
        for highCapacity in [false, true] {
            let host = FakeSDHost(blocks: 4096, highCapacity: highCapacity)
            let card = try attach(host)
            let first = try page(), second = try page()
            let pattern = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
            DirectMap.pointer(to: first).copyMemory(from: pattern, byteCount: 4096)
            DirectMap.pointer(to: second).copyMemory(from: pattern.reversed(), byteCount: 4096)
            try card.write(at: 100, from: [BlockSegment(pages: 1, at: first), BlockSegment(pages: 1, at: second)])
            XCTAssertEqual(Array(host.storage[100 * 512..<100 * 512 + 4096]), pattern, "blocks 100-107 on the card")
            XCTAssertEqual(Array(host.storage[108 * 512..<108 * 512 + 4096]), pattern.reversed(), "blocks 108-115")
            let back = try page()
            try card.read(at: 108, into: CollectionOfOne(BlockSegment(pages: 1, at: back)))
            XCTAssertEqual(bytes(back, 4096), pattern.reversed(), "read back (highCapacity \(highCapacity))")
        }
    }

    func testMultiBlockReadIsOneCommandEndedByAutoCMD12() throws {
        let host = FakeSDHost(blocks: 2048, highCapacity: false)
        let card = try attach(host)
        let buffer = try page()
        let before = host.commandLog.count
        try card.read(at: 8, into: CollectionOfOne(BlockSegment(pages: 1, at: buffer)))
        XCTAssertEqual(Array(host.commandLog[before...]), [18])
        XCTAssertEqual(host.autoStopCount, 1)
        try card.read(at: 8, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 512)))
        XCTAssertEqual(host.commandLog.last, 17, "one block: CMD17")
    }

    func testCompletionsAreQueuedUntilReaped() throws {
        let card = try attach(FakeSDHost(blocks: 2048, highCapacity: false))
        let buffer = try page()
        try card.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(address: buffer, byteCount: 512)), tag: 7)
        try card.submit(.read, at: 1, segments: CollectionOfOne(BlockSegment(address: buffer, byteCount: 512)), tag: 8)
        XCTAssertEqual(card.inFlightCount, 2)
        var tags: [UInt64] = []
        card.reapCompletions { XCTAssertTrue($0.succeeded); tags.append($0.tag) }
        XCTAssertEqual(tags, [7, 8])
        XCTAssertEqual(card.inFlightCount, 0)
    }

    func testBadRequestsAreRefusedBeforeTheCard() throws {
        let host = FakeSDHost(blocks: 2048, highCapacity: false)
        let card = try attach(host)
        let buffer = try page()
        let before = host.commandLog.count
        XCTAssertThrowsError(try card.read(at: 2047, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 1024)))) {
            XCTAssertEqual($0 as? BlockDeviceError, .outOfRange)
        }
        XCTAssertThrowsError(try card.read(at: 0, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 100)))) {
            XCTAssertEqual($0 as? BlockDeviceError, .invalidLength)
        }
        XCTAssertThrowsError(try card.flush()) { XCTAssertEqual($0 as? BlockDeviceError, .flushUnsupported) }
        XCTAssertEqual(host.commandLog.count, before, "nothing reached the card")
    }

    func testCardRefusedAddressIsIOErrorAndCardRecovers() throws {
        let host = FakeSDHost(blocks: 2048, highCapacity: false)
        let card = try attach(host)
        let buffer = try page()
        XCTAssertThrowsError(try card.transfer(isWrite: false, block: 4000, count: 1, memory: DirectMap.pointer(to: buffer))) {
            XCTAssertEqual($0 as? SDCardError, .cardStatusError)
        }
        XCTAssertEqual(SDCardError.cardStatusError.blockError, .ioError)
        host.storage[512] = 0x5A
        try card.read(at: 1, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 512)))
        XCTAssertEqual(bytes(buffer, 1), [0x5A], "the card reads after the refusal")
        XCTAssertTrue(host.commandLog.contains(13), "recovery read the card status (CMD13)")
    }

    func testSilentCommandTimesOutAndFailsTheRequestWithIOError() throws {
        let host = FakeSDHost(blocks: 2048, highCapacity: false)
        let card = try attach(host)
        let buffer = try page()
        host.silentCommands = [17]
        try card.submit(.read, at: 0, segments: CollectionOfOne(BlockSegment(address: buffer, byteCount: 512)), tag: 1)
        var errors: [BlockDeviceError?] = []
        card.reapCompletions { errors.append($0.error) }
        XCTAssertEqual(errors, [.ioError])
        XCTAssertEqual(card.lastError, .commandTimeout)
        host.silentCommands = []
        XCTAssertNoThrow(try card.read(at: 0, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 512))))
    }

    // MARK: CSD decoding

    func testCSDVersion1AndVersion2Capacities() {
        // CSD 2.0 with C_SIZE = 0x1D9F (a 4 GB card's): bits 69:48 -> response bits 61:40.
        let size: UInt64 = 0x1D9F
        let csd2 = (UInt32(0), UInt32(truncatingIfNeeded: size << 8), UInt32(0), UInt32(1) << 22)   // structure bits 127:126 = 01
        XCTAssertEqual(SDCardRegisters.capacity(fromCSD: csd2), (size + 1) << 19)
        XCTAssertNil(SDCardRegisters.capacity(fromCSD: (0, 0, 0, 3 << 22)), "reserved structure version")
    }

    // MARK: Firmware property messages

    func testGetARMMemoryRequestEncodingAndAnswer() throws {
        var buffer = [UInt32](repeating: 0xFFFF_FFFF, count: 16)
        let words = try buffer.withUnsafeMutableBufferPointer { pointer in
            try FirmwareProperty.encodeRequest(tag: FirmwareProperty.getARMMemory, valueWords: 2,
                                               into: pointer.baseAddress!, capacity: 16)
        }
        XCTAssertEqual(words, 8)
        XCTAssertEqual(Array(buffer.prefix(8)), [32, 0, 0x0001_0005, 8, 0, 0, 0, 0])
        // The firmware's answer: success, tag answered with 8 bytes, base 0, size 0x3C00_0000.
        buffer[1] = 0x8000_0000
        buffer[4] = 0x8000_0008
        buffer[6] = 0x3C00_0000
        let range = try buffer.withUnsafeBufferPointer { pointer in
            FirmwareProperty.armMemory(fromValue: try FirmwareProperty.decodeResponse(pointer.baseAddress!, valueWords: 2))
        }
        XCTAssertEqual(range, PhysicalRange(start: PhysicalAddress(0), end: PhysicalAddress(0x3C00_0000)))
    }

    func testFirmwarePropertyFailuresAreTyped() {
        var buffer = [UInt32](repeating: 0, count: 4)
        XCTAssertThrowsError(try buffer.withUnsafeMutableBufferPointer {
            try FirmwareProperty.encodeRequest(tag: FirmwareProperty.getARMMemory, valueWords: 2, into: $0.baseAddress!, capacity: 4)
        }) { XCTAssertEqual($0 as? FirmwarePropertyError, .bufferTooSmall) }
        var answer: [UInt32] = [32, 0x8000_0001, 0x0001_0005, 8, 0x8000_0008, 0, 0, 0]
        XCTAssertThrowsError(try answer.withUnsafeBufferPointer { try FirmwareProperty.decodeResponse($0.baseAddress!, valueWords: 2) }) {
            XCTAssertEqual($0 as? FirmwarePropertyError, .requestFailed)
        }
        answer[1] = 0x8000_0000
        answer[4] = 0   // tag not answered
        XCTAssertThrowsError(try answer.withUnsafeBufferPointer { try FirmwareProperty.decodeResponse($0.baseAddress!, valueWords: 2) }) {
            XCTAssertEqual($0 as? FirmwarePropertyError, .tagNotAnswered)
        }
    }
}
