// SDHost (aarch64, Raspberry Pi 3B): binds the machine-independent SDHCI driver
// (Kernel/Drivers/SDHostController.swift) to the BCM2837's Arasan "EMMC" controller at
// 0x3F30_0000: 32-bit MMIO through the direct map's device window, delays on the generic
// timer, and the GPIO routing that puts the SD card slot (GPIO 48-53) on this controller.
// Invariants: attached once, on first use; the card stays in the transfer state after that.
// On virt there is no such controller and `sdCard()` throws `noCard`.

import _Volatile

/// The Arasan controller's registers, 32-bit accesses only (see SDHostController.swift).
struct BCM2837SDHostRegisters: SDHostRegisters {
    let base: UInt

    func load(_ offset: Int) -> UInt32 {
        VolatileMappedRegister<UInt32>(unsafeBitPattern: base + UInt(offset)).load()
    }

    /// The BCM2835/7 Arasan needs two SD clock cycles between register writes (Linux's
    /// sdhci-iproc waits the same): 5 us covers the 400 kHz identification clock. The data
    /// port is exempt (the FIFO takes back-to-back writes).
    func store(_ offset: Int, _ value: UInt32) {
        VolatileMappedRegister<UInt32>(unsafeBitPattern: base + UInt(offset)).store(value)
        if offset != SDHCI.bufferData { delay(microseconds: 5) }
    }

    /// Busy-waits on the generic timer (CNTVCT_EL0).
    func delay(microseconds: Int) {
        var frequency = counterFrequency()
        if frequency == 0 { frequency = 19_200_000 }   // the Pi's crystal, if firmware left CNTFRQ unset
        let ticks = max(1, frequency * UInt64(microseconds) / 1_000_000)
        let start = readVirtualCounter()
        while readVirtualCounter() &- start < ticks {}
    }
}

typealias PlatformSDCard = SDHostController<BCM2837SDHostRegisters>

extension Platform {
    private nonisolated(unsafe) static var attachedSDCard: PlatformSDCard?
    private nonisolated(unsafe) static var sdCardError: SDCardError?

    /// The EMMC controller's input clock when its capabilities register does not say.
    private static let sdBaseClockHz: UInt32 = 250_000_000

    /// The SD card, initialised on first use (later calls return it, or the same error).
    static func sdCard() throws(SDCardError) -> PlatformSDCard {
        if let card = attachedSDCard { return card }
        if let error = sdCardError { throw error }
        guard Board.sdHostPhysical != 0 else {
            sdCardError = .noCard
            throw .noCard
        }
        routeSDCardPins()
        let registers = BCM2837SDHostRegisters(base: directMapBase &+ UInt(Board.sdHostPhysical))
        do {
            let card = try PlatformSDCard(registers: registers, baseClockHz: sdBaseClockHz, hasCardDetect: false)
            attachedSDCard = card
            Console.write("  sdhci: ")
            Console.write(card.identity.isHighCapacity ? "SDHC/SDXC" : "SDSC")
            Console.write(" card, ")
            Console.writeDecimal(card.geometry.blockCount)
            Console.writeLine(" blocks of 512 bytes")
            return card
        } catch {
            sdCardError = error
            Console.write("  sdhci: no usable card: ")
            Console.writeLine(error.name)
            throw error
        }
    }

    /// GPIO 48-53 (the SD slot's CLK, CMD, DAT0-3) to function ALT3, the Arasan controller.
    /// The Pi 3 firmware leaves them on ALT0 (its own SDHOST controller, which it boots from);
    /// QEMU raspi3b routes its card by the same setting.
    private static func routeSDCardPins() {
        let gpio = directMapBase &+ 0x3F20_0000
        let alt3: UInt32 = 0b111
        let select4 = VolatileMappedRegister<UInt32>(unsafeBitPattern: gpio + 0x10)   // GPIO 40-49
        let select5 = VolatileMappedRegister<UInt32>(unsafeBitPattern: gpio + 0x14)   // GPIO 50-59
        var value = select4.load()
        for pin in 8...9 { value = value & ~(7 << UInt32(pin * 3)) | alt3 << UInt32(pin * 3) }
        select4.store(value)
        value = select5.load()
        for pin in 0...3 { value = value & ~(7 << UInt32(pin * 3)) | alt3 << UInt32(pin * 3) }
        select5.store(value)
    }
}
