// CPU: aarch64 instructions Swift cannot express, implemented in Boot/aarch64/cpu.S.
// Invariants: each is a leaf with the C calling convention and no hidden state.

@_extern(c, "aarch64_read_cycle_counter") func readCycleCounter() -> UInt64
@_extern(c, "aarch64_read_virtual_counter") func readVirtualCounter() -> UInt64
@_extern(c, "aarch64_counter_frequency") func counterFrequency() -> UInt64
@_extern(c, "aarch64_read_ttbr0") func readTTBR0() -> UInt64
@_extern(c, "aarch64_read_ttbr1") func readTTBR1() -> UInt64
@_extern(c, "aarch64_read_sctlr") func readSCTLR() -> UInt64
@_extern(c, "aarch64_read_tcr") func readTCR() -> UInt64
@_extern(c, "aarch64_current_el") func currentExceptionLevel() -> UInt64
@_extern(c, "aarch64_frame_pointer") func readFramePointer() -> UInt
@_extern(c, "aarch64_breakpoint") func executeBreakpoint()
@_extern(c, "aarch64_semihosting") func semihostingCall(_ operation: UInt, _ block: UnsafeRawPointer?) -> Int
@_extern(c, "aarch64_halt_forever") private func haltLoop()
@_extern(c, "aarch64_data_barrier") func dataSynchronizationBarrier()

/// Stops this CPU for good (interrupts masked).
func haltForever() -> Never {
    haltLoop()
    while true {}
}
