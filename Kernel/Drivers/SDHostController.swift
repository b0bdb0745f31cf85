// SDHostController: an SD card behind an SD Host Controller Standard (SDHCI v3) interface,
// programmed I/O, polled, as a `BlockDevice`: the BCM2837's Arasan "EMMC" controller on the
// Raspberry Pi 3 (and QEMU raspi3b's model of it). The registers are reached through an
// `SDHostRegisters` value, so host tests drive the same code against a simulated card.
// Invariants:
//  - Every register access is a 32-bit access at a 32-bit aligned offset: the BCM2835/7
//    Arasan drops 8- and 16-bit writes (Linux's sdhci-iproc shadows them for that reason),
//    so 16-bit fields are written together with their neighbour.
//  - One command at a time; `submit` runs the whole transfer before it returns and queues
//    the completion, so `inFlightCount` counts completions not yet reaped and
//    `waitForCompletions` never blocks. The card is in the transfer state between requests.
//  - Every wait is bounded (`SDTimeouts`) and ends in a typed `SDCardError`; after an error
//    the command and data circuits are reset, so the next request starts clean.
// Locks: none; one CPU, no interrupts (the signal enables stay 0).

/// 32-bit access to an SDHCI register block, plus a delay for the waits.
public protocol SDHostRegisters {
    /// The 32-bit register at byte `offset`.
    func load(_ offset: Int) -> UInt32
    /// Writes the 32-bit register at byte `offset`.
    func store(_ offset: Int, _ value: UInt32)
    /// Waits about `microseconds` (a simulation may return at once).
    func delay(microseconds: Int)
}

/// SDHCI register offsets and bits (SD Host Controller Simplified Specification v3.00, 2.2).
public enum SDHCI {
    public static let blockSizeAndCount = 0x04
    public static let argument = 0x08
    public static let transferModeAndCommand = 0x0C
    public static let response0 = 0x10
    public static let bufferData = 0x20
    public static let presentState = 0x24
    public static let hostAndPowerControl = 0x28
    public static let clockTimeoutAndReset = 0x2C
    public static let interruptStatus = 0x30
    public static let interruptStatusEnable = 0x34
    public static let signalEnable = 0x38
    public static let capabilities = 0x40

    // Present state.
    public static let commandInhibit: UInt32 = 1 << 0
    public static let dataInhibit: UInt32 = 1 << 1
    public static let cardInserted: UInt32 = 1 << 16
    // Normal interrupt status (low half) and error interrupt status (high half).
    public static let commandComplete: UInt32 = 1 << 0
    public static let transferComplete: UInt32 = 1 << 1
    public static let bufferWriteReady: UInt32 = 1 << 4
    public static let bufferReadReady: UInt32 = 1 << 5
    public static let errorInterrupt: UInt32 = 1 << 15
    public static let commandTimeoutError: UInt32 = 1 << 16
    public static let commandResponseErrors: UInt32 = 0x7 << 17        // CRC, end bit, index
    public static let dataTimeoutError: UInt32 = 1 << 20
    public static let dataErrors: UInt32 = 0x3 << 21 | 1 << 24           // CRC, end bit, auto CMD12
    public static let allStatus: UInt32 = 0xFFFF_FFFF
    // Command register (high half of 0x0C).
    public static let responseLong: UInt32 = 1, responseShort: UInt32 = 2, responseShortBusy: UInt32 = 3
    public static let crcCheck: UInt32 = 1 << 3
    public static let indexCheck: UInt32 = 1 << 4
    public static let dataPresent: UInt32 = 1 << 5
    // Transfer mode (low half of 0x0C).
    public static let blockCountEnable: UInt32 = 1 << 1
    public static let autoCMD12: UInt32 = 1 << 2
    public static let readDirection: UInt32 = 1 << 4
    public static let multipleBlocks: UInt32 = 1 << 5
    // Clock control (low half of 0x2C), timeout (bits 19:16) and software reset (bits 26:24).
    public static let internalClockEnable: UInt32 = 1 << 0
    public static let internalClockStable: UInt32 = 1 << 1
    public static let cardClockEnable: UInt32 = 1 << 2
    public static let maximumDataTimeout: UInt32 = 0xE << 16
    public static let resetAll: UInt32 = 1 << 24
    public static let resetCommand: UInt32 = 1 << 25
    public static let resetData: UInt32 = 1 << 26
    /// Power control (bits 15:8 of 0x28): bus power on at 3.3 V.
    public static let busPower33V: UInt32 = 0x0F << 8
}

/// Bounds of every wait, in microseconds.
public struct SDTimeouts {
    public var reset = 100_000
    public var command = 100_000
    public var data = 500_000
    /// ACMD41 attempts, `powerUpInterval` apart: the spec gives a card 1 s to power up.
    public var powerUpAttempts = 1_000
    public var powerUpInterval = 1_000

    public init() {}
}

/// What the card said about itself during initialisation.
public struct SDCardIdentity: Equatable {
    /// The relative card address from CMD3.
    public var relativeAddress: UInt32
    /// True for SDHC/SDXC (block addressing), false for SDSC (byte addressing).
    public var isHighCapacity: Bool
    /// True when the card answered CMD8 (physical layer 2.00 or later).
    public var answeredInterfaceCondition: Bool
    /// Capacity in bytes, from the CSD.
    public var capacityBytes: UInt64
}

/// An SD card on an SDHCI controller, as a block device of 512-byte blocks.
public final class SDHostController<Registers: SDHostRegisters>: BlockDevice {
    public static var blockBytes: Int { 512 }
    /// Blocks one segment may carry (one multi-block command per segment).
    public static var maximumBlocksPerSegment: Int { 256 }

    public let registers: Registers
    public let timeouts: SDTimeouts
    public private(set) var identity = SDCardIdentity(relativeAddress: 0, isHighCapacity: false,
                                                      answeredInterfaceCondition: false, capacityBytes: 0)
    public private(set) var geometry = BlockGeometry(blockSize: 512, blockCount: 0, maxSegments: 64,
                                                     maxSegmentBytes: 256 * 512, queueDepth: 32,
                                                     supportsFlush: false, isReadOnly: false)
    /// The error of the last failed command or transfer, for diagnostics.
    public private(set) var lastError: SDCardError?
    /// Commands sent since initialisation began.
    public private(set) var commandCount = 0
    /// Blocks moved by successful transfers.
    public private(set) var blocksTransferred: UInt64 = 0
    private var completions: [BlockCompletion] = []
    /// Set when a command failed after identification: the card may be left mid-transfer
    /// (sending or receiving data) and its next R1 would still report the old error, so the
    /// next operation first stops it (CMD12) and reads its status (CMD13).
    private var cardNeedsRecovery = false
    private var isIdentified = false

    /// Resets the controller, powers and clocks the card and takes it through identification
    /// into the transfer state (CMD0, CMD8, ACMD41, CMD2, CMD3, CMD9, CMD7, CMD16), then
    /// switches to the data clock.
    ///
    /// `baseClockHz` is the controller's input clock when its capabilities register does not
    /// say (the BCM2837's reads 0; the firmware runs it at 250 MHz by default).
    /// `hasCardDetect` is false where the slot's card-detect line does not reach the
    /// controller (the Pi 3: Linux's sdhci-iproc sets BROKEN_CARD_DETECTION); a missing card
    /// then shows as a command timeout.
    /// Throws `noCard`, `controllerTimeout`, `unusableVoltage`, `initialisationTimeout`, or
    /// the command error that stopped initialisation.
    public init(registers: Registers, baseClockHz: UInt32, hasCardDetect: Bool = true,
                timeouts: SDTimeouts = SDTimeouts()) throws(SDCardError) {
        self.registers = registers
        self.timeouts = timeouts
        try resetController()
        guard !hasCardDetect || registers.load(SDHCI.presentState) & SDHCI.cardInserted != 0 else { throw fail(.noCard) }
        registers.store(SDHCI.hostAndPowerControl, SDHCI.busPower33V)
        let capabilityClock = (registers.load(SDHCI.capabilities) >> 8) & 0xFF
        let base = capabilityClock != 0 ? capabilityClock * 1_000_000 : baseClockHz
        try setClock(base: base, target: 400_000)
        try identify()
        try setClock(base: base, target: 25_000_000)
    }

    // MARK: Block device

    public var inFlightCount: Int { completions.count }

    /// Runs the transfer at once (see the header) and queues its completion. Throws what
    /// `BlockGeometry.validate` throws, or `queueFull` when `queueDepth` completions are
    /// waiting to be reaped. A transfer that fails completes with `SDCardError.blockError`.
    public func submit<Segments: Collection>(_ operation: BlockOperation, at block: UInt64, segments: Segments,
                                             tag: UInt64) throws(BlockDeviceError)
        where Segments.Element == BlockSegment {
        _ = try geometry.validate(operation, at: block, segments: segments)
        guard completions.count < geometry.queueDepth else { throw .queueFull }
        var next = block
        var result: Result<Void, BlockDeviceError> = .success(())
        do throws(SDCardError) {
            for segment in segments {
                let count = segment.byteCount / Self.blockBytes
                try transfer(isWrite: operation == .write, block: next, count: count,
                             memory: DirectMap.pointer(to: segment.address))
                next += UInt64(count)
            }
        } catch {
            result = .failure(error.blockError)
        }
        completions.append(BlockCompletion(tag: tag, result: result))
    }

    @discardableResult
    public func reapCompletions(_ body: (BlockCompletion) -> Void) -> Int {
        let finished = completions
        completions.removeAll(keepingCapacity: true)
        for completion in finished { body(completion) }
        return finished.count
    }

    /// Transfers finish inside `submit`: nothing to wait for.
    public func waitForCompletions() {}

    // MARK: Transfers

    /// Reads or writes `count` blocks from `block` on through `memory`, synchronously and
    /// unchecked against the geometry (the self-tests use it to make the card itself refuse
    /// an address). CMD17/CMD24 for one block, CMD18/CMD25 with auto-CMD12 for more.
    public func transfer(isWrite: Bool, block: UInt64, count: Int, memory: UnsafeMutableRawPointer) throws(SDCardError) {
        precondition(count > 0 && count <= 0xFFFF, "SDHostController.transfer: block count out of range")
        let address = identity.isHighCapacity ? block : block &* UInt64(Self.blockBytes)
        let argument = UInt32(truncatingIfNeeded: address)
        let command: SDCommand
        switch (isWrite, count > 1) {
        case (false, false): command = .readSingle(argument)
        case (false, true): command = .readMultiple(argument)
        case (true, false): command = .writeSingle(argument)
        case (true, true): command = .writeMultiple(argument)
        }
        try recoverCardIfNeeded()
        var mode = isWrite ? 0 : SDHCI.readDirection
        if count > 1 { mode |= SDHCI.multipleBlocks | SDHCI.blockCountEnable | SDHCI.autoCMD12 }
        try waitWhileInhibited(SDHCI.commandInhibit | SDHCI.dataInhibit)
        registers.store(SDHCI.blockSizeAndCount, UInt32(count) << 16 | UInt32(Self.blockBytes))
        try send(command, transferMode: mode, dataPresent: true)
        let words = Self.blockBytes / 4
        let ready = isWrite ? SDHCI.bufferWriteReady : SDHCI.bufferReadReady
        for index in 0..<count {
            try waitFor(ready, budget: timeouts.data, timeout: .dataTimeout)
            registers.store(SDHCI.interruptStatus, ready)
            let base = memory + index * Self.blockBytes
            for word in 0..<words {
                if isWrite {
                    registers.store(SDHCI.bufferData, base.load(fromByteOffset: word * 4, as: UInt32.self))
                } else {
                    base.storeBytes(of: registers.load(SDHCI.bufferData), toByteOffset: word * 4, as: UInt32.self)
                }
            }
        }
        try waitFor(SDHCI.transferComplete, budget: timeouts.data, timeout: .dataTimeout)
        registers.store(SDHCI.interruptStatus, SDHCI.transferComplete)
        blocksTransferred += UInt64(count)
    }

    /// Sends a command without data and returns its first response word. For tests and
    /// diagnostics (CMD13 status, or a command the card must refuse).
    @discardableResult
    public func sendCommand(_ command: SDCommand) throws(SDCardError) -> UInt32 {
        try recoverCardIfNeeded()
        return try sendUnrecovered(command)
    }

    private func sendUnrecovered(_ command: SDCommand, checkingStatus: Bool = true) throws(SDCardError) -> UInt32 {
        try waitWhileInhibited(SDHCI.commandInhibit)
        try send(command, transferMode: 0, dataPresent: false, checkingStatus: checkingStatus)
        return registers.load(SDHCI.response0)
    }

    /// After a failed command: CMD12 ends a transfer the card may still be in (a card in the
    /// transfer state just ignores it), CMD13 reads its status and with it clears the error
    /// bits a failed command left (spec 4.10.1: "clear on read"). Their own errors are
    /// ignored; a card that stays broken fails the next real command.
    private func recoverCardIfNeeded() throws(SDCardError) {
        guard cardNeedsRecovery, isIdentified else { return }
        cardNeedsRecovery = false
        _ = try? sendUnrecovered(.stopTransmission, checkingStatus: false)
        _ = try? sendUnrecovered(.sendStatus(identity.relativeAddress), checkingStatus: false)
        cardNeedsRecovery = false
    }

    // MARK: Initialisation

    private func resetController() throws(SDCardError) {
        registers.store(SDHCI.clockTimeoutAndReset, SDHCI.resetAll)
        try waitUntilClear(SDHCI.clockTimeoutAndReset, SDHCI.resetAll, budget: timeouts.reset)
        registers.store(SDHCI.interruptStatusEnable, SDHCI.allStatus)   // status bits visible...
        registers.store(SDHCI.signalEnable, 0)                           // ...but no interrupts
        registers.store(SDHCI.interruptStatus, SDHCI.allStatus)
    }

    /// Programs the 10-bit divided clock (spec 2.2.14): SDCLK = base / (2 * divisor), the
    /// smallest divisor that does not exceed `target`.
    private func setClock(base: UInt32, target: UInt32) throws(SDCardError) {
        var divisor = (base + 2 * target - 1) / (2 * target)
        divisor = min(divisor, 0x3FF)
        let divider = (divisor & 0xFF) << 8 | (divisor >> 8) << 6
        registers.store(SDHCI.clockTimeoutAndReset, SDHCI.maximumDataTimeout | divider | SDHCI.internalClockEnable)
        try waitUntilSet(SDHCI.clockTimeoutAndReset, SDHCI.internalClockStable, budget: timeouts.reset)
        registers.store(SDHCI.clockTimeoutAndReset,
                        SDHCI.maximumDataTimeout | divider | SDHCI.internalClockEnable | SDHCI.cardClockEnable)
        registers.delay(microseconds: 1_000)
    }

    /// Identification (spec 4.2): idle, interface condition, operating condition, CID, RCA,
    /// CSD, select, block length.
    private func identify() throws(SDCardError) {
        try sendCommand(.goIdle)
        var answeredCMD8 = true
        do throws(SDCardError) {
            let echo = try sendCommand(.sendInterfaceCondition)
            guard echo & 0xFFF == 0x1AA else { throw fail(.unusableVoltage) }
        } catch {
            // A card older than physical layer 2.00 stays silent (and idle): that is allowed.
            guard error == .commandTimeout else { throw error }
            answeredCMD8 = false
            try sendCommand(.goIdle)
        }
        var ocr: UInt32 = 0
        var attempts = 0
        while ocr & SDCardRegisters.ocrPoweredUp == 0 {
            guard attempts < timeouts.powerUpAttempts else { throw fail(.initialisationTimeout) }
            if attempts > 0 { registers.delay(microseconds: timeouts.powerUpInterval) }
            attempts += 1
            try sendCommand(.applicationCommand(0))
            var condition = SDCommand.sendOperatingCondition
            if !answeredCMD8 { condition.argument &= ~SDCardRegisters.ocrHighCapacity }
            ocr = try sendCommand(condition)
        }
        try sendCommand(.allSendCID)
        let rca = try sendCommand(.sendRelativeAddress) >> 16
        try sendCommand(.sendCSD(rca))
        let csd = (registers.load(SDHCI.response0), registers.load(SDHCI.response0 + 4),
                   registers.load(SDHCI.response0 + 8), registers.load(SDHCI.response0 + 12))
        guard let capacity = SDCardRegisters.capacity(fromCSD: csd) else { throw fail(.unusableVoltage) }
        try sendCommand(.selectCard(rca))
        try sendCommand(.setBlockLength(UInt32(Self.blockBytes)))
        identity = SDCardIdentity(relativeAddress: rca, isHighCapacity: ocr & SDCardRegisters.ocrHighCapacity != 0,
                                  answeredInterfaceCondition: answeredCMD8, capacityBytes: capacity)
        geometry.blockCount = capacity / UInt64(Self.blockBytes)
        isIdentified = true
    }

    // MARK: Commands

    /// Issues `command` and waits for its response; checks an R1's card status.
    private func send(_ command: SDCommand, transferMode: UInt32, dataPresent: Bool,
                      checkingStatus: Bool = true) throws(SDCardError) {
        registers.store(SDHCI.interruptStatus, SDHCI.allStatus)
        registers.store(SDHCI.argument, command.argument)
        var flags: UInt32
        switch command.response {
        case .none: flags = 0
        case .short: flags = SDHCI.responseShort | SDHCI.crcCheck | SDHCI.indexCheck
        case .shortBusy: flags = SDHCI.responseShortBusy | SDHCI.crcCheck | SDHCI.indexCheck
        case .long: flags = SDHCI.responseLong | SDHCI.crcCheck
        case .shortNoCRC: flags = SDHCI.responseShort
        }
        if dataPresent { flags |= SDHCI.dataPresent }
        commandCount += 1
        registers.store(SDHCI.transferModeAndCommand, (UInt32(command.index) << 8 | flags) << 16 | transferMode)
        try waitFor(SDHCI.commandComplete, budget: timeouts.command, timeout: .commandTimeout)
        registers.store(SDHCI.interruptStatus, SDHCI.commandComplete)
        if checkingStatus, command.response == .short || command.response == .shortBusy,
           command.index != 3, command.index != 8 {
            // R1 (R6 and R7 carry other fields in those bits).
            guard registers.load(SDHCI.response0) & SDCardRegisters.cardStatusErrorMask == 0 else {
                throw recover(from: .cardStatusError)
            }
        }
        if command.response == .shortBusy {
            try waitWhileInhibited(SDHCI.dataInhibit)
        }
    }

    /// Polls the interrupt status until `bits` are set; an error interrupt becomes its typed
    /// error, running out of `budget` microseconds becomes `timeout`. Resets the command and
    /// data circuits after an error so the next command starts clean.
    private func waitFor(_ bits: UInt32, budget: Int, timeout: SDCardError) throws(SDCardError) {
        var waited = 0
        while true {
            let status = registers.load(SDHCI.interruptStatus)
            if status & SDHCI.errorInterrupt != 0 {
                let error: SDCardError
                if status & SDHCI.commandTimeoutError != 0 {
                    error = .commandTimeout
                } else if status & SDHCI.commandResponseErrors != 0 {
                    error = .commandResponseError
                } else if status & SDHCI.dataTimeoutError != 0 {
                    error = .dataTimeout
                } else {
                    error = .dataError
                }
                throw recover(from: error)
            }
            if status & bits == bits { return }
            guard waited < budget else { throw recover(from: timeout) }
            registers.delay(microseconds: 1)
            waited += 1
        }
    }

    private func waitWhileInhibited(_ bits: UInt32) throws(SDCardError) {
        var waited = 0
        while registers.load(SDHCI.presentState) & bits != 0 {
            guard waited < timeouts.command else { throw recover(from: .busyTimeout) }
            registers.delay(microseconds: 1)
            waited += 1
        }
    }

    private func waitUntilClear(_ offset: Int, _ bits: UInt32, budget: Int) throws(SDCardError) {
        var waited = 0
        while registers.load(offset) & bits != 0 {
            guard waited < budget else { throw fail(.controllerTimeout) }
            registers.delay(microseconds: 1)
            waited += 1
        }
    }

    private func waitUntilSet(_ offset: Int, _ bits: UInt32, budget: Int) throws(SDCardError) {
        var waited = 0
        while registers.load(offset) & bits == 0 {
            guard waited < budget else { throw fail(.controllerTimeout) }
            registers.delay(microseconds: 1)
            waited += 1
        }
    }

    /// Records `error`, clears the status and resets the command and data circuits (spec
    /// 3.10: error recovery), keeping the clock. Returns `error` for the caller to throw.
    private func recover(from error: SDCardError) -> SDCardError {
        // One reset bit per write: QEMU's model acts only on a write of exactly one of them.
        for reset in [SDHCI.resetCommand, SDHCI.resetData] {
            let clock = registers.load(SDHCI.clockTimeoutAndReset) & 0x00FF_FFFF
            registers.store(SDHCI.clockTimeoutAndReset, clock | reset)
            var waited = 0
            while registers.load(SDHCI.clockTimeoutAndReset) & reset != 0, waited < timeouts.reset {
                registers.delay(microseconds: 1)
                waited += 1
            }
        }
        registers.store(SDHCI.interruptStatus, SDHCI.allStatus)
        cardNeedsRecovery = true
        return fail(error)
    }

    private func fail(_ error: SDCardError) -> SDCardError {
        lastError = error
        return error
    }
}
