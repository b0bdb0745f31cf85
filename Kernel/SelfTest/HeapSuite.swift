// HeapSuite: the kernel heap as the Swift runtime sees it. Objects, Array and Dictionary
// allocate through the runtime's malloc/posix_memalign shims into `kernelHeap`; the tests
// watch `kernelHeap.statistics` to prove the memory really comes from (and returns to) it.
// Counters are read into locals before any `t.expect`, because a failing expectation
// allocates its diagnostic String on this same heap.
// LLVM knows `free` as the C library's: a call to it is assumed to touch only its argument and
// memory invisible to Swift, so a read of `kernelHeap` after a runtime free could be served
// from a load made before it (seen on x86_64 with the shims bound by symbol aliasing). Every
// read of heap state that follows a runtime free goes after `heapBarrier()`.

import Synchronization

/// The heap suite.
let heapSuite = SelfTestSuite("heap", [
    SelfTest("arc_object_freed_when_last_reference_goes", arcObjectFreedWhenLastReferenceGoes),
    SelfTest("runtime_allocations_aligned", runtimeAllocationsAligned),
    SelfTest("many_allocations_return_to_baseline", manyAllocationsReturnToBaseline),
    SelfTest("large_allocation_takes_and_returns_pages", largeAllocationTakesAndReturnsPages),
    SelfTest("bad_free_rejected", badFreeRejected),
    SelfTest("invariants_hold", heapInvariantsHold),
])

/// A full fence: LLVM may not carry a load of heap state across it (see the file header).
@inline(__always)
private func heapBarrier() {
    atomicMemoryFence(ordering: .sequentiallyConsistent)
}

/// Bumped by `TrackedObject.deinit`.
private nonisolated(unsafe) var trackedObjectDeinits = 0
/// Holds a reference outside any stack frame, so the object cannot be stack-promoted.
private nonisolated(unsafe) var escapedObject: TrackedObject?

private final class TrackedObject {
    let value: Int
    init(value: Int) { self.value = value }
    deinit { trackedObjectDeinits += 1 }
}

private func arcObjectFreedWhenLastReferenceGoes(_ t: inout TestContext) {
    let liveBefore = kernelHeap.statistics.liveAllocations
    let deinitsBefore = trackedObjectDeinits
    escapedObject = TrackedObject(value: 42)
    var second: TrackedObject? = escapedObject
    let liveWithObject = kernelHeap.statistics.liveAllocations
    escapedObject = nil
    heapBarrier()
    let deinitsWithOneReference = trackedObjectDeinits
    let value = second?.value ?? 0
    second = nil
    heapBarrier()
    let deinitsAfter = trackedObjectDeinits
    let liveAfter = kernelHeap.statistics.liveAllocations

    t.expectEqual(liveWithObject, liveBefore + 1, "live heap allocations while the object exists")
    t.expectEqual(deinitsWithOneReference, deinitsBefore, "deinits while a second reference remains")
    t.expectEqual(value, 42, "the object's value through the remaining reference")
    t.expectEqual(deinitsAfter, deinitsBefore + 1, "deinits after the last reference went")
    t.expectEqual(liveAfter, liveBefore, "live heap allocations after the object was freed")
}

private func runtimeAllocationsAligned(_ t: inout TestContext) {
    var alignment = 1
    while alignment <= 16384 {
        let p = UnsafeMutableRawPointer.allocate(byteCount: 100, alignment: alignment)
        let misalignment = Int(bitPattern: UInt(bitPattern: p)) & (alignment - 1)
        let usable = (try? kernelHeap.usableSize(of: p)) ?? -1
        p.initializeMemory(as: UInt8.self, repeating: 0x5A, count: 100)
        p.deallocate()
        t.expectEqual(misalignment, 0, "pointer modulo the requested alignment")
        t.expect(usable >= 100, "the runtime's allocation came from kernelHeap and holds 100 bytes")
        alignment <<= 1
    }
}

/// Grows an Array, a Dictionary and an array of objects, checks their contents, and frees it
/// all on return. Returns false if any content check failed.
@inline(never)
private func growContainers() -> Bool {
    var numbers: [Int] = []
    for i in 0..<10_000 { numbers.append(i &* 3) }
    var table: [Int: Int] = [:]
    for i in 0..<2_000 { table[i] = i &* i }
    var objects: [TrackedObject] = []
    for i in 0..<500 { objects.append(TrackedObject(value: i)) }
    var ok = numbers.count == 10_000 && numbers[9_999] == 29_997
    for i in stride(from: 0, to: 2_000, by: 97) where table[i] != i &* i { ok = false }
    var sum = 0
    for object in objects { sum &+= object.value }
    return ok && table.count == 2_000 && sum == 499 * 500 / 2
}

private func manyAllocationsReturnToBaseline(_ t: inout TestContext) {
    // The first round may create lazily initialised globals; measure from the second.
    let warmUp = growContainers()
    heapBarrier()
    let before = kernelHeap.statistics
    let contentsOK = growContainers()
    heapBarrier()
    let after = kernelHeap.statistics

    t.expect(warmUp && contentsOK, "Array, Dictionary and object contents are what was stored")
    t.expect(after.allocationCount - before.allocationCount > 500, "the containers allocated from kernelHeap")
    t.expectEqual(after.allocationCount - before.allocationCount, after.freeCount - before.freeCount,
                  "every allocation of the round was freed")
    t.expectEqual(after.liveAllocations, before.liveAllocations, "live allocations back to baseline")
    t.expectEqual(after.bytesInUse, before.bytesInUse, "bytes in use back to baseline")
}

private func largeAllocationTakesAndReturnsPages(_ t: inout TestContext) {
    let usedBefore = physicalPages.usedPages
    let runBefore = kernelHeap.statistics.largeRunPages
    let p = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    p.initializeMemory(as: UInt8.self, repeating: 0xC3, count: 64 * 1024)
    let lastByte = p.load(fromByteOffset: 64 * 1024 - 1, as: UInt8.self)
    let runDuring = kernelHeap.statistics.largeRunPages
    let usedDuring = physicalPages.usedPages
    p.deallocate()
    heapBarrier()
    let runAfter = kernelHeap.statistics.largeRunPages

    t.expectEqual(lastByte, 0xC3, "the last byte of the 64 KiB allocation")
    t.expectEqual(runDuring - runBefore, 16, "a 64 KiB allocation is a 16-page run")
    t.expect(usedDuring - usedBefore >= 16, "the run's pages came from physicalPages")
    t.expectEqual(runAfter, runBefore, "the run went back")
}

private func badFreeRejected(_ t: inout TestContext) {
    let object = UnsafeMutableRawPointer.allocate(byteCount: 48, alignment: 16)
    let before = kernelHeap.statistics

    var interior: HeapError?
    do { try kernelHeap.free(object + 16) } catch let e { interior = e }
    // Only the address is used: the heap looks it up in its page map and never touches it.
    var onStack = 0
    let stackAddress = withUnsafeMutablePointer(to: &onStack) { UInt(bitPattern: $0) }
    var stack: HeapError?
    do { try kernelHeap.free(UnsafeMutableRawPointer(bitPattern: stackAddress)!) } catch let e { stack = e }
    var page: HeapError?
    var pageAddress = PhysicalAddress(0)
    if let raw = try? physicalPages.allocate() {
        pageAddress = raw
        do { try kernelHeap.free(DirectMap.pointer(to: raw)) } catch let e { page = e }
        try? physicalPages.free(raw)
    }
    let unchanged = kernelHeap.statistics == before

    // A double free is only recognisable while the slab lives, so free one of two objects
    // that share a page (the other keeps the slab from being returned).
    let sibling = UnsafeMutableRawPointer.allocate(byteCount: 48, alignment: 16)
    let samePage = UInt(bitPattern: sibling) & ~UInt(pageSize - 1) == UInt(bitPattern: object) & ~UInt(pageSize - 1)
    let (victim, keeper) = samePage ? (object, sibling) : (sibling, UnsafeMutableRawPointer.allocate(byteCount: 48, alignment: 16))
    victim.deallocate()
    heapBarrier()
    var double: HeapError?
    do { try kernelHeap.free(victim) } catch let e { double = e }
    keeper.deallocate()
    if !samePage { object.deallocate() }

    t.expect(interior == .unknownPointer, "freeing the middle of an object throws unknownPointer")
    t.expect(stack == .unknownPointer, "freeing a stack address throws unknownPointer")
    t.expect(pageAddress.value != 0 && page == .unknownPointer, "freeing a page the heap never had throws unknownPointer")
    t.expect(unchanged, "refused frees left the heap statistics unchanged")
    t.expect(double == .doubleFree, "freeing an object twice throws doubleFree")
}

private func heapInvariantsHold(_ t: inout TestContext) {
    heapBarrier()
    let violation = kernelHeap.invariantViolation()
    t.expect(violation == nil, "page map, slabs and partial lists are consistent")
    if let violation { t.note("broken: \(violation)") }
}
