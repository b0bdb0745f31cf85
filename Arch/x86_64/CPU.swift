// CPU: x86_64 instructions Swift cannot express, implemented in Boot/x86_64/cpu.S.
// Invariants: each is a leaf with the C calling convention and no hidden state.

@_extern(c, "x86_out8") func portWrite8(_ port: UInt16, _ value: UInt8)
@_extern(c, "x86_in8") func portRead8(_ port: UInt16) -> UInt8
@_extern(c, "x86_out16") func portWrite16(_ port: UInt16, _ value: UInt16)
@_extern(c, "x86_in16") func portRead16(_ port: UInt16) -> UInt16
@_extern(c, "x86_out32") func portWrite32(_ port: UInt16, _ value: UInt32)
@_extern(c, "x86_in32") func portRead32(_ port: UInt16) -> UInt32
@_extern(c, "x86_read_cr0") func readCR0() -> UInt64
@_extern(c, "x86_read_cr2") func readCR2() -> UInt64
@_extern(c, "x86_read_cr3") func readCR3() -> UInt64
@_extern(c, "x86_write_cr3") func writeCR3(_ value: UInt64)
@_extern(c, "x86_read_cr4") func readCR4() -> UInt64
@_extern(c, "x86_invlpg") func invalidatePage(_ address: UInt)
@_extern(c, "x86_rdtsc") func readTimeStampCounter() -> UInt64
@_extern(c, "x86_rdmsr") func readMSR(_ msr: UInt32) -> UInt64
@_extern(c, "x86_wrmsr") func writeMSR(_ msr: UInt32, _ value: UInt64)
@_extern(c, "x86_halt_forever") private func haltLoop()

/// Stops this CPU for good (interrupts off).
func haltForever() -> Never {
    haltLoop()
    while true {}
}
@_extern(c, "x86_breakpoint") func executeBreakpoint()
@_extern(c, "x86_frame_pointer") func readFramePointer() -> UInt
@_extern(c, "x86_idt_install") func installInterruptDescriptorTable()
