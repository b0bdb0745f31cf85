// X86PageTableFormat: x86_64 4-level paging (Intel SDM vol. 3A, 4.5), 4 KiB pages, 2 MiB
// large pages (1 GiB when `supportsGiantPages`), NX, global, accessed/dirty set by hardware.
// Also compiled on the host (SwiftPM target PageTableFormats, HOST_FORMATS) so tests build and
// walk real x86 tables: use only Kernel's public API here.
// Invariants: software bits 9 (wired) and 10 (managed) are ignored by the MMU; table entries
// are always writable and user-accessible only under the user half, so a leaf alone decides
// its permissions; memory type device = PCD|PWT (uncached with the power-on PAT).
#if HOST_FORMATS
import Kernel
#endif

public struct X86PageTableFormat: PageTableFormat {
    static let present: UInt64 = 1 << 0
    static let writable: UInt64 = 1 << 1
    static let user: UInt64 = 1 << 2
    static let writeThrough: UInt64 = 1 << 3
    static let cacheDisable: UInt64 = 1 << 4
    static let accessed: UInt64 = 1 << 5
    static let dirty: UInt64 = 1 << 6
    /// PS: a leaf above the last level (bit 7; at the last level the same bit is PAT, unused).
    static let largePage: UInt64 = 1 << 7
    static let global: UInt64 = 1 << 8
    static let softwareWired: UInt64 = 1 << 9
    static let softwareManaged: UInt64 = 1 << 10
    static let noExecute: UInt64 = 1 << 63
    /// Physical address bits 12...51.
    static let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000

    /// 1 GiB pages (CPUID.80000001H:EDX.Page1GB). Off by default: QEMU TCG has them, not
    /// every CPU does, and nothing needs them yet.
    public var supportsGiantPages: Bool

    public init(supportsGiantPages: Bool = false) { self.supportsGiantPages = supportsGiantPages }

    public var levelCount: Int { 4 }
    public var rangeInvalidationLimit: Int { 32 }

    @inline(__always) public func entryShift(level: Int) -> UInt64 { 39 - 9 * UInt64(level) }

    @inline(__always) public func index(of address: UInt64, level: Int) -> Int {
        Int(truncatingIfNeeded: (address >> entryShift(level: level)) & 511)
    }

    public func allowsLeaf(level: Int) -> Bool { level == 3 || level == 2 || (level == 1 && supportsGiantPages) }

    /// Bits 63...47 all equal (48-bit linear addresses).
    public func isCanonical(_ address: UInt64) -> Bool {
        address < 0x0000_8000_0000_0000 || address >= 0xFFFF_8000_0000_0000
    }

    @inline(__always) public func kind(of entry: UInt64, level: Int) -> PageTableEntryKind {
        if entry & Self.present == 0 { return .invalid }
        if level == 3 { return .leaf }
        if level == 0 { return .table }
        return entry & Self.largePage != 0 ? .leaf : .table
    }

    public func tableEntry(_ table: PhysicalAddress, level: Int, isUser: Bool) -> UInt64 {
        (table.value & Self.addressMask) | Self.present | Self.writable | (isUser ? Self.user : 0)
    }

    @inline(__always) public func tableAddress(of entry: UInt64) -> PhysicalAddress {
        PhysicalAddress(entry & Self.addressMask)
    }

    public func leafEntry(_ frame: PhysicalAddress, level: Int, attributes a: LeafAttributes) -> UInt64 {
        var entry = (frame.value & Self.addressMask) | Self.present
        if level < 3 { entry |= Self.largePage }
        if a.protection.contains(.write) { entry |= Self.writable }
        if !a.protection.contains(.execute) { entry |= Self.noExecute }
        if a.isUser { entry |= Self.user }
        if a.isGlobal { entry |= Self.global }
        if a.memoryType == .device { entry |= Self.cacheDisable | Self.writeThrough }
        if a.isWired { entry |= Self.softwareWired }
        if a.isManaged { entry |= Self.softwareManaged }
        if a.isReferenced { entry |= Self.accessed }
        if a.isModified { entry |= Self.dirty }
        return entry
    }

    @inline(__always) public func leafAddress(of entry: UInt64, level: Int) -> PhysicalAddress {
        // Above the last level bit 12 is the PAT bit, not an address bit.
        PhysicalAddress(entry & Self.addressMask & ~(entrySize(level: level) - 1))
    }

    public func attributes(of entry: UInt64, level: Int) -> LeafAttributes {
        var protection: Protection = .read
        if entry & Self.writable != 0 { protection.insert(.write) }
        if entry & Self.noExecute == 0 { protection.insert(.execute) }
        return LeafAttributes(protection: protection,
                              isUser: entry & Self.user != 0,
                              isGlobal: entry & Self.global != 0,
                              memoryType: entry & Self.cacheDisable != 0 ? .device : .normal,
                              isWired: entry & Self.softwareWired != 0,
                              isManaged: entry & Self.softwareManaged != 0,
                              isReferenced: entry & Self.accessed != 0,
                              isModified: entry & Self.dirty != 0)
    }

    @inline(__always) public func clearingReferenced(_ entry: UInt64) -> UInt64 { entry & ~Self.accessed }
    @inline(__always) public func clearingModified(_ entry: UInt64) -> UInt64 { entry & ~Self.dirty }

    /// The MMU sets A and D itself: no fault is ever the pmap's to resolve.
    public func resolvingEmulationFault(_ entry: UInt64, access: FaultAccess) -> UInt64? { nil }

    /// Setting A or D needs no flush (the CPU sets them itself, and re-checks the entry before
    /// setting D); any other change may leave a stale translation (SDM 4.10.4.2).
    public func changeNeedsInvalidation(from old: UInt64, to new: UInt64) -> Bool {
        let setOnly = Self.accessed | Self.dirty
        return (old ^ new) & ~setOnly != 0 || old & setOnly & ~new != 0
    }
}
