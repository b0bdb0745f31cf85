// FakeSDHost: an SDHCI register block with an SD card behind it, enough of both for the
// machine-independent SDHostController: resets and clock bits, command/response with the
// card's identification state machine (idle, ready, ident, stand-by, transfer), PIO data
// through the buffer port with auto-CMD12, write-1-to-clear interrupt status, and injected
// failures (a silent command, a reset that never finishes, no card).

@testable import Kernel

final class FakeSDHost: SDHostRegisters {
    enum CardState: UInt32 { case idle = 0, ready = 1, identification = 2, standBy = 3, transfer = 4, sendingData = 5, receivingData = 6 }

    // Card configuration.
    var isHighCapacity: Bool
    var answersCMD8 = true
    var hasCard = true
    /// ACMD41 answers "busy" this many times before "powered up".
    var powerUpBusyCount = 2
    /// Commands the card never answers (command timeout).
    var silentCommands: Set<UInt8> = []
    /// The reset bits never clear.
    var resetHangs = false
    let relativeAddress: UInt32 = 0x4567
    var storage: [UInt8]

    // Observations.
    private(set) var commandLog: [UInt8] = []
    private(set) var autoStopCount = 0

    // Controller state.
    private var registers: [Int: UInt32] = [:]
    private var interruptStatus: UInt32 = 0
    private var state = CardState.idle
    private var pendingAppCommand = false
    private var response: [UInt32] = [0, 0, 0, 0]
    private var dataBlocksLeft = 0
    private var dataIsRead = false
    private var dataAddress = 0         // byte offset into storage of the current word
    private var wordsLeftInBlock = 0
    private var autoStop = false

    init(blocks: Int, highCapacity: Bool) {
        storage = [UInt8](repeating: 0, count: blocks * 512)
        isHighCapacity = highCapacity
    }

    var blockCount: Int { storage.count / 512 }

    func delay(microseconds: Int) {}

    func load(_ offset: Int) -> UInt32 {
        switch offset {
        case SDHCI.presentState:
            return hasCard ? SDHCI.cardInserted : 0
        case SDHCI.interruptStatus:
            return interruptStatus
        case SDHCI.response0, SDHCI.response0 + 4, SDHCI.response0 + 8, SDHCI.response0 + 12:
            return response[(offset - SDHCI.response0) / 4]
        case SDHCI.bufferData:
            return readDataWord()
        case SDHCI.clockTimeoutAndReset:
            var value = registers[offset] ?? 0
            if value & SDHCI.internalClockEnable != 0 { value |= SDHCI.internalClockStable }
            return value
        case SDHCI.capabilities:
            return 0   // like the BCM2837: no base clock given
        default:
            return registers[offset] ?? 0
        }
    }

    func store(_ offset: Int, _ value: UInt32) {
        switch offset {
        case SDHCI.interruptStatus:
            interruptStatus &= ~value
            if interruptStatus & 0xFFFF_0000 == 0 { interruptStatus &= ~SDHCI.errorInterrupt }
        case SDHCI.clockTimeoutAndReset:
            registers[offset] = resetHangs ? value : value & 0x00FF_FFFF
            if value & SDHCI.resetAll != 0 && !resetHangs { registers = [:]; interruptStatus = 0 }
            if value & SDHCI.resetData != 0 { dataBlocksLeft = 0 }
        case SDHCI.transferModeAndCommand:
            registers[offset] = value
            issue(index: UInt8((value >> 24) & 0x3F), mode: value & 0xFFFF)
        case SDHCI.bufferData:
            writeDataWord(value)
        default:
            registers[offset] = value
        }
    }

    // MARK: Commands

    private func cardStatus(_ extra: UInt32 = 0) -> UInt32 {
        extra | state.rawValue << 9 | (state == .transfer ? 1 << 8 : 0) | (pendingAppCommand ? 1 << 5 : 0)
    }

    private func complete(_ words: [UInt32]) {
        response = words + [UInt32](repeating: 0, count: 4 - words.count)
        interruptStatus |= SDHCI.commandComplete
    }

    private func timeOut() {
        interruptStatus |= SDHCI.errorInterrupt | SDHCI.commandTimeoutError
    }

    private func issue(index: UInt8, mode: UInt32) {
        commandLog.append(index)
        let argument = registers[SDHCI.argument] ?? 0
        let isApp = pendingAppCommand
        pendingAppCommand = false
        if silentCommands.contains(index) { timeOut(); return }
        switch (index, isApp) {
        case (0, _):
            state = .idle
            complete([])
        case (8, false):
            guard answersCMD8, state == .idle else { timeOut(); return }
            complete([argument & 0xFFF])
        case (55, _):
            pendingAppCommand = true
            complete([cardStatus(1 << 5)])
        case (41, true):
            guard state == .idle || state == .ready else { timeOut(); return }
            var ocr: UInt32 = 0x00FF_8000
            if powerUpBusyCount > 0 {
                powerUpBusyCount -= 1
            } else {
                ocr |= SDCardRegisters.ocrPoweredUp
                if isHighCapacity && argument & SDCardRegisters.ocrHighCapacity != 0 { ocr |= SDCardRegisters.ocrHighCapacity }
                state = .ready
            }
            complete([ocr])
        case (2, false):
            guard state == .ready else { timeOut(); return }
            state = .identification
            complete([0x1111, 0x2222, 0x3333, 0x4444])
        case (3, false):
            guard state == .identification || state == .standBy else { timeOut(); return }
            state = .standBy
            complete([relativeAddress << 16 | 0x0500])
        case (9, false):
            guard state == .standBy, argument >> 16 == relativeAddress else { timeOut(); return }
            complete(csd())
        case (7, false):
            guard argument >> 16 == relativeAddress else { timeOut(); return }
            state = .transfer
            complete([cardStatus()])
        case (13, false):
            complete([cardStatus()])
        case (16, false):
            complete([cardStatus(argument == 512 ? 0 : 1 << 29)])
        case (12, false):
            guard state == .sendingData || state == .receivingData else { timeOut(); return }
            state = .transfer
            dataBlocksLeft = 0
            complete([cardStatus()])
        case (17, false), (18, false), (24, false), (25, false):
            guard state == .transfer else { timeOut(); return }
            let byteAddress = isHighCapacity ? Int(argument) * 512 : Int(argument)
            guard byteAddress + 512 <= storage.count else {
                complete([cardStatus(1 << 30)])   // ADDRESS_ERROR (no data follows)
                return
            }
            let blocks = index == 17 || index == 24 ? 1 : Int((registers[SDHCI.blockSizeAndCount] ?? 0) >> 16)
            dataIsRead = index == 17 || index == 18
            state = dataIsRead ? .sendingData : .receivingData
            dataAddress = byteAddress
            dataBlocksLeft = blocks
            wordsLeftInBlock = 128
            autoStop = mode & SDHCI.autoCMD12 != 0
            complete([cardStatus()])
            interruptStatus |= dataIsRead ? SDHCI.bufferReadReady : SDHCI.bufferWriteReady
        default:
            timeOut()
        }
    }

    /// A CSD 1.0 (SDSC: C_SIZE_MULT 7, READ_BL_LEN 9) or 2.0 (SDHC) for the storage size.
    private func csd() -> [UInt32] {
        var words: [UInt32] = [0, 0, 0, 0]
        func set(_ high: Int, _ low: Int, _ value: UInt64) {
            for bit in low...high where value >> UInt64(bit - low) & 1 != 0 {
                let position = bit - 8
                words[position / 32] |= 1 << UInt32(position % 32)
            }
        }
        if isHighCapacity {
            set(127, 126, 1)
            set(69, 48, UInt64(storage.count >> 19) - 1)
        } else {
            set(83, 80, 9)
            set(49, 47, 7)
            set(73, 62, UInt64(storage.count >> 18) - 1)
        }
        return words
    }

    // MARK: Data

    private func readDataWord() -> UInt32 {
        guard dataIsRead, dataBlocksLeft > 0 else { return 0 }
        var word: UInt32 = 0
        for byte in 0..<4 { word |= UInt32(storage[dataAddress + byte]) << UInt32(byte * 8) }
        advanceWord()
        return word
    }

    private func writeDataWord(_ value: UInt32) {
        guard !dataIsRead, dataBlocksLeft > 0 else { return }
        for byte in 0..<4 { storage[dataAddress + byte] = UInt8(truncatingIfNeeded: value >> UInt32(byte * 8)) }
        advanceWord()
    }

    private func advanceWord() {
        dataAddress += 4
        wordsLeftInBlock -= 1
        guard wordsLeftInBlock == 0 else { return }
        dataBlocksLeft -= 1
        wordsLeftInBlock = 128
        if dataBlocksLeft > 0 {
            interruptStatus |= dataIsRead ? SDHCI.bufferReadReady : SDHCI.bufferWriteReady
        } else {
            if autoStop { autoStopCount += 1 }
            state = .transfer
            interruptStatus |= SDHCI.transferComplete
        }
    }
}
