// Platform (aarch64): the handful of machine services machine-independent kernel code uses.
// Every architecture provides an `enum Platform` with the same static members; the build
// compiles exactly one, so the binding is static (no protocol witness, no existential).
// Invariants: `directMapBase` and `kernelVirtualBase` match Boot/aarch64/start.S;
// `kernelWindowPhysicalBase` is set once by the entry code before anything translates.

enum Platform {
    static let name: StaticString = Board.platformName
    /// Virtual address of physical address 0 in the direct map (L0 slot 128). Kernel
    /// addresses stay in the lower half: Swift uses the top pointer bits (Boot/aarch64/start.S).
    static let directMapBase: UInt = 0x0000_4000_0000_0000
    /// The boot page tables map this much physical memory in the direct map.
    static let directMapLimit: UInt64 = Board.directMapLimit
    /// Virtual base of the kernel image window; the image itself starts 0x80000 above it.
    static let kernelVirtualBase: UInt = 0x0000_7FFF_8000_0000
    /// Physical address the kernel window maps (the image's load address minus 0x80000).
    nonisolated(unsafe) static var kernelWindowPhysicalBase: UInt = 0

    static func consoleWrite(_ byte: UInt8) { PL011.write(byte) }

    /// PMCCNTR_EL0: the CPU cycle counter (QEMU's TCG derives it from virtual time).
    static func cycles() -> UInt64 { readCycleCounter() }

    static func currentFramePointer() -> UInt { readFramePointer() }

    /// Ends the run through semihosting SYS_EXIT (extended form: the status reaches QEMU's
    /// exit code): 0 on success, 1 on failure.
    static func exit(success: Bool) -> Never {
        let applicationExit: UInt64 = 0x20026   // ADP_Stopped_ApplicationExit
        var block: (UInt64, UInt64) = (applicationExit, success ? 0 : 1)
        // On hardware without a debugger `hlt` is undefined: the trap handler halts then.
        exitRequested = true
        _ = withUnsafePointer(to: &block) { semihostingCall(0x18, UnsafeRawPointer($0)) }
        haltForever()   // not under QEMU with -semihosting: just stop
    }

    /// Set by `exit(success:)`: an undefined-instruction trap from then on is the semihosting
    /// call on a machine that has none (a real board), and halts the CPU.
    nonisolated(unsafe) static var exitRequested = false

    /// Raises a breakpoint trap that the trap handler counts and returns from.
    static func breakpoint() { executeBreakpoint() }

    /// Physical address of a kernel-image virtual address (text, data, bss, stack).
    static func kernelImagePhysicalAddress(of virtualAddress: UInt) -> PhysicalAddress {
        PhysicalAddress(UInt64(virtualAddress &- kernelVirtualBase &+ kernelWindowPhysicalBase))
    }

    /// A second virtual alias of physical memory (the boot identity map, L0 slot 0), used by the
    /// boot self-test to prove two mappings reach the same frame. Nil where there is none.
    static func identityAlias(of address: PhysicalAddress) -> UnsafeMutableRawPointer? {
        // The kernel pmap drops the identity map (user space owns the low slots): then none.
        identityMapIsLive && address.value < directMapLimit ? UnsafeMutableRawPointer(bitPattern: UInt(address.value)) : nil
    }
}
