// SwapTestDisk (x86_64): where the swap self-tests put swap (SwapVMTestSupport.swift): the
// window of the virtio-blk test disk. aarch64 provides the same hook in Board.swift (the
// virtio disk on virt, the SD card's swap partition on the Raspberry Pi).

extension Platform {
    /// Slice `slice` of `slices` of the swap tests' window on the virtio test disk.
    static func swapTestDisk(slice: Int = 0, of slices: Int = 1) throws(SwapTestDiskError) -> SwapDisk {
        try SwapTestWindow.onVirtioDisk(slice: slice, of: slices)
    }
}
