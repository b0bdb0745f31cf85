// VMTestWorld: a VMSystem over a host arena for the vm_object / vm_map / vm_fault tests:
// page allocator, page frames, a kernel pmap in x86_64 format (real tables in the arena) and
// user pmaps made from it. Accesses go through a software MMU: translate with pmap.extract,
// fault through VMMap.fault when the translation is missing or forbids the access, retry,
// then touch the frame through the direct map, as the CPU would.
// RAMPager is a test pager keeping page images in host memory (the swap pager comes later);
// it implements `absorb` so collapse of two paged objects is exercised.

import XCTest
@testable import Kernel
import PageTableFormats

/// MMU operations that do nothing: the host has no TLB for arena tables.
struct VMTestMMU: MMUOperations {
    func publishTableStores() {}
    func invalidate(_ address: VirtualAddress, includingTableCaches: Bool) {}
    func invalidateAll(includingGlobal: Bool) {}
    func completeInvalidation() {}
    func activate(root: PhysicalAddress) {}
}

typealias VMTestPmap = Pmap<X86PageTableFormat, VMTestMMU>

final class VMWorld {
    let arena: PhysicalArena
    let frames: PageFrames
    let kernel: VMTestPmap
    let system: VMSystem

    init(megabytes: UInt64 = 64, file: StaticString = #filePath, line: UInt = #line) {
        arena = PhysicalArena(byteCount: megabytes << 20)
        physicalPages = PageAllocator()
        do {
            try physicalPages.setUp(memoryMap: arena.wholeArenaMap())
            frames = try PageFrames()
            kernel = try VMTestPmap(kernelWith: X86PageTableFormat(), hardware: VMTestMMU(), pages: frames)
        } catch {
            fatalError("VMWorld: set-up failed: \(error)")
        }
        let kernel = self.kernel
        system = VMSystem(pages: frames, mappings: kernel.reverseMap) { () throws(PmapError) -> any PhysicalMap in
            try VMTestPmap(userOf: kernel)
        }
    }

    deinit { physicalPages = PageAllocator() }

    /// Pages handed out by PageFrames and not free (objects, tables, pv pool).
    var pagesInUse: Int { frames.ownedPages - frames.count(of: .free) }

    /// Fails the test if the auditor finds a broken invariant.
    func audit(_ held: [VMObject] = [], _ context: String = "", file: StaticString = #filePath, line: UInt = #line) {
        if let failure = Auditor.check(system, holding: held) {
            XCTFail("audit \(context): \(failure.rule) at 0x\(String(failure.address, radix: 16)) value \(failure.value)", file: file, line: line)
        }
    }

    /// A new anonymous object of `pages` pages.
    func object(pages: Int) -> VMObject {
        try! VMObject(system: system, size: UInt64(pages) << pageShift)
    }

    /// Puts a page filled with `value` at page `index` of `object`.
    @discardableResult
    func put(_ value: UInt64, in object: VMObject, page index: Int) -> Page {
        let page = try! frames.allocate(zeroed: false)
        page.contents.initializeMemory(as: UInt64.self, repeating: value, count: Int(pageSize) / 8)
        try! object.insert(page, at: UInt64(index) << pageShift)
        return page
    }

    /// The first word of what `object` shows at page `index` (0 for zero-fill).
    func visible(_ object: VMObject, page index: Int) -> UInt64 {
        switch try! object.lookup(UInt64(index) << pageShift) {
        case .resident(let page, _, _): return page.contents.load(as: UInt64.self)
        case .frame(let frame): return DirectMap.pointer(to: frame).load(as: UInt64.self)
        case .zero: return 0
        }
    }
}

/// Software MMU accesses through a map.
extension VMMap {
    /// Translation allowing `access`, faulting (at most twice) until there is one.
    func translate(_ address: UInt64, for access: FaultAccess) throws(FaultError) -> PhysicalAddress {
        for _ in 0..<3 {
            if let translation = try? pmap.extract(VirtualAddress(address)) {
                let allowed: Bool
                switch access {
                case .read: allowed = translation.protection.contains(.read)
                case .write: allowed = translation.protection.contains(.write)
                case .execute: allowed = translation.protection.contains(.execute)
                }
                if allowed { return translation.physicalAddress }
            }
            try fault(at: address, access: access)
        }
        XCTFail("translate: fault resolved but access still not allowed at 0x\(String(address, radix: 16))")
        throw .protectionViolation
    }

    func load(_ address: UInt64) throws(FaultError) -> UInt64 {
        DirectMap.pointer(to: try translate(address, for: .read)).load(as: UInt64.self)
    }

    func store(_ value: UInt64, at address: UInt64) throws(FaultError) {
        DirectMap.pointer(to: try translate(address, for: .write)).storeBytes(of: value, as: UInt64.self)
    }
}

/// A pager keeping page images in host memory, keyed by pager offset.
final class RAMPager: Pager {
    var store: [UInt64: [UInt8]] = [:]
    var terminated = false
    var pageIns = 0, pageOuts = 0
    /// Make absorb refuse (a different kind of store).
    var refusesAbsorb = false

    func hasData(at offset: UInt64) -> Bool { store[offset] != nil }

    func pageIn(_ page: Page, at offset: UInt64) throws(PagerError) {
        guard let bytes = store[offset] else { throw .noData }
        bytes.withUnsafeBytes { page.contents.copyMemory(from: $0.baseAddress!, byteCount: Int(pageSize)) }
        pageIns += 1
    }

    func pageOut(_ page: Page, at offset: UInt64) throws(PagerError) {
        store[offset] = Array(UnsafeRawBufferPointer(start: page.contents, count: Int(pageSize)))
        pageOuts += 1
    }

    func discard(_ range: Range<UInt64>) {
        for key in store.keys where range.contains(key) { store[key] = nil }
    }

    func offsetsWithData(in range: Range<UInt64>) -> [UInt64] {
        store.keys.filter { range.contains($0) }.sorted()
    }

    func absorb(_ source: any Pager, range: Range<UInt64>, destinationStart: UInt64, keep: (UInt64) -> Bool) -> Bool {
        guard !refusesAbsorb, let source = source as? RAMPager else { return false }
        for key in source.store.keys.sorted() where range.contains(key) {
            let destination = key - range.lowerBound + destinationStart
            if store[destination] == nil && !keep(destination) { store[destination] = source.store[key] }
            source.store[key] = nil
        }
        return true
    }

    func terminate() {
        store = [:]
        terminated = true
    }

    /// Stores a page image whose words are all `value`.
    func put(_ value: UInt64, at offset: UInt64) {
        var bytes = [UInt8](repeating: 0, count: Int(pageSize))
        bytes.withUnsafeMutableBytes { $0.initializeMemory(as: UInt64.self, repeating: value) }
        store[offset] = bytes
    }

    func word(at offset: UInt64) -> UInt64? {
        store[offset]?.withUnsafeBytes { $0.load(as: UInt64.self) }
    }
}

/// A VM world with swap over a RAM disk of `swapPages` pages, small daemon targets and an
/// optional resident limit (the pageout tests).
func swapTestWorld(swapPages: UInt64 = 2048, limit: Int? = nil) throws -> (VMWorld, SwapSpace, RAMDisk) {
    let world = VMWorld()
    let ram = RAMDisk(blocks: swapPages * 8)
    let space = SwapSpace()
    try space.swapOn(try SwapDisk.over(ram), identifier: 1)
    world.system.swapSpace = space
    world.system.pageout.freeMinimum = 4
    world.system.pageout.freeTarget = 8
    world.system.pageout.residentLimit = limit
    return (world, space, ram)
}

/// One daemon run that wants every resident page gone; returns with its writes in flight.
func startPageOutEverything(_ system: VMSystem) {
    let daemon = system.pageout
    let saved = (daemon.residentLimit, daemon.freeTarget)
    daemon.residentLimit = system.residentPageTotal
    daemon.freeTarget = system.residentPageTotal
    daemon.run(urgent: true)
    (daemon.residentLimit, daemon.freeTarget) = saved
}

/// Pages out every resident page it can and collects the writes.
func pageOutEverything(_ system: VMSystem) {
    startPageOutEverything(system)
    system.pageout.settle(nil)   // the laundry is asynchronous: collect every write the run started
}
