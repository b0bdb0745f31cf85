// Traps (x86_64): the IDT dispatcher that Boot/x86_64/traps.S calls with a TrapFrame.
// Invariants: `TrapFrame` mirrors the push order in traps.S exactly (r15 at the lowest
// address); a trap either is handled and returns to the interrupted code, or panics with
// vector, error code, faulting address and every register.

struct TrapFrame {
    var r15, r14, r13, r12, r11, r10, r9, r8: UInt64
    var rbp, rdi, rsi, rdx, rcx, rbx, rax: UInt64
    var vector, errorCode: UInt64
    var rip, cs, rflags, rsp, ss: UInt64
}

enum X86Trap {
    static let breakpoint: UInt64 = 3
    static let invalidOpcode: UInt64 = 6
    static let generalProtection: UInt64 = 13
    static let pageFault: UInt64 = 14
}

@_cdecl("x86_trap_dispatch")
func dispatchTrap(_ rawFrame: UnsafeMutableRawPointer) {
    let frame = rawFrame.assumingMemoryBound(to: TrapFrame.self)
    switch frame.pointee.vector {
    case X86Trap.breakpoint:
        TrapStatistics.breakpoints += 1   // int3 leaves rip after itself: just return
    case X86Trap.pageFault:
        let fault = decodePageFault(errorCode: frame.pointee.errorCode, address: readCR2())
        if PageFaultDispatcher.handle(fault) == .resolved { return }   // iretq restarts the access
        if let recovery = probeRecoveryAddress(forFaultAt: frame.pointee.rip) {
            frame.pointee.rip = recovery   // a probe access: it returns the fault as an error
            return
        }
        panicFromTrap(frame)
    case 32...255:   // external interrupts: device vectors (LocalAPIC.swift)
        if LocalAPIC.handleInterrupt(vector: frame.pointee.vector) { return }
        panicFromTrap(frame)
    default:
        panicFromTrap(frame)
    }
}

/// #PF error code: bit 0 present, bit 1 write, bit 2 user, bit 4 instruction fetch.
func decodePageFault(errorCode: UInt64, address: UInt64) -> PageFault {
    let access: FaultAccess = errorCode & 0x10 != 0 ? .execute : (errorCode & 0x2 != 0 ? .write : .read)
    return PageFault(address: address, access: access,
                     reason: errorCode & 0x1 != 0 ? .protection : .notPresent,
                     fromUser: errorCode & 0x4 != 0)
}

private func panicFromTrap(_ frame: UnsafeMutablePointer<TrapFrame>) -> Never {
    let f = frame.pointee
    beginPanic(trapName(f.vector))
    printRegister("vector", f.vector)
    printRegister("error", f.errorCode)
    printRegister("cr2", readCR2())
    printRegister("cr3", readCR3())
    printRegister("rip", f.rip)
    printRegister("rsp", f.rsp)
    printRegister("rbp", f.rbp)
    printRegister("rflags", f.rflags)
    printRegister("rax", f.rax); printRegister("rbx", f.rbx)
    printRegister("rcx", f.rcx); printRegister("rdx", f.rdx)
    printRegister("rsi", f.rsi); printRegister("rdi", f.rdi)
    printRegister("r8", f.r8); printRegister("r9", f.r9)
    printRegister("r10", f.r10); printRegister("r11", f.r11)
    printRegister("r12", f.r12); printRegister("r13", f.r13)
    printRegister("r14", f.r14); printRegister("r15", f.r15)
    finishPanic(programCounter: UInt(f.rip), framePointer: UInt(f.rbp))
}

private func trapName(_ vector: UInt64) -> StaticString {
    switch vector {
    case 0: return "divide error (#DE)"
    case 1: return "debug (#DB)"
    case 2: return "non-maskable interrupt"
    case 4: return "overflow (#OF)"
    case 5: return "bound range (#BR)"
    case X86Trap.invalidOpcode:
        return "invalid opcode (#UD): a Swift runtime trap (overflow, failed precondition, nil unwrap, bounds) or bad code"
    case 7: return "device not available (#NM)"
    case 8: return "double fault (#DF), taken on its own stack: usually the kernel stack overflowing into its guard page"
    case 10: return "invalid TSS (#TS)"
    case 11: return "segment not present (#NP)"
    case 12: return "stack fault (#SS)"
    case X86Trap.generalProtection: return "general protection fault (#GP)"
    case X86Trap.pageFault: return "unhandled page fault (#PF)"
    case 16: return "x87 floating-point error (#MF)"
    case 17: return "alignment check (#AC)"
    case 18: return "machine check (#MC)"
    case 19: return "SIMD floating-point exception (#XM)"
    default: return "unexpected interrupt or exception"
    }
}
