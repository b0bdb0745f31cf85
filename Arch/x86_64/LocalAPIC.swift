// LocalAPIC (x86_64): the boot CPU's local APIC, the target of every MSI/MSI-X message, and
// the routing of external interrupt vectors to handlers.
// Invariants:
//  - The legacy 8259 PICs are masked and LINT0 (where the firmware wired them as ExtINT) is
//    masked, so the only external interrupts are the messages drivers program; a vector
//    below 32 (the firmware's PIC base is 8) can therefore never be raised by a device.
//  - Vectors `firstDeviceVector...lastDeviceVector` are handed out once each; a handler runs
//    with interrupts masked and the EOI is written after it returns. The spurious vector
//    gets no EOI (SDM vol. 3, 11.9).
//  - Interrupts stay masked (IF = 0) except inside `waitForInterrupt`.
// The xAPIC registers are reached through the direct map, which maps them write-back: QEMU's
// TCG does not model caches, so that works there; on real hardware the page needs UC (the
// pmap will map device memory with its own attributes). In x2APIC mode (firmware enabled it)
// the same registers are MSRs 0x800 + offset / 16.

import _Volatile

@_extern(c, "x86_wait_for_interrupt") private func enableInterruptsAndHalt()   // sti; hlt (atomic: sti shadow)
@_extern(c, "x86_disable_interrupts") private func disableInterrupts()
@_extern(c, "x86_take_pending_interrupts") private func openInterruptWindow()   // sti; nop; cli

enum LocalAPIC {
    private static let baseMSR: UInt32 = 0x1B
    private static let baseEnable: UInt64 = 1 << 11
    private static let baseX2APIC: UInt64 = 1 << 10

    /// Register offsets in the xAPIC page (SDM vol. 3, table 11-1).
    private enum Register {
        static let id: UInt32 = 0x20
        static let taskPriority: UInt32 = 0x80
        static let endOfInterrupt: UInt32 = 0xB0
        static let spuriousVector: UInt32 = 0xF0
        static let timer: UInt32 = 0x320
        static let lint0: UInt32 = 0x350
        static let error: UInt32 = 0x370
    }
    private static let lvtMasked: UInt32 = 1 << 16
    private static let softwareEnable: UInt32 = 1 << 8

    /// The vector the APIC delivers for spurious interrupts.
    static let spuriousVector: UInt8 = 0xFF
    /// Vectors handed out to devices.
    static let firstDeviceVector: UInt8 = 0x40
    static let lastDeviceVector: UInt8 = 0xFE

    private nonisolated(unsafe) static var registers: UInt = 0
    private nonisolated(unsafe) static var isX2APIC = false
    private nonisolated(unsafe) static var isEnabled = false
    private nonisolated(unsafe) static var isUnusable = false
    private nonisolated(unsafe) static var handlers: [(() -> Void)?] = []
    private nonisolated(unsafe) static var nextVector = Int(firstDeviceVector)
    /// External interrupts taken (device vectors and spurious), for the self-tests.
    nonisolated(unsafe) static var interruptCount = 0

    private static func read(_ register: UInt32) -> UInt32 {
        if isX2APIC { return UInt32(truncatingIfNeeded: readMSR(0x800 + register >> 4)) }
        return VolatileMappedRegister<UInt32>(unsafeBitPattern: registers + UInt(register)).load()
    }

    private static func write(_ register: UInt32, _ value: UInt32) {
        if isX2APIC { writeMSR(0x800 + register >> 4, UInt64(value)); return }
        VolatileMappedRegister<UInt32>(unsafeBitPattern: registers + UInt(register)).store(value)
    }

    /// Masks the 8259s, enables the local APIC with all local interrupt sources masked and
    /// priority 0, so that message-signalled interrupts are delivered. Idempotent. Returns
    /// false (drivers then poll) when the xAPIC page lies outside the direct map.
    @discardableResult
    static func enable() -> Bool {
        if isEnabled || isUnusable { return isEnabled }
        var base = readMSR(baseMSR)
        isX2APIC = base & baseX2APIC != 0
        let physical = base & 0x000F_FFFF_FFFF_F000
        guard isX2APIC || physical < Platform.directMapLimit - pageSize else {
            isUnusable = true
            return false
        }
        isEnabled = true
        portWrite8(0x21, 0xFF)   // master 8259: mask every line
        portWrite8(0xA1, 0xFF)   // slave 8259
        if base & baseEnable == 0 {
            base |= baseEnable
            writeMSR(baseMSR, base)
        }
        registers = Platform.directMapBase &+ UInt(physical)
        write(Register.spuriousVector, softwareEnable | UInt32(spuriousVector))
        write(Register.lint0, lvtMasked)
        write(Register.timer, lvtMasked)
        write(Register.error, lvtMasked)
        write(Register.taskPriority, 0)
        handlers = [(() -> Void)?](repeating: nil, count: 256)
        return true
    }

    /// The boot CPU's APIC ID, as an MSI message's destination field wants it.
    static var id: UInt32 {
        isX2APIC ? read(Register.id) : read(Register.id) >> 24
    }

    /// Hands out a free device vector whose interrupts run `handler`; nil when all are taken.
    static func allocateVector(_ handler: @escaping () -> Void) -> UInt8? {
        guard enable(), nextVector <= Int(lastDeviceVector) else { return nil }
        let vector = nextVector
        nextVector += 1
        handlers[vector] = handler
        return UInt8(vector)
    }

    /// Called by the trap dispatcher for vectors 32...255. Runs the vector's handler and
    /// signals end of interrupt; false when no handler owns the vector (the caller panics).
    static func handleInterrupt(vector: UInt64) -> Bool {
        guard isEnabled, vector < 256 else { return false }
        interruptCount += 1
        if vector == UInt64(spuriousVector) { return true }
        guard let handler = handlers[Int(vector)] else { return false }
        handler()
        write(Register.endOfInterrupt, 0)
        return true
    }

    /// With interrupts masked: enables them and halts until one has been taken, then masks
    /// them again. `sti` delays interrupt recognition by one instruction, so an interrupt
    /// that became pending before the call wakes the `hlt` instead of being taken before it.
    static func waitForInterrupt() {
        enableInterruptsAndHalt()
        disableInterrupts()
    }

    /// With interrupts masked: takes the interrupts already pending (their handlers run),
    /// without sleeping, and masks them again.
    static func takePendingInterrupts() { openInterruptWindow() }
}
