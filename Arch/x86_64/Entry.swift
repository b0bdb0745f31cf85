// Entry (x86_64): from the boot stub to the machine-independent kernel.
// Reads the PVH `hvm_start_info` (Xen's arch-x86/hvm/start_info.h layout, version >= 1),
// whose memory map is QEMU's E820 table.
// Invariants: the console works before anything else may print; the first MiB (BIOS data,
// the start_info block itself, option ROMs) and the kernel image are reserved.

private let startInfoMagic: UInt32 = 0x336E_C578
private let e820RAM: UInt32 = 1

@_cdecl("kernel_entry")
func kernelEntry(_ startInfoPhysical: UInt) -> Never {
    DirectMap.offset = Platform.directMapBase
    Serial16550.initialize()
    installInterruptDescriptorTable()
    var boot = BootInfo(loaderName: "PVH")
    readStartInfo(PhysicalAddress(UInt64(startInfoPhysical)), into: &boot.memoryMap)
    boot.commandLine = readCommandLine(PhysicalAddress(UInt64(startInfoPhysical)))
    kernelMain(&boot)
}

/// The NUL-terminated command line start_info points at (QEMU's -append), if any.
private func readCommandLine(_ startInfo: PhysicalAddress) -> KernelCommandLine {
    let address = DirectMap.pointer(to: startInfo).loadUnaligned(fromByteOffset: 24, as: UInt64.self)
    guard address != 0, address + UInt64(KernelCommandLine.capacity) < Platform.directMapLimit else {
        return KernelCommandLine()
    }
    let bytes = UnsafeRawBufferPointer(start: DirectMap.pointer(to: PhysicalAddress(address)),
                                       count: KernelCommandLine.capacity + 1)
    return KernelCommandLine(bytes: bytes)
}

/// Fills `map` from the PVH start_info memory map; panics with the reason if it is unusable.
private func readStartInfo(_ address: PhysicalAddress, into map: inout MemoryMap) {
    guard address.value != 0, address.value < Platform.directMapLimit else {
        panic("PVH boot: no hvm_start_info pointer in %ebx")
    }
    let info = DirectMap.pointer(to: address)
    guard info.loadUnaligned(as: UInt32.self) == startInfoMagic else {
        panic("PVH boot: hvm_start_info magic mismatch")
    }
    let version = info.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
    let memmapAddress = info.loadUnaligned(fromByteOffset: 40, as: UInt64.self)
    let entryCount = info.loadUnaligned(fromByteOffset: 48, as: UInt32.self)
    guard version >= 1, memmapAddress != 0, entryCount != 0 else {
        panic("PVH boot: start_info has no memory map (version < 1)")
    }
    guard memmapAddress < Platform.directMapLimit else { panic("PVH boot: memory map outside the direct map") }
    let entries = DirectMap.pointer(to: PhysicalAddress(memmapAddress))
    for index in 0..<Int(entryCount) {
        let entry = entries + index * 24   // u64 addr, u64 size, u32 type, u32 reserved
        let start = entry.loadUnaligned(as: UInt64.self)
        let size = entry.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        let type = entry.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
        guard type == e820RAM, size > 0 else { continue }
        // RAM past the boot direct map is left unmanaged until the pmap extends the map.
        let end = min(start &+ size, Platform.directMapLimit)
        if start < end {
            map.addUsable(PhysicalRange(start: PhysicalAddress(start), end: PhysicalAddress(end)))
        }
    }
    map.addReserved(PhysicalRange(start: PhysicalAddress(0), end: PhysicalAddress(0x10_0000)))
    map.addReserved(kernelImagePhysicalRange)
}
