// PageFramesTests: the vm_page array and queues over fake physical memory (PhysicalArena):
// lookup across holes, queue moves and counters against a model under random operations
// (seed in every message), wiring, busy, lazy zeroing, free errors, and the free queue's bound.
// Every test ends with `invariantViolation()`.

import XCTest
@testable import Kernel

final class PageFramesTests: XCTestCase {
    private let mib: UInt64 = 1 << 20
    /// Kept alive for the whole test: the arena is the physical memory.
    private var arena: PhysicalArena?

    private func frames(usable: [(UInt64, UInt64)]? = nil) throws -> PageFrames {
        let arena = PhysicalArena(byteCount: 16 * mib)
        self.arena = arena
        let base = arena.base.value
        let map = arena.memoryMap(usable: usable ?? [(base, base + 16 * mib)])
        try physicalPages.setUp(memoryMap: map)
        return try PageFrames()
    }

    private func assertConsistent(_ frames: PageFrames, _ context: String = "", file: StaticString = #filePath, line: UInt = #line) {
        if let broken = frames.invariantViolation() { XCTFail("\(context) \(broken)", file: file, line: line) }
    }

    func testRecordIsAtMost64BytesAndHandleIsOnePointer() {
        XCTAssertLessThanOrEqual(Page.recordSize, 64)
        XCTAssertEqual(MemoryLayout<Page>.size, 8)
    }

    func testLookupCoversHolesAndFindsEveryFrameInConstantTime() throws {
        let frames = try frames(usable: [(0x4000_0000, 0x4040_0000), (0x4080_0000, 0x40C0_0000)])
        XCTAssertEqual(frames.firstFrame, 0x4000_0000 >> 12)
        XCTAssertEqual(frames.recordCount, Int((0x40C0_0000 - 0x4000_0000) >> 12), "one record per frame, holes included")
        for address: UInt64 in [0x4000_0000, 0x4000_1FFF, 0x4050_0000, 0x40BF_F000] {
            let page = try XCTUnwrap(frames.page(at: PhysicalAddress(address)))
            XCTAssertEqual(page.physicalAddress.value, address & ~0xFFF)
        }
        XCTAssertNil(frames.page(at: PhysicalAddress(0x3FFF_F000)))
        XCTAssertNil(frames.page(at: PhysicalAddress(0x40C0_0000)))
        XCTAssertFalse(frames.page(at: PhysicalAddress(0x4050_0000))!.isManaged, "a hole is never managed")
        let page = try frames.allocate(zeroed: false)
        XCTAssertTrue(page.isManaged)
        XCTAssertEqual(frames.page(at: page.physicalAddress), page)
        assertConsistent(frames)
    }

    func testAllocateZeroedClearsWhatThePreviousOwnerLeft() throws {
        let frames = try frames()
        let page = try frames.allocate(zeroed: false)
        page.contents.initializeMemory(as: UInt8.self, repeating: 0xEE, count: 4096)
        page.markDirty()
        try frames.free(page)
        let again = try frames.allocate(zeroed: true)
        XCTAssertEqual(again, page, "LIFO free queue")
        XCTAssertTrue((0..<4096).allSatisfy { again.contents.load(fromByteOffset: $0, as: UInt8.self) == 0 })
        XCTAssertFalse(again.isDirty, "a new owner gets a clean record")
        XCTAssertEqual(frames.zeroFilledPages, 1)
        assertConsistent(frames)
    }

    func testFreeRefusesPagesInUseWithTypedErrors() throws {
        let frames = try frames()
        func refusal(_ page: Page) -> PageFrameError? {
            do { try frames.free(page) } catch { return error }
            return nil
        }
        let page = try frames.allocate(zeroed: false)
        try frames.wire(page)
        XCTAssertEqual(refusal(page), .pageIsWired)
        try frames.unwire(page)
        XCTAssertTrue(frames.tryBusy(page))
        XCTAssertFalse(frames.tryBusy(page))
        XCTAssertEqual(refusal(page), .pageIsBusy)
        try frames.unbusy(page)
        XCTAssertThrowsError(try frames.unbusy(page)) { XCTAssertEqual($0 as? PageFrameError, .pageNotBusy) }
        XCTAssertThrowsError(try frames.unwire(page)) { XCTAssertEqual($0 as? PageFrameError, .pageNotWired) }
        XCTAssertNil(refusal(page))
        XCTAssertEqual(refusal(page), .pageIsFree)
        XCTAssertThrowsError(try frames.activate(page)) { XCTAssertEqual($0 as? PageFrameError, .pageIsFree) }
        let metadata = try XCTUnwrap(frames.page(at: frames.arrayAddress))
        XCTAssertEqual(refusal(metadata), .notManaged, "the vm_page array itself is not a managed page")
        let table = try frames.allocateTablePage()
        XCTAssertEqual(refusal(table), .pageIsWired)
        frames.freeTablePage(table)
        assertConsistent(frames)
    }

    func testFreeQueueIsBoundedAndReturnsTheRestToTheAllocator() throws {
        let frames = try frames()
        frames.freeQueueLimit = 8
        let before = physicalPages.freePages
        let pages = try (0..<20).map { _ in try frames.allocate(zeroed: false) }
        XCTAssertEqual(physicalPages.freePages, before - 20)
        XCTAssertEqual(frames.ownedPages, 20)
        for page in pages { try frames.free(page) }
        XCTAssertEqual(frames.count(of: .free), 8)
        XCTAssertEqual(frames.ownedPages, 8)
        XCTAssertEqual(physicalPages.freePages, before - 8)
        frames.drainFreeQueue()
        XCTAssertEqual(physicalPages.freePages, before)
        XCTAssertEqual(frames.ownedPages, 0)
        XCTAssertNil(physicalPages.invariantViolation())
        assertConsistent(frames)
    }

    func testQueuesAndCountersMatchModelUnderRandomOperations() throws {
        for seed: UInt64 in [11, 12, 13] {
            let frames = try frames()
            frames.freeQueueLimit = 16
            var random = SplitMix64Generator(seed: seed)
            var held: [Page] = []
            var expected: [Page.Queue: Int] = [.none: 0, .active: 0, .inactive: 0, .wired: 0]
            for step in 0..<4000 {
                let context = "seed \(seed) step \(step)"
                let choice = random.next() % 6
                if held.isEmpty || choice == 0 {
                    let page = try frames.allocate(zeroed: random.next() % 2 == 0)
                    held.append(page)
                    expected[.none]! += 1
                    continue
                }
                let index = Int(random.next() % UInt64(held.count))
                let page = held[index]
                let queue = page.queue
                switch choice {
                case 1:
                    if page.wireCount == 0 { try frames.activate(page); expected[queue]! -= 1; expected[.active]! += 1 }
                case 2:
                    if page.wireCount == 0 { try frames.deactivate(page); expected[queue]! -= 1; expected[.inactive]! += 1 }
                case 3:
                    try frames.wire(page)
                    if queue != .wired { expected[queue]! -= 1; expected[.wired]! += 1 }
                case 4:
                    if page.wireCount > 0 {
                        try frames.unwire(page)
                        if page.wireCount == 0 { expected[.wired]! -= 1; expected[.active]! += 1 }
                    }
                default:
                    while page.wireCount > 0 { try frames.unwire(page) }
                    expected[queue]! -= 1
                    try frames.free(page)
                    held.remove(at: index)
                }
                for (queue, count) in expected { XCTAssertEqual(frames.count(of: queue), count, "\(context): \(queue)") }
                XCTAssertLessThanOrEqual(frames.count(of: .free), 16, context)
                if step % 200 == 0 { assertConsistent(frames, context) }
            }
            assertConsistent(frames, "seed \(seed)")
        }
    }
}
