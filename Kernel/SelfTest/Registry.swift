// Registry: every in-kernel self-test suite and benchmark, in the order they run.
// Adding a suite is one line here; adding a test is one line in its suite's list.
// Invariants: suite names are stable identifiers the host runner and CI logs refer to.

let allSelfTestSuites: [SelfTestSuite] = [
    bootSuite,
    stringFunctionSuite,
    pageAllocSuite,
    heapSuite,
    blistSuite,
    virtioBlockSuite,
    vmPageSuite,
    pmapSuite,
    vmObjectSuite,
    vmFaultSuite,
    swapPagerSuite,
    swapFilePagerSuite,
    pageoutSuite,
] + Platform.boardSelfTestSuites   // devices only some boards have (the Pi's SD card)

/// The suites of the low-memory boot (`selftest.lowmem`): little RAM, two blank swap disks
/// and a blkdebug disk that fails some reads and writes (Makefile test-lowmem).
let lowMemorySelfTestSuites: [SelfTestSuite] = [
    swapStressSuite,
    swapErrorSuite,
]

let allBenchmarks: [BenchmarkSuite] = [
    memoryBenchmarks,
    blistBenchmarks,
    virtioBlockBenchmarks,
    pmapBenchmarks,
    vmBenchmarks,
    swapBenchmarks,
]

/// Runs every suite as KTAP on the console; a panic inside a test names it.
func runSelfTests() -> TestTotals {
    let runner = KTAPRunner(emit: emitLine, willRun: { suite, test in
        PanicContext.suite = suite
        PanicContext.test = test
    })
    // The low-memory boot (make test-lowmem) runs only its own suites.
    var suites = bootInfo.commandLine.contains(word: "selftest.lowmem") ? lowMemorySelfTestSuites : allSelfTestSuites
    if bootInfo.commandLine.contains(word: "selftest.panic") { suites.append(panicCheckSuite) }
    if bootInfo.commandLine.contains(word: "selftest.stack_overflow") { suites.append(stackOverflowCheckSuite) }
    let totals = runner.run(suites)
    PanicContext.suite = nil
    PanicContext.test = nil
    return totals
}

/// Runs every benchmark suite, printing `BENCH` lines for scripts/bench_report.py.
func runBenchmarks() {
    BenchmarkRunner(readCycles: Platform.cycles, emit: emitLine).run(allBenchmarks)
}
