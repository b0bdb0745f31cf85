// Console: text output to the serial port, usable from the first instruction of Swift code.
// Invariants: nothing here allocates, so panics and the heap itself can print; every byte
// goes through `Platform.consoleWrite`, which adds nothing (newline translation is here).

enum Console {
    /// Writes one byte, turning "\n" into "\r\n" for serial terminals.
    static func put(_ byte: UInt8) {
        if byte == UInt8(ascii: "\n") { Platform.consoleWrite(UInt8(ascii: "\r")) }
        Platform.consoleWrite(byte)
    }

    static func write(_ text: StaticString) {
        text.withUTF8Buffer { bytes in
            for byte in bytes { put(byte) }
        }
    }

    /// Writes a runtime string (named apart so literals pick the allocation-free StaticString path).
    static func writeString(_ text: String) {
        for byte in text.utf8 { put(byte) }
    }

    static func writeLine(_ text: StaticString) {
        write(text)
        put(UInt8(ascii: "\n"))
    }

    /// Writes `value` as 0x-prefixed hexadecimal with `digits` digits (16 by default).
    static func writeHex(_ value: UInt64, digits: Int = 16) {
        write("0x")
        var shift = (digits - 1) * 4
        while shift >= 0 {
            let nibble = UInt8((value >> UInt64(shift)) & 0xF)
            put(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
            shift -= 4
        }
    }

    static func writeDecimal(_ value: UInt64) {
        var digits = InlineArray<20, UInt8>(repeating: 0)
        var count = 0
        var rest = value
        repeat {
            digits[count] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
            count += 1
        } while rest != 0
        while count > 0 {
            count -= 1
            put(digits[count])
        }
    }
}
