// VirtqueueTests: the split virtqueue's ring logic over fake physical memory (PhysicalArena),
// with the test playing the device: it reads the descriptor table and available ring the
// driver wrote, and writes used entries (in any order) for the driver to consume.
// Every test checks the free-descriptor accounting at the end.

import XCTest
@testable import Kernel

final class VirtqueueTests: XCTestCase {
    private var arena: PhysicalArena!

    override func setUpWithError() throws {
        arena = PhysicalArena(byteCount: 16 << 20)
        try physicalPages.setUp(memoryMap: arena.wholeArenaMap())
    }

    override func tearDown() {
        arena = nil
    }

    // MARK: Device-side helpers

    private struct Descriptor: Equatable {
        var address: UInt64, length: UInt32, flags: UInt16, next: UInt16
    }

    private func descriptor(_ queue: SplitVirtqueue, _ index: UInt16) -> Descriptor {
        let bytes = DirectMap.pointer(to: queue.descriptorArea) + Int(index) * 16
        return Descriptor(address: bytes.load(as: UInt64.self), length: bytes.load(fromByteOffset: 8, as: UInt32.self),
                          flags: bytes.load(fromByteOffset: 12, as: UInt16.self),
                          next: bytes.load(fromByteOffset: 14, as: UInt16.self))
    }

    private func availableIndex(_ queue: SplitVirtqueue) -> UInt16 {
        DirectMap.pointer(to: queue.driverArea).load(fromByteOffset: 2, as: UInt16.self)
    }

    private func availableHead(_ queue: SplitVirtqueue, at position: UInt16) -> UInt16 {
        DirectMap.pointer(to: queue.driverArea).load(fromByteOffset: 4 + Int(position) % queue.size * 2, as: UInt16.self)
    }

    /// Follows a chain from `head` in the descriptor table; returns its descriptors.
    private func chain(_ queue: SplitVirtqueue, from head: UInt16) -> [Descriptor] {
        var result: [Descriptor] = []
        var index = head
        while result.count <= queue.size {
            let d = descriptor(queue, index)
            result.append(d)
            if d.flags & SplitVirtqueue.DescriptorFlag.next == 0 { break }
            index = d.next
        }
        return result
    }

    /// Device writes used entries for `heads` in that order and advances used->idx.
    private var deviceUsedIndex: UInt16 = 0
    private func deviceReturns(_ queue: SplitVirtqueue, _ heads: [UInt16], length: UInt32 = 0) {
        let used = DirectMap.pointer(to: queue.deviceArea)
        for head in heads {
            let entry = used + 4 + Int(deviceUsedIndex) % queue.size * 8
            entry.storeBytes(of: UInt32(head), as: UInt32.self)
            entry.storeBytes(of: length, toByteOffset: 4, as: UInt32.self)
            deviceUsedIndex &+= 1
        }
        used.storeBytes(of: deviceUsedIndex, toByteOffset: 2, as: UInt16.self)
    }

    private func buffers(_ count: Int, writableFrom: Int = Int.max) -> [VirtqueueBuffer] {
        (0..<count).map {
            VirtqueueBuffer(address: PhysicalAddress(0x4000_0000 + UInt64($0) * 0x1000), length: UInt32(16 + $0),
                            isDeviceWritable: $0 >= writableFrom)
        }
    }

    // MARK: Layout

    func testLayoutPutsUsedRingOnLegacyPageBoundary() {
        let layout = VirtqueueLayout(size: 256)
        XCTAssertEqual(layout.descriptorTableOffset, 0)
        XCTAssertEqual(layout.availableRingOffset, 4096)
        XCTAssertEqual(layout.usedRingOffset, 8192)          // 4096 + 6 + 512 rounded up
        XCTAssertEqual(layout.byteCount, 8192 + 4096)        // 6 + 2048 rounded up
        XCTAssertEqual(layout.pageOrder, 2)
        let small = VirtqueueLayout(size: 8)
        XCTAssertEqual(small.availableRingOffset, 128)
        XCTAssertEqual(small.usedRingOffset, 4096)
        XCTAssertEqual(small.byteCount, 8192)
        XCTAssertEqual(small.pageOrder, 1)
    }

    func testInvalidSizesAreRejected() {
        for size in [0, 3, 6, 65536, -8] {
            XCTAssertThrowsError(try SplitVirtqueue(size: size)) { XCTAssertEqual($0 as? VirtqueueError, .invalidSize) }
        }
        XCTAssertEqual(physicalPages.usedPages, 0, "no pages taken by refused queues")
    }

    func testNewQueueIsZeroedAndAllDescriptorsFree() throws {
        let queue = try SplitVirtqueue(size: 64)
        XCTAssertEqual(queue.freeCount, 64)
        XCTAssertEqual(queue.memory.value % 4096, 0)
        let bytes = DirectMap.pointer(to: queue.memory)
        XCTAssertTrue((0..<queue.layout.byteCount).allSatisfy { bytes.load(fromByteOffset: $0, as: UInt8.self) == 0 })
        XCTAssertFalse(queue.hasUsedElements)
        XCTAssertNil(queue.popUsed())
        queue.releaseMemory()
        XCTAssertEqual(physicalPages.usedPages, 0)
    }

    // MARK: Posting

    func testPostWritesLinkedChainAndPublishesHead() throws {
        let queue = try SplitVirtqueue(size: 16)
        let input = buffers(3, writableFrom: 2)
        let head = try queue.post(input)
        XCTAssertEqual(availableIndex(queue), 1)
        XCTAssertEqual(availableHead(queue, at: 0), head)
        let written = chain(queue, from: head)
        XCTAssertEqual(written.count, 3)
        for (d, b) in zip(written, input) {
            XCTAssertEqual(d.address, b.address.value)
            XCTAssertEqual(d.length, b.length)
        }
        XCTAssertEqual(written.map { $0.flags }, [SplitVirtqueue.DescriptorFlag.next, SplitVirtqueue.DescriptorFlag.next,
                                                  SplitVirtqueue.DescriptorFlag.write])
        XCTAssertEqual(queue.freeCount, 13)
        XCTAssertEqual(queue.chainLength(head: head), 3)
        XCTAssertEqual(queue.postedChainCount, 1)
    }

    func testPostRefusesEmptyAndOversizedChainsWithoutChangingState() throws {
        let queue = try SplitVirtqueue(size: 8)
        XCTAssertThrowsError(try queue.post([VirtqueueBuffer]())) { XCTAssertEqual($0 as? VirtqueueError, .emptyChain) }
        try queue.post(buffers(5))
        XCTAssertThrowsError(try queue.post(buffers(4))) { XCTAssertEqual($0 as? VirtqueueError, .notEnoughDescriptors) }
        XCTAssertEqual(queue.freeCount, 3)
        XCTAssertEqual(availableIndex(queue), 1, "a refused chain is not published")
        try queue.post(buffers(3))
        XCTAssertEqual(queue.freeCount, 0)
        XCTAssertThrowsError(try queue.post(buffers(1))) { XCTAssertEqual($0 as? VirtqueueError, .notEnoughDescriptors) }
    }

    func testNotificationFollowsDeviceNoNotifyFlag() throws {
        let queue = try SplitVirtqueue(size: 8)
        try queue.post(buffers(1))
        XCTAssertTrue(queue.needsNotification)
        DirectMap.pointer(to: queue.deviceArea).storeBytes(of: SplitVirtqueue.usedFlagNoNotify, as: UInt16.self)
        XCTAssertFalse(queue.needsNotification)
    }

    // MARK: Consuming

    func testOutOfOrderCompletionsReturnEveryChainAndFreeItsDescriptors() throws {
        let queue = try SplitVirtqueue(size: 32)
        var heads: [UInt16] = []
        for length in [2, 3, 4, 1, 5] { heads.append(try queue.post(buffers(length))) }
        XCTAssertEqual(queue.freeCount, 32 - 15)
        deviceReturns(queue, [heads[3], heads[0], heads[4]], length: 9)
        XCTAssertTrue(queue.hasUsedElements)
        XCTAssertEqual(queue.popUsed(), VirtqueueUsedElement(head: heads[3], length: 9))
        XCTAssertEqual(queue.popUsed()?.head, heads[0])
        XCTAssertEqual(queue.popUsed()?.head, heads[4])
        XCTAssertNil(queue.popUsed())
        XCTAssertEqual(queue.freeCount, 32 - 7)
        deviceReturns(queue, [heads[2], heads[1]])
        XCTAssertEqual(queue.popUsed()?.head, heads[2])
        XCTAssertEqual(queue.popUsed()?.head, heads[1])
        XCTAssertEqual(queue.freeCount, 32)
        XCTAssertEqual(queue.postedChainCount, 0)
        XCTAssertFalse(queue.isBroken)
    }

    func testUsedEntryForUnpostedHeadBreaksQueue() throws {
        let queue = try SplitVirtqueue(size: 8)
        let head = try queue.post(buffers(2))
        deviceReturns(queue, [head &+ 1])   // a descriptor inside the chain, not its head
        XCTAssertNil(queue.popUsed())
        XCTAssertTrue(queue.isBroken)
        XCTAssertFalse(queue.hasUsedElements, "a broken queue returns nothing")
    }

    func testUsedIndexRunningAheadOfPostedChainsBreaksQueue() throws {
        let queue = try SplitVirtqueue(size: 8)
        let head = try queue.post(buffers(1))
        deviceReturns(queue, [head, head])
        XCTAssertNil(queue.popUsed())
        XCTAssertTrue(queue.isBroken)
    }

    func testOutOfRangeUsedIDBreaksQueue() throws {
        let queue = try SplitVirtqueue(size: 8)
        try queue.post(buffers(1))
        deviceReturns(queue, [200])
        XCTAssertNil(queue.popUsed())
        XCTAssertTrue(queue.isBroken)
    }

    func testIndicesWrapPast65535() throws {
        let queue = try SplitVirtqueue(size: 4)
        for round in 0..<70_000 {
            let head = try queue.post(buffers(1 + round % 4))
            deviceReturns(queue, [head])
            guard let used = queue.popUsed(), used.head == head else {
                return XCTFail("round \(round): wrong or missing used entry")
            }
        }
        XCTAssertEqual(queue.availableIndex, UInt16(70_000 % 65_536))
        XCTAssertEqual(queue.lastUsedIndex, UInt16(70_000 % 65_536))
        XCTAssertEqual(queue.freeCount, 4)
    }

    /// Random posts and out-of-order completions; after every step the descriptors of live
    /// chains are disjoint and, with the free ones, account for the whole table.
    func testRandomTrafficKeepsDescriptorsDisjointAndAccounted() throws {
        let seed: UInt64 = 0x5EED_0007
        var random = SplitMix64Generator(seed: seed)
        let queue = try SplitVirtqueue(size: 64)
        var live: [UInt16: Int] = [:]   // head -> chain length
        for step in 0..<20_000 {
            if Bool.random(using: &random) || live.isEmpty {
                let length = Int.random(in: 1...9, using: &random)
                if length <= queue.freeCount {
                    let head = try queue.post(buffers(length))
                    XCTAssertNil(live[head], "seed \(seed) step \(step): head reused while live")
                    live[head] = length
                } else {
                    XCTAssertThrowsError(try queue.post(buffers(length)))
                }
            } else {
                let count = Int.random(in: 1...live.count, using: &random)
                let heads = Array(live.keys.shuffled(using: &random).prefix(count))
                deviceReturns(queue, heads)
                for expected in heads {
                    XCTAssertEqual(queue.popUsed()?.head, expected, "seed \(seed) step \(step)")
                    live[expected] = nil
                }
            }
            var owned = Set<UInt16>()
            for (head, length) in live {
                let descriptors = chain(queue, from: head)
                XCTAssertEqual(descriptors.count, length, "seed \(seed) step \(step): chain length")
                var index = head
                for d in descriptors {
                    XCTAssertTrue(owned.insert(index).inserted, "seed \(seed) step \(step): descriptor in two chains")
                    index = d.next
                }
            }
            XCTAssertEqual(owned.count + queue.freeCount, 64, "seed \(seed) step \(step): accounting")
            if owned.count + queue.freeCount != 64 { return }
        }
    }
}
