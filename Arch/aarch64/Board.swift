// Board (aarch64): what differs between the machines one aarch64 kernel image is built for.
// The board is chosen at build time (`make ARCH=aarch64 BOARD=raspi3b` passes -D BOARD_RASPI3B
// to Swift and -DBOARD_RASPI3B to Boot/aarch64/start.S), because the boot page tables must be
// right before any code can look at a device tree: on the Pi, RAM and the peripherals share
// the first GiB that QEMU virt gives wholly to MMIO.
// Invariants: [deviceStart, deviceEnd) is exactly what start.S maps as device memory in the
// direct map, and everything else it maps below `directMapLimit` is normal memory.

enum Board {
#if BOARD_RASPI3B
    static let name: StaticString = "raspi3b"
    static let platformName: StaticString = "aarch64 (raspi3b)"
    /// No virtio transport on the Pi: virtio-blk does not apply.
    static let virtioSlotCount = 0
    /// The PL011 (UART0) on GPIO 14/15, for output before (or without) a device tree.
    static let defaultUARTPhysical: UInt64 = 0x3F20_1000
    /// First byte mapped as device memory: the BCM2837 peripheral window (0x3F00_0000), then
    /// the ARM local peripherals at 0x4000_0000.
    static let deviceStart: UInt64 = 0x3F00_0000
    /// The boot page tables map physical [0, 2 GiB) in the direct map.
    static let directMapLimit: UInt64 = 2 << 30
    /// The VideoCore mailbox (property channel) answers when no device tree came in x0.
    static let hasFirmwareMailbox = true
    /// The kernel routes GPIO 14/15 to the PL011 and sets 115200 8N1 (RaspberryPiConsole.swift).
    static let setsUpConsole = true
    /// The BCM2837 "EMMC" SD host controller (Arasan SDHCI).
    static let sdHostPhysical: UInt64 = 0x3F30_0000
#else
    static let name: StaticString = "virt"
    static let platformName: StaticString = "aarch64"
    /// QEMU virt's virtio-mmio slots.
    static let virtioSlotCount = 32
    /// QEMU virt's PL011.
    static let defaultUARTPhysical: UInt64 = 0x0900_0000
    /// virt puts all of its MMIO in the first GiB and RAM from 1 GiB on.
    static let deviceStart: UInt64 = 0
    static let directMapLimit: UInt64 = 8 << 30
    static let hasFirmwareMailbox = false
    static let setsUpConsole = false
    static let sdHostPhysical: UInt64 = 0
#endif
    /// End of the device-memory part of the direct map.
    static let deviceEnd: UInt64 = deviceStart == 0 ? 1 << 30 : directMapLimit
}

extension Platform {
    /// Suites for devices only this board has, run after the machine-independent ones.
#if BOARD_RASPI3B
    static var boardSelfTestSuites: [SelfTestSuite] { [sdhciSuite] }
#else
    static var boardSelfTestSuites: [SelfTestSuite] { [] }
#endif
}

// The swap self-tests' disk (SwapVMTestSupport.swift): the virtio test disk's window on virt;
// on the Pi a window of the SD card's swap partition (type 0x82 in the card's own MBR,
// scripts/sd_image.py) from block `swapTestOffset` on, above the host pattern (blocks 0-63)
// and the sdhci suite's scratch writes (blocks 128-151), which stay untouched.
extension Platform {
#if BOARD_RASPI3B
    /// First block of the swap tests' window, relative to the swap partition.
    static let swapTestOffset: UInt64 = 1024
    /// The swap partition's first block, read from the MBR once.
    private nonisolated(unsafe) static var swapPartitionStart: UInt64?

    /// Slice `slice` of `slices` of the swap tests' window on the SD card. Skips when the
    /// machine has no card; fails when the card has no swap partition large enough.
    static func swapTestDisk(slice: Int = 0, of slices: Int = 1) throws(SwapTestDiskError) -> SwapDisk {
        let card: PlatformSDCard
        do { card = try sdCard() } catch {
            if error == .noCard { throw .unavailable("no SD card in the slot") }
            throw .unusable("the SD card does not initialise")
        }
        if swapPartitionStart == nil { swapPartitionStart = try findSwapPartition(card) }
        return try SwapTestWindow.slice(card, firstBlock: swapPartitionStart! + swapTestOffset, slice: slice, of: slices)
    }

    /// The first block of the card's swap partition, checked to hold the whole window.
    private static func findSwapPartition(_ card: PlatformSDCard) throws(SwapTestDiskError) -> UInt64 {
        guard let buffer = try? physicalPages.allocate() else { throw .unusable("no page for the MBR") }
        defer { try? physicalPages.free(buffer) }
        do {
            try card.read(at: 0, into: CollectionOfOne(BlockSegment(address: buffer, byteCount: 512)))
        } catch {
            throw .unusable("the SD card's MBR cannot be read")
        }
        let table: MBRPartitionTable
        do { table = try MBRPartitionTable(block: DirectMap.pointer(to: buffer), diskBlocks: card.geometry.blockCount) } catch {
            throw .unusable("the SD card has no valid MBR")
        }
        guard let swap = table.first(ofType: MBRPartitionTable.linuxSwap) else {
            throw .unusable("the SD card has no swap partition (type 0x82)")
        }
        guard swap.blockCount >= swapTestOffset + SwapTestWindow.blockCount else {
            throw .unusable("the SD card's swap partition is too small for the swap window")
        }
        return swap.firstBlock
    }
#else
    /// Slice `slice` of `slices` of the swap tests' window on the virtio test disk.
    static func swapTestDisk(slice: Int = 0, of slices: Int = 1) throws(SwapTestDiskError) -> SwapDisk {
        try SwapTestWindow.onVirtioDisk(slice: slice, of: slices)
    }
#endif
}
