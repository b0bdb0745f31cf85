// FirmwareProperty: messages of the Raspberry Pi VideoCore firmware's mailbox property
// interface (channel 8), as the firmware wiki "Mailbox property interface" defines them.
// A message is a 16-byte-aligned buffer of 32-bit little-endian words:
//   [0] total size in bytes, [1] request/response code, then tags, then a zero end tag.
// A tag is: identifier, value-buffer size in bytes, request/response code (bit 31 set by the
// firmware, bits 30:0 the response length), value buffer (padded to 32 bits).
// This file only builds and checks messages in memory; ringing the doorbell is the board's
// business (Arch/aarch64/VideoCoreMailbox.swift), so host tests can check the encoding.

/// Why a firmware property request failed.
public enum FirmwarePropertyError: Error, Equatable {
    /// The buffer cannot hold the message.
    case bufferTooSmall
    /// The firmware did not answer within the polling budget.
    case timeout
    /// The firmware answered with a code other than "success" (0x8000_0000).
    case requestFailed
    /// The tag came back without its response bit or with a value shorter than expected.
    case tagNotAnswered
}

/// One-tag property messages.
public enum FirmwareProperty {
    /// GET_ARM_MEMORY: the ARM's share of RAM, as (base, size in bytes).
    public static let getARMMemory: UInt32 = 0x0001_0005
    /// GET_BOARD_REVISION: one word.
    public static let getBoardRevision: UInt32 = 0x0001_0002
    /// Code of a request in the header and in each tag.
    public static let requestCode: UInt32 = 0
    /// Header code of a successful response.
    public static let responseSuccess: UInt32 = 0x8000_0000
    /// Bit the firmware sets in a tag's code once it has answered it.
    public static let tagResponseBit: UInt32 = 0x8000_0000
    /// Words a one-tag message with `valueWords` value words occupies.
    public static func messageWords(valueWords: Int) -> Int { 2 + 3 + valueWords + 1 }

    /// Writes a request for `tag` with a value buffer of `valueWords` zeroed words into
    /// `buffer` (`capacity` words). Returns the message length in words.
    /// Throws `bufferTooSmall` when it does not fit.
    public static func encodeRequest(tag: UInt32, valueWords: Int, into buffer: UnsafeMutablePointer<UInt32>,
                                     capacity: Int) throws(FirmwarePropertyError) -> Int {
        let words = messageWords(valueWords: valueWords)
        guard valueWords >= 0, words <= capacity else { throw .bufferTooSmall }
        buffer[0] = UInt32(words * 4)
        buffer[1] = requestCode
        buffer[2] = tag
        buffer[3] = UInt32(valueWords * 4)
        buffer[4] = requestCode
        for index in 0..<valueWords { buffer[5 + index] = 0 }
        buffer[5 + valueWords] = 0   // end tag
        return words
    }

    /// Checks the firmware's answer to a one-tag request of `valueWords` value words and
    /// returns a pointer to the value buffer. Throws `requestFailed` or `tagNotAnswered`.
    public static func decodeResponse(_ buffer: UnsafePointer<UInt32>, valueWords: Int) throws(FirmwarePropertyError)
        -> UnsafePointer<UInt32> {
        guard buffer[1] == responseSuccess else { throw .requestFailed }
        let code = buffer[4]
        guard code & tagResponseBit != 0, Int(code & ~tagResponseBit) >= valueWords * 4 else {
            throw .tagNotAnswered
        }
        return buffer + 5
    }

    /// The ARM memory range in a GET_ARM_MEMORY answer (base, size): [base, base + size).
    public static func armMemory(fromValue value: UnsafePointer<UInt32>) -> PhysicalRange {
        let base = UInt64(value[0])
        return PhysicalRange(start: PhysicalAddress(base), end: PhysicalAddress(base + UInt64(value[1])))
    }
}
