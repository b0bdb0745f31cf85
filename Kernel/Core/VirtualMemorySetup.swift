// VirtualMemorySetup: builds the vm_page array and the kernel pmap, and moves the MMU from the
// boot page tables to it.
// Invariants: runs once, right after `setUpMemory` (it needs the page allocator and the heap)
// and before anything else maps memory. Afterwards:
//  - the direct map covers physical [0, Platform.directMapLimit) at
//    AddressSpaceLayout.directMapBase, never executable, read-only over the image's text and
//    read-only data (so no alias makes them writable), device memory in
//    [Platform.directMapDeviceStart, Platform.directMapDeviceEnd), with the largest pages that fit;
//  - the kernel image is mapped W^X with 4 KiB pages, and the page below the boot stack
//    (kernel_stack_guard) is unmapped, so a stack overflow faults instead of corrupting .bss;
//  - the boot identity map is gone: user address spaces own the low half, and a null
//    pointer dereference faults.

/// The vm_page array and page queues.
nonisolated(unsafe) var pageFrames: PageFrames! = nil
/// The kernel's address space; every user pmap is created from it. Nil until set-up.
nonisolated(unsafe) var kernelPmap: MachinePmap? = nil

/// Where the linker put the image, from the symbols Boot/<arch>/layout.S exports.
var kernelImageLayout: KernelImageLayout {
    let textStart = UInt64(kernelTextStart())
    let readOnlyStart = UInt64(kernelReadOnlyDataStart())
    let dataStart = UInt64(kernelDataStart())
    let end = UInt64(kernelImageVirtualEnd())
    let offset = textStart &- Platform.kernelImagePhysicalAddress(of: kernelTextStart()).value
    return KernelImageLayout(text: textStart..<readOnlyStart, readOnlyData: readOnlyStart..<dataStart,
                             writableData: dataStart..<end, guardPages: [UInt64(kernelStackGuard())],
                             virtualToPhysicalOffset: offset)
}

func setUpVirtualMemory() {
    let frames: PageFrames
    do {
        frames = try PageFrames()
    } catch {
        panic("setUpVirtualMemory: no room for the vm_page array")
    }
    pageFrames = frames
    // A heap short of frames takes back the VM's cached free pages (safe anywhere: nobody
    // owns them). Everything else the VM holds is reclaimed by the pageout daemon, which
    // keeps `freeReserved` frames out of the objects' reach for the heap's sake.
    PhysicalPageSource.reclaim = {
        let before = physicalPages.freePages
        frames.drainFreeQueue()
        return physicalPages.freePages > before
    }
    let format = Platform.makePageTableFormat()
    let pmap: MachinePmap
    do {
        pmap = try MachinePmap(kernelWith: format, hardware: MachineMMU(), pages: frames)
        try mapDirectMap(in: pmap)
        try pmap.mapKernelImage(kernelImageLayout)
        kernelPmap = pmap
        try pmap.activate()
    } catch {
        panicOnPmapError(error, "setUpVirtualMemory: cannot build the kernel address space")
    }
    Platform.identityMapIsLive = false
    Platform.kernelPmapDidActivate()

    Console.write("  vm: ")
    Console.writeDecimal(UInt64(frames.recordCount))
    Console.write(" page records of ")
    Console.writeDecimal(UInt64(Page.recordSize))
    Console.write(" bytes; kernel pmap ")
    Console.writeDecimal(UInt64(pmap.tablePages))
    Console.writeLine(" table pages, image W^X, stack guard unmapped")
    Console.write("  referenced/modified: ")
    Console.writeLine(Platform.referencedModifiedTracking)
}

/// Maps physical [0, directMapLimit) at the direct-map base: device memory in
/// [`directMapDeviceStart`, `directMapDeviceEnd`), read-only over the image's text and read-only data, read-write
/// elsewhere, never executable.
private func mapDirectMap(in pmap: MachinePmap) throws(PmapError) {
    let layout = kernelImageLayout
    let readOnly = layout.physicalRange(of: layout.text.lowerBound..<layout.readOnlyData.upperBound)
    let device = Platform.directMapDeviceStart..<Platform.directMapDeviceEnd
    var cuts: [UInt64] = [0, device.lowerBound, device.upperBound, readOnly.start.value, readOnly.end.value, Platform.directMapLimit]
    cuts.sort()
    for index in 0..<(cuts.count - 1) where cuts[index] < cuts[index + 1] {
        let start = cuts[index], end = cuts[index + 1]
        let isReadOnly = start >= readOnly.start.value && end <= readOnly.end.value
        try pmap.enterRange(PhysicalRange(start: PhysicalAddress(start), end: PhysicalAddress(end)),
                            at: VirtualAddress(AddressSpaceLayout.directMapBase + start),
                            protection: isReadOnly ? .readOnly : .readWrite,
                            memoryType: start >= device.lowerBound && end <= device.upperBound ? .device : .normal)
    }
}

/// Prints a pmap error's name and panics with `context`.
func panicOnPmapError(_ error: PmapError, _ context: StaticString) -> Never {
    Console.write("pmap error: ")
    Console.writeLine(pmapErrorName(error))
    panic(context)
}

/// The case name of a pmap error, for diagnostics.
func pmapErrorName(_ error: PmapError) -> StaticString {
    switch error {
    case .unalignedAddress: return "unalignedAddress"
    case .nonCanonicalAddress: return "nonCanonicalAddress"
    case .outsideAddressSpace: return "outsideAddressSpace"
    case .rangeOverflow: return "rangeOverflow"
    case .alreadyMapped: return "alreadyMapped"
    case .notMapped: return "notMapped"
    case .outOfMemory: return "outOfMemory"
    case .invalidProtection: return "invalidProtection"
    case .writableAndExecutable: return "writableAndExecutable"
    case .partialLargePage: return "partialLargePage"
    case .addressSpaceActive: return "addressSpaceActive"
    case .wrongPmapKind: return "wrongPmapKind"
    case .destroyed: return "destroyed"
    }
}
