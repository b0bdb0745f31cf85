// PanicCheckSuite: proves, end to end, that a panic inside a self-test ends the run as a
// failure that names the test and points at the source line. It runs only when the command
// line holds `selftest.panic` (`make test` boots once more with it and expects that failure).
// Invariants: never part of a normal run; the trap it causes is a real Swift runtime trap.

let panicCheckSuite = SelfTestSuite("panic_check", [
    SelfTest("overflow_trap_panics_with_location", overflowTrapPanicsWithLocation),
])

/// Kept in a global so the optimizer cannot prove the overflow away at compile time.
private nonisolated(unsafe) var nearlyMaximum = Int.max - 1

private func overflowTrapPanicsWithLocation(_ t: inout TestContext) {
    let sum = nearlyMaximum + 2   // traps: the runner must report a panic in this test
    t.expect(sum < 0, "unreachable: the addition above traps")
}

/// Runs only with `selftest.stack_overflow` on the command line: recursion until the kernel
/// stack runs into its unmapped guard page must end in a clean panic that names the test
/// (a double fault on its own stack on x86_64, the exception stack on aarch64), never a hang,
/// a reset or silent corruption below the stack.
let stackOverflowCheckSuite = SelfTestSuite("stack_overflow_check", [
    SelfTest("recursion_into_guard_page_panics", recursionIntoGuardPagePanics),
])

private nonisolated(unsafe) var recursionSink: UInt64 = 0

/// Each frame keeps 512 bytes live across the call, so the recursion cannot become a loop.
@inline(never)
private func recurse(_ depth: UInt64) -> UInt64 {
    var frame = InlineArray<64, UInt64>(repeating: depth)
    if depth == UInt64.max { return 0 }
    let below = recurse(depth &+ 1)
    frame[Int(depth & 63)] &+= below
    return frame[Int(below & 63)]
}

private func recursionIntoGuardPagePanics(_ t: inout TestContext) {
    recursionSink = recurse(0)
    t.expect(false, "unreachable: the recursion overflows the stack")
}
