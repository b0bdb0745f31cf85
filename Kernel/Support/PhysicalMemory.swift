// PhysicalMemory: the one seam through which machine-independent code reaches page frames.
// Invariants: every physical address the kernel touches is translated by `DirectMap`; in the
// kernel the offset is the architecture's direct-map base, in host tests it points into an
// arena, so allocator, page-table and pager code runs unchanged in `swift test`.
// Locks: (c) `DirectMap.offset` is set once at boot (or per host test) before any use.

/// Size of the base page on every supported architecture (4 KiB granule).
public let pageSize: UInt64 = 4096
/// log2(pageSize).
public let pageShift: UInt64 = 12

/// A physical address. Kept distinct from virtual addresses so the two cannot be mixed.
public struct PhysicalAddress: Hashable, Comparable {
    public var value: UInt64

    @inline(__always) public init(_ value: UInt64) { self.value = value }

    public static func < (a: PhysicalAddress, b: PhysicalAddress) -> Bool { a.value < b.value }

    /// True when the address is on a page boundary.
    public var isPageAligned: Bool { value & (pageSize - 1) == 0 }
    /// The page frame number.
    public var frameNumber: UInt64 { value >> pageShift }

    /// The address `bytes` further on (wrapping is a caller bug; callers check ranges first).
    @inline(__always) public func advanced(by bytes: UInt64) -> PhysicalAddress {
        PhysicalAddress(value &+ bytes)
    }
}

/// Translation from physical addresses to pointers the CPU can dereference.
public enum DirectMap {
    /// Added to a physical address to obtain its virtual address.
    /// Kernel: the direct-map base. Host tests: arena base minus the arena's fake physical base.
    public nonisolated(unsafe) static var offset: UInt = 0

    /// Pointer to the byte at physical address `address`.
    @inline(__always) public static func pointer(to address: PhysicalAddress) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: offset &+ UInt(address.value))!
    }

    /// Physical address of a pointer that lies inside the direct map.
    @inline(__always) public static func physicalAddress(of pointer: UnsafeRawPointer) -> PhysicalAddress {
        PhysicalAddress(UInt64(UInt(bitPattern: pointer) &- offset))
    }

    /// Fills `count` whole pages from the page-aligned `pointer` with zeros.
    /// Why not `initializeMemory(repeating:)`: at -Osize LLVM expands a constant 4 KiB fill
    /// inline as `rep stosl` on x86_64, which QEMU's TCG runs one helper call per iteration
    /// (the zeroing of a zero-fill fault cost about twice a 4 KiB store loop). The kernel's
    /// `zero_pages` (Boot/<arch>/string.S) is an out-of-line 64-byte store loop; host tests
    /// have no such routine and keep the library fill.
    @inline(__always) public static func zeroPages(_ pointer: UnsafeMutableRawPointer, count: Int) {
        precondition(UInt(bitPattern: pointer) & UInt(pageSize - 1) == 0, "DirectMap.zeroPages: unaligned page")
        #if hasFeature(Extern)
        kernelZeroPages(pointer, count)
        #else
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: count << Int(pageShift))
        #endif
    }
}

#if hasFeature(Extern)
@_extern(c, "zero_pages") private func kernelZeroPages(_ pointer: UnsafeMutableRawPointer, _ count: Int)
#endif

/// A range of physical memory, [start, end).
public struct PhysicalRange: Equatable {
    public var start: PhysicalAddress
    public var end: PhysicalAddress

    public init(start: PhysicalAddress, end: PhysicalAddress) {
        self.start = start
        self.end = end
    }

    public var byteCount: UInt64 { end.value > start.value ? end.value - start.value : 0 }
    public var isEmpty: Bool { end.value <= start.value }

    /// The largest page-aligned range inside this one (may be empty).
    public var pageAlignedInterior: PhysicalRange {
        let alignedStart = (start.value &+ pageSize &- 1) & ~(pageSize - 1)
        let alignedEnd = end.value & ~(pageSize - 1)
        if alignedStart < start.value || alignedEnd <= alignedStart {
            return PhysicalRange(start: start, end: start)
        }
        return PhysicalRange(start: PhysicalAddress(alignedStart), end: PhysicalAddress(alignedEnd))
    }
}
