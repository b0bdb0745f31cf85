// Traps (aarch64): the dispatcher Boot/aarch64/vectors.S calls with a TrapFrame.
// Invariants: `TrapFrame` mirrors the save order in vectors.S exactly; a trap either is
// handled and returns (with elr adjusted where the instruction must be skipped), or panics
// with the vector kind, ESR (and its exception class), FAR and every register.

struct TrapFrame {
    var x: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    var sp, elr, spsr, esr, far, kind, pad: UInt64
}

/// ESR_EL1 exception classes the kernel distinguishes.
enum ExceptionClass {
    static let instructionAbortSameEL: UInt64 = 0x21
    static let dataAbortSameEL: UInt64 = 0x25
    static let breakpointInstruction: UInt64 = 0x3C
}

/// `brk` immediate of the self-test breakpoint (Boot/aarch64/cpu.S); Swift's own traps use others.
private let selfTestBreakpointImmediate: UInt64 = 0x4B

@_cdecl("aarch64_trap_dispatch")
func dispatchTrap(_ rawFrame: UnsafeMutableRawPointer) {
    let frame = rawFrame.assumingMemoryBound(to: TrapFrame.self)
    let esr = frame.pointee.esr
    let exceptionClass = esr >> 26
    let isSynchronousFromKernel = frame.pointee.kind == 4
    if isSynchronousFromKernel && exceptionClass == ExceptionClass.breakpointInstruction
        && esr & 0xFFFF == selfTestBreakpointImmediate {
        TrapStatistics.breakpoints += 1
        frame.pointee.elr += 4   // brk does not advance the PC
        return
    }
    if isSynchronousFromKernel && exceptionClass == 0 && Platform.exitRequested { haltForever() }   // hlt without semihosting
    if isSynchronousFromKernel, let fault = decodeAbort(esr: esr, address: frame.pointee.far) {
        if resolvePmapEmulationFault(fault) { return }   // the pmap's own AF/dirty emulation (MMU.swift)
        if PageFaultDispatcher.handle(fault) == .resolved { return }   // eret restarts the access
        if let recovery = probeRecoveryAddress(forFaultAt: frame.pointee.elr) {
            frame.pointee.elr = recovery   // a probe access: it returns the fault as an error
            return
        }
    }
    if frame.pointee.kind == 5, GIC.handleInterrupt() { return }   // IRQ at EL1 with SPx (GIC.swift)
    panicFromTrap(frame)
}

/// Decodes an instruction or data abort taken at EL1; nil for other exception classes and
/// for fault status codes that are not translation, access-flag or permission faults.
func decodeAbort(esr: UInt64, address: UInt64) -> PageFault? {
    let exceptionClass = esr >> 26
    let isInstruction = exceptionClass == ExceptionClass.instructionAbortSameEL
    guard isInstruction || exceptionClass == ExceptionClass.dataAbortSameEL else { return nil }
    let reason: FaultReason
    switch (esr & 0x3F) >> 2 {   // DFSC/IFSC bits [5:2]; [1:0] are the table level
    case 0b0001: reason = .notPresent
    case 0b0010: reason = .accessFlag
    case 0b0011: reason = .protection
    default: return nil
    }
    // WnR (bit 6) is meaningless for cache maintenance (CM, bit 8): treat those as reads.
    let isWrite = !isInstruction && esr & (1 << 6) != 0 && esr & (1 << 8) == 0
    return PageFault(address: address, access: isInstruction ? .execute : (isWrite ? .write : .read),
                     reason: reason, fromUser: false)
}

private func panicFromTrap(_ frame: UnsafeMutablePointer<TrapFrame>) -> Never {
    let f = frame.pointee
    beginPanic(trapName(f))
    printRegister("kind", f.kind)
    printRegister("esr", f.esr)
    printRegister("ec", f.esr >> 26)
    printRegister("far", f.far)
    printRegister("elr", f.elr)
    printRegister("spsr", f.spsr)
    printRegister("sp", f.sp)
    withUnsafeBytes(of: f.x) { registers in
        for index in 0..<31 {
            Console.write("  x")
            Console.writeDecimal(UInt64(index))
            Console.write(" ")
            Console.writeHex(registers.load(fromByteOffset: index * 8, as: UInt64.self))
            Console.put(UInt8(ascii: "\n"))
        }
    }
    let framePointer = withUnsafeBytes(of: f.x) { $0.load(fromByteOffset: 29 * 8, as: UInt64.self) }
    finishPanic(programCounter: UInt(f.elr), framePointer: UInt(framePointer))
}

private func trapName(_ frame: TrapFrame) -> StaticString {
    switch frame.kind {
    case 0, 4: break
    case 1, 5: return "unexpected IRQ"
    case 2, 6: return "unexpected FIQ"
    case 3, 7: return "SError (asynchronous abort)"
    default: return "exception from a lower exception level"
    }
    switch frame.esr >> 26 {
    case 0x00: return "unknown reason / undefined instruction"
    case ExceptionClass.instructionAbortSameEL: return "unhandled instruction abort"
    case ExceptionClass.dataAbortSameEL: return "unhandled data abort"
    case 0x22: return "PC alignment fault"
    case 0x26: return "SP alignment fault"
    case ExceptionClass.breakpointInstruction:
        return "brk: a Swift runtime trap (overflow, failed precondition, nil unwrap, bounds)"
    default: return "unexpected synchronous exception"
    }
}
