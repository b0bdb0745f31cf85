// Benchmark: in-kernel micro-benchmarks measured with the CPU's cycle counter.
// Invariants: a benchmark never judges its own numbers; it prints one machine-readable line
// per measurement (`BENCH name=<suite>.<label> ops=<n> cycles=<total> per_op=<x.yy>`) and
// `scripts/bench_report.py` turns them into ratios against a baseline measured in the same run.
// TCG time is not real time, so only ratios within one run mean anything.

/// Measurement context handed to a benchmark body.
public struct BenchmarkContext {
    let suite: StaticString
    let readCycles: () -> UInt64
    let emit: (String) -> Void

    /// Runs `body` once (it should perform `operations` operations) and reports cycles per op.
    public func measure(_ label: StaticString, operations: Int, _ body: () -> Void) {
        let start = readCycles()
        body()
        let cycles = readCycles() &- start
        report(label, operations: operations, cycles: cycles)
    }

    /// Reports a measurement taken by the caller (for loops that must exclude setup).
    public func report(_ label: StaticString, operations: Int, cycles: UInt64) {
        let ops = UInt64(max(operations, 1))
        let hundredths = cycles &* 100 / ops
        let fraction = hundredths % 100
        emit("BENCH name=\(suite).\(label) ops=\(operations) cycles=\(cycles) per_op=\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)")
    }

    /// Reports a non-time quantity (bytes per block, chain depth, ...).
    public func value(_ label: StaticString, _ value: UInt64, unit: StaticString) {
        emit("BENCH name=\(suite).\(label) value=\(value) unit=\(unit)")
    }

    /// Reads the cycle counter (for benchmarks that time only part of a loop).
    public func cycles() -> UInt64 { readCycles() }
}

/// A named group of benchmarks.
public struct BenchmarkSuite {
    public let name: StaticString
    public let body: (BenchmarkContext) -> Void
    public init(_ name: StaticString, _ body: @escaping (BenchmarkContext) -> Void) {
        self.name = name
        self.body = body
    }
}

/// Runs benchmark suites, framing their output so the report script can find it.
public struct BenchmarkRunner {
    let readCycles: () -> UInt64
    let emit: (String) -> Void

    public init(readCycles: @escaping () -> UInt64, emit: @escaping (String) -> Void) {
        self.readCycles = readCycles
        self.emit = emit
    }

    public func run(_ suites: [BenchmarkSuite]) {
        emit("BENCH begin suites=\(suites.count)")
        for suite in suites {
            suite.body(BenchmarkContext(suite: suite.name, readCycles: readCycles, emit: emit))
        }
        emit("BENCH end")
    }
}
