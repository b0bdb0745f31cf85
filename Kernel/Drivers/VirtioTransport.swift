// VirtioTransport: what a virtio driver needs from the bus a device sits on (virtio 1.x,
// section 4): PCI capabilities on x86_64, virtio-mmio registers on aarch64, a fake device in
// host tests. Drivers are generic over it (`VirtioBlockDevice<Transport>`), so every call is
// specialised; there is no existential anywhere.
// Invariants: a transport value names one device; its methods are register accesses with no
// hidden driver state, so copies of it are interchangeable.

/// Device status bits (section 2.1).
public enum VirtioStatus {
    public static let acknowledge: UInt8 = 1
    public static let driver: UInt8 = 2
    public static let driverOK: UInt8 = 4
    public static let featuresOK: UInt8 = 8
    public static let deviceNeedsReset: UInt8 = 64
    public static let failed: UInt8 = 128
}

/// Feature bits every device type shares (section 6).
public enum VirtioFeature {
    public static let ringIndirectDescriptors: UInt64 = 1 << 28
    public static let ringEventIndex: UInt64 = 1 << 29
    /// The device is a virtio 1.x ("modern") device. Required on modern transports.
    public static let version1: UInt64 = 1 << 32
    /// The device reaches memory through a platform IOMMU; with none, DMA addresses are
    /// physical addresses, so accepting it changes nothing here.
    public static let accessPlatform: UInt64 = 1 << 33
}

/// Virtio device types (section 5).
public enum VirtioDeviceType {
    public static let block: UInt32 = 2
}

/// One virtio device as its bus presents it.
public protocol VirtioTransport {
    /// True for a legacy (virtio 0.9.5) interface: no VERSION_1 and no FEATURES_OK step, and
    /// queues placed by page frame number in the legacy contiguous layout.
    var isLegacy: Bool { get }

    /// Writes 0 to the status and returns once the device has finished resetting.
    func reset()
    /// The device status byte.
    func status() -> UInt8
    /// Sets the device status byte.
    func setStatus(_ status: UInt8)

    /// All feature bits the device offers (only the low 32 on a legacy interface).
    func deviceFeatures() -> UInt64
    /// Tells the device which features the driver accepts.
    func setDriverFeatures(_ features: UInt64)

    /// The configuration generation: changes whenever the device changes its configuration
    /// space, so a multi-field read that saw it change must be repeated (section 2.5.1).
    func configurationGeneration() -> UInt32
    /// The little-endian `T` at `offset` in the device-specific configuration space.
    func readConfiguration<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T

    /// The most entries queue `index` can have; 0 when the queue does not exist.
    func maximumQueueSize(_ index: Int) -> Int
    /// Gives queue `index` the rings of `queue` and enables it, routing its interrupts to
    /// this transport's interrupt. Returns false when the device refuses (no interrupt vector,
    /// an address it cannot reach, a size it does not take).
    func activateQueue(_ index: Int, _ queue: SplitVirtqueue) -> Bool
    /// Tells the device that queue `index` has new available buffers.
    func notify(queue index: Int)

    /// Acknowledges the device's interrupt; returns true when it says "used buffers"
    /// (false for a configuration change only, or when the line was not the device's).
    func acknowledgeInterrupt() -> Bool
    /// True when completions are signalled by an interrupt; false on the polling fallback.
    var usesInterrupts: Bool { get }
    /// With interrupts masked: sleeps until an interrupt has been taken (its handler run),
    /// then returns, interrupts masked again. An interrupt that became pending before the call
    /// ends the sleep at once, so check-then-wait loses no wake-up. On the polling fallback it
    /// returns at once.
    func waitForInterrupt()
    /// With interrupts masked: lets the interrupts already pending be taken (their handlers
    /// run) without sleeping, then masks them again; a poll's window onto completions in a
    /// kernel that keeps interrupts masked outside waits. Nothing on the polling fallback.
    func takePendingInterrupts()
}
