// KernelMain: the machine-independent kernel after the architecture's entry code.
// Invariants: called once, on the boot stack, with the console working, traps installed,
// the direct map live and `boot.memoryMap` filled in. Order matters: page allocator, then
// heap (the Swift runtime allocates through it), then anything that uses classes or arrays.

/// What the architecture's entry hands to the machine-independent kernel.
struct BootInfo {
    var loaderName: StaticString
    var memoryMap = MemoryMap()
    var commandLine = KernelCommandLine()

    init(loaderName: StaticString) { self.loaderName = loaderName }
}

/// Counters the trap handlers bump, so self-tests can see traps arrive and return.
enum TrapStatistics {
    nonisolated(unsafe) static var breakpoints = 0
}

/// The boot as the self-tests see it.
nonisolated(unsafe) var bootInfo = BootInfo(loaderName: "none")
/// Cycle counter when Swift code started, for the boot-time figure.
nonisolated(unsafe) var bootStartCycles: UInt64 = 0

func kernelMain(_ boot: inout BootInfo) -> Never {
    bootStartCycles = Platform.cycles()
    boot.memoryMap.normalize()
    bootInfo = boot
    printBanner(boot)
    setUpMemory(boot.memoryMap)
    setUpVirtualMemory()   // vm_page array, kernel pmap (W^X image, direct map), MMU switch
#if BENCH
    runBenchmarks()
    Platform.exit(success: true)
#else
    let totals = runSelfTests()
    Platform.exit(success: totals.allPassed && totals.total > 0)
#endif
}

private func printBanner(_ boot: BootInfo) {
    Console.write("swift-vm-kernel on ")
    Console.write(Platform.name)
    Console.write(", booted by ")
    Console.writeLine(boot.loaderName)
    if boot.commandLine.count > 0 {
        Console.write("  command line: ")
        boot.commandLine.write()
        Console.put(UInt8(ascii: "\n"))
    }
    let map = boot.memoryMap
    for index in 0..<map.usable.count {
        Console.write("  ram ")
        Console.writeHex(map.usable[index].start.value, digits: 12)
        Console.write("-")
        Console.writeHex(map.usable[index].end.value, digits: 12)
        Console.put(UInt8(ascii: "\n"))
    }
    if map.overflowed { Console.writeLine("  (memory map truncated: too many ranges)") }
}

/// Emits one line of self-test or benchmark output on the console.
func emitLine(_ line: String) {
    Console.writeString(line)
    Console.put(UInt8(ascii: "\n"))
}
