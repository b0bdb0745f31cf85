// MetadataMemory: failable allocation of the VM's small fixed-size metadata nodes (radix-tree
// nodes, swap-metadata runs). Swift's own allocation entry points trap when memory runs out,
// which is right for the runtime's objects but wrong for structures that grow under memory
// pressure: a resident-page index or swap metadata that cannot grow must turn into a typed
// `outOfMemory` for the access that needed it, never into a panic.
// Invariants: `allocate` returns nil or a block of at least the requested bytes aligned to
// `alignment`, contents undefined; `free` takes back exactly such a block. The kernel installs
// the kernel heap here once the heap works (Kernel/Core/MemorySetup.swift); host tests use the
// default (the host allocator) or a double that fails on demand.
// Locks: none; (c) the two hooks are set at boot or per test before any allocation.

/// Where VM metadata nodes come from.
public enum MetadataMemory {
    /// Alignment of every block (one cache line).
    public static var alignment: Int { 64 }

    /// Returns a block of `bytes` bytes, or nil when memory is exhausted.
    public nonisolated(unsafe) static var allocate: (Int) -> UnsafeMutableRawPointer? = { bytes in
        UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: MetadataMemory.alignment)
    }

    /// Takes back a block `allocate` returned.
    public nonisolated(unsafe) static var free: (UnsafeMutableRawPointer) -> Void = { block in
        block.deallocate()
    }

    /// Blocks handed out and not yet freed (for leak checks in tests and the auditor).
    public nonisolated(unsafe) static var blocksInUse = 0

    /// `allocate`, counted.
    static func allocateBlock(bytes: Int) -> UnsafeMutableRawPointer? {
        guard let block = allocate(bytes) else { return nil }
        blocksInUse += 1
        return block
    }

    /// `free`, counted.
    static func freeBlock(_ block: UnsafeMutableRawPointer) {
        precondition(blocksInUse > 0, "MetadataMemory.freeBlock: more blocks freed than allocated")
        blocksInUse -= 1
        free(block)
    }
}
