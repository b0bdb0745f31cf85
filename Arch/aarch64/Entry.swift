// Entry (aarch64): from the boot stub to the machine-independent kernel.
// Memory and devices come from the flattened device tree whose physical address the loader
// passed in x0; a missing or corrupt DTB panics with what is wrong (never a hang).
// Without a DTB (x0 = 0 or the address of ATAGs, as the Raspberry Pi firmware and QEMU
// raspi3b pass when they have none), a board with a firmware mailbox takes RAM from it (VideoCoreMailbox.swift).
// Invariants: until the DTB names the UART, the console uses the board's PL011 address;
// the kernel window (load base .. image end, including the loader's stub below the image)
// and the DTB itself are reserved.

/// The device tree the kernel booted with, for drivers that look devices up later.
nonisolated(unsafe) var bootDeviceTree: DeviceTree?

@_cdecl("kernel_entry")
func kernelEntry(_ deviceTreePhysical: UInt, _ windowPhysicalBase: UInt) -> Never {
    DirectMap.offset = Platform.directMapBase
    Platform.kernelWindowPhysicalBase = windowPhysicalBase
    if Board.setsUpConsole { RaspberryPiConsole.setUp() }
    PL011.attach(physical: Board.defaultUARTPhysical)
    if Board.hasFirmwareMailbox && !holdsDeviceTree(UInt64(deviceTreePhysical)) {
        var boot = BootInfo(loaderName: "firmware mailbox (no DTB)")
        boot.memoryMap = firmwareMemoryMap()
        reserveKernelWindow(in: &boot.memoryMap, windowPhysicalBase)
        kernelMain(&boot)
    }
    var boot = BootInfo(loaderName: "DTB")
    let tree = openDeviceTree(at: PhysicalAddress(UInt64(deviceTreePhysical)))
    bootDeviceTree = tree
    attachConsole(from: tree)
    boot.commandLine = commandLine(from: tree)
    do {
        boot.memoryMap = try tree.memoryMap()
    } catch {
        panicOnDeviceTree(error, "DTB: cannot read the memory map")
    }
    if Board.deviceStart != 0 {
        // The Pi's peripherals sit inside the first GiB; a DTB's /memory (QEMU writes the
        // whole RAM size there) must not hand them out as RAM.
        boot.memoryMap.addReserved(PhysicalRange(start: PhysicalAddress(Board.deviceStart),
                                                 end: PhysicalAddress(Board.deviceEnd)))
    }
    reserveKernelWindow(in: &boot.memoryMap, windowPhysicalBase)
    kernelMain(&boot)
}

/// True when `address` is in RAM the direct map covers and starts with the FDT magic. QEMU
/// raspi3b without `-dtb` passes the address of ATAGs (0x100), the Pi firmware 0 or ATAGs.
private func holdsDeviceTree(_ address: UInt64) -> Bool {
    guard address != 0, address < Board.deviceStart || Board.deviceStart == 0, address & 3 == 0 else { return false }
    let magic = DirectMap.pointer(to: PhysicalAddress(address)).load(as: UInt32.self)
    return magic == UInt32(0xD00D_FEED).byteSwapped
}

/// Reserves the kernel window from its base (the loader's stub and, on the Pi, the
/// firmware's spin tables for the parked cores live below the image) to the image's end.
private func reserveKernelWindow(in map: inout MemoryMap, _ windowPhysicalBase: UInt) {
    let imageEnd = Platform.kernelImagePhysicalAddress(of: kernelImageVirtualEnd())
    map.addReserved(PhysicalRange(start: PhysicalAddress(UInt64(windowPhysicalBase)), end: imageEnd))
}

/// RAM as the VideoCore firmware reports it (GET_ARM_MEMORY), clipped to the direct map.
private func firmwareMemoryMap() -> MemoryMap {
    var map = MemoryMap()
    let memory: PhysicalRange
    do {
        memory = try VideoCoreMailbox.armMemory()
    } catch {
        panic("firmware mailbox: GET_ARM_MEMORY failed")
    }
    guard !memory.isEmpty else { panic("firmware mailbox: GET_ARM_MEMORY reported no memory") }
    let end = min(memory.end.value, Board.deviceStart)
    map.addUsable(PhysicalRange(start: memory.start, end: PhysicalAddress(end)))
    return map
}

private func openDeviceTree(at address: PhysicalAddress) -> DeviceTree {
    guard address.value != 0 else { panic("DTB: the loader passed no device tree in x0") }
    guard address.value < Platform.directMapLimit else { panic("DTB: device tree outside the direct map") }
    do {
        return try DeviceTree(blob: DirectMap.pointer(to: address))
    } catch {
        panicOnDeviceTree(error, "DTB: the device tree is corrupt")
    }
}

/// /chosen/bootargs (QEMU's -append), or an empty command line.
private func commandLine(from tree: DeviceTree) -> KernelCommandLine {
    do {
        guard let chosen = try tree.node(atPath: "/chosen"),
              let arguments = try chosen.property(named: "bootargs")?.stringValue else {
            return KernelCommandLine()
        }
        return KernelCommandLine(bytes: arguments.bytes)
    } catch {
        panicOnDeviceTree(error, "DTB: cannot decode /chosen/bootargs")
    }
}

/// Switches the console to the UART the DTB names, if it is not the default one.
private func attachConsole(from tree: DeviceTree) {
    let uart: DeviceTreeDevice?
    do {
        uart = try tree.firstDevice(compatibleWith: "arm,pl011")
    } catch {
        panicOnDeviceTree(error, "DTB: cannot decode the UART node")
    }
    if let region = uart?.region, region.base.value < Platform.directMapLimit {
        PL011.attach(physical: region.base.value)
    }
}

private func panicOnDeviceTree(_ error: DeviceTreeError, _ context: StaticString) -> Never {
    Console.write("DTB error: ")
    Console.writeLine(error.message)
    if let offset = error.offset {
        Console.write("  at blob offset ")
        Console.writeDecimal(UInt64(offset))
        Console.put(UInt8(ascii: "\n"))
    }
    panic(context)
}
