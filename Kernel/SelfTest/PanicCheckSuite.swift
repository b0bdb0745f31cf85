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
