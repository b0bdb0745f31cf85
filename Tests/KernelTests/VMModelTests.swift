// VMModelTests: a seeded random model test of map / fork / write / read / protect / inherit /
// unmap / exit over several address spaces, against a reference model of what every address
// space must read back: each mapped page is a cell; `.share` children get the same cell,
// `.copy` children a new cell with the same value (either copy strategy), `.none` nothing.
// Accesses go through the software MMU (pmap translation, VMMap.fault on a miss). The
// auditor runs every 500 operations and at the end; the seed is printed on failure.

import XCTest
import Foundation
@testable import Kernel

final class VMModelTests: XCTestCase {
    private final class Cell {
        var value: UInt64
        init(_ value: UInt64) { self.value = value }
    }

    private struct ModelPage {
        var cell: Cell
        var writable: Bool
        var inheritance: Inheritance
    }

    private final class Process {
        let map: VMMap
        var pages: [UInt64: ModelPage] = [:]
        let id: Int
        static var nextID = 0
        init(_ map: VMMap) {
            self.map = map
            id = Process.nextID
            Process.nextID += 1
        }
    }

    private static let base: UInt64 = 0x10_0000
    private static let slots = 24
    private static let slotPages = 16

    func testRandomOperationsMatchTheModel() throws {
        for seed: UInt64 in [0x5EED_0001, 0x5EED_0002] {
            try run(seed: seed, operations: 50_000)
        }
    }

    private func slotStart(_ slot: Int) -> UInt64 { Self.base + UInt64(slot * Self.slotPages) << pageShift }

    private func run(seed: UInt64, operations: Int) throws {
        let world = VMWorld(megabytes: 128)
        var random = SplitMix64Generator(seed: seed)
        var processes = [Process(try VMMap(system: world.system))]
        var counts: [String: Int] = [:]
        var deepest = 0
        let tracing = ProcessInfo.processInfo.environment["VM_MODEL_TRACE"] != nil
        func trace(_ text: @autoclosure () -> String) { if tracing { print(text()) } }
        func fail(_ message: String, _ step: Int) {
            XCTFail("seed 0x\(String(seed, radix: 16)) step \(step): \(message)")
        }
        for step in 0..<operations {
            let process = processes[Int(random.next() % UInt64(processes.count))]
            let map = process.map
            let roll = random.next() % 100
            let slot = Int(random.next() % UInt64(Self.slots))
            let slotBase = slotStart(slot)
            let mappedPages = Array(process.pages.keys).sorted()
            let who = process.id
            switch roll {
            case 0..<6:   // map a fresh anonymous region into an empty slot
                let count = 1 + Int(random.next() % UInt64(Self.slotPages))
                let empty = (0..<Self.slotPages).allSatisfy { process.pages[slotBase + UInt64($0) << pageShift] == nil }
                guard empty else { continue }
                let inheritanceRoll = random.next() % 100
                let inheritance: Inheritance = inheritanceRoll < 60 ? .copy : inheritanceRoll < 85 ? .share : .none
                let strategy: CopyStrategy = random.next() % 10 < 3 ? .delayed : .symmetric
                try map.map(nil, at: slotBase, length: UInt64(count) << pageShift, protection: .readWrite,
                            inheritance: inheritance, copyStrategy: strategy)
                for index in 0..<count {
                    process.pages[slotBase + UInt64(index) << pageShift] = ModelPage(cell: Cell(0), writable: true, inheritance: inheritance)
                }
                counts["map", default: 0] += 1
                trace("\(step) p\(who) map 0x\(String(slotBase, radix: 16)) pages \(count) \(inheritance) \(strategy)")
            case 6..<40:  // write
                guard let address = mappedPages.randomElement(using: &random), let modelPage = process.pages[address] else { continue }
                let value = random.next() | 1
                let offset = (random.next() % (pageSize / 8)) * 8
                trace("\(step) p\(who) write 0x\(String(address, radix: 16)) +\(offset) = \(value)")
                do {
                    try map.store(value, at: address + offset)
                    if !modelPage.writable { fail("write to a read-only page succeeded", step) }
                    if offset == 0 { modelPage.cell.value = value } else {
                        // Keep the model to the first word: write it too.
                        try map.store(value, at: address)
                        modelPage.cell.value = value
                    }
                } catch {
                    if modelPage.writable || error != .protectionViolation { fail("write failed: \(error)", step) }
                }
                counts["write", default: 0] += 1
            case 40..<75: // read (sometimes an unmapped address)
                if random.next() % 20 == 0 {
                    let address = slotBase + (random.next() % UInt64(Self.slotPages)) << pageShift
                    if process.pages[address] == nil {
                        do {
                            _ = try map.load(address)
                            fail("read of an unmapped page succeeded", step)
                        } catch {
                            if error != .notMapped { fail("unmapped read: \(error)", step) }
                        }
                    }
                    continue
                }
                guard let address = mappedPages.randomElement(using: &random), let modelPage = process.pages[address] else { continue }
                let value = try map.load(address)
                trace("\(step) p\(who) read 0x\(String(address, radix: 16)) -> \(value)")
                if value != modelPage.cell.value {
                    fail("read 0x\(String(value, radix: 16)) at 0x\(String(address, radix: 16)), model 0x\(String(modelPage.cell.value, radix: 16))", step)
                    return
                }
                counts["read", default: 0] += 1
            case 75..<80: // unmap part of a slot (holes are fine)
                let first = Int(random.next() % UInt64(Self.slotPages))
                let count = 1 + Int(random.next() % UInt64(Self.slotPages - first))
                try map.unmap(start: slotBase + UInt64(first) << pageShift, length: UInt64(count) << pageShift)
                for index in first..<(first + count) { process.pages[slotBase + UInt64(index) << pageShift] = nil }
                counts["unmap", default: 0] += 1
                trace("\(step) p\(who) unmap slot \(slot) first \(first) count \(count)")
            case 80..<86: // protect part of a slot
                let first = Int(random.next() % UInt64(Self.slotPages))
                let count = 1 + Int(random.next() % 4)
                let range = (first..<min(first + count, Self.slotPages)).map { slotBase + UInt64($0) << pageShift }
                let writable = random.next() % 2 == 0
                let fullyMapped = range.allSatisfy { process.pages[$0] != nil }
                do {
                    try map.protect(start: range[0], length: UInt64(range.count) << pageShift, to: writable ? .readWrite : .readOnly)
                    if !fullyMapped { fail("protect over a hole succeeded", step) }
                    for address in range { process.pages[address]?.writable = writable }
                } catch {
                    if fullyMapped || error != .notMapped { fail("protect: \(error)", step) }
                }
                counts["protect", default: 0] += 1
                trace("\(step) p\(who) protect 0x\(String(range[0], radix: 16)) n \(range.count) writable \(writable)")
            case 86..<90: // inherit
                let first = Int(random.next() % UInt64(Self.slotPages))
                let inheritance: [Inheritance] = [.copy, .share, .none]
                let chosen = inheritance[Int(random.next() % 3)]
                try map.inherit(start: slotBase + UInt64(first) << pageShift, length: 2 << pageShift, chosen,
                                copyStrategy: random.next() % 2 == 0 ? .delayed : .symmetric)
                for index in first..<(first + 2) { process.pages[slotBase + UInt64(index) << pageShift]?.inheritance = chosen }
                counts["inherit", default: 0] += 1
                trace("\(step) p\(who) inherit slot \(slot) first \(first) \(chosen)")
            case 90..<92: // wire or unwire a few pages (only where every page is mapped)
                let first = Int(random.next() % UInt64(Self.slotPages - 2))
                let range = (first..<(first + 3)).map { slotBase + UInt64($0) << pageShift }
                guard range.allSatisfy({ process.pages[$0] != nil }) else { continue }
                if random.next() % 2 == 0 {
                    try map.wire(start: range[0], length: 3 << pageShift)
                    trace("\(step) p\(who) wire 0x\(String(range[0], radix: 16))")
                } else {
                    do {
                        try map.unwire(start: range[0], length: 3 << pageShift)
                        trace("\(step) p\(who) unwire 0x\(String(range[0], radix: 16))")
                    } catch {
                        if error != .notWired { fail("unwire: \(error)", step) }
                    }
                }
                counts["wire", default: 0] += 1
            case 92..<96: // fork
                guard processes.count < 8 else { continue }
                let child = Process(try map.fork())
                for (address, modelPage) in process.pages {
                    switch modelPage.inheritance {
                    case .share: child.pages[address] = modelPage
                    case .copy: child.pages[address] = ModelPage(cell: Cell(modelPage.cell.value), writable: modelPage.writable,
                                                                 inheritance: modelPage.inheritance)
                    case .none: break
                    }
                }
                processes.append(child)
                trace("\(step) p\(who) fork -> p\(child.id)")
                counts["fork", default: 0] += 1
            default:      // exit
                guard processes.count > 1 else { continue }
                process.map.destroy()
                trace("\(step) p\(who) exit")
                processes.removeAll { $0 === process }
                counts["exit", default: 0] += 1
            }
            if ProcessInfo.processInfo.environment["VM_MODEL_PARANOID"] != nil {
                for other in processes {
                    for (address, modelPage) in other.pages.sorted(by: { $0.key < $1.key }) {
                        let chain = other.map.entry(containing: address)?.object
                        var value: UInt64 = 0
                        if let entry = other.map.entry(containing: address), let object = entry.object {
                            switch try! object.lookup(entry.objectOffset(of: address)) {
                            case .resident(let page, _, _): value = page.contents.load(as: UInt64.self)
                            default: value = 0
                            }
                        }
                        _ = chain
                        if value != modelPage.cell.value {
                            for dumped in processes {
                                guard let entry = dumped.map.entry(containing: address) else { continue }
                                var line = "p\(dumped.id) entry 0x\(String(entry.start, radix: 16)) off \(entry.offset >> 12) nc \(entry.needsCopy):"
                                var object = entry.object
                                while let o = object {
                                    line += " [\(String(UInt(bitPattern: ObjectIdentifier(o).hashValue) & 0xFFFF, radix: 16)) ref \(o.referenceCount) so \(o.shadowOffset >> 12) copy \(o.copy.map { String(UInt(bitPattern: ObjectIdentifier($0).hashValue) & 0xFFFF, radix: 16) } ?? "-") pages \(o.sortedResidentPages.map { "\($0.offset >> 12)=\($0.page.contents.load(as: UInt64.self) % 1000)" })]"
                                    object = o.shadow
                                }
                                print(line)
                            }
                            fail("paranoid: p\(other.id) 0x\(String(address, radix: 16)) shows \(value), model \(modelPage.cell.value)", step)
                            return
                        }
                    }
                }
            }
            if step % 64 == 0 { deepest = max(deepest, processes.map { $0.map.maximumChainDepth }.max() ?? 0) }
            if step % 500 == 0, let failure = Auditor.check(world.system) {
                fail("audit: \(failure.rule) at 0x\(String(failure.address, radix: 16)) value \(failure.value)", step)
                return
            }
        }
        world.audit([], "after the run")
        // A fault never walks more than the bound plus the shadow it may have just made.
        XCTAssertLessThanOrEqual(world.system.statistics.deepestChainAtFault, world.system.maximumChainDepth + 1)
        for process in processes { process.map.destroy() }
        XCTAssertEqual(world.system.objects.count, 0, "every object terminated after every exit")
        world.audit([], "after every exit")
        print("VMModelTests seed 0x\(String(seed, radix: 16)): \(counts.sorted { $0.key < $1.key }) deepest chain \(deepest) at a fault \(world.system.statistics.deepestChainAtFault) "
              + "collapses \(world.system.statistics.collapses) bypasses \(world.system.statistics.bypasses) "
              + "flattens \(world.system.statistics.flattens)")
    }
}
