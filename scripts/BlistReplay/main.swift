// blist-replay: replays swap-allocation traces against the kernel's Blist and times them;
// also generates seeded swap-like traces and reports the blist's memory per block.
// Invariants: only the allocate/free loop is timed (parsing, `c` creations and the final
// consistency check are not); a failed allocation is recorded, and a later `f` of its ID is
// counted as skipped, never replayed. Host only (uses Foundation); never judges its numbers.
//
//   swift run -c release blist-replay TRACE [--repeat N]
//   swift run -c release blist-replay generate --blocks N [--seed S] [--operations K] > TRACE
//   swift run -c release blist-replay memory
//
// Trace format, one operation per line: `c BLOCKS` (create), `a ID COUNT` (allocate COUNT
// contiguous blocks as run ID), `f ID` (free run ID); `#` starts a comment.

import Foundation
import Kernel

// MARK: Trace

/// One parsed trace line; IDs are renumbered densely so the replay indexes an array.
struct TraceOperation {
    enum Kind: UInt8 { case create, allocate, free }
    var kind: Kind
    var slot: UInt32
    var value: UInt64
}

/// A parsed trace.
struct Trace {
    var operations: [TraceOperation] = []
    var slotCount = 0
}

/// Why a trace could not be read.
struct TraceError: Error, CustomStringConvertible {
    var description: String
}

/// Reads a trace byte by byte (traces of 2^28 blocks run to tens of millions of lines).
struct TraceParser {
    let bytes: [UInt8]
    var index = 0
    var lineNumber = 1
    var slots: [UInt64: UInt32] = [:]

    static let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t"), newline = UInt8(ascii: "\n"),
               carriageReturn = UInt8(ascii: "\r"), hash = UInt8(ascii: "#")

    /// Parses the whole text. IDs may be any non-negative integers; an `a` reusing a live ID
    /// starts a new run under that ID (the generator never does this).
    mutating func parse() throws -> Trace {
        var trace = Trace()
        while index < bytes.count {
            skipBlanks()
            if index < bytes.count && bytes[index] != Self.newline && bytes[index] != Self.hash {
                trace.operations.append(try operation())
                skipBlanks()
                guard index >= bytes.count || bytes[index] == Self.newline || bytes[index] == Self.hash else {
                    throw TraceError(description: "line \(lineNumber): unexpected text after the operation")
                }
            }
            skipToNextLine()
        }
        trace.slotCount = slots.count
        return trace
    }

    mutating func operation() throws -> TraceOperation {
        let letter = bytes[index]
        index += 1
        switch letter {
        case UInt8(ascii: "c"): return TraceOperation(kind: .create, slot: 0, value: try number())
        case UInt8(ascii: "a"):
            let slot = slot(for: try number())
            return TraceOperation(kind: .allocate, slot: slot, value: try number())
        case UInt8(ascii: "f"): return TraceOperation(kind: .free, slot: slot(for: try number()), value: 0)
        default: throw TraceError(description: "line \(lineNumber): unknown operation")
        }
    }

    mutating func number() throws -> UInt64 {
        skipBlanks()
        var value: UInt64 = 0
        var digits = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            let (product, overflow) = value.multipliedReportingOverflow(by: 10)
            guard !overflow else { throw TraceError(description: "line \(lineNumber): number too large") }
            value = product + UInt64(bytes[index] - UInt8(ascii: "0"))
            index += 1
            digits += 1
        }
        guard digits > 0 else { throw TraceError(description: "line \(lineNumber): expected a number") }
        return value
    }

    mutating func slot(for id: UInt64) -> UInt32 {
        if let known = slots[id] { return known }
        let fresh = UInt32(slots.count)
        slots[id] = fresh
        return fresh
    }

    mutating func skipBlanks() {
        while index < bytes.count,
              bytes[index] == Self.space || bytes[index] == Self.tab || bytes[index] == Self.carriageReturn {
            index += 1
        }
    }

    /// Skips the rest of the line (a comment, possibly after an operation) and its newline.
    mutating func skipToNextLine() {
        while index < bytes.count && bytes[index] != Self.newline { index += 1 }
        index += 1
        lineNumber += 1
    }
}

// MARK: Replay

/// What one replay observed.
struct ReplayResult {
    var nanoseconds: UInt64 = 0
    var allocations = 0
    var failedAllocations = 0
    var frees = 0
    var skippedFrees = 0
    var blist: Blist?
    var timedOperations: Int { allocations + frees }
}

/// Replays `trace`, timing everything but `c` lines.
func replay(_ trace: Trace) throws -> ReplayResult {
    var result = ReplayResult()
    var starts = [UInt64](repeating: 0, count: trace.slotCount)
    var counts = [UInt64](repeating: 0, count: trace.slotCount)  // 0: no live run
    var blist = try Blist(blocks: 1)
    var segmentStart = DispatchTime.now().uptimeNanoseconds
    for operation in trace.operations {
        let slot = Int(operation.slot)
        switch operation.kind {
        case .create:
            result.nanoseconds += DispatchTime.now().uptimeNanoseconds - segmentStart
            blist = try Blist(blocks: operation.value)
            counts = [UInt64](repeating: 0, count: trace.slotCount)
            segmentStart = DispatchTime.now().uptimeNanoseconds
        case .allocate:
            result.allocations += 1
            do {
                starts[slot] = try blist.allocate(count: operation.value)
                counts[slot] = operation.value
            } catch {
                result.failedAllocations += 1
                counts[slot] = 0
            }
        case .free:
            guard counts[slot] != 0 else {
                result.skippedFrees += 1
                continue
            }
            result.frees += 1
            try blist.free(start: starts[slot], count: counts[slot])
            counts[slot] = 0
        }
    }
    result.nanoseconds += DispatchTime.now().uptimeNanoseconds - segmentStart
    result.blist = blist
    return result
}

/// `x.yy` with two decimals.
func decimal(_ value: Double) -> String { String(format: "%.2f", value) }

/// Replays a trace file `repeats` times and prints the fastest run.
func runReplay(path: String, repeats: Int) throws {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw TraceError(description: "cannot read \(path)")
    }
    var parser = TraceParser(bytes: [UInt8](data))
    let trace = try parser.parse()
    var best: ReplayResult?
    for _ in 0..<max(repeats, 1) {
        let result = try replay(trace)
        if best == nil || result.nanoseconds < best!.nanoseconds { best = result }
    }
    let result = best!
    let blist = result.blist!
    let perOperation = Double(result.nanoseconds) / Double(max(result.timedOperations, 1))
    print("trace \(path): \(trace.operations.count) lines, best of \(max(repeats, 1)) replays")
    print("operations \(result.timedOperations): allocations \(result.allocations) "
          + "(failed \(result.failedAllocations)), frees \(result.frees) (skipped \(result.skippedFrees))")
    print("time \(result.nanoseconds) ns, \(decimal(perOperation)) ns/op")
    print("final: blocks \(blist.blocks), free blocks \(blist.freeBlocks), "
          + "largest free run \(blist.largestFreeRun), consistent \(blist.isConsistent)")
    let bitsPerBlock = Double(blist.memoryBytes) * 8 / Double(blist.blocks)
    print("memory \(blist.memoryBytes) bytes, \(decimal(bitsPerBlock)) bits/block")
}

// MARK: Memory report

/// Prints bytes and bits per block for sizes from 1 Ki to 2^31 blocks.
func runMemoryReport() throws {
    print("blocks        bytes        bytes/block  bits/block")
    var sizes: [UInt64] = []
    for shift in stride(from: 10, through: 31, by: 3) { sizes.append(1 << shift) }
    sizes.append((1 << 31) - 1)
    for blocks in sizes {
        let blist = try Blist(blocks: blocks)
        let bytes = Double(blist.memoryBytes)
        let line = [String(blocks), String(blist.memoryBytes),
                    String(format: "%.4f", bytes / Double(blocks)), String(format: "%.4f", bytes * 8 / Double(blocks))]
        print(line.map { $0.padding(toLength: 13, withPad: " ", startingAt: 0) }.joined())
    }
}

// MARK: Trace generation

// Traces come from the kernel's SplitMix64 (Kernel/Support/SeededRandom.swift), so a seed
// always yields the same trace.

/// Writes a swap-like trace: a fill to 70 %, a long churn phase that fragments the tree, a
/// climb to near full with churn there (allocations start failing), a drain and a final
/// churn at low occupancy. Occupancy is steered by running the trace on a Blist while it is
/// written, so the phases hit their targets; any first-fit next-fit allocator makes the same
/// choices. Frees name only runs that were allocated.
struct TraceGenerator {
    let blocks: UInt64
    let operations: Int
    var random: SplitMix64
    var blist: Blist
    var live: [(id: UInt64, start: UInt64, count: UInt64)] = []
    var nextID: UInt64 = 0
    var output = ""

    init(blocks: UInt64, operations: Int, seed: UInt64) throws {
        self.blocks = blocks
        self.operations = operations
        random = SplitMix64(seed: seed)
        blist = try Blist(blocks: blocks)
    }

    /// A swap-like run length: single pages dominate, clusters of 8-32 are common.
    mutating func runLength() -> UInt64 {
        switch random.below(100) {
        case 0..<45: return 1
        case 45..<70: return 2 + random.below(7)
        case 70..<85: return 16
        default: return 9 + random.below(24)
        }
    }

    mutating func emit(_ line: String) {
        output += line
        output += "\n"
        if output.utf8.count > 1 << 20 { flush() }
    }

    mutating func flush() {
        FileHandle.standardOutput.write(output.data(using: .utf8)!)
        output = ""
    }

    /// Emits one allocation; returns whether it succeeded.
    @discardableResult
    mutating func allocate() -> Bool {
        let count = runLength()
        emit("a \(nextID) \(count)")
        defer { nextID += 1 }
        guard let start = try? blist.allocate(count: count) else { return false }
        live.append((nextID, start, count))
        return true
    }

    mutating func freeRandom() {
        guard !live.isEmpty else { return }
        let index = Int(random.below(UInt64(live.count)))
        let run = live[index]
        live.swapAt(index, live.count - 1)
        live.removeLast()
        try! blist.free(start: run.start, count: run.count)
        emit("f \(run.id)")
    }

    var occupancy: Double { Double(blist.allocatedBlocks) / Double(blocks) }

    /// Allocates (or frees) until occupancy reaches `target`; gives up after 64 failures in
    /// a row (the tree is too fragmented to get there).
    mutating func drive(to target: Double) {
        var failures = 0
        while occupancy < target && failures < 64 { failures = allocate() ? 0 : failures + 1 }
        while occupancy > target && !live.isEmpty { freeRandom() }
    }

    /// `steps` random frees and allocations keeping occupancy between `low` and `high`.
    mutating func churn(steps: Int, low: Double, high: Double) {
        for _ in 0..<steps {
            if occupancy < low || (occupancy <= high && random.below(2) == 0) {
                allocate()
            } else {
                freeRandom()
            }
        }
    }

    mutating func generate(seed: UInt64) {
        emit("# blist-trace: blocks \(blocks) seed \(seed) operations \(operations)")
        emit("c \(blocks)")
        emit("# phase: fill to 70%")
        drive(to: 0.70)
        emit("# phase: fragmenting churn between 55% and 85%")
        churn(steps: operations / 2, low: 0.55, high: 0.85)
        emit("# phase: near full, churn between 97% and 100%")
        drive(to: 0.97)
        churn(steps: operations / 4, low: 0.97, high: 1.0)
        emit("# phase: drain to 30% and churn")
        drive(to: 0.30)
        churn(steps: operations / 4, low: 0.25, high: 0.35)
        flush()
    }
}

/// Parses `--name value` options.
func option(_ name: String, in arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func runGenerate(_ arguments: [String]) throws {
    guard let blocks = option("--blocks", in: arguments).flatMap({ UInt64($0) }), blocks >= 64 else {
        throw TraceError(description: "generate needs --blocks N (N >= 64)")
    }
    let seed = option("--seed", in: arguments).flatMap { UInt64($0) } ?? 1
    let operations = option("--operations", in: arguments).flatMap { Int($0) } ?? 200_000
    var generator = try TraceGenerator(blocks: blocks, operations: operations, seed: seed)
    generator.generate(seed: seed)
}

// MARK: Main

let usage = """
    usage: blist-replay TRACE [--repeat N]
           blist-replay generate --blocks N [--seed S] [--operations K]
           blist-replay memory
    """

do {
    let arguments = Array(CommandLine.arguments.dropFirst())
    switch arguments.first {
    case "generate": try runGenerate(arguments)
    case "memory": try runMemoryReport()
    case .some(let path) where !path.hasPrefix("-"):
        let repeats = option("--repeat", in: arguments).flatMap { Int($0) } ?? 3
        try runReplay(path: path, repeats: repeats)
    default:
        FileHandle.standardError.write((usage + "\n").data(using: .utf8)!)
        exit(2)
    }
} catch {
    FileHandle.standardError.write("blist-replay: \(error)\n".data(using: .utf8)!)
    exit(1)
}
