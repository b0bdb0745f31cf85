// PhysicalArena: host memory standing in for physical RAM in unit tests.
// It reserves an anonymous mapping, picks a host address `start` for the fake physical address
// `base`, and sets `DirectMap.offset = start - base`, so kernel code reaches [base, base +
// byteCount) through the same seam it uses on hardware. Pages are only committed when touched,
// so sparse layouts (ranges with large holes) cost nothing.
// `start - base` is a multiple of `alignment` (1 GiB by default), so a block naturally aligned
// in physical space is aligned the same way in host space, as with the kernel's direct map.
// XCTest runs tests serially in one process: each test creates its own arena, which retargets
// the global DirectMap; no two arenas are used at the same time.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Kernel
import XCTest

final class PhysicalArena {
    /// First fake physical address.
    let base: PhysicalAddress
    /// Bytes of fake physical memory, [base, base + byteCount).
    let byteCount: UInt64
    /// Host address of `base`.
    let start: UnsafeMutableRawPointer

    private let mapping: UnsafeMutableRawPointer
    private let mappingLength: Int

    /// Maps `byteCount` bytes of fake physical memory at `base` and points `DirectMap` at it.
    init(base: UInt64 = 0x4000_0000, byteCount: UInt64, alignment: UInt64 = 1 << 30) {
        precondition(alignment.nonzeroBitCount == 1 && alignment >= pageSize, "PhysicalArena: alignment must be a power of two >= pageSize")
        self.base = PhysicalAddress(base)
        self.byteCount = byteCount
        mappingLength = Int(byteCount + alignment)
        #if canImport(Glibc)
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        #else
        let flags = MAP_PRIVATE | MAP_ANON
        #endif
        guard let raw = mmap(nil, mappingLength, PROT_READ | PROT_WRITE, flags, -1, 0), raw != MAP_FAILED else {
            fatalError("PhysicalArena: mmap of \(mappingLength) bytes failed")
        }
        mapping = raw
        // Choose start ≡ base (mod alignment).
        let phase = UInt(base % alignment)
        let host = UInt(bitPattern: raw)
        var candidate = (host & ~UInt(alignment - 1)) + phase
        if candidate < host { candidate += UInt(alignment) }
        start = UnsafeMutableRawPointer(bitPattern: candidate)!
        DirectMap.offset = candidate &- UInt(base)
    }

    deinit { munmap(mapping, mappingLength) }

    /// The whole arena as a physical range.
    var range: PhysicalRange { PhysicalRange(start: base, end: base.advanced(by: byteCount)) }

    /// Host pointer to physical address `address` (must be inside the arena).
    func pointer(to address: PhysicalAddress) -> UnsafeMutableRawPointer {
        precondition(address >= base && address.value < base.value + byteCount, "PhysicalArena: address outside the arena")
        return start + Int(address.value - base.value)
    }

    /// A memory map over this arena: `usable` and `reserved` as [start, end) pairs of
    /// physical addresses.
    func memoryMap(usable: [(UInt64, UInt64)], reserved: [(UInt64, UInt64)] = []) -> MemoryMap {
        var map = MemoryMap()
        for (s, e) in usable {
            precondition(s >= base.value && e <= base.value + byteCount, "PhysicalArena: usable range outside the arena")
            map.addUsable(PhysicalRange(start: PhysicalAddress(s), end: PhysicalAddress(e)))
        }
        for (s, e) in reserved { map.addReserved(PhysicalRange(start: PhysicalAddress(s), end: PhysicalAddress(e))) }
        return map
    }

    /// A memory map whose only usable range is the whole arena.
    func wholeArenaMap(reserved: [(UInt64, UInt64)] = []) -> MemoryMap {
        memoryMap(usable: [(base.value, base.value + byteCount)], reserved: reserved)
    }
}

/// The kernel's seeded generator (Kernel/Support/SeededRandom.swift), under the tests' name.
typealias SplitMix64Generator = SplitMix64

/// A test case with a 32 MiB arena behind the page allocator, fresh per test (the swap space
/// tests: header frames and swapon buffers come from the allocator).
class ArenaAllocatorTestCase: XCTestCase {
    var arena: PhysicalArena!

    override func setUpWithError() throws {
        arena = PhysicalArena(byteCount: 32 << 20)
        physicalPages = PageAllocator()
        try physicalPages.setUp(memoryMap: arena.wholeArenaMap())
    }

    override func tearDown() {
        physicalPages = PageAllocator()
        arena = nil
    }
}

/// A test case with a 64 MiB arena behind the page allocator and a fresh `PageFrames` per test,
/// the set-up the swap pager tests share.
class ArenaPageFramesTestCase: XCTestCase {
    var arena: PhysicalArena!
    var frames: PageFrames!

    override func setUpWithError() throws {
        arena = PhysicalArena(byteCount: 64 << 20)
        physicalPages = PageAllocator()
        try physicalPages.setUp(memoryMap: arena.wholeArenaMap())
        frames = try PageFrames()
    }

    override func tearDown() {
        frames = nil
        physicalPages = PageAllocator()
        arena = nil
    }
}

/// Device-tree tests pin the direct map to the identity: a blob reserves its own direct-map
/// address, which then is the host pointer, far from the RAM the test machines describe.
class IdentityDirectMapTestCase: XCTestCase {
    private var savedDirectMapOffset: UInt = 0

    override func setUp() {
        super.setUp()
        savedDirectMapOffset = DirectMap.offset
        DirectMap.offset = 0
    }

    override func tearDown() {
        DirectMap.offset = savedDirectMapOffset
        super.tearDown()
    }
}
