// RaspberryPiConsole (Raspberry Pi 3B): puts the PL011 on GPIO 14/15 at 115200 8N1 itself.
// Without a device tree the Pi 3 firmware leaves GPIO 14/15 on the mini UART (ALT5) and the
// PL011 wired to Bluetooth, so the kernel routes the pins to the PL011 (ALT0) and programs the
// baud rate from the UART clock config.txt fixes (init_uart_clock=48000000; scripts/sd_image.py).
// Under QEMU raspi3b the same writes are harmless (the model ignores baud and pin functions).
// Invariants: runs once at entry, before the first console byte; registers through the
// direct map's device window.

import _Volatile

enum RaspberryPiConsole {
    private static let gpioPhysical: UInt = 0x3F20_0000
    private static let uartPhysical: UInt = 0x3F20_1000
    /// The UART reference clock config.txt asks the firmware for.
    static let uartClockHz: UInt32 = 48_000_000
    static let baudRate: UInt32 = 115_200

    static func setUp() {
        let gpio = Platform.directMapBase &+ gpioPhysical
        let uart = Platform.directMapBase &+ uartPhysical
        func register(_ base: UInt, _ offset: UInt) -> VolatileMappedRegister<UInt32> {
            VolatileMappedRegister<UInt32>(unsafeBitPattern: base + offset)
        }
        register(uart, 0x30).store(0)                                // CR: disable
        var spins = 0
        while register(uart, 0x18).load() & (1 << 3) != 0 && spins < 1_000_000 { spins += 1 }   // FR.BUSY
        // GPFSEL1: GPIO 14 (bits 14:12) and 15 (bits 17:15) to ALT0 (0b100).
        let select1 = register(gpio, 0x04)
        select1.store(select1.load() & ~(0x3F << 12) | (0b100 << 12) | (0b100 << 15))
        // No pull-up/down on 14 and 15 (BCM2835 peripherals 6.1: GPPUD, wait, GPPUDCLK0, wait).
        register(gpio, 0x94).store(0)
        delayCycles(150)
        register(gpio, 0x98).store(1 << 14 | 1 << 15)
        delayCycles(150)
        register(gpio, 0x98).store(0)
        register(uart, 0x44).store(0x7FF)                            // ICR: clear interrupts
        // Divisor = clock / (16 * baud) in 16.6 fixed point: integer and fractional parts.
        let divisor64 = (uartClockHz * 4 + baudRate / 2) / baudRate  // = 64 * clock / (16 * baud)
        register(uart, 0x24).store(divisor64 >> 6)                   // IBRD
        register(uart, 0x28).store(divisor64 & 0x3F)                // FBRD
        register(uart, 0x2C).store(3 << 5 | 1 << 4)                  // LCRH: 8 bits, FIFOs
        register(uart, 0x30).store(1 << 0 | 1 << 8 | 1 << 9)         // CR: UARTEN, TXE, RXE
    }

    private static func delayCycles(_ count: Int) {
        let start = readCycleCounter()
        while readCycleCounter() &- start < UInt64(count) {}
    }
}
