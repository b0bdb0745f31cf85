// BlockDevices (aarch64): finds the virtio-blk devices among the DTB's virtio-mmio slots,
// starts them and routes their interrupts through the GIC. Machine-independent code reaches
// them as `PlatformBlockDevice` through `Platform.blockDevice(at:)`; x86_64 provides the same
// names over PCI.
// Invariants: attachment runs once, on first use; each attached device owns its slot's SPI,
// whose handler only acknowledges it (VirtioBlockDevice.handleInterrupt).

/// The block-device type of this architecture.
typealias PlatformBlockDevice = VirtioBlockDevice<VirtioMMIOTransport>

extension Platform {
    private nonisolated(unsafe) static var attachedBlockDevices: [PlatformBlockDevice] = []
    private nonisolated(unsafe) static var blockDevicesProbed = false
    /// Why the first virtio-blk device found could not be started, if one could not.
    private nonisolated(unsafe) static var blockAttachError: BlockDeviceError?

    /// Number of probe slots `probeBlockDevice(slot:)` takes: QEMU virt's 32 virtio-mmio slots
    /// (none on boards without virtio, where the virtio_blk suite skips).
    static let blockDeviceSlotCount = Board.virtioSlotCount

    /// Finds every virtio-blk device (once; later calls return the same count) and starts it
    /// with its completion interrupt routed. Prints one console line per device.
    @discardableResult
    static func attachBlockDevices() -> Int {
        if blockDevicesProbed { return attachedBlockDevices.count }
        blockDevicesProbed = true
        guard let tree = bootDeviceTree else { return 0 }
        if !GIC.enable(from: tree) { Console.writeLine("  gic: no GICv2 in the DTB: virtio completions are polled") }
        var slot = 0
        do {
            try tree.forEachDevice(compatibleWith: "virtio,mmio") { device throws(DeviceTreeError) in
                defer { slot += 1 }
                do throws(BlockDeviceError) {
                    attachedBlockDevices.append(try startBlockDevice(device, slot: slot))
                } catch {
                    if error != .noDevice && blockAttachError == nil { blockAttachError = error }
                }
                return true
            }
        } catch {
            Console.writeLine("  virtio-mmio: the DTB's virtio,mmio nodes cannot be decoded")
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

    /// Probe slot of an attached device (its index among the DTB's virtio-mmio nodes).
    static func probeSlot(of device: PlatformBlockDevice) -> Int { device.transport.slot }

    /// Reads what sits in virtio-mmio slot `slot` without starting it: throws `noDevice`
    /// unless it is a virtio block device (an empty slot has device ID 0).
    static func probeBlockDevice(slot: Int) throws(BlockDeviceError) {
        guard slot >= 0, slot < blockDeviceSlotCount, let tree = bootDeviceTree else { throw .noDevice }
        var region: DeviceTreeRegion?
        var index = 0
        do {
            try tree.forEachDevice(compatibleWith: "virtio,mmio") { device throws(DeviceTreeError) in
                if index == slot { region = device.region; return false }
                index += 1
                return true
            }
        } catch {
            throw .noDevice
        }
        guard let region else { throw .noDevice }
        let transport = try VirtioMMIOTransport(physicalBase: region.base, slot: slot)
        guard transport.deviceType == VirtioDeviceType.block else { throw .noDevice }
    }

    /// Starts the virtio-blk device in `device`'s slot. Throws `noDevice` when it holds none.
    private static func startBlockDevice(_ device: DeviceTreeDevice, slot: Int) throws(BlockDeviceError) -> PlatformBlockDevice {
        guard let region = device.region else { throw .noDevice }
        let transport = try VirtioMMIOTransport(physicalBase: region.base, slot: slot)
        guard transport.deviceType == VirtioDeviceType.block else { throw .noDevice }
        // The handler needs the device, which must not see interrupts before it exists:
        // route to a box the device is put into once it is started.
        let box = DeviceBox()
        var interrupts: DeviceTreeInterrupts?
        do { interrupts = try device.interrupts() } catch { interrupts = nil }
        let routed = transport.routeInterrupts(interrupts) {
            if let device = box.device {
                device.handleInterrupt()
            } else {
                _ = transport.acknowledgeInterrupt()
            }
        }
        let blockDevice: PlatformBlockDevice
        do {
            blockDevice = try PlatformBlockDevice(transport: transport)
        } catch {
            report(region.base, slot, nil, transport)
            throw error
        }
        box.device = blockDevice
        report(region.base, slot, blockDevice, transport)
        if !routed { Console.writeLine("  virtio-blk: no interrupt route: completions are polled (fallback)") }
        return blockDevice
    }

    private static func report(_ base: PhysicalAddress, _ slot: Int, _ device: PlatformBlockDevice?,
                               _ transport: VirtioMMIOTransport) {
        Console.write("  virtio-blk: mmio ")
        Console.writeHex(base.value, digits: 8)
        Console.write(transport.isLegacy ? " (legacy)" : " (modern)")
        guard let device else {
            Console.writeLine(": could not start the device")
            return
        }
        Console.write(", ")
        Console.writeDecimal(device.geometry.blockCount)
        Console.write(" blocks of ")
        Console.writeDecimal(UInt64(device.geometry.blockSize))
        Console.writeLine(" bytes")
    }

    /// With interrupts masked: sleeps until an interrupt has been handled; masked again after.
    static func waitForInterrupt() { GIC.waitForInterrupt() }

    /// External interrupts (IRQs) taken since boot.
    static var externalInterruptCount: Int { GIC.interruptCount }
}

/// Lets an interrupt handler installed before the device exists reach it afterwards.
private final class DeviceBox {
    var device: PlatformBlockDevice?
}
