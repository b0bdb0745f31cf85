// Probe: loads and stores that survive a bad address, for the kernel's own copyin/copyout
// style accesses and for self-tests that must see a bad access come back as an error (the
// kernel's SIGSEGV) rather than a panic. Boot/<arch>/probe.S holds the two access
// instructions; the arch trap code calls `probeRecoveryAddress` for a page fault nobody
// resolved, and resumes at the returned address when the fault came from one of them.
// Invariants: only the two probe instructions are recoverable; any other unresolved fault
// still panics.

@_extern(c, "probe_read_u64") private func probeReadWord(_ address: UInt, _ out: UnsafeMutablePointer<UInt64>) -> CInt
@_extern(c, "probe_write_u64") private func probeWriteWord(_ address: UInt, _ value: UInt64) -> CInt
@_extern(c, "probe_read_pc") private func probeReadInstruction() -> UInt
@_extern(c, "probe_write_pc") private func probeWriteInstruction() -> UInt
@_extern(c, "probe_recover_pc") private func probeRecoverInstruction() -> UInt

/// Reads the 8-byte word at `address` through the MMU; nil when the access faults and no
/// fault handler resolves it.
func probeLoad(_ address: UInt64) -> UInt64? {
    var value: UInt64 = 0
    return probeReadWord(UInt(address), &value) == 0 ? value : nil
}

/// Writes the 8-byte word at `address`; false when the access faults and no fault handler
/// resolves it.
func probeStore(_ address: UInt64, _ value: UInt64) -> Bool {
    probeWriteWord(UInt(address), value) == 0
}

/// Where to resume after an unresolved page fault at `programCounter`: the probe's recovery
/// path if the fault came from a probe access, otherwise nil (the caller panics).
func probeRecoveryAddress(forFaultAt programCounter: UInt64) -> UInt64? {
    let pc = UInt(programCounter)
    guard pc == probeReadInstruction() || pc == probeWriteInstruction() else { return nil }
    return UInt64(probeRecoverInstruction())
}
