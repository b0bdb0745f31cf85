// Serial16550: the COM1 UART QEMU's q35 provides at I/O port 0x3F8.
// Invariants: initialised once before the first byte; transmit polls the line-status
// register, so output is never dropped and never reordered.

enum Serial16550 {
    static let base: UInt16 = 0x3F8

    private static let data: UInt16 = 0
    private static let interruptEnable: UInt16 = 1
    private static let fifoControl: UInt16 = 2
    private static let lineControl: UInt16 = 3
    private static let modemControl: UInt16 = 4
    private static let lineStatus: UInt16 = 5
    private static let transmitHoldingEmpty: UInt8 = 0x20

    /// 115200 baud, 8N1, FIFOs on, interrupts off.
    static func initialize() {
        portWrite8(base + interruptEnable, 0x00)
        portWrite8(base + lineControl, 0x80)      // DLAB: next two writes set the divisor
        portWrite8(base + data, 0x01)             // divisor 1 = 115200 baud
        portWrite8(base + interruptEnable, 0x00)
        portWrite8(base + lineControl, 0x03)      // 8 bits, no parity, one stop bit
        portWrite8(base + fifoControl, 0xC7)      // enable and clear FIFOs
        portWrite8(base + modemControl, 0x03)     // DTR, RTS
    }

    static func write(_ byte: UInt8) {
        while portRead8(base + lineStatus) & transmitHoldingEmpty == 0 {}
        portWrite8(base + data, byte)
    }
}
