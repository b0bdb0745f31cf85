// SelfTestHarness: suites of self-tests and a runner that reports them as KTAP version 1,
// in the exact shape Linux KUnit prints (so `kunit.py parse` accepts it).
// Invariants: every registered test produces exactly one `ok`/`not ok` line in plan order;
// a test fails iff it recorded at least one failed expectation; a skipped test records no
// failure. Output goes through one sink, so host tests can capture it.

/// What a running test uses to check things and report why they failed.
public struct TestContext {
    public let testName: StaticString
    /// Diagnostic lines collected for this test (printed before its result line).
    public private(set) var diagnostics: [String] = []
    public private(set) var failureCount = 0
    public private(set) var skipReason: StaticString?

    public init(testName: StaticString) { self.testName = testName }

    public var hasFailed: Bool { failureCount > 0 }

    /// Records a failure unless `condition` holds.
    public mutating func expect(_ condition: Bool, _ what: StaticString,
                                file: StaticString = #fileID, line: UInt = #line) {
        if condition { return }
        fail(what, file: file, line: line, detail: nil)
    }

    /// Records a failure unless `actual == expected`, printing both values.
    public mutating func expectEqual<T: FixedWidthInteger>(_ actual: T, _ expected: T, _ what: StaticString,
                                                           file: StaticString = #fileID, line: UInt = #line) {
        if actual == expected { return }
        fail(what, file: file, line: line,
             detail: "Expected \(what) == \(formatted(expected)), but got \(formatted(actual))")
    }

    /// Records a failure unless `actual != unexpected`.
    public mutating func expectNotEqual<T: FixedWidthInteger>(_ actual: T, _ unexpected: T, _ what: StaticString,
                                                              file: StaticString = #fileID, line: UInt = #line) {
        if actual != unexpected { return }
        fail(what, file: file, line: line,
             detail: "Expected \(what) != \(formatted(unexpected)), but it was equal")
    }

    /// Marks the test skipped; the runner prints `# SKIP reason`.
    public mutating func skip(_ reason: StaticString) { skipReason = reason }

    /// Adds a free-form diagnostic line (printed whether or not the test fails).
    public mutating func note(_ text: String) { diagnostics.append(text) }

    private mutating func fail(_ what: StaticString, file: StaticString, line: UInt, detail: String?) {
        failureCount += 1
        diagnostics.append("\(testName): EXPECTATION FAILED at \(file):\(line)")
        diagnostics.append(detail ?? "Expected \(what)")
    }
}

/// Integers as decimal, plus hex when large enough that hex is what a kernel person reads.
func formatted<T: FixedWidthInteger>(_ value: T) -> String {
    let magnitude = UInt64(truncatingIfNeeded: value.magnitude)
    if magnitude < 4096 { return "\(Int64(truncatingIfNeeded: value))" }
    let digits = String(UInt64(truncatingIfNeeded: value), radix: 16)
    return T.isSigned && value < 0 ? "\(Int64(truncatingIfNeeded: value))" : "0x" + digits
}

/// One self-test: a name (a stable identifier) and its body.
public struct SelfTest {
    public let name: StaticString
    public let body: (inout TestContext) -> Void
    public init(_ name: StaticString, _ body: @escaping (inout TestContext) -> Void) {
        self.name = name
        self.body = body
    }
}

/// A named group of self-tests, reported as one KTAP subtest block.
public struct SelfTestSuite {
    public let name: StaticString
    public let tests: [SelfTest]
    public init(_ name: StaticString, _ tests: [SelfTest]) {
        self.name = name
        self.tests = tests
    }
}

/// Pass/fail/skip counts.
public struct TestTotals: Equatable {
    public var passed = 0, failed = 0, skipped = 0
    public init() {}
    public var total: Int { passed + failed + skipped }
    public var allPassed: Bool { failed == 0 }
}

/// Runs suites and writes KTAP through `emit`, one line per call (without newline).
public struct KTAPRunner {
    private let emit: (String) -> Void
    /// Called with the suite and test name before each test, so a panic can name it.
    private let willRun: (StaticString, StaticString) -> Void

    public init(emit: @escaping (String) -> Void,
                willRun: @escaping (StaticString, StaticString) -> Void = { _, _ in }) {
        self.emit = emit
        self.willRun = willRun
    }

    /// Runs every suite in order and returns the totals over all tests.
    public func run(_ suites: [SelfTestSuite]) -> TestTotals {
        emit("KTAP version 1")
        emit("1..\(suites.count)")
        var totals = TestTotals()
        for (index, suite) in suites.enumerated() {
            let suiteTotals = run(suite)
            totals.passed += suiteTotals.passed
            totals.failed += suiteTotals.failed
            totals.skipped += suiteTotals.skipped
            let verdict = suiteTotals.failed == 0 ? "ok" : "not ok"
            let skipped = suiteTotals.total > 0 && suiteTotals.skipped == suiteTotals.total
            emit("\(verdict) \(index + 1) \(suite.name)" + (skipped ? " # SKIP all tests skipped" : ""))
        }
        emit("# Totals: pass:\(totals.passed) fail:\(totals.failed) skip:\(totals.skipped) total:\(totals.total)")
        return totals
    }

    private func run(_ suite: SelfTestSuite) -> TestTotals {
        emit("    KTAP version 1")
        emit("    # Subtest: \(suite.name)")
        emit("    1..\(suite.tests.count)")
        var totals = TestTotals()
        for (index, test) in suite.tests.enumerated() {
            willRun(suite.name, test.name)
            var context = TestContext(testName: test.name)
            test.body(&context)
            for line in context.diagnostics { emit("    # " + line) }
            let number = index + 1
            if context.hasFailed {
                totals.failed += 1
                emit("    not ok \(number) \(test.name)")
            } else if let reason = context.skipReason {
                totals.skipped += 1
                emit("    ok \(number) \(test.name) # SKIP \(reason)")
            } else {
                totals.passed += 1
                emit("    ok \(number) \(test.name)")
            }
        }
        emit("    # \(suite.name): pass:\(totals.passed) fail:\(totals.failed) skip:\(totals.skipped) total:\(totals.total)")
        return totals
    }
}
