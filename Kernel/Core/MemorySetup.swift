// MemorySetup: brings up the physical page allocator and, through it, the kernel heap.
// Invariants: runs once, before anything allocates; after it, `memoryIsSetUp` is true and
// the Swift runtime's allocations and MetadataMemory's nodes are served by `kernelHeap`.

/// False until the page allocator owns physical memory; the runtime shims check it.
nonisolated(unsafe) var memoryIsSetUp = false

func setUpMemory(_ map: MemoryMap) {
    do {
        try physicalPages.setUp(memoryMap: map)
    } catch {
        panic("setUpMemory: the page allocator rejected the boot memory map")
    }
    memoryIsSetUp = true
    // VM metadata nodes come from the heap too, but their allocation may fail (typed
    // outOfMemory for the access that needed one) where the runtime's would trap.
    MetadataMemory.allocate = { bytes in try? kernelHeap.allocate(size: bytes, alignment: MetadataMemory.alignment) }
    MetadataMemory.free = { (block: UnsafeMutableRawPointer) -> Void in
        do throws(HeapError) { try kernelHeap.free(block) } catch { panic("MetadataMemory.free: block not from the kernel heap") }
    }
    Console.write("  pages: ")
    Console.writeDecimal(UInt64(physicalPages.totalPages))
    Console.write(" managed, ")
    Console.writeDecimal(UInt64(physicalPages.freePages))
    Console.writeLine(" free")
}
