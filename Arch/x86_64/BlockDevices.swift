// BlockDevices (x86_64): finds the virtio-blk devices on PCI, starts them and routes their
// MSI-X interrupts. Machine-independent code reaches them as `PlatformBlockDevice` through
// `Platform.blockDevice(at:)`; aarch64 provides the same names over virtio-mmio.
// Invariants: attachment runs once, on first use; each attached device owns one APIC vector
// whose handler only acknowledges it (VirtioBlockDevice.handleInterrupt).

/// The block-device type of this architecture.
typealias PlatformBlockDevice = VirtioBlockDevice<VirtioPCITransport>

extension Platform {
    private nonisolated(unsafe) static var attachedBlockDevices: [PlatformBlockDevice] = []
    private nonisolated(unsafe) static var blockDevicesProbed = false
    /// Why the first virtio-blk device found could not be started, if one could not.
    private nonisolated(unsafe) static var blockAttachError: BlockDeviceError?

    /// Number of probe slots `probeBlockDevice(slot:)` takes: the 32 device numbers of bus 0.
    static let blockDeviceSlotCount = 32

    /// Finds every virtio-blk device (once; later calls return the same count) and starts it
    /// with its completion interrupt routed. Prints one console line per device.
    @discardableResult
    static func attachBlockDevices() -> Int {
        if blockDevicesProbed { return attachedBlockDevices.count }
        blockDevicesProbed = true
        PCI.forEachFunction { function in
            do throws(BlockDeviceError) {
                attachedBlockDevices.append(try startBlockDevice(at: function))
            } catch {
                if error != .noDevice && blockAttachError == nil { blockAttachError = error }
            }
            return true
        }
        return attachedBlockDevices.count
    }

    /// The `index`th virtio-blk device. Throws `noDevice` when there are fewer (no disk was
    /// attached to the machine), or the error that stopped the device from starting.
    static func blockDevice(at index: Int = 0) throws(BlockDeviceError) -> PlatformBlockDevice {
        attachBlockDevices()
        guard index >= 0, index < attachedBlockDevices.count else { throw blockAttachError ?? .noDevice }
        return attachedBlockDevices[index]
    }

    /// Probe slot of an attached device (its PCI device number).
    static func probeSlot(of device: PlatformBlockDevice) -> Int { Int(device.transport.function.device) }

    /// Reads what sits at probe slot `slot` (bus 0, device `slot`, function 0) without
    /// starting it: throws `noDevice` unless it is a modern virtio block device.
    static func probeBlockDevice(slot: Int) throws(BlockDeviceError) {
        guard slot >= 0, slot < blockDeviceSlotCount else { throw .noDevice }
        let transport = try VirtioPCITransport(function: PCIAddress(bus: 0, device: UInt8(slot), function: 0))
        guard transport.deviceType == VirtioDeviceType.block else { throw .noDevice }
    }

    /// Starts the virtio-blk device at `function`. Throws `noDevice` when it is not one.
    private static func startBlockDevice(at function: PCIAddress) throws(BlockDeviceError) -> PlatformBlockDevice {
        let transport = try VirtioPCITransport(function: function)
        guard transport.deviceType == VirtioDeviceType.block else { throw .noDevice }
        transport.enableDevice()
        // The handler needs the device, which needs the vector before its queue is set up:
        // route first, to a box the device is put into once it exists.
        let box = DeviceBox()
        let routed = transport.routeInterrupts { box.device?.handleInterrupt() }
        let device: PlatformBlockDevice
        do {
            device = try PlatformBlockDevice(transport: transport)
        } catch {
            reportBlockDevice(function, nil, error)
            throw error
        }
        box.device = device
        reportBlockDevice(function, device, nil)
        if !routed { Console.writeLine("  virtio-blk: no MSI-X: completions are polled (fallback)") }
        return device
    }

    private static func reportBlockDevice(_ function: PCIAddress, _ device: PlatformBlockDevice?,
                                          _ error: BlockDeviceError?) {
        Console.write("  virtio-blk: pci ")
        Console.writeDecimal(UInt64(function.bus))
        Console.write(":")
        Console.writeDecimal(UInt64(function.device))
        Console.write(".")
        Console.writeDecimal(UInt64(function.function))
        guard let device else {
            Console.writeLine(": could not start the device")
            return
        }
        Console.write(", ")
        Console.writeDecimal(device.geometry.blockCount)
        Console.write(" blocks of ")
        Console.writeDecimal(UInt64(device.geometry.blockSize))
        guard let vector = device.transport.vector else {
            Console.writeLine(" bytes, no MSI-X")
            return
        }
        Console.write(" bytes, msi-x vector ")
        Console.writeHex(UInt64(vector), digits: 2)
        Console.put(UInt8(ascii: "\n"))
    }

    /// With interrupts masked: sleeps until an interrupt has been handled; masked again after.
    static func waitForInterrupt() { LocalAPIC.waitForInterrupt() }

    /// External interrupts taken since boot.
    static var externalInterruptCount: Int { LocalAPIC.interruptCount }
}

/// Lets an interrupt handler installed before the device exists reach it afterwards.
private final class DeviceBox {
    var device: PlatformBlockDevice?
}
