// PmapBench: cycles per pmap operation on the real MMU, in an active user address space (so
// every change pays its TLB invalidation): enter of a 4 KiB page, remove of one page, remove
// of a 512-page range, and the page-fault round trip (trap entry, decode, dispatch to a
// handler, return, restart). Parameters are printed as `value` lines; nothing is judged.
// The fault round trip cannot use an empty handler (the access would fault forever), so the
// handler maps the page: `fault_enter_remove` minus `enter_remove` (same loop without the
// fault) is reported as `fault_round_trip`; `breakpoint_trap_round_trip` is the bare trap.
// Set-up failures are boot bugs: `try!` turns them into panics naming the line.

let pmapBenchmarks = BenchmarkSuite("pmap") { bench in
    guard let kernel = kernelPmap else { return }
    let frames: PageFrames = pageFrames
    let pages = 512, blocks = 8, rounds = 4096
    bench.value("pages_per_block", UInt64(pages), unit: "pages")
    bench.value("blocks", UInt64(blocks), unit: "blocks")
    bench.value("vm_page_bytes", UInt64(Page.recordSize), unit: "bytes")

    let user = try! MachinePmap(userOf: kernel)
    try! user.activate()
    var frameList: [Page] = []
    for _ in 0..<pages {
        let page = try! frames.allocate(zeroed: true)
        try! frames.activate(page)
        frameList.append(page)
    }
    let base = testUserBase
    func address(_ block: Int, _ index: Int) -> VirtualAddress {
        VirtualAddress(base + (UInt64(block * pages + index) << pageShift))
    }
    // enter_4k and remove_1_page include one table allocation / free per 512 pages (each
    // block is one last-level table); remove_512_page_range frees the block's table.

    bench.measure("enter_4k", operations: blocks * pages) {
        for block in 0..<blocks {
            for index in 0..<pages { try! user.enter(frameList[index], at: address(block, index), protection: .readWrite) }
        }
    }
    bench.measure("remove_1_page", operations: blocks * pages) {
        for block in 0..<blocks {
            for index in 0..<pages { try! user.remove(start: address(block, index), byteCount: pageSize) }
        }
    }
    // The same removals in an inactive address space: no TLB invalidation, software cost only.
    for block in 0..<blocks {
        for index in 0..<pages { try! user.enter(frameList[index], at: address(block, index), protection: .readWrite) }
    }
    try! kernel.activate()
    bench.measure("remove_1_page_inactive_pmap", operations: blocks * pages) {
        for block in 0..<blocks {
            for index in 0..<pages { try! user.remove(start: address(block, index), byteCount: pageSize) }
        }
    }
    try! user.activate()
    for block in 0..<blocks {
        for index in 0..<pages { try! user.enter(frameList[index], at: address(block, index), protection: .readWrite) }
    }
    bench.measure("remove_512_page_range", operations: blocks) {
        for block in 0..<blocks { try! user.remove(start: address(block, 0), byteCount: UInt64(pages) << pageShift) }
    }
    for block in 0..<blocks {
        for index in 0..<pages { try! user.enter(frameList[index], at: address(block, index), protection: .readWrite) }
    }
    bench.measure("protect_512_page_range_read_only", operations: blocks) {
        for block in 0..<blocks { try! user.protect(start: address(block, 0), byteCount: UInt64(pages) << pageShift, to: .readOnly) }
    }
    for block in 0..<blocks { try! user.remove(start: address(block, 0), byteCount: UInt64(pages) << pageShift) }

    // Fault round trip. The anchor keeps the target's last-level table alive, so no loop
    // allocates or frees tables.
    try! user.enter(frameList[1], at: address(0, 0), protection: .readOnly)
    let target = address(0, 7)
    let page = frameList[7]
    let noFault = bench.cycles()
    for _ in 0..<rounds {
        try! user.enter(page, at: target, protection: .readOnly, access: .read)
        _ = volatileLoad(target.pointer)
        try! user.remove(start: target, byteCount: pageSize)
    }
    let noFaultCycles = bench.cycles() &- noFault
    bench.report("enter_remove", operations: rounds, cycles: noFaultCycles)
    let saved = PageFaultDispatcher.handler
    PageFaultDispatcher.handler = { fault in
        do throws(PmapError) { try user.enter(page, at: VirtualAddress(fault.address & ~(pageSize - 1)), protection: .readOnly, access: .read) } catch {
            return .unhandled
        }
        return .resolved
    }
    let withFault = bench.cycles()
    for _ in 0..<rounds {
        _ = volatileLoad(target.pointer)
        try! user.remove(start: target, byteCount: pageSize)
    }
    let withFaultCycles = bench.cycles() &- withFault
    PageFaultDispatcher.handler = saved
    bench.report("fault_enter_remove", operations: rounds, cycles: withFaultCycles)
    bench.report("fault_round_trip", operations: rounds, cycles: withFaultCycles > noFaultCycles ? withFaultCycles - noFaultCycles : 0)
    bench.measure("breakpoint_trap_round_trip", operations: rounds) {
        for _ in 0..<rounds { Platform.breakpoint() }
    }

    // Referenced-bit round trip: clear, then touch. On aarch64 without FEAT_HAFDBS each touch
    // is an access-flag fault the pmap resolves itself; elsewhere the MMU sets the bit.
    try! user.enter(page, at: target, protection: .readOnly)
    let emulatedBefore = user.emulationFaultsResolved
    bench.measure("clear_referenced_then_read", operations: rounds) {
        for _ in 0..<rounds {
            kernel.reverseMap.clearReferenced(page)
            _ = volatileLoad(target.pointer)
        }
    }
    bench.value("emulation_faults_in_clear_referenced_then_read", UInt64(user.emulationFaultsResolved - emulatedBefore), unit: "faults")

    try! kernel.activate()
    try! user.destroy()
    for page in frameList { try! frames.free(page) }
}
