// VMTestSupport: what the vm_object and vm_fault suites and the VM benchmarks share: the
// kernel's VMSystem (built on first use over pageFrames and the kernel pmap), a test bed
// that owns the maps and objects one test creates, routes real MMU faults on user addresses
// to the active map's vm_fault, runs the invariant auditor after the test (with the maps
// still alive, so real page tables and pv entries are checked), tears everything down, and
// checks that no object or page leaked; and a kernel test pager.
// Invariants: every VM test leaves the kernel pmap active, the previous fault handler
// installed, no object alive and the page count where it was (pv-pool growth excepted).

/// Where VM tests map user memory (128 GiB: clear of the pmap tests' addresses).
let vmTestBase: UInt64 = 0x0000_0020_0000_0000

private nonisolated(unsafe) var kernelVMSystemInstance: VMSystem? = nil

/// The kernel's VM system: objects over `pageFrames`, user maps made from the kernel pmap.
func kernelVMSystem() -> VMSystem {
    if let system = kernelVMSystemInstance { return system }
    guard let kernel = kernelPmap else { preconditionFailure("kernelVMSystem: no kernel pmap") }
    let system = VMSystem(pages: pageFrames, mappings: kernel.reverseMap) { () throws(PmapError) -> any PhysicalMap in
        try MachinePmap(userOf: kernel)
    }
    kernelVMSystemInstance = system
    return system
}

/// The map whose faults the installed handler resolves (the active one).
private nonisolated(unsafe) var faultingMap: VMMap? = nil
/// Errors vm_fault returned to the handler (a probe access then gets an error; any other
/// kernel access panics).
private nonisolated(unsafe) var unresolvedFaults = 0

/// A VM self-test: `body` runs on a fresh test bed; the auditor and leak checks follow.
func vmTest(_ name: StaticString, _ body: @escaping (inout TestContext, VMTestBed) -> Void) -> SelfTest {
    SelfTest(name) { t in
        let bed = VMTestBed()
        body(&t, bed)
        bed.finish(&t)
    }
}

/// Owns what one VM test creates.
final class VMTestBed {
    let system: VMSystem
    private(set) var maps: [VMMap] = []
    /// Objects the test holds a reference to (released at the end).
    private(set) var held: [VMObject] = []
    private let savedHandler: ((PageFault) -> FaultResolution)?
    private let pagesBefore: Int
    private let poolPagesBefore: Int
    private let objectsBefore: Int
    private let statisticsBefore: VMStatistics

    init() {
        system = kernelVMSystem()
        savedHandler = PageFaultDispatcher.handler
        PageFaultDispatcher.handler = { fault in
            guard fault.address < AddressSpaceLayout.userEnd, let map = faultingMap else { return .unhandled }
            if (try? map.fault(at: fault.address, access: fault.access)) != nil { return .resolved }
            unresolvedFaults += 1
            return .unhandled
        }
        pagesBefore = VMTestBed.pagesInUse
        poolPagesBefore = kernelPmap?.reverseMap.poolPages ?? 0
        objectsBefore = system.objects.count
        statisticsBefore = system.statistics
    }

    private static var pagesInUse: Int { pageFrames.ownedPages - pageFrames.count(of: .free) }

    /// Statistics accumulated since the bed was made.
    var statistics: VMStatistics {
        let now = system.statistics
        var delta = VMStatistics()
        delta.collapses = now.collapses - statisticsBefore.collapses
        delta.bypasses = now.bypasses - statisticsBefore.bypasses
        delta.flattens = now.flattens - statisticsBefore.flattens
        delta.zeroFillFaults = now.zeroFillFaults - statisticsBefore.zeroFillFaults
        delta.copyOnWriteFaults = now.copyOnWriteFaults - statisticsBefore.copyOnWriteFaults
        delta.copyPushes = now.copyPushes - statisticsBefore.copyPushes
        delta.pageIns = now.pageIns - statisticsBefore.pageIns
        delta.faults = now.faults - statisticsBefore.faults
        delta.pagesMovedByCollapse = now.pagesMovedByCollapse - statisticsBefore.pagesMovedByCollapse
        delta.pagesFreedByCollapse = now.pagesFreedByCollapse - statisticsBefore.pagesFreedByCollapse
        return delta
    }

    /// A new empty address space (nil and a failure when out of memory).
    func newMap(_ t: inout TestContext) -> VMMap? {
        do {
            let map = try VMMap(system: system)
            maps.append(map)
            return map
        } catch {
            t.expect(false, "create a VMMap")
            return nil
        }
    }

    /// Records a map made by fork so the bed tears it down.
    func adopt(_ map: VMMap) { maps.append(map) }

    /// A new anonymous object the test holds one reference to.
    func newObject(_ t: inout TestContext, pages: Int) -> VMObject? {
        do {
            let object = try VMObject(system: system, size: UInt64(pages) << pageShift)
            held.append(object)
            return object
        } catch {
            t.expect(false, "create a VMObject")
            return nil
        }
    }

    /// Adds an object (the test owns one reference to it) to those released at the end.
    func hold(_ object: VMObject) { held.append(object) }

    /// Stops tracking `object`: the test's reference went elsewhere (into a shadow).
    func forget(_ object: VMObject) {
        if let index = held.firstIndex(where: { $0 === object }) { held.remove(at: index) }
    }

    /// Drops the test's reference to `object` now.
    func release(_ object: VMObject) {
        if let index = held.firstIndex(where: { $0 === object }) { held.remove(at: index) }
        object.deallocate()
    }

    /// Loads `map` into the MMU and routes its faults to vm_fault.
    func activate(_ t: inout TestContext, _ map: VMMap) {
        do {
            try map.pmap.activate()
            faultingMap = map
        } catch {
            t.expect(false, "activate a map")
        }
    }

    /// Puts a page whose words are all `value` at page `index` of `object`.
    @discardableResult
    func put(_ value: UInt64, in object: VMObject, page index: Int) -> Page? {
        guard let page = try? system.pages.allocate(zeroed: false) else { return nil }
        page.contents.initializeMemory(as: UInt64.self, repeating: value, count: Int(pageSize) / 8)
        do { try object.insert(page, at: UInt64(index) << pageShift) } catch {
            try? system.pages.free(page)
            return nil
        }
        return page
    }

    /// The first word `object` shows at page `index` (0 for zero-fill).
    func visible(_ object: VMObject, page index: Int) -> UInt64 {
        guard let source = try? object.lookup(UInt64(index) << pageShift) else { return 0xDEAD }
        switch source {
        case .resident(let page, _, _): return page.contents.load(as: UInt64.self)
        case .frame(let frame): return DirectMap.pointer(to: frame).load(as: UInt64.self)
        case .zero: return 0
        }
    }

    /// Runs the auditor; a broken invariant fails the test with its rule.
    func audit(_ t: inout TestContext, _ what: StaticString) {
        if let failure = Auditor.check(system, holding: held) {
            t.note("\(text(what)): \(text(failure.rule)) at \(formatted(failure.address)) value \(failure.value)")
            t.expect(false, "VM invariants hold")
        }
    }

    /// Unresolved faults so far, which the caller expected (probe accesses); resets the count
    /// that `finish` requires to be zero.
    func takeUnresolvedFaults() -> Int {
        defer { unresolvedFaults = 0 }
        return unresolvedFaults
    }

    /// Destroys every map and drops every held object now (the kernel pmap becomes active).
    func releaseAll() {
        faultingMap = nil
        if let kernel = kernelPmap { try? kernel.activate() }
        for map in maps.reversed() { map.destroy() }
        maps = []
        for object in held.reversed() { object.deallocate() }
        held = []
        system.cache.purge()
    }

    /// Audit with live maps, tear down, audit again, check for leaks, restore the handler.
    func finish(_ t: inout TestContext) {
        audit(&t, "after the test")
        releaseAll()
        audit(&t, "after tear-down")
        t.expectEqual(system.objects.count, objectsBefore, "objects alive after tear-down")
        let poolGrowth = (kernelPmap?.reverseMap.poolPages ?? 0) - poolPagesBefore
        t.expectEqual(VMTestBed.pagesInUse - poolGrowth, pagesBefore, "pages in use after tear-down")
        t.expectEqual(unresolvedFaults, 0, "faults vm_fault could not resolve")
        unresolvedFaults = 0
        PageFaultDispatcher.handler = savedHandler
    }
}

/// A pager keeping page images in pages of its own (the swap pager comes later); implements
/// `absorb` between two of its kind so collapse of two paged objects is exercised.
final class KernelTestPager: Pager {
    private var images: [UInt64: Page] = [:]
    private(set) var pageOuts = 0
    private(set) var terminated = false

    func hasData(at offset: UInt64) -> Bool { images[offset] != nil }

    func pageIn(_ page: Page, at offset: UInt64) throws(PagerError) {
        guard let image = images[offset] else { throw .noData }
        page.contents.copyMemory(from: image.contents, byteCount: Int(pageSize))
    }

    func pageOut(_ page: Page, at offset: UInt64) throws(PagerError) {
        let image: Page
        if let existing = images[offset] {
            image = existing
        } else {
            guard let fresh = try? pageFrames.allocate(zeroed: false) else { throw .noSpace }
            image = fresh
            images[offset] = fresh
        }
        image.contents.copyMemory(from: page.contents, byteCount: Int(pageSize))
        pageOuts += 1
    }

    /// Stores an image whose words are all `value`.
    func put(_ value: UInt64, at offset: UInt64) {
        guard let image = images[offset] ?? (try? pageFrames.allocate(zeroed: false)) else { return }
        image.contents.initializeMemory(as: UInt64.self, repeating: value, count: Int(pageSize) / 8)
        images[offset] = image
    }

    func word(at offset: UInt64) -> UInt64? { images[offset]?.contents.load(as: UInt64.self) }

    func discard(_ range: Range<UInt64>) {
        for offset in offsetsWithData(in: range) {
            if let image = images.removeValue(forKey: offset) { try? pageFrames.free(image) }
        }
    }

    func offsetsWithData(in range: Range<UInt64>) -> [UInt64] {
        var offsets: [UInt64] = []
        for (offset, _) in images where range.contains(offset) { offsets.append(offset) }
        offsets.sort()
        return offsets
    }

    func absorb(_ source: any Pager, range: Range<UInt64>, destinationStart: UInt64, keep: (UInt64) -> Bool) -> Bool {
        guard let source = source as? KernelTestPager else { return false }
        for offset in source.offsetsWithData(in: range) {
            guard let image = source.images.removeValue(forKey: offset) else { continue }
            let destination = offset - range.lowerBound + destinationStart
            if images[destination] == nil && !keep(destination) {
                images[destination] = image
            } else {
                try? pageFrames.free(image)
            }
        }
        return true
    }

    func terminate() {
        for (_, image) in images { try? pageFrames.free(image) }
        images = [:]
        terminated = true
    }
}

/// Reads the word at user address `address` through the MMU (faults go to vm_fault).
func userLoad(_ address: UInt64) -> UInt64 { volatileLoad(VirtualAddress(address).pointer) }

/// Writes the word at user address `address` through the MMU.
func userStore(_ address: UInt64, _ value: UInt64) { volatileStore(VirtualAddress(address).pointer, value) }

extension TestContext {
    /// Runs a VM call that must succeed; a thrown error fails the test.
    @discardableResult
    mutating func vmSucceeds<T, E: Error>(_ what: StaticString, file: StaticString = #fileID, line: UInt = #line,
                                          _ body: () throws(E) -> T) -> T? {
        do {
            return try body()
        } catch {
            expect(false, what, file: file, line: line)
            return nil
        }
    }
}
