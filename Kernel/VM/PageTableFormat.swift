// PageTableFormat: what an architecture's page tables look like, as a value type.
// `PageTable<Format>` (the one walker/mapper) and `Pmap<Format, Hardware>` are written once
// against this protocol; Arch/x86_64/X86PageTableFormat.swift and
// Arch/aarch64/ARM64PageTableFormat.swift supply the bits. Formats are pure: they encode and
// decode 64-bit entries and never touch memory or the MMU, so host tests run them unchanged.
// `MMUOperations` is the other half: TLB invalidation, barriers and activation.
// Invariants every format guarantees (the host tests check them for every combination):
//  - level 0 is the root; `levelCount - 1` holds 4 KiB leaves; each table has 512 entries;
//  - the all-zero entry is invalid at every level;
//  - attributes(of: leafEntry(frame, level, a)) == a for every a with a.protection containing
//    .read and (a.isModified implies .write), and leafAddress returns `frame`;
//  - kind(of: tableEntry(t, ...)) == .table and tableAddress returns t.

/// What a page-table entry is.
public enum PageTableEntryKind: Equatable {
    case invalid
    /// Points to the next-level table.
    case table
    /// Maps a page (or a large page / block above the last level).
    case leaf
}

/// Everything a leaf entry says about its mapping, decoded.
public struct LeafAttributes: Equatable {
    /// What the mapping permits (always contains .read for a valid mapping).
    public var protection: Protection
    /// Accessible from user mode (user address spaces).
    public var isUser: Bool
    /// Shared by every address space (kernel mappings): survives address-space switches in the TLB.
    public var isGlobal: Bool
    public var memoryType: MemoryType
    /// Software bit: the mapping is wired (counted in `Pmap.wiredCount`).
    public var isWired: Bool
    /// Software bit: the mapping has a reverse-map entry (its page is managed).
    public var isManaged: Bool
    /// The page was accessed through this mapping since the bit was last cleared.
    public var isReferenced: Bool
    /// The page was written through this mapping since the bit was last cleared.
    public var isModified: Bool

    public init(protection: Protection, isUser: Bool = false, isGlobal: Bool = false, memoryType: MemoryType = .normal,
                isWired: Bool = false, isManaged: Bool = false, isReferenced: Bool = false, isModified: Bool = false) {
        self.protection = protection
        self.isUser = isUser
        self.isGlobal = isGlobal
        self.memoryType = memoryType
        self.isWired = isWired
        self.isManaged = isManaged
        self.isReferenced = isReferenced
        self.isModified = isModified
    }
}

/// An architecture's page-table format.
public protocol PageTableFormat {
    /// Number of translation levels (4 on both architectures: 48-bit virtual addresses).
    var levelCount: Int { get }
    /// log2 of the bytes one entry at `level` maps (39, 30, 21, 12).
    func entryShift(level: Int) -> UInt64
    /// Index of `address`'s entry in its table at `level` (0..<512).
    func index(of address: UInt64, level: Int) -> Int
    /// Whether a leaf (large page / block) may sit at `level`; always true for the last level.
    func allowsLeaf(level: Int) -> Bool
    /// True for addresses the MMU can translate at all (x86 canonical form; aarch64 TTBR0 or
    /// TTBR1 range). The pmap further restricts itself to the lower half.
    func isCanonical(_ address: UInt64) -> Bool

    func kind(of entry: UInt64, level: Int) -> PageTableEntryKind
    /// A table entry at `level` pointing to `table`; `isUser` tables may lead to user mappings.
    func tableEntry(_ table: PhysicalAddress, level: Int, isUser: Bool) -> UInt64
    func tableAddress(of entry: UInt64) -> PhysicalAddress
    /// A leaf entry at `level` mapping `frame` (aligned to the level's size).
    func leafEntry(_ frame: PhysicalAddress, level: Int, attributes: LeafAttributes) -> UInt64
    func leafAddress(of entry: UInt64, level: Int) -> PhysicalAddress
    func attributes(of entry: UInt64, level: Int) -> LeafAttributes

    /// The leaf with its referenced bit cleared (the next access sets it again: by hardware,
    /// or through an access-flag fault the pmap resolves).
    func clearingReferenced(_ entry: UInt64) -> UInt64
    /// The leaf with its modified bit cleared, still logically writable (the next write sets
    /// it again: by hardware, or through a permission fault the pmap resolves).
    func clearingModified(_ entry: UInt64) -> UInt64
    /// When a fault on this valid leaf is the pmap's own referenced/modified emulation, the
    /// entry that records the access (the access is then retried: if the mapping forbids it,
    /// it faults again for the real reason); nil for a fault that is the handler's.
    func resolvingEmulationFault(_ entry: UInt64, access: FaultAccess) -> UInt64?
    /// True when a change from `old` to `new` (same frame) can leave a stale TLB entry that
    /// matters: anything but setting the referenced bit, which hardware never caches unset.
    func changeNeedsInvalidation(from old: UInt64, to new: UInt64) -> Bool

    /// Above this many pages, a range operation flushes the whole TLB instead of page by page.
    var rangeInvalidationLimit: Int { get }
}

extension PageTableFormat {
    /// Bytes one entry at `level` maps.
    @inline(__always) public func entrySize(level: Int) -> UInt64 { 1 << entryShift(level: level) }
    /// The last level (4 KiB pages).
    @inline(__always) public var leafLevel: Int { levelCount - 1 }
}

/// The MMU operations a pmap needs besides the format: barriers, TLB invalidation and
/// address-space switches. The kernel binds the architecture's (Arch/*/MMU.swift); host tests
/// bind a recorder that counts calls.
public protocol MMUOperations {
    /// Makes page-table stores visible to the table walker before the next access
    /// (aarch64: dsb ishst; isb. x86: nothing, the walker snoops stores).
    func publishTableStores()
    /// Invalidates cached translations of the page at `address` in the current address space,
    /// including global (kernel) ones. `includingTableCaches`: also the cached upper-level
    /// entries used to reach it (a table on its path was freed).
    func invalidate(_ address: VirtualAddress, includingTableCaches: Bool)
    /// Invalidates every cached translation; `includingGlobal` also the kernel's.
    func invalidateAll(includingGlobal: Bool)
    /// Waits for the invalidations issued since the last call to take effect (aarch64:
    /// dsb ish; isb. x86: nothing, invlpg is synchronous).
    func completeInvalidation()
    /// Loads `root` as the current translation table base (CR3 / TTBR0) and drops the
    /// previous address space's non-global translations.
    func activate(root: PhysicalAddress)
}
