// Panic: the one way the kernel stops on a broken invariant.
// Invariants: a panic prints the message, the running self-test (if any), the registers
// (when it comes from a trap), the program counter and a frame-pointer backtrace, then
// exits QEMU with the failure status. It never allocates, and a panic during a panic exits
// at once, so a broken heap or console cannot turn a panic into a hang.
// Lines are `KERNEL PANIC: ...`, `  pc 0x...`, `  bt #N 0x...`: the host runner symbolizes them.

/// What was running, so a panic inside a self-test names it.
enum PanicContext {
    nonisolated(unsafe) static var suite: StaticString?
    nonisolated(unsafe) static var test: StaticString?
    nonisolated(unsafe) static var isPanicking = false
}

/// Stops the kernel: a broken invariant, never a condition a caller can cause.
func panic(_ message: StaticString, file: StaticString = #fileID, line: UInt = #line) -> Never {
    beginPanic(message)
    Console.write("  at ")
    Console.write(file)
    Console.write(":")
    Console.writeDecimal(UInt64(line))
    Console.put(UInt8(ascii: "\n"))
    finishPanic(programCounter: nil, framePointer: Platform.currentFramePointer())
}

/// Prints the panic banner. Arch trap code calls this, prints registers, then `finishPanic`.
func beginPanic(_ message: StaticString) {
    if PanicContext.isPanicking {
        Console.writeLine("KERNEL PANIC: recursive panic")
        Platform.exit(success: false)
    }
    PanicContext.isPanicking = true
    Console.write("\nKERNEL PANIC: ")
    Console.writeLine(message)
    if let suite = PanicContext.suite, let test = PanicContext.test {
        Console.write("  in self-test ")
        Console.write(suite)
        Console.write(".")
        Console.writeLine(test)
    }
}

/// Prints one register as `  name 0x...` (four to a line is for humans; one per line greps).
func printRegister(_ name: StaticString, _ value: UInt64) {
    Console.write("  ")
    Console.write(name)
    Console.write(" ")
    Console.writeHex(value)
    Console.put(UInt8(ascii: "\n"))
}

/// Prints the program counter and the backtrace, then exits with failure.
func finishPanic(programCounter: UInt?, framePointer: UInt) -> Never {
    if let pc = programCounter {
        Console.write("  pc ")
        Console.writeHex(UInt64(pc))
        Console.put(UInt8(ascii: "\n"))
    }
    printBacktrace(framePointer: framePointer)
    Console.writeLine("KERNEL PANIC: end")
    Platform.exit(success: false)
}

/// Walks saved frame pointers on the kernel stack: each frame holds (previous fp, return address).
/// Stops at a null, misaligned or off-stack pointer, or after 32 frames.
func printBacktrace(framePointer: UInt) {
    let stackBottom = kernelStackBottom()
    let stackTop = kernelStackTop()
    var fp = framePointer
    var depth = 0
    while depth < 32, fp != 0, fp & 7 == 0, fp >= stackBottom, fp + 16 <= stackTop {
        let frame = UnsafePointer<UInt>(bitPattern: fp)!
        let returnAddress = frame[1]
        if returnAddress == 0 { break }
        Console.write("  bt #")
        Console.writeDecimal(UInt64(depth))
        Console.write(" ")
        // The return address points after the call; one byte back lands inside it for the symbolizer.
        Console.writeHex(UInt64(returnAddress - 1))
        Console.put(UInt8(ascii: "\n"))
        let next = frame[0]
        if next <= fp { break }   // frames grow toward the top of the stack
        fp = next
        depth += 1
    }
}
