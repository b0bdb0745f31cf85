// PL011: the ARM PrimeCell UART (QEMU virt at 0x0900_0000 by default; the DTB says where).
// Invariants: registers are reached through the direct map's device-memory GiB with volatile
// accesses, so no access is merged, reordered or dropped; transmit polls the FIFO-full flag.

import _Volatile

enum PL011 {
    nonisolated(unsafe) static var base: UInt = 0

    private static let dataRegister: UInt = 0x00
    private static let flagRegister: UInt = 0x18
    private static let transmitFIFOFull: UInt32 = 1 << 5

    /// Uses the UART at physical address `physical` (already initialised by firmware or QEMU).
    static func attach(physical: UInt64) {
        base = Platform.directMapBase &+ UInt(physical)
    }

    static func write(_ byte: UInt8) {
        guard base != 0 else { return }
        let flags = VolatileMappedRegister<UInt32>(unsafeBitPattern: base + flagRegister)
        while flags.load() & transmitFIFOFull != 0 {}
        VolatileMappedRegister<UInt32>(unsafeBitPattern: base + dataRegister).store(UInt32(byte))
    }
}
