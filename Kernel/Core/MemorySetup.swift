// MemorySetup: brings up the physical page allocator and, through it, the kernel heap.
// Invariants: runs once, before anything allocates; after it, `memoryIsSetUp` is true and
// the Swift runtime's allocations are served by `kernelHeap`.

/// False until the page allocator owns physical memory; the runtime shims check it.
nonisolated(unsafe) var memoryIsSetUp = false

func setUpMemory(_ map: MemoryMap) {
    do {
        try physicalPages.setUp(memoryMap: map)
    } catch {
        panic("setUpMemory: the page allocator rejected the boot memory map")
    }
    memoryIsSetUp = true
    Console.write("  pages: ")
    Console.writeDecimal(UInt64(physicalPages.totalPages))
    Console.write(" managed, ")
    Console.writeDecimal(UInt64(physicalPages.freePages))
    Console.writeLine(" free")
}
