// ARM64PageTableFormat: AArch64 stage-1 VMSAv8-64 descriptors, 4 KiB granule, 48-bit VAs,
// 4 levels (Arm ARM D8.3): 4 KiB pages, 2 MiB and 1 GiB blocks, MAIR attribute indices,
// AP[2:1], UXN/PXN, access flag, nG, and dirty state per FEAT_HAFDBS.
// Also compiled on the host (SwiftPM target PageTableFormats, HOST_FORMATS): only Kernel's
// public API here.
// Invariants:
//  - MAIR (Boot/aarch64/start.S): index 0 device-nGnRE, index 1 normal write-back.
//  - "Logically writable" is the software bit 55, never the AP bits: a writable mapping whose
//    page is clean is entered read-only in hardware (AP[2] = 1); it becomes hardware-writable
//    (AP[2] = 0) on its first write, either by the CPU itself (FEAT_HAFDBS with TCR.HD and
//    the DBM bit 51, `hardwareDirtyBit`) or by the pmap resolving the permission fault
//    (software emulation, e.g. Cortex-A72). So modified == bit 55 && !AP[2] in both modes.
//  - Referenced is the access flag (AF, bit 10): set by hardware with TCR.HA, otherwise an
//    access-flag fault the pmap resolves. Entries with AF clear are never cached in the TLB.
//  - User mappings are PXN (the kernel never runs user code) and non-global; kernel mappings
//    are UXN and global. User tables carry PXNTable, kernel tables UXNTable and APTable[0]
//    (no EL0 access below them), so a wrong leaf bit cannot open kernel memory to EL0.
//  - Software bits 56 (wired) and 57 (managed) are ignored by the MMU.
#if HOST_FORMATS
import Kernel
#endif

public struct ARM64PageTableFormat: PageTableFormat {
    static let valid: UInt64 = 1 << 0
    /// Bit 1: table (levels 0-2) or page (level 3); clear above level 3 means block.
    static let tableOrPage: UInt64 = 1 << 1
    static let attributeIndexShift: UInt64 = 2
    static let attributeIndexMask: UInt64 = 7 << 2
    static let deviceAttributeIndex: UInt64 = 0
    static let normalAttributeIndex: UInt64 = 1
    /// AP[1]: accessible from EL0.
    static let userAccessible: UInt64 = 1 << 6
    /// AP[2]: read-only.
    static let readOnly: UInt64 = 1 << 7
    static let innerShareable: UInt64 = 3 << 8
    static let accessFlag: UInt64 = 1 << 10
    static let notGlobal: UInt64 = 1 << 11
    static let dirtyBitModifier: UInt64 = 1 << 51
    static let privilegedExecuteNever: UInt64 = 1 << 53
    static let userExecuteNever: UInt64 = 1 << 54
    static let softwareWrite: UInt64 = 1 << 55
    static let softwareWired: UInt64 = 1 << 56
    static let softwareManaged: UInt64 = 1 << 57
    static let privilegedExecuteNeverTable: UInt64 = 1 << 59
    static let userExecuteNeverTable: UInt64 = 1 << 60
    static let noUserAccessTable: UInt64 = 1 << 61
    /// Output address bits 12...47.
    static let addressMask: UInt64 = 0x0000_FFFF_FFFF_F000

    /// True when the CPU manages the dirty state itself (ID_AA64MMFR1_EL1.HAFDBS >= 2 and
    /// TCR_EL1.HD set): writable clean entries carry DBM and never fault on their first write.
    public var hardwareDirtyBit: Bool

    public init(hardwareDirtyBit: Bool = false) { self.hardwareDirtyBit = hardwareDirtyBit }

    public var levelCount: Int { 4 }
    public var rangeInvalidationLimit: Int { 32 }

    @inline(__always) public func entryShift(level: Int) -> UInt64 { 39 - 9 * UInt64(level) }

    @inline(__always) public func index(of address: UInt64, level: Int) -> Int {
        Int(truncatingIfNeeded: (address >> entryShift(level: level)) & 511)
    }

    /// 4 KiB granule: blocks at levels 1 and 2, pages at level 3, never a block at level 0.
    public func allowsLeaf(level: Int) -> Bool { level >= 1 && level <= 3 }

    /// TTBR0 (T0SZ = 16: below 2^48) or TTBR1 (T1SZ = 16: the top 2^48) ranges.
    public func isCanonical(_ address: UInt64) -> Bool {
        address < 0x0001_0000_0000_0000 || address >= 0xFFFF_0000_0000_0000
    }

    @inline(__always) public func kind(of entry: UInt64, level: Int) -> PageTableEntryKind {
        if entry & Self.valid == 0 { return .invalid }
        let bit1 = entry & Self.tableOrPage != 0
        if level == 3 { return bit1 ? .leaf : .invalid }   // 0b01 at level 3 is reserved
        if bit1 { return .table }
        return level == 0 ? .invalid : .leaf
    }

    public func tableEntry(_ table: PhysicalAddress, level: Int, isUser: Bool) -> UInt64 {
        let restrictions = isUser ? Self.privilegedExecuteNeverTable : (Self.userExecuteNeverTable | Self.noUserAccessTable)
        return (table.value & Self.addressMask) | Self.valid | Self.tableOrPage | restrictions
    }

    @inline(__always) public func tableAddress(of entry: UInt64) -> PhysicalAddress {
        PhysicalAddress(entry & Self.addressMask)
    }

    public func leafEntry(_ frame: PhysicalAddress, level: Int, attributes a: LeafAttributes) -> UInt64 {
        var entry = (frame.value & Self.addressMask) | Self.valid
        if level == 3 { entry |= Self.tableOrPage }
        if a.memoryType == .device {
            entry |= Self.deviceAttributeIndex << Self.attributeIndexShift
        } else {
            entry |= (Self.normalAttributeIndex << Self.attributeIndexShift) | Self.innerShareable
        }
        let executable = a.protection.contains(.execute)
        if a.isUser {
            entry |= Self.userAccessible | Self.privilegedExecuteNever
            if !executable { entry |= Self.userExecuteNever }
        } else {
            entry |= Self.userExecuteNever
            if !executable { entry |= Self.privilegedExecuteNever }
        }
        if !a.isGlobal { entry |= Self.notGlobal }
        if a.isReferenced { entry |= Self.accessFlag }
        if a.protection.contains(.write) {
            entry |= Self.softwareWrite
            if hardwareDirtyBit { entry |= Self.dirtyBitModifier }
            if !a.isModified { entry |= Self.readOnly }
        } else {
            entry |= Self.readOnly
        }
        if a.isWired { entry |= Self.softwareWired }
        if a.isManaged { entry |= Self.softwareManaged }
        return entry
    }

    @inline(__always) public func leafAddress(of entry: UInt64, level: Int) -> PhysicalAddress {
        PhysicalAddress(entry & Self.addressMask & ~(entrySize(level: level) - 1))
    }

    public func attributes(of entry: UInt64, level: Int) -> LeafAttributes {
        let isUser = entry & Self.userAccessible != 0
        let writable = entry & Self.softwareWrite != 0
        var protection: Protection = .read
        if writable { protection.insert(.write) }
        if entry & (isUser ? Self.userExecuteNever : Self.privilegedExecuteNever) == 0 { protection.insert(.execute) }
        let index = (entry & Self.attributeIndexMask) >> Self.attributeIndexShift
        return LeafAttributes(protection: protection,
                              isUser: isUser,
                              isGlobal: entry & Self.notGlobal == 0,
                              memoryType: index == Self.deviceAttributeIndex ? .device : .normal,
                              isWired: entry & Self.softwareWired != 0,
                              isManaged: entry & Self.softwareManaged != 0,
                              isReferenced: entry & Self.accessFlag != 0,
                              isModified: writable && entry & Self.readOnly == 0)
    }

    @inline(__always) public func clearingReferenced(_ entry: UInt64) -> UInt64 { entry & ~Self.accessFlag }

    /// Back to hardware read-only; bit 55 (and DBM) keep it logically writable.
    @inline(__always) public func clearingModified(_ entry: UInt64) -> UInt64 {
        entry & Self.softwareWrite != 0 ? entry | Self.readOnly : entry
    }

    /// An access-flag fault is always the pmap's: AF is set (any access references the page)
    /// and, for a write the mapping permits, the page is made hardware-writable at once. An
    /// access the mapping forbids then faults again as a permission fault, so the handler sees
    /// the true reason. A permission fault is the pmap's only for the first write to a clean
    /// writable page; any other is a real fault and stays the handler's.
    public func resolvingEmulationFault(_ entry: UInt64, access: FaultAccess) -> UInt64? {
        let writable = entry & Self.softwareWrite != 0
        var resolved = entry | Self.accessFlag
        if access == .write && writable { resolved &= ~Self.readOnly }
        return resolved == entry ? nil : resolved
    }

    /// Only setting AF is free: entries that fault on AF are never cached (Arm ARM D8.4.2),
    /// while permission faults may be, so every other change needs a TLBI.
    public func changeNeedsInvalidation(from old: UInt64, to new: UInt64) -> Bool {
        (old ^ new) & ~Self.accessFlag != 0 || old & Self.accessFlag & ~new != 0
    }
}
