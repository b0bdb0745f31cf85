// MMU (x86_64): binds the machine-independent pmap to this CPU: the page-table format, the
// TLB operations (invlpg, CR3 reload, CR4.PGE toggle) and the Platform hooks the kernel's
// VM set-up and self-tests use. Same names on every architecture.
// Invariants: kernel mappings are global once `kernelPmapDidActivate` turned CR4.PGE on, so
// a CR3 write drops only user translations; invlpg also flushes every paging-structure cache
// (SDM 4.10.4.1), so freed tables need nothing more. Accessed/dirty bits are set by the CPU:
// no fault here is ever the pmap's own.

typealias MachinePageTableFormat = X86PageTableFormat
typealias MachineMMU = X86MMU
typealias MachinePmap = Pmap<X86PageTableFormat, X86MMU>
typealias MachineReverseMap = ReverseMap<X86PageTableFormat, X86MMU>

@_extern(c, "x86_write_cr4") func writeCR4(_ value: UInt64)
@_extern(c, "x86_flush_tlb_global") func flushTLBIncludingGlobal()

/// TLB and address-space operations of an x86_64 CPU (one CPU; no PCIDs).
struct X86MMU: MMUOperations {
    /// The walker snoops stores: nothing to publish.
    @inline(__always) func publishTableStores() {}

    @inline(__always) func invalidate(_ address: VirtualAddress, includingTableCaches: Bool) {
        invalidatePage(UInt(address.value))
    }

    func invalidateAll(includingGlobal: Bool) {
        if includingGlobal {
            flushTLBIncludingGlobal()
        } else {
            writeCR3(readCR3())
        }
    }

    /// invlpg and CR writes are serializing: nothing to wait for.
    @inline(__always) func completeInvalidation() {}

    func activate(root: PhysicalAddress) { writeCR3(root.value) }
}

extension Platform {
    /// False once the kernel pmap replaced the boot tables, whose identity map is gone.
    nonisolated(unsafe) static var identityMapIsLive = true

    /// The direct map has no device-memory part: MTRRs make the MMIO holes uncached.
    static let directMapDeviceStart: UInt64 = 0
    static let directMapDeviceEnd: UInt64 = 0

    /// How referenced/modified bits are kept, for the boot banner.
    static var referencedModifiedTracking: StaticString { "hardware A/D bits" }

    /// The page-table format this CPU uses.
    static func makePageTableFormat() -> X86PageTableFormat { X86PageTableFormat() }

    /// Called once the kernel pmap's root is loaded: global pages on (CR4.PGE), so kernel
    /// translations survive address-space switches. Setting PGE also flushes the TLB.
    static func kernelPmapDidActivate() {
        writeCR4(readCR4() | (1 << 7))
    }

    /// The encoding of a return instruction (`ret`), written by the NX self-test.
    static let returnInstruction: UInt32 = 0x0000_00C3

    /// Makes code written through the data side executable: x86 caches are coherent and the
    /// fault that precedes the fetch serializes, so nothing is needed.
    static func synchronizeInstructionCache(_ address: UInt, byteCount: Int) {}
}
