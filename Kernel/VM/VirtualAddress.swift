// VirtualAddress, Protection, MemoryType and AddressSpaceLayout: the vocabulary of the pmap
// interface, shared by every architecture.
// Invariants: the layout is the same on x86_64 and aarch64 (4-level tables, 512 GiB per
// top-level slot). Kernel addresses stay in the LOWER half because Swift keeps discriminator
// bits in the top nibble of String and object pointers (README, "Why the kernel lives in the
// lower half"): the kernel owns top-level slots 128...255, user address spaces slots 0...127.

/// A virtual address. Kept distinct from `PhysicalAddress` so the two cannot be mixed.
public struct VirtualAddress: Hashable, Comparable {
    public var value: UInt64

    @inline(__always) public init(_ value: UInt64) { self.value = value }

    /// The address of `pointer`.
    @inline(__always) public init(_ pointer: UnsafeRawPointer) {
        value = UInt64(UInt(bitPattern: pointer))
    }

    public static func < (a: VirtualAddress, b: VirtualAddress) -> Bool { a.value < b.value }

    /// True when the address is on a page boundary.
    public var isPageAligned: Bool { value & (pageSize - 1) == 0 }

    /// The page containing this address.
    public var pageBase: VirtualAddress { VirtualAddress(value & ~(pageSize - 1)) }

    /// The address `bytes` further on (wrapping is a caller bug; callers check ranges first).
    @inline(__always) public func advanced(by bytes: UInt64) -> VirtualAddress {
        VirtualAddress(value &+ bytes)
    }

    /// A pointer the CPU can dereference through the current address space.
    public var pointer: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: UInt(value))!
    }
}

/// What a mapping permits. Hardware cannot express every combination: a valid mapping is
/// always readable on both architectures, so write and execute imply read there.
public struct Protection: OptionSet, Hashable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let read = Protection(rawValue: 1)
    public static let write = Protection(rawValue: 2)
    public static let execute = Protection(rawValue: 4)

    /// No access: `protect` to this removes the mappings.
    public static let none: Protection = []
    public static let readOnly: Protection = [.read]
    public static let readWrite: Protection = [.read, .write]
    public static let readExecute: Protection = [.read, .execute]
    public static let all: Protection = [.read, .write, .execute]

    /// The protection a page-table entry can express: any access implies read.
    public var hardwareExpressible: Protection { isEmpty ? self : union(.read) }

    /// True when a kernel mapping with this protection would break W^X.
    public var isWritableAndExecutable: Bool { contains(.write) && contains(.execute) }
}

/// How the CPU caches a mapping.
public enum MemoryType: Equatable {
    /// Normal write-back cacheable RAM.
    case normal
    /// Device (MMIO) memory: uncached, no speculation, no merging.
    case device
}

/// The virtual address-space layout shared by both architectures.
public enum AddressSpaceLayout {
    /// User address spaces: [0, userEnd), top-level slots 0...127 (64 TiB).
    public static let userEnd: UInt64 = 0x0000_4000_0000_0000
    /// Kernel space: [kernelStart, kernelEnd), top-level slots 128...255, shared by every pmap.
    public static let kernelStart: UInt64 = 0x0000_4000_0000_0000
    public static let kernelEnd: UInt64 = 0x0000_8000_0000_0000
    /// The direct map of physical memory (slot 128).
    public static let directMapBase: UInt64 = 0x0000_4000_0000_0000
    /// A 512 GiB window (slot 254) the self-tests and benchmarks use for kernel mappings of
    /// their own, so they never collide with the direct map or the image (slot 255).
    public static let scratchWindowBase: UInt64 = 0x0000_7F00_0000_0000
}
