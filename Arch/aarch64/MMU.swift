// MMU (aarch64): binds the machine-independent pmap to this CPU: the page-table format, TLB
// maintenance (tlbi + dsb + isb), TTBR0 switches, FEAT_HAFDBS detection, and the Platform
// hooks the kernel's VM set-up and self-tests use. Same names on every architecture.
// Why TTBR0 holds the kernel too: Swift keeps discriminator bits in the top nibble of String
// and object pointers, so no pointer Swift holds may live in the TTBR1 (0xFFFF...) half, and
// TBI cannot help because a branch to a tagged address sign-extends bit 55 into the PC
// (README, "Why the kernel lives in the lower half"). So a user pmap is a TTBR0 table whose
// L0 entries 128...255 are the kernel pmap's, exactly like x86's shared PML4 half, and
// TTBR1 walks stay disabled (TCR.EPD1).
// Invariants: one ASID (0) for everything: kernel leaves are global, user leaves not; a TTBR0
// switch flushes the whole TLB. Referenced/modified: with ID_AA64MMFR1_EL1.HAFDBS >= 1 the CPU
// sets AF (TCR.HA), with >= 2 it also manages dirty state through DBM (TCR.HD); otherwise the
// pmap emulates both with faults it resolves in `resolvePmapEmulationFault` before any handler.

typealias MachinePageTableFormat = ARM64PageTableFormat
typealias MachineMMU = ARM64MMU
typealias MachinePmap = Pmap<ARM64PageTableFormat, ARM64MMU>
typealias MachineReverseMap = ReverseMap<ARM64PageTableFormat, ARM64MMU>

@_extern(c, "aarch64_publish_tables") func publishPageTableStores()
@_extern(c, "aarch64_tlbi_page_last_level") func invalidateTLBLastLevel(_ operand: UInt64)
@_extern(c, "aarch64_tlbi_page") func invalidateTLBAllLevels(_ operand: UInt64)
@_extern(c, "aarch64_tlbi_all") func invalidateTLBAll()
@_extern(c, "aarch64_tlbi_user") func invalidateTLBUser()
@_extern(c, "aarch64_complete_tlbi") func completeTLBInvalidation()
@_extern(c, "aarch64_switch_ttbr0") func switchTTBR0(_ root: UInt64)
@_extern(c, "aarch64_read_id_aa64mmfr1") func readIDAA64MMFR1() -> UInt64
@_extern(c, "aarch64_write_tcr") func writeTCR(_ value: UInt64)
@_extern(c, "aarch64_sync_icache") func synchronizeICache(_ start: UInt, _ length: Int)

/// TLB and address-space operations of an AArch64 CPU at EL1 (one CPU, ASID 0).
struct ARM64MMU: MMUOperations {
    @inline(__always) func publishTableStores() { publishPageTableStores() }

    /// TLBI operand: VA[55:12] in bits [43:0], ASID 0 in [63:48].
    @inline(__always) func invalidate(_ address: VirtualAddress, includingTableCaches: Bool) {
        let operand = (address.value >> 12) & 0x0000_0FFF_FFFF_FFFF
        if includingTableCaches {
            invalidateTLBAllLevels(operand)
        } else {
            invalidateTLBLastLevel(operand)
        }
    }

    func invalidateAll(includingGlobal: Bool) {
        if includingGlobal {
            invalidateTLBAll()
        } else {
            invalidateTLBUser()
        }
    }

    @inline(__always) func completeInvalidation() { completeTLBInvalidation() }

    func activate(root: PhysicalAddress) { switchTTBR0(root.value) }
}

/// Resolves the pmap's own referenced/modified emulation faults; called by the abort path
/// before the installed fault handler. False for every other fault (and before the kernel
/// pmap exists).
func resolvePmapEmulationFault(_ fault: PageFault) -> Bool {
    kernelPmap?.resolveEmulationFault(fault) ?? false
}

extension Platform {
    /// False once the kernel pmap replaced the boot tables, whose identity map is gone.
    nonisolated(unsafe) static var identityMapIsLive = true

    /// [directMapDeviceStart, directMapDeviceEnd) of the direct map is device memory: virt's
    /// first GiB of MMIO, the Pi's peripherals from 0x3F00_0000 (Board.swift).
    static let directMapDeviceStart: UInt64 = Board.deviceStart
    static let directMapDeviceEnd: UInt64 = Board.deviceEnd

    /// ID_AA64MMFR1_EL1.HAFDBS: 0 none, 1 access flag, 2 access flag and dirty state.
    nonisolated(unsafe) static var hardwareAccessDirtySupport: UInt64 = 0

    /// How referenced/modified bits are kept, for the boot banner.
    static var referencedModifiedTracking: StaticString {
        switch hardwareAccessDirtySupport {
        case 0: return "software emulation (access-flag and permission faults)"
        case 1: return "hardware access flag, software dirty emulation"
        default: return "hardware access flag and dirty state (FEAT_HAFDBS)"
        }
    }

    /// Detects FEAT_HAFDBS, turns on what the CPU has (TCR.HA bit 39, TCR.HD bit 40) and
    /// returns the matching format. Runs before the kernel pmap builds any table.
    static func makePageTableFormat() -> ARM64PageTableFormat {
        let support = readIDAA64MMFR1() & 0xF
        hardwareAccessDirtySupport = support
        var tcr = readTCR()
        if support >= 1 { tcr |= 1 << 39 }
        if support >= 2 { tcr |= 1 << 40 }
        writeTCR(tcr)
        return ARM64PageTableFormat(hardwareDirtyBit: support >= 2)
    }

    /// Called once the kernel pmap's root is loaded. Nothing more to switch on here.
    static func kernelPmapDidActivate() {}

    /// The encoding of a return instruction (`ret`), written by the NX self-test.
    static let returnInstruction: UInt32 = 0xD65F_03C0

    /// Makes code written through the data side visible to instruction fetch.
    static func synchronizeInstructionCache(_ address: UInt, byteCount: Int) {
        synchronizeICache(address, byteCount)
    }
}
