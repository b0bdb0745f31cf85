// VirtioMMIOTransport (aarch64): a virtio device behind the virtio-mmio register window
// (virtio 1.x, section 4.2) that QEMU virt puts in 32 slots listed in the DTB ("virtio,mmio").
// Both interfaces are driven: modern (version 2, what `-global virtio-mmio.force-legacy=false`
// gives) and legacy (version 1, QEMU's default), which differs only in queue set-up (a page
// frame number for one contiguous block in the legacy layout, which SplitVirtqueue always
// uses) and in having no FEATURES_OK step and no upper feature word.
// Invariants: the window lies in the direct map's device-memory GiB; completions are
// signalled by the slot's SPI through the GIC, and the handler acknowledges InterruptStatus
// so the line drops before the next edge. Without a GIC the transport falls back to polling.

import _Volatile

final class VirtioMMIOTransport: VirtioTransport {
    private static let magic: UInt32 = 0x7472_6976   // "virt"

    /// Register offsets (section 4.2.2; legacy ones from section 4.2.4).
    private enum Register {
        static let magic: UInt = 0x000
        static let version: UInt = 0x004
        static let deviceID: UInt = 0x008
        static let deviceFeatures: UInt = 0x010
        static let deviceFeaturesSelect: UInt = 0x014
        static let driverFeatures: UInt = 0x020
        static let driverFeaturesSelect: UInt = 0x024
        static let legacyGuestPageSize: UInt = 0x028
        static let queueSelect: UInt = 0x030
        static let queueSizeMaximum: UInt = 0x034
        static let queueSize: UInt = 0x038
        static let legacyQueueAlign: UInt = 0x03C
        static let legacyQueuePFN: UInt = 0x040
        static let queueReady: UInt = 0x044
        static let queueNotify: UInt = 0x050
        static let interruptStatus: UInt = 0x060
        static let interruptAcknowledge: UInt = 0x064
        static let status: UInt = 0x070
        static let queueDescriptorLow: UInt = 0x080
        static let queueDescriptorHigh: UInt = 0x084
        static let queueDriverLow: UInt = 0x090
        static let queueDriverHigh: UInt = 0x094
        static let queueDeviceLow: UInt = 0x0A0
        static let queueDeviceHigh: UInt = 0x0A4
        static let configurationGeneration: UInt = 0x0FC
        static let configuration: UInt = 0x100
    }

    /// Physical address of the register window.
    let physicalBase: PhysicalAddress
    /// Index of the slot in the DTB's list of virtio-mmio nodes.
    let slot: Int
    /// Virtio device type (2 = block).
    let deviceType: UInt32
    /// True for a version-1 (legacy) register window.
    let isLegacy: Bool
    private let base: UInt
    /// True once the slot's interrupt is routed through the GIC.
    private(set) var isInterruptRouted = false

    /// Reads the identification registers of the window at `physicalBase`. Throws `noDevice`
    /// when the window is not virtio-mmio or the slot is empty (device ID 0), and
    /// `unsupportedDevice` for a version other than 1 or 2 or a window outside device memory.
    init(physicalBase: PhysicalAddress, slot: Int) throws(BlockDeviceError) {
        guard physicalBase.value < 1 << 30, physicalBase.value & 3 == 0 else { throw .unsupportedDevice }
        self.physicalBase = physicalBase
        self.slot = slot
        base = Platform.directMapBase &+ UInt(physicalBase.value)
        guard VolatileMappedRegister<UInt32>(unsafeBitPattern: base + Register.magic).load() == Self.magic else {
            throw .noDevice
        }
        let version = VolatileMappedRegister<UInt32>(unsafeBitPattern: base + Register.version).load()
        guard version == 1 || version == 2 else { throw .unsupportedDevice }
        isLegacy = version == 1
        deviceType = VolatileMappedRegister<UInt32>(unsafeBitPattern: base + Register.deviceID).load()
        guard deviceType != 0 else { throw .noDevice }
    }

    /// Routes the slot's interrupt (the first specifier of the DTB node: SPI, number, flags)
    /// to `handler`. Returns false, leaving the polling fallback, without a usable GIC entry.
    func routeInterrupts(_ interrupts: DeviceTreeInterrupts?, to handler: @escaping () -> Void) -> Bool {
        guard !isInterruptRouted, let interrupts, interrupts.cellsPerInterrupt == 3,
              interrupts.cell(0, ofInterrupt: 0) == 0,   // 0 = SPI (1 would be a PPI)
              let number = interrupts.cell(1, ofInterrupt: 0),
              let flags = interrupts.cell(2, ofInterrupt: 0) else { return false }
        // Flags bits 0-3: 1 rising edge, 2 falling edge, 4 level high, 8 level low.
        isInterruptRouted = GIC.routeSPI(number, edgeTriggered: flags & 3 != 0, to: handler)
        return isInterruptRouted
    }

    private func read(_ register: UInt) -> UInt32 {
        VolatileMappedRegister<UInt32>(unsafeBitPattern: base + register).load()
    }

    private func write(_ register: UInt, _ value: UInt32) {
        VolatileMappedRegister<UInt32>(unsafeBitPattern: base + register).store(value)
    }

    // MARK: VirtioTransport

    func reset() {
        write(Register.status, 0)
        // Section 4.2.2.1: the reset is complete when the status reads back 0.
        while read(Register.status) != 0 {}
    }

    func status() -> UInt8 { UInt8(truncatingIfNeeded: read(Register.status)) }

    func setStatus(_ status: UInt8) { write(Register.status, UInt32(status)) }

    func deviceFeatures() -> UInt64 {
        write(Register.deviceFeaturesSelect, 0)
        let low = UInt64(read(Register.deviceFeatures))
        if isLegacy { return low }
        write(Register.deviceFeaturesSelect, 1)
        return UInt64(read(Register.deviceFeatures)) << 32 | low
    }

    func setDriverFeatures(_ features: UInt64) {
        write(Register.driverFeaturesSelect, 0)
        write(Register.driverFeatures, UInt32(truncatingIfNeeded: features))
        guard !isLegacy else { return }
        write(Register.driverFeaturesSelect, 1)
        write(Register.driverFeatures, UInt32(truncatingIfNeeded: features >> 32))
    }

    func configurationGeneration() -> UInt32 {
        isLegacy ? 0 : read(Register.configurationGeneration)
    }

    func readConfiguration<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        let address = base + Register.configuration + UInt(offset)
        switch T.bitWidth {
        case 8: return T(truncatingIfNeeded: VolatileMappedRegister<UInt8>(unsafeBitPattern: address).load())
        case 16: return T(truncatingIfNeeded: VolatileMappedRegister<UInt16>(unsafeBitPattern: address).load())
        case 32: return T(truncatingIfNeeded: VolatileMappedRegister<UInt32>(unsafeBitPattern: address).load())
        default:
            // 64-bit fields as two 32-bit reads, low word first (section 4.2.2.2).
            let low = UInt64(VolatileMappedRegister<UInt32>(unsafeBitPattern: address).load())
            let high = UInt64(VolatileMappedRegister<UInt32>(unsafeBitPattern: address + 4).load())
            return T(truncatingIfNeeded: high << 32 | low)
        }
    }

    func maximumQueueSize(_ index: Int) -> Int {
        write(Register.queueSelect, UInt32(index))
        return Int(read(Register.queueSizeMaximum))
    }

    func activateQueue(_ index: Int, _ queue: SplitVirtqueue) -> Bool {
        write(Register.queueSelect, UInt32(index))
        guard Int(read(Register.queueSizeMaximum)) >= queue.size else { return false }
        write(Register.queueSize, UInt32(queue.size))
        if isLegacy {
            let page = UInt64(VirtqueueLayout.usedRingAlignment)
            guard queue.memory.value % page == 0, queue.memory.value / page <= UInt64(UInt32.max) else { return false }
            write(Register.legacyGuestPageSize, UInt32(page))
            write(Register.legacyQueueAlign, UInt32(page))
            write(Register.legacyQueuePFN, UInt32(queue.memory.value / page))
            return read(Register.legacyQueuePFN) != 0
        }
        guard read(Register.queueReady) == 0 else { return false }
        write(Register.queueDescriptorLow, UInt32(truncatingIfNeeded: queue.descriptorArea.value))
        write(Register.queueDescriptorHigh, UInt32(truncatingIfNeeded: queue.descriptorArea.value >> 32))
        write(Register.queueDriverLow, UInt32(truncatingIfNeeded: queue.driverArea.value))
        write(Register.queueDriverHigh, UInt32(truncatingIfNeeded: queue.driverArea.value >> 32))
        write(Register.queueDeviceLow, UInt32(truncatingIfNeeded: queue.deviceArea.value))
        write(Register.queueDeviceHigh, UInt32(truncatingIfNeeded: queue.deviceArea.value >> 32))
        write(Register.queueReady, 1)
        return read(Register.queueReady) == 1
    }

    func notify(queue index: Int) {
        // The ring writes are Normal memory, the doorbell Device memory: a dsb makes them
        // visible before the device can see the doorbell (Linux's writel has the same wmb).
        dataSynchronizationBarrier()
        write(Register.queueNotify, UInt32(index))
    }

    func acknowledgeInterrupt() -> Bool {
        let pending = read(Register.interruptStatus)
        write(Register.interruptAcknowledge, pending)
        return pending & 1 != 0
    }

    var usesInterrupts: Bool { isInterruptRouted }

    func waitForInterrupt() {
        guard isInterruptRouted else { return }   // polling fallback: the caller re-checks the ring
        GIC.waitForInterrupt()
    }

    func takePendingInterrupts() {
        guard isInterruptRouted else { return }
        GIC.takePendingInterrupts()
    }
}
