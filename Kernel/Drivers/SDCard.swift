// SDCard: what the SD Physical Layer Simplified Specification (v6.00) says about commands,
// responses and registers, independent of any host controller: command numbers and their
// response kinds, the OCR, CSD capacity and card-status error bits. SDHostController
// (SDHostController.swift) drives a card with them over an SDHCI controller.

/// Why talking to an SD card failed. Every failure the card or controller can cause is one of
/// these; the block-device interface reports them as `BlockDeviceError` (see `blockError`).
public enum SDCardError: Error, Equatable {
    /// The controller reports no card in the slot.
    case noCard
    /// The controller did not finish a reset or get its clock stable in time.
    case controllerTimeout
    /// The command or data lines stayed busy with an earlier command.
    case busyTimeout
    /// No response to a command (error interrupt "command timeout", or none in time).
    case commandTimeout
    /// The response failed its CRC, end-bit or index check.
    case commandResponseError
    /// A data block did not arrive or leave in time.
    case dataTimeout
    /// A data block failed its CRC or end-bit check, or auto-CMD12 failed.
    case dataError
    /// CMD8 came back with a different check pattern or voltage: not a usable card.
    case unusableVoltage
    /// ACMD41 never reported the card powered up.
    case initialisationTimeout
    /// The card's status (R1) reported an error: bad address, illegal command, ECC.
    case cardStatusError

    /// The case name, for console and test diagnostics.
    public var name: StaticString {
        switch self {
        case .noCard: return "noCard"
        case .controllerTimeout: return "controllerTimeout"
        case .busyTimeout: return "busyTimeout"
        case .commandTimeout: return "commandTimeout"
        case .commandResponseError: return "commandResponseError"
        case .dataTimeout: return "dataTimeout"
        case .dataError: return "dataError"
        case .unusableVoltage: return "unusableVoltage"
        case .initialisationTimeout: return "initialisationTimeout"
        case .cardStatusError: return "cardStatusError"
        }
    }

    /// The block-device error a request that failed this way completes with: an I/O error
    /// for what one transfer can suffer, `deviceFailed` when the controller itself is stuck.
    public var blockError: BlockDeviceError {
        switch self {
        case .noCard: return .noDevice
        case .controllerTimeout, .busyTimeout: return .deviceFailed
        case .unusableVoltage, .initialisationTimeout: return .unsupportedDevice
        case .commandTimeout, .commandResponseError, .dataTimeout, .dataError, .cardStatusError: return .ioError
        }
    }
}

/// How long a response is and what the controller checks in it (spec 4.9).
public enum SDResponseKind: Equatable {
    case none
    /// R1, R6, R7: 48 bits with CRC and command index.
    case short
    /// R1b: R1 and then busy on DAT0.
    case shortBusy
    /// R2: 136 bits (CID, CSD), CRC checked, no index.
    case long
    /// R3: 48 bits (OCR) without CRC or index.
    case shortNoCRC
}

/// One SD command: index, argument, response kind.
public struct SDCommand: Equatable {
    public var index: UInt8
    public var argument: UInt32
    public var response: SDResponseKind

    public init(_ index: UInt8, argument: UInt32 = 0, response: SDResponseKind) {
        self.index = index
        self.argument = argument
        self.response = response
    }

    public static let goIdle = SDCommand(0, response: .none)
    public static let allSendCID = SDCommand(2, response: .long)
    public static let sendRelativeAddress = SDCommand(3, response: .short)
    /// CMD8 with VHS = 2.7-3.6 V and the recommended check pattern 0xAA.
    public static let sendInterfaceCondition = SDCommand(8, argument: 0x1AA, response: .short)
    public static func selectCard(_ rca: UInt32) -> SDCommand { SDCommand(7, argument: rca << 16, response: .shortBusy) }
    public static func sendCSD(_ rca: UInt32) -> SDCommand { SDCommand(9, argument: rca << 16, response: .long) }
    public static func sendStatus(_ rca: UInt32) -> SDCommand { SDCommand(13, argument: rca << 16, response: .short) }
    public static func setBlockLength(_ bytes: UInt32) -> SDCommand { SDCommand(16, argument: bytes, response: .short) }
    public static func readSingle(_ address: UInt32) -> SDCommand { SDCommand(17, argument: address, response: .short) }
    public static func readMultiple(_ address: UInt32) -> SDCommand { SDCommand(18, argument: address, response: .short) }
    public static func writeSingle(_ address: UInt32) -> SDCommand { SDCommand(24, argument: address, response: .short) }
    public static func writeMultiple(_ address: UInt32) -> SDCommand { SDCommand(25, argument: address, response: .short) }
    /// CMD12: ends a multi-block transfer (R1b).
    public static let stopTransmission = SDCommand(12, response: .shortBusy)
    public static func applicationCommand(_ rca: UInt32) -> SDCommand { SDCommand(55, argument: rca << 16, response: .short) }
    /// ACMD41 with HCS (we take high capacity) and the 3.2-3.4 V window.
    public static let sendOperatingCondition = SDCommand(41, argument: 0x4030_0000, response: .shortNoCRC)
}

/// Registers and fields of the card (spec 4.10, 5.1, 5.3).
public enum SDCardRegisters {
    /// OCR bit 31: power-up finished.
    public static let ocrPoweredUp: UInt32 = 1 << 31
    /// OCR bit 30 (CCS): high/extended capacity, addressed in blocks rather than bytes.
    public static let ocrHighCapacity: UInt32 = 1 << 30
    /// R1 card-status bits that mean the command failed (spec table 4-42: out of range,
    /// address, block length, erase, write protect, lock, CRC, illegal command, ECC, CC error,
    /// generic error, CSD overwrite, write-protect erase skip, AKE sequence).
    public static let cardStatusErrorMask: UInt32 = 0xFDF9_8008

    /// Capacity in bytes from a CSD as an SDHCI controller returns it: the 136-bit R2
    /// without its CRC byte, so CSD bit n is response bit n - 8 (`response[0]` holds bits
    /// 31:0). Nil for an unknown CSD structure version.
    public static func capacity(fromCSD response: (UInt32, UInt32, UInt32, UInt32)) -> UInt64? {
        let words = [response.0, response.1, response.2, response.3]
        func bits(_ high: Int, _ low: Int) -> UInt64 {
            var value: UInt64 = 0
            for bit in stride(from: high, through: low, by: -1) {
                let position = bit - 8
                value = value << 1 | UInt64((words[position / 32] >> UInt32(position % 32)) & 1)
            }
            return value
        }
        switch bits(127, 126) {
        case 0:   // CSD 1.0: (C_SIZE + 1) * 2^(C_SIZE_MULT + 2) * 2^READ_BL_LEN
            let readBlockLength = bits(83, 80), size = bits(73, 62), multiplier = bits(49, 47)
            return (size + 1) << (multiplier + 2 + readBlockLength)
        case 1:   // CSD 2.0: (C_SIZE + 1) * 512 KiB
            return (bits(69, 48) + 1) << 19
        default:
            return nil
        }
    }
}
