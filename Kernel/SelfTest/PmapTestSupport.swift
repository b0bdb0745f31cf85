// PmapTestSupport: what the pmap and vm_page self-tests and benchmarks share: accesses the
// compiler cannot elide (so a fault happens exactly where the test expects it), a scoped
// fault handler that records what it saw, a fixture that owns the pmaps and pages a test
// creates and tears them down with consistency checks, and addresses reserved for tests.
// Invariants: every test leaves the kernel pmap active, the original fault handler installed,
// and gives back every page and user pmap it created.

@_extern(c, "mmu_load64") func volatileLoad(_ address: UnsafeRawPointer) -> UInt64
@_extern(c, "mmu_store64") func volatileStore(_ address: UnsafeMutableRawPointer, _ value: UInt64)
@_extern(c, "mmu_call") func callCode(at address: UnsafeRawPointer)
@_extern(c, "pmap_probe_text_page_address") func probeTextPageAddress() -> UInt
@_extern(c, "pmap_probe_rodata_page_address") func probeReadOnlyPageAddress() -> UInt

/// Where user-space tests map pages (64 GiB: an ordinary user address).
let testUserBase: UInt64 = 0x0000_0010_0000_0000

/// Next unused page of the kernel scratch window; tests never reuse a scratch address.
private nonisolated(unsafe) var nextScratchAddress = AddressSpaceLayout.scratchWindowBase

/// `pages` fresh kernel virtual pages nobody maps, 2 MiB-aligned so a test owns its tables.
func scratchKernelAddress(pages: Int) -> VirtualAddress {
    let address = nextScratchAddress
    let span = (UInt64(pages) << pageShift + (2 << 20) - 1) & ~((2 << 20) - 1)
    nextScratchAddress += span
    return VirtualAddress(address)
}

/// Faults seen by a test's handler.
final class FaultLog {
    var faults: [PageFault] = []
    var count: Int { faults.count }
    var last: PageFault? { faults.last }
}

/// Runs `body` with `handler` installed as the page-fault handler, recording every fault it
/// receives in the returned log; restores the previous handler afterwards.
@discardableResult
func withFaultHandler(_ handler: @escaping (PageFault) -> FaultResolution, _ body: () -> Void) -> FaultLog {
    let log = FaultLog()
    let saved = PageFaultDispatcher.handler
    PageFaultDispatcher.handler = { fault in
        log.faults.append(fault)
        return handler(fault)
    }
    body()
    PageFaultDispatcher.handler = saved
    return log
}

/// A StaticString as a String, for notes.
func text(_ value: StaticString) -> String {
    value.withUTF8Buffer { String(decoding: $0, as: UTF8.self) }
}

extension TestContext {
    /// Runs a pmap call that must succeed; a thrown error fails the test with its name.
    @discardableResult
    mutating func succeeds<T>(_ what: StaticString, file: StaticString = #fileID, line: UInt = #line,
                              _ body: () throws(PmapError) -> T) -> T? {
        do {
            return try body()
        } catch {
            note("\(text(what)): unexpected pmap error \(text(pmapErrorName(error)))")
            expect(false, what, file: file, line: line)
            return nil
        }
    }

    /// Runs a pmap call that must throw `expected`.
    mutating func fails<T>(with expected: PmapError, _ what: StaticString, file: StaticString = #fileID, line: UInt = #line,
                           _ body: () throws(PmapError) -> T) {
        do {
            _ = try body()
            note("\(text(what)): succeeded, expected \(text(pmapErrorName(expected)))")
            expect(false, what, file: file, line: line)
        } catch {
            if error != expected {
                note("\(text(what)): got \(text(pmapErrorName(error))), expected \(text(pmapErrorName(expected)))")
                expect(false, what, file: file, line: line)
            }
        }
    }
}

/// Owns what one test creates: user pmaps, pages, kernel scratch mappings.
final class PmapFixture {
    let kernel: MachinePmap
    let frames: PageFrames
    private(set) var users: [MachinePmap] = []
    private(set) var pages: [Page] = []
    private var kernelRanges: [(VirtualAddress, UInt64)] = []
    private let entriesBefore: Int

    init() {
        guard let kernel = kernelPmap else { preconditionFailure("PmapFixture: no kernel pmap") }
        self.kernel = kernel
        frames = pageFrames
        entriesBefore = kernel.reverseMap.entriesInUse
    }

    var reverseMap: MachineReverseMap { kernel.reverseMap }

    /// A new user pmap (nil and a failure if memory is out).
    func newUser(_ t: inout TestContext) -> MachinePmap? {
        guard let user = t.succeeds("create user pmap", { () throws(PmapError) in try MachinePmap(userOf: kernel) }) else { return nil }
        users.append(user)
        return user
    }

    /// A new managed page filled with `pattern` (every 64-bit word).
    func newPage(_ t: inout TestContext, filledWith pattern: UInt64) -> Page? {
        do {
            let page = try frames.allocate(zeroed: false)
            try frames.activate(page)
            page.contents.initializeMemory(as: UInt64.self, repeating: pattern, count: Int(pageSize) / 8)
            pages.append(page)
            return page
        } catch {
            t.expect(false, "allocate a test page")
            return nil
        }
    }

    /// Remembers a kernel range to remove at tear-down.
    func ownKernelRange(_ start: VirtualAddress, pages count: Int) {
        kernelRanges.append((start, UInt64(count) << pageShift))
    }

    /// Activates the kernel pmap, removes and destroys everything, frees the pages, and checks
    /// the reverse map, the page queues and the pv-entry count are back where they started.
    func tearDown(_ t: inout TestContext) {
        t.succeeds("activate the kernel pmap") { () throws(PmapError) in try kernel.activate() }
        for (start, length) in kernelRanges {
            t.succeeds("remove kernel scratch range") { () throws(PmapError) in try kernel.remove(start: start, byteCount: length) }
        }
        for user in users where !user.isDestroyed {
            t.succeeds("destroy user pmap") { () throws(PmapError) in try user.destroy() }
        }
        for page in pages {
            t.expectEqual(page.mappingCount, 0, "mappings left on a test page after tear-down")
            if page.mappingCount != 0 { reverseMap.removeAll(page) }
            if page.isBusy { _ = try? frames.unbusy(page) }
            while page.wireCount > 0 { _ = try? frames.unwire(page) }
            do { try frames.free(page) } catch { t.expect(false, "free a test page") }
        }
        t.expectEqual(reverseMap.entriesInUse, entriesBefore, "pv entries in use after tear-down")
        if let broken = frames.invariantViolation() {
            t.note(text(broken))
            t.expect(false, "page queues consistent after tear-down")
        }
        t.expect(kernel.isActive, "kernel pmap active after tear-down")
    }
}
