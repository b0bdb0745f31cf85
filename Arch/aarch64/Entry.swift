// Entry (aarch64): from the boot stub to the machine-independent kernel.
// Memory and devices come from the flattened device tree whose physical address the loader
// passed in x0; a missing or corrupt DTB panics with what is wrong (never a hang).
// Invariants: until the DTB names the UART, the console uses QEMU virt's PL011 address;
// the kernel window (load base .. image end, including the loader's stub below the image)
// and the DTB itself are reserved.

/// QEMU virt's PL011, used for panics before (or without) a readable DTB.
private let defaultUARTPhysical: UInt64 = 0x0900_0000

/// The device tree the kernel booted with, for drivers that look devices up later.
nonisolated(unsafe) var bootDeviceTree: DeviceTree?

@_cdecl("kernel_entry")
func kernelEntry(_ deviceTreePhysical: UInt, _ windowPhysicalBase: UInt) -> Never {
    DirectMap.offset = Platform.directMapBase
    Platform.kernelWindowPhysicalBase = windowPhysicalBase
    PL011.attach(physical: defaultUARTPhysical)
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
    let imageEnd = Platform.kernelImagePhysicalAddress(of: kernelImageVirtualEnd())
    boot.memoryMap.addReserved(PhysicalRange(start: PhysicalAddress(UInt64(windowPhysicalBase)), end: imageEnd))
    kernelMain(&boot)
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
