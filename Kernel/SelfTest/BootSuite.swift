// BootSuite: proves the boot left the machine the way the rest of the kernel assumes.
// Invariants checked: the memory map is sorted, disjoint, page-aligned and contains the
// kernel; .bss started zeroed; the direct map and a second mapping reach the same frame;
// a trap is taken and returns; the cycle counter runs.

let bootSuite = SelfTestSuite("boot", [
    SelfTest("memory_map_sorted_disjoint_aligned", memoryMapIsSortedDisjointAligned),
    SelfTest("memory_map_contains_kernel_image", memoryMapContainsKernelImage),
    SelfTest("bss_zeroed_at_boot", bssWasZeroedAtBoot),
    SelfTest("direct_map_reads_kernel_image", directMapReadsKernelImage),
    SelfTest("direct_map_and_alias_share_frame", directMapAndAliasShareFrame),
    SelfTest("breakpoint_trap_returns", breakpointTrapReturns),
    SelfTest("cycle_counter_advances", cycleCounterAdvances),
])

private func memoryMapIsSortedDisjointAligned(_ t: inout TestContext) {
    let usable = bootInfo.memoryMap.usable
    t.expect(usable.count > 0, "at least one usable RAM range")
    for index in 0..<usable.count {
        let range = usable[index]
        t.expect(range.start.isPageAligned && range.end.isPageAligned, "usable ranges page-aligned")
        t.expect(range.start < range.end, "usable ranges non-empty")
        if index > 0 {
            t.expect(usable[index - 1].end < range.start, "usable ranges sorted and disjoint")
        }
    }
    // QEMU is started with at least 128 MiB; anything far below means the map was misread.
    t.expect(usable.totalBytes >= 64 << 20, "usable RAM is at least 64 MiB")
}

private func memoryMapContainsKernelImage(_ t: inout TestContext) {
    let image = kernelImagePhysicalRange
    let map = bootInfo.memoryMap
    var inside = false
    for index in 0..<map.usable.count where map.usable[index].start <= image.start && image.end <= map.usable[index].end {
        inside = true
    }
    t.expect(inside, "kernel image lies inside one usable range")
    let available = map.availableRanges()
    for index in 0..<available.count {
        let range = available[index]
        t.expect(range.end <= image.start || range.start >= image.end, "kernel image not in available ranges")
    }
}

/// Never written: if boot did not zero .bss it would hold whatever the loader left.
private nonisolated(unsafe) var untouchedBSS = InlineArray<256, UInt64>(repeating: 0)

private func bssWasZeroedAtBoot(_ t: inout TestContext) {
    let address = withUnsafePointer(to: &untouchedBSS) { UInt(bitPattern: $0) }
    t.expect(address >= kernelBSSStart() && address + 2048 <= kernelBSSEnd(), "canary lies in .bss")
    var nonZero = 0
    for index in 0..<256 where untouchedBSS[index] != 0 { nonZero += 1 }
    t.expectEqual(nonZero, 0, "non-zero words in the .bss canary")
}

private func directMapReadsKernelImage(_ t: inout TestContext) {
    // The first bytes of .text, read through the kernel window and through the direct map.
    let textStart = kernelTextStart()
    let physical = Platform.kernelImagePhysicalAddress(of: textStart)
    let viaImage = UnsafeRawPointer(bitPattern: textStart)!
    let viaDirectMap = DirectMap.pointer(to: physical)
    var mismatches = 0
    for offset in stride(from: 0, to: 256, by: 8) where
        viaImage.loadUnaligned(fromByteOffset: offset, as: UInt64.self) !=
        viaDirectMap.loadUnaligned(fromByteOffset: offset, as: UInt64.self) {
        mismatches += 1
    }
    t.expectEqual(mismatches, 0, "words differing between kernel window and direct map")
}

private func directMapAndAliasShareFrame(_ t: inout TestContext) {
    // A data word of the kernel: written through its linked address, read through the
    // direct map and the boot identity alias of the same physical frame.
    var probe: UInt64 = 0
    withUnsafeMutablePointer(to: &probe) { pointer in
        let physical = Platform.kernelImagePhysicalAddress(of: UInt(bitPattern: pointer))
        let viaDirectMap = DirectMap.pointer(to: physical)
        pointer.pointee = 0x5157_1F7E_D00D_F00D
        t.expectEqual(viaDirectMap.load(as: UInt64.self), 0x5157_1F7E_D00D_F00D, "word read via direct map")
        viaDirectMap.storeBytes(of: 0x0123_4567_89AB_CDEF, as: UInt64.self)
        t.expectEqual(pointer.pointee, 0x0123_4567_89AB_CDEF, "word written via direct map, read via image")
        if let alias = Platform.identityAlias(of: physical) {
            t.expectEqual(alias.load(as: UInt64.self), 0x0123_4567_89AB_CDEF, "word read via identity alias")
        }
    }
}

private func breakpointTrapReturns(_ t: inout TestContext) {
    let before = TrapStatistics.breakpoints
    Platform.breakpoint()
    Platform.breakpoint()
    t.expectEqual(TrapStatistics.breakpoints - before, 2, "breakpoint traps handled")
}

private func cycleCounterAdvances(_ t: inout TestContext) {
    let first = Platform.cycles()
    var sink: UInt64 = 0
    for index in 0..<10_000 { sink &+= UInt64(index) }
    let second = Platform.cycles()
    t.expect(sink != 0, "loop ran")
    t.expect(second > first, "cycle counter increases")
}
