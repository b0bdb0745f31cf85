// Platform (x86_64): the handful of machine services machine-independent kernel code uses.
// Every architecture provides an `enum Platform` with the same static members; the build
// compiles exactly one, so the binding is static (no protocol witness, no existential).
// Invariants: `directMapBase` matches the boot page tables in Boot/x86_64/start.S.

enum Platform {
    static let name: StaticString = "x86_64"
    /// Virtual address of physical address 0 in the direct map (PML4 slot 128). Kernel
    /// addresses stay in the lower half: Swift uses the top pointer bits (Boot/x86_64/start.S).
    static let directMapBase: UInt = 0x0000_4000_0000_0000
    /// The boot page tables map this much physical memory in the direct map.
    static let directMapLimit: UInt64 = 4 << 30
    /// Virtual base of the kernel image window (the last 2 GiB of the lower half).
    static let kernelVirtualBase: UInt = 0x0000_7FFF_8000_0000

    /// isa-debug-exit at port 0xF4: QEMU exits with status (value << 1) | 1.
    private static let debugExitPort: UInt16 = 0xF4
    static let successExitValue: UInt8 = 0x10   // QEMU status 33
    static let failureExitValue: UInt8 = 0x11   // QEMU status 35

    static func consoleWrite(_ byte: UInt8) { Serial16550.write(byte) }

    static func cycles() -> UInt64 { readTimeStampCounter() }

    static func currentFramePointer() -> UInt { readFramePointer() }

    /// Ends the run: QEMU exits with 33 on success, 35 on failure.
    static func exit(success: Bool) -> Never {
        portWrite8(debugExitPort, success ? successExitValue : failureExitValue)
        haltForever()   // not under QEMU with isa-debug-exit: just stop
    }

    /// Raises a breakpoint trap that the trap handler counts and returns from.
    static func breakpoint() { executeBreakpoint() }

    /// Physical address of a kernel-image virtual address (text, data, bss, stack).
    static func kernelImagePhysicalAddress(of virtualAddress: UInt) -> PhysicalAddress {
        PhysicalAddress(UInt64(virtualAddress &- kernelVirtualBase))
    }

    /// A second virtual alias of low physical memory (the boot identity map), used by the boot
    /// self-test to prove two mappings reach the same frame. Nil where there is none.
    static func identityAlias(of address: PhysicalAddress) -> UnsafeMutableRawPointer? {
        // The kernel pmap drops the identity map (user space owns the low slots): then none.
        identityMapIsLive && address.value < directMapLimit ? UnsafeMutableRawPointer(bitPattern: UInt(address.value)) : nil
    }
}

extension Platform {
    /// Suites for devices only some boards have: none on the PC.
    static var boardSelfTestSuites: [SelfTestSuite] { [] }
}
