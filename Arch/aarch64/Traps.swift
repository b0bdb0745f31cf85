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
    panicFromTrap(frame)
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
