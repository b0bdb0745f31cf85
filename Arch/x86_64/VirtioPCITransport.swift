// VirtioPCITransport (x86_64): a virtio 1.x device on PCI (virtio 1.x, section 4.1): the
// common, notify, ISR and device configuration structures found through vendor-specific
// capabilities in BARs, and completion interrupts by MSI-X to the local APIC.
// Invariants:
//  - Only modern devices (device ID 0x1040 + type; transitional 0x1000 + n with modern
//    capabilities also works) are driven; the legacy I/O-port interface is never touched.
//  - Every structure lies inside the direct map (firmware put the BARs below 4 GiB); a BAR
//    above it is refused rather than moved.
//  - MSI-X table entry 0 sends `vector` to the boot CPU's APIC; every queue uses it, the
//    configuration-change interrupt is left unrouted (NO_VECTOR). Without an MSI-X
//    capability the transport falls back to polling (`usesInterrupts` false): documented
//    fallback, announced on the console at attach.
// Registers are volatile accesses through the direct map (see LocalAPIC.swift on caching).

import _Volatile

final class VirtioPCITransport: VirtioTransport {
    static let vendorID: UInt16 = 0x1AF4

    /// Offsets in the common configuration structure (section 4.1.4.3).
    private enum Common {
        static let deviceFeatureSelect = 0x00
        static let deviceFeature = 0x04
        static let driverFeatureSelect = 0x08
        static let driverFeature = 0x0C
        static let configurationVector = 0x10
        static let deviceStatus = 0x14
        static let configurationGeneration = 0x15
        static let queueSelect = 0x16
        static let queueSize = 0x18
        static let queueVector = 0x1A
        static let queueEnable = 0x1C
        static let queueNotifyOffset = 0x1E
        static let queueDescriptor = 0x20
        static let queueDriver = 0x28
        static let queueDevice = 0x30
    }
    /// cfg_type of the virtio vendor capability (section 4.1.4).
    private enum CapabilityType {
        static let common: UInt8 = 1
        static let notify: UInt8 = 2
        static let isr: UInt8 = 3
        static let device: UInt8 = 4
    }
    private static let vendorCapability: UInt8 = 0x09
    private static let msixCapability: UInt8 = 0x11
    private static let noVector: UInt16 = 0xFFFF
    /// The MSI-X table entry (and virtio vector number) the request queue uses.
    private static let queueVectorIndex: UInt16 = 0

    let function: PCIAddress
    /// Virtio device type (2 = block).
    let deviceType: UInt32
    private let common: UInt
    private let notifyBase: UInt
    private let notifyMultiplier: UInt32
    private let isr: UInt
    private let deviceConfiguration: UInt
    private let msixTable: UInt?
    private let msixControlOffset: UInt8
    private var queueNotifyAddresses: [UInt] = []
    /// The APIC vector MSI-X messages carry; nil before `routeInterrupts` or without MSI-X.
    private(set) var vector: UInt8?

    /// Reads the virtio capabilities of `function` from configuration space; changes nothing
    /// (a probe may look at any function). Throws `noDevice` when the function is absent, not
    /// a virtio device, or lacks a modern capability; `unsupportedDevice` when a structure lies
    /// outside the direct map or outside its BAR.
    init(function: PCIAddress) throws(BlockDeviceError) {
        self.function = function
        guard PCI.isPresent(function), PCI.read16(function, PCI.Register.vendorID) == Self.vendorID else {
            throw .noDevice
        }
        let id = PCI.read16(function, PCI.Register.deviceID)
        switch id {
        case 0x1040...0x107F: deviceType = UInt32(id - 0x1040)
        case 0x1001: deviceType = VirtioDeviceType.block   // transitional block device
        default: throw .noDevice
        }

        var common: UInt?, notify: UInt?, isr: UInt?, device: UInt?
        var multiplier: UInt32 = 0
        var msixTable: UInt?
        var msixControl: UInt8 = 0
        var failure: BlockDeviceError?
        PCI.forEachCapability(function) { offset, capabilityID in
            if capabilityID == Self.msixCapability {
                let tableRegister = PCI.read32(function, offset + 4)
                if let bar = PCI.bar(function, Int(tableRegister & 7)), bar.isMemory {
                    let address = bar.address &+ UInt64(tableRegister & ~7)
                    if address < Platform.directMapLimit - pageSize {
                        msixTable = Platform.directMapBase &+ UInt(address)
                        msixControl = offset + 2
                    }
                }
                return true
            }
            guard capabilityID == Self.vendorCapability else { return true }
            let type = PCI.read8(function, offset + 3)
            let barIndex = Int(PCI.read8(function, offset + 4))
            let structureOffset = UInt64(PCI.read32(function, offset + 8))
            let length = UInt64(PCI.read32(function, offset + 12))
            guard type >= CapabilityType.common && type <= CapabilityType.device else { return true }
            guard let bar = PCI.bar(function, barIndex), bar.isMemory, bar.address != 0 else { return true }
            let start = bar.address &+ structureOffset
            guard start >= bar.address, length <= Platform.directMapLimit,
                  start <= Platform.directMapLimit - length else {
                failure = .unsupportedDevice
                return false
            }
            let mapped = Platform.directMapBase &+ UInt(start)
            switch type {
            case CapabilityType.common where common == nil: common = mapped
            case CapabilityType.notify where notify == nil:
                notify = mapped
                multiplier = PCI.read32(function, offset + 16)
            case CapabilityType.isr where isr == nil: isr = mapped
            case CapabilityType.device where device == nil: device = mapped
            default: break
            }
            return true
        }
        if let failure { throw failure }
        guard let common, let notify, let isr, let device else { throw .noDevice }
        self.common = common
        notifyBase = notify
        notifyMultiplier = multiplier
        self.isr = isr
        deviceConfiguration = device
        self.msixTable = msixTable
        msixControlOffset = msixControl
    }

    /// Turns on memory decoding (the BARs) and bus mastering (the device's DMA to the rings).
    func enableDevice() {
        let command = PCI.read16(function, PCI.Register.command)
        PCI.write16(function, PCI.Register.command, command | PCI.Command.memorySpace | PCI.Command.busMaster)
    }

    /// Points MSI-X table entry 0 at the boot CPU with a fresh APIC vector whose interrupts run
    /// `handler`, and enables MSI-X (INTx off). Returns false, leaving the transport on the
    /// polling fallback, when the function has no MSI-X or no vector is left.
    func routeInterrupts(to handler: @escaping () -> Void) -> Bool {
        guard vector == nil, let table = msixTable, LocalAPIC.enable(),
              let vector = LocalAPIC.allocateVector(handler) else { return false }
        self.vector = vector
        // Table entry: message address low/high, message data, vector control (section 6.8.2
        // of the PCI spec; address format SDM vol. 3, 11.11.1: fixed, physical destination).
        let entry = table + UInt(Self.queueVectorIndex) * 16
        mmioStore(entry + 0, UInt32(0xFEE0_0000) | LocalAPIC.id << 12)
        mmioStore(entry + 4, UInt32(0))
        mmioStore(entry + 8, UInt32(vector))       // edge, fixed delivery
        mmioStore(entry + 12, UInt32(0))           // unmasked
        let control = PCI.read16(function, msixControlOffset)
        PCI.write16(function, msixControlOffset, (control | 0x8000) & ~0x4000)   // enable, no function mask
        let command = PCI.read16(function, PCI.Register.command)
        PCI.write16(function, PCI.Register.command, command | PCI.Command.interruptDisable)
        return true
    }

    // MARK: VirtioTransport

    var isLegacy: Bool { false }

    func reset() {
        mmioStore(common + UInt(Common.deviceStatus), UInt8(0))
        // Section 4.1.4.3.2: the reset is complete when the status reads back 0.
        while mmioLoad(common + UInt(Common.deviceStatus), as: UInt8.self) != 0 {}
        // Reset unroutes every vector; configuration changes stay unrouted.
        mmioStore(common + UInt(Common.configurationVector), Self.noVector)
    }

    func status() -> UInt8 { mmioLoad(common + UInt(Common.deviceStatus), as: UInt8.self) }

    func setStatus(_ status: UInt8) { mmioStore(common + UInt(Common.deviceStatus), status) }

    func deviceFeatures() -> UInt64 {
        mmioStore(common + UInt(Common.deviceFeatureSelect), UInt32(0))
        let low = mmioLoad(common + UInt(Common.deviceFeature), as: UInt32.self)
        mmioStore(common + UInt(Common.deviceFeatureSelect), UInt32(1))
        let high = mmioLoad(common + UInt(Common.deviceFeature), as: UInt32.self)
        return UInt64(high) << 32 | UInt64(low)
    }

    func setDriverFeatures(_ features: UInt64) {
        mmioStore(common + UInt(Common.driverFeatureSelect), UInt32(0))
        mmioStore(common + UInt(Common.driverFeature), UInt32(truncatingIfNeeded: features))
        mmioStore(common + UInt(Common.driverFeatureSelect), UInt32(1))
        mmioStore(common + UInt(Common.driverFeature), UInt32(truncatingIfNeeded: features >> 32))
    }

    func configurationGeneration() -> UInt32 {
        UInt32(mmioLoad(common + UInt(Common.configurationGeneration), as: UInt8.self))
    }

    func readConfiguration<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        // Section 4.1.3.1: 64-bit fields are read as two 32-bit halves.
        if T.bitWidth == 64 {
            let low = UInt64(mmioLoad(deviceConfiguration + UInt(offset), as: UInt32.self))
            let high = UInt64(mmioLoad(deviceConfiguration + UInt(offset + 4), as: UInt32.self))
            return T(truncatingIfNeeded: high << 32 | low)
        }
        switch T.bitWidth {
        case 8: return T(truncatingIfNeeded: mmioLoad(deviceConfiguration + UInt(offset), as: UInt8.self))
        case 16: return T(truncatingIfNeeded: mmioLoad(deviceConfiguration + UInt(offset), as: UInt16.self))
        default: return T(truncatingIfNeeded: mmioLoad(deviceConfiguration + UInt(offset), as: UInt32.self))
        }
    }

    func maximumQueueSize(_ index: Int) -> Int {
        mmioStore(common + UInt(Common.queueSelect), UInt16(index))
        return Int(mmioLoad(common + UInt(Common.queueSize), as: UInt16.self))
    }

    func activateQueue(_ index: Int, _ queue: SplitVirtqueue) -> Bool {
        mmioStore(common + UInt(Common.queueSelect), UInt16(index))
        guard Int(mmioLoad(common + UInt(Common.queueSize), as: UInt16.self)) >= queue.size else { return false }
        mmioStore(common + UInt(Common.queueSize), UInt16(queue.size))
        if vector != nil {
            // Section 4.1.5.1.2: the device answers NO_VECTOR when it cannot use the entry.
            mmioStore(common + UInt(Common.queueVector), Self.queueVectorIndex)
            guard mmioLoad(common + UInt(Common.queueVector), as: UInt16.self) == Self.queueVectorIndex else {
                return false
            }
        }
        store64(common + UInt(Common.queueDescriptor), queue.descriptorArea.value)
        store64(common + UInt(Common.queueDriver), queue.driverArea.value)
        store64(common + UInt(Common.queueDevice), queue.deviceArea.value)
        let notifyOffset = UInt(mmioLoad(common + UInt(Common.queueNotifyOffset), as: UInt16.self))
        while queueNotifyAddresses.count <= index { queueNotifyAddresses.append(0) }
        queueNotifyAddresses[index] = notifyBase + notifyOffset * UInt(notifyMultiplier)
        mmioStore(common + UInt(Common.queueEnable), UInt16(1))
        return true
    }

    func notify(queue index: Int) {
        mmioStore(queueNotifyAddresses[index], UInt16(index))
    }

    func acknowledgeInterrupt() -> Bool {
        // With MSI-X the ISR is not used (section 4.1.4.5); reading it would only clear it.
        guard vector == nil else { return true }
        return mmioLoad(isr, as: UInt8.self) & 1 != 0
    }

    var usesInterrupts: Bool { vector != nil }

    func waitForInterrupt() {
        guard vector != nil else { return }   // polling fallback: the caller re-checks the ring
        LocalAPIC.waitForInterrupt()
    }

    func takePendingInterrupts() {
        guard vector != nil else { return }
        LocalAPIC.takePendingInterrupts()
    }

    // MARK: Register access

    private func store64(_ address: UInt, _ value: UInt64) {
        mmioStore(address, UInt32(truncatingIfNeeded: value))
        mmioStore(address + 4, UInt32(truncatingIfNeeded: value >> 32))
    }
}

// VolatileMappedRegister has load/store only for concrete widths: one overload per width.
@inline(__always) private func mmioLoad(_ address: UInt, as: UInt8.Type) -> UInt8 {
    VolatileMappedRegister<UInt8>(unsafeBitPattern: address).load()
}
@inline(__always) private func mmioLoad(_ address: UInt, as: UInt16.Type) -> UInt16 {
    VolatileMappedRegister<UInt16>(unsafeBitPattern: address).load()
}
@inline(__always) private func mmioLoad(_ address: UInt, as: UInt32.Type) -> UInt32 {
    VolatileMappedRegister<UInt32>(unsafeBitPattern: address).load()
}
@inline(__always) private func mmioStore(_ address: UInt, _ value: UInt8) {
    VolatileMappedRegister<UInt8>(unsafeBitPattern: address).store(value)
}
@inline(__always) private func mmioStore(_ address: UInt, _ value: UInt16) {
    VolatileMappedRegister<UInt16>(unsafeBitPattern: address).store(value)
}
@inline(__always) private func mmioStore(_ address: UInt, _ value: UInt32) {
    VolatileMappedRegister<UInt32>(unsafeBitPattern: address).store(value)
}
