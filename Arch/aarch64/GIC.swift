// GIC (aarch64): the GICv2 interrupt controller QEMU virt provides (`gic-version=2`), found
// through the DTB ("arm,cortex-a15-gic" / "arm,gic-400": distributor at reg 0, CPU interface
// at reg 1), and the routing of shared peripheral interrupts (SPIs) to handlers.
// Invariants:
//  - The distributor and CPU interface are enabled once, with every interrupt at one
//    priority (0xA0) above the priority mask (0xF0), so any enabled interrupt is signalled.
//  - An SPI is enabled only once a handler owns it; it targets CPU 0 (the only CPU running).
//  - Every acknowledged interrupt (GICC_IAR) gets exactly one end of interrupt (GICC_EOIR),
//    after its handler ran; a spurious one (ID 1023) gets none (GICv2 spec, 4.4.4).
//  - IRQs stay masked (PSTATE.I) except inside `waitForInterrupt`.
// The registers lie in the direct map's first GiB, which the boot tables map as device
// memory, so volatile accesses are neither merged nor reordered.

import _Volatile

@_extern(c, "aarch64_wait_for_interrupt") private func waitForInterruptInstruction()   // wfi
@_extern(c, "aarch64_enable_interrupts") private func unmaskInterrupts()               // daifclr #2
@_extern(c, "aarch64_disable_interrupts") private func maskInterrupts()                // daifset #2
@_extern(c, "aarch64_take_pending_interrupts") private func openInterruptWindow()      // daifclr; isb; daifset

enum GIC {
    /// Distributor registers (GICv2 spec, table 4-1).
    private enum Distributor {
        static let control: UInt = 0x000
        static let setEnable: UInt = 0x100
        static let clearEnable: UInt = 0x180
        static let clearPending: UInt = 0x280
        static let priority: UInt = 0x400
        static let targets: UInt = 0x800
        static let configuration: UInt = 0xC00
    }
    /// CPU interface registers (table 4-2).
    private enum CPUInterface {
        static let control: UInt = 0x00
        static let priorityMask: UInt = 0x04
        static let binaryPoint: UInt = 0x08
        static let acknowledge: UInt = 0x0C
        static let endOfInterrupt: UInt = 0x10
    }
    static let spuriousID: UInt32 = 1023
    /// First shared peripheral interrupt ID: DTB SPI number n is ID 32 + n.
    static let firstSPI: UInt32 = 32

    private nonisolated(unsafe) static var distributor: UInt = 0
    private nonisolated(unsafe) static var cpuInterface: UInt = 0
    private nonisolated(unsafe) static var handlers: [(id: UInt32, handler: () -> Void)] = []
    /// IRQs taken (including spurious ones), for the self-tests.
    nonisolated(unsafe) static var interruptCount = 0

    /// True once `enable(from:)` found and started the controller.
    static var isEnabled: Bool { distributor != 0 }

    private static func read(_ address: UInt) -> UInt32 {
        VolatileMappedRegister<UInt32>(unsafeBitPattern: address).load()
    }

    private static func write(_ address: UInt, _ value: UInt32) {
        VolatileMappedRegister<UInt32>(unsafeBitPattern: address).store(value)
    }

    /// Finds the GIC in `tree` and enables distributor and CPU interface. Idempotent.
    /// Returns false when the DTB names no GICv2 inside the device-memory GiB.
    @discardableResult
    static func enable(from tree: DeviceTree) -> Bool {
        if isEnabled { return true }
        var node: DeviceTreeDevice?
        do {
            node = try tree.firstDevice(compatibleWith: "arm,cortex-a15-gic")
            if node == nil { node = try tree.firstDevice(compatibleWith: "arm,gic-400") }
            guard let node, let distributorRegion = try node.node.region(at: 0),
                  let cpuRegion = try node.node.region(at: 1),
                  distributorRegion.base.value < 1 << 30, cpuRegion.base.value < 1 << 30 else { return false }
            distributor = Platform.directMapBase &+ UInt(distributorRegion.base.value)
            cpuInterface = Platform.directMapBase &+ UInt(cpuRegion.base.value)
        } catch {
            return false
        }
        write(distributor + Distributor.control, 1)          // forward interrupts
        write(cpuInterface + CPUInterface.priorityMask, 0xF0)
        write(cpuInterface + CPUInterface.binaryPoint, 0)
        write(cpuInterface + CPUInterface.control, 1)        // signal them to the CPU
        return true
    }

    /// Routes SPI `spi` (the DTB's interrupt number, not the ID) to `handler`, edge- or
    /// level-triggered as the DTB says, and enables it. Returns false without a GIC, for an
    /// SPI number outside the controller's range, or one that already has a handler.
    static func routeSPI(_ spi: UInt32, edgeTriggered: Bool, to handler: @escaping () -> Void) -> Bool {
        guard isEnabled, spi < 988 else { return false }
        let id = firstSPI + spi
        for entry in handlers where entry.id == id { return false }
        handlers.append((id: id, handler: handler))
        let word = UInt(id / 32) * 4
        let bit = UInt32(1) << (id % 32)
        write(distributor + Distributor.clearEnable + word, bit)
        // Priority and target are byte fields; the distributor takes 32-bit accesses, so
        // read-modify-write the word holding this ID's byte.
        let byteWord = UInt(id / 4) * 4
        let shift = (id % 4) * 8
        let priority = read(distributor + Distributor.priority + byteWord)
        write(distributor + Distributor.priority + byteWord, priority & ~(0xFF << shift) | 0xA0 << shift)
        let targets = read(distributor + Distributor.targets + byteWord)
        write(distributor + Distributor.targets + byteWord, targets & ~(0xFF << shift) | 0x01 << shift)
        // Two configuration bits per ID; the upper one set means edge-triggered.
        let configurationWord = UInt(id / 16) * 4
        let configurationBit = UInt32(2) << ((id % 16) * 2)
        let configuration = read(distributor + Distributor.configuration + configurationWord)
        write(distributor + Distributor.configuration + configurationWord,
              edgeTriggered ? configuration | configurationBit : configuration & ~configurationBit)
        write(distributor + Distributor.clearPending + word, bit)
        write(distributor + Distributor.setEnable + word, bit)
        return true
    }

    /// Called by the trap dispatcher for an IRQ taken at EL1: acknowledges it, runs its
    /// handler, ends it. False when no handler owns the ID (the caller panics).
    static func handleInterrupt() -> Bool {
        guard isEnabled else { return false }
        interruptCount += 1
        let acknowledged = read(cpuInterface + CPUInterface.acknowledge)
        let id = acknowledged & 0x3FF
        if id == spuriousID { return true }
        var handled = false
        for entry in handlers where entry.id == id {
            entry.handler()
            handled = true
        }
        write(cpuInterface + CPUInterface.endOfInterrupt, acknowledged)
        return handled
    }

    /// With IRQs masked: sleeps until an interrupt has been taken, then masks them again.
    /// `wfi` wakes for a pending interrupt even while it is masked, so one that became pending
    /// before the call is taken at once when IRQs are unmasked.
    static func waitForInterrupt() {
        waitForInterruptInstruction()
        unmaskInterrupts()
        maskInterrupts()
    }

    /// With IRQs masked: takes the IRQs already pending (their handlers run), without
    /// sleeping, and masks them again.
    static func takePendingInterrupts() { openInterruptWindow() }
}
