// PCI (x86_64): configuration space through the legacy port mechanism (0xCF8 address,
// 0xCFC data), which q35 keeps alongside ECAM and which reaches the 256 bytes every device
// capability we use lives in; enumeration of bus 0 and the buses behind bridges; BARs and
// the capability list.
// Invariants: an address register write is always followed by its data access (one CPU,
// interrupts masked outside waits, and no interrupt handler touches configuration space).
// BARs are used as the firmware (SeaBIOS) assigned them; the kernel never moves one.

/// Bus, device and function of a PCI function (a configuration-space address).
struct PCIAddress: Equatable {
    var bus: UInt8
    var device: UInt8
    var function: UInt8

    /// The value for CONFIG_ADDRESS (0xCF8), dword-aligned register `offset`.
    fileprivate func configAddress(_ offset: UInt8) -> UInt32 {
        0x8000_0000 | UInt32(bus) << 16 | UInt32(device & 31) << 11 | UInt32(function & 7) << 8
            | UInt32(offset & 0xFC)
    }
}

/// A decoded base address register.
struct PCIBar {
    /// Physical base address (memory BARs) or port (I/O BARs); 0 when unassigned.
    var address: UInt64
    /// True for memory space, false for I/O ports.
    var isMemory: Bool
    /// True when the BAR takes two registers (a 64-bit memory address).
    var is64Bit: Bool
}

/// Configuration space access and enumeration.
enum PCI {
    private static let addressPort: UInt16 = 0xCF8
    private static let dataPort: UInt16 = 0xCFC

    /// Configuration registers (PCI Local Bus 3.0, section 6.1).
    /// Type-0 header registers used here.
    enum Register {
        static let vendorID: UInt8 = 0x00
        static let deviceID: UInt8 = 0x02
        static let command: UInt8 = 0x04
        static let status: UInt8 = 0x06
        static let headerType: UInt8 = 0x0E
        static let firstBar: UInt8 = 0x10
        static let secondaryBus: UInt8 = 0x19
        static let capabilitiesPointer: UInt8 = 0x34
    }
    /// Command register bits.
    enum Command {
        static let memorySpace: UInt16 = 1 << 1
        static let busMaster: UInt16 = 1 << 2
        static let interruptDisable: UInt16 = 1 << 10
    }
    /// Status register bit: the capability list at 0x34 is valid.
    static let statusHasCapabilities: UInt16 = 1 << 4
    /// What the vendor ID reads when no function answers.
    static let noVendor: UInt16 = 0xFFFF

    /// The dword at register `offset` (rounded down to a multiple of 4).
    static func read32(_ function: PCIAddress, _ offset: UInt8) -> UInt32 {
        portWrite32(addressPort, function.configAddress(offset))
        return portRead32(dataPort)
    }

    /// The 16-bit register at `offset` (an even offset).
    static func read16(_ function: PCIAddress, _ offset: UInt8) -> UInt16 {
        UInt16(truncatingIfNeeded: read32(function, offset) >> (UInt32(offset & 2) * 8))
    }

    /// The byte register at `offset`.
    static func read8(_ function: PCIAddress, _ offset: UInt8) -> UInt8 {
        UInt8(truncatingIfNeeded: read32(function, offset) >> (UInt32(offset & 3) * 8))
    }

    /// Writes the dword at register `offset` (a multiple of 4).
    static func write32(_ function: PCIAddress, _ offset: UInt8, _ value: UInt32) {
        portWrite32(addressPort, function.configAddress(offset))
        portWrite32(dataPort, value)
    }

    /// A 16-bit write touches only its own two bytes (no read-modify-write of the dword, which
    /// could clear write-one-to-clear status bits next to it).
    static func write16(_ function: PCIAddress, _ offset: UInt8, _ value: UInt16) {
        portWrite32(addressPort, function.configAddress(offset))
        portWrite16(dataPort + UInt16(offset & 2), value)
    }

    /// True when a function answers at `function`.
    static func isPresent(_ function: PCIAddress) -> Bool {
        read16(function, Register.vendorID) != noVendor
    }

    /// Calls `body` with every function on bus 0 and on the buses behind its bridges, until
    /// it returns false. Returns false when `body` stopped the walk.
    @discardableResult
    static func forEachFunction(_ body: (PCIAddress) -> Bool) -> Bool {
        forEachFunction(onBus: 0, depth: 0, body)
    }

    private static func forEachFunction(onBus bus: UInt8, depth: Int, _ body: (PCIAddress) -> Bool) -> Bool {
        for device in UInt8(0)..<32 {
            let first = PCIAddress(bus: bus, device: device, function: 0)
            guard isPresent(first) else { continue }
            let isMultifunction = read8(first, Register.headerType) & 0x80 != 0
            for function in UInt8(0)..<(isMultifunction ? 8 : 1) {
                let address = PCIAddress(bus: bus, device: device, function: function)
                guard isPresent(address) else { continue }
                if !body(address) { return false }
                // A PCI-to-PCI bridge (header type 1): walk its secondary bus. The depth bound
                // keeps a misprogrammed bus number from looping.
                if read8(address, Register.headerType) & 0x7F == 1, depth < 8 {
                    let secondary = read8(address, Register.secondaryBus)
                    if secondary > bus, !forEachFunction(onBus: secondary, depth: depth + 1, body) { return false }
                }
            }
        }
        return true
    }

    /// BAR `index` (0...5) of a type-0 header; nil when it is unimplemented or a 64-bit BAR
    /// would need the register past BAR 5.
    static func bar(_ function: PCIAddress, _ index: Int) -> PCIBar? {
        guard index >= 0 && index < 6 else { return nil }
        let offset = Register.firstBar + UInt8(index * 4)
        let low = read32(function, offset)
        if low & 1 != 0 {
            return PCIBar(address: UInt64(low & ~3), isMemory: false, is64Bit: false)
        }
        let is64Bit = (low >> 1) & 3 == 2
        var address = UInt64(low & ~0xF)
        if is64Bit {
            guard index < 5 else { return nil }
            address |= UInt64(read32(function, offset + 4)) << 32
        }
        return PCIBar(address: address, isMemory: true, is64Bit: is64Bit)
    }

    /// Calls `body` with the offset and ID of each capability in the list, until it returns
    /// false. At most 48 entries (the list cannot be longer in 256 bytes), so a corrupt list
    /// cannot loop.
    static func forEachCapability(_ function: PCIAddress, _ body: (UInt8, UInt8) -> Bool) {
        guard read16(function, Register.status) & statusHasCapabilities != 0 else { return }
        var offset = read8(function, Register.capabilitiesPointer) & 0xFC
        var visited = 0
        while offset >= 0x40 && visited < 48 {
            let id = read8(function, offset)
            if !body(offset, id) { return }
            offset = read8(function, offset + 1) & 0xFC
            visited += 1
        }
    }
}
