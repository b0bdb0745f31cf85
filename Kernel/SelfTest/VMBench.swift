// VMBench: cycles per zero-fill fault and per copy-on-write fault (real MMU faults through
// vm_fault), per fork of a 1 MiB and a 64 MiB resident region, and chain depth and fork cost
// after 1000 nested forks (every generation alive, each writing its own page). Parameters are
// printed as `value` lines; nothing is judged. Set-up failures are boot bugs: `try!`.

let vmBenchmarks = BenchmarkSuite("vm") { bench in
    let system = kernelVMSystem()
    guard let kernel = kernelPmap else { return }
    let savedHandler = PageFaultDispatcher.handler
    var active: VMMap? = nil
    PageFaultDispatcher.handler = { fault in
        guard let map = active, (try? map.fault(at: fault.address, access: fault.access)) != nil else { return .unhandled }
        return .resolved
    }
    func activate(_ map: VMMap) {
        try! map.pmap.activate()
        active = map
    }
    let base = vmTestBase
    let pages = 1024
    bench.value("fault_pages", UInt64(pages), unit: "pages")

    // Zero-fill: first write to each page of a fresh region.
    let parent = try! VMMap(system: system)
    try! parent.map(nil, at: base, length: UInt64(pages) << pageShift, protection: .readWrite)
    activate(parent)
    bench.measure("zero_fill_fault", operations: pages) {
        for index in 0..<pages { userStore(base + UInt64(index) << pageShift, UInt64(index)) }
    }
    // Copy-on-write: after a fork, the parent's first write to each page.
    let child = try! parent.fork()
    bench.measure("cow_fault", operations: pages) {
        for index in 0..<pages { userStore(base + UInt64(index) << pageShift, UInt64(index) + 1) }
    }
    // The same writes again: no fault (baseline for the fault cost).
    bench.measure("write_no_fault", operations: pages) {
        for index in 0..<pages { userStore(base + UInt64(index) << pageShift, UInt64(index) + 2) }
    }
    try! kernel.activate()
    active = nil
    child.destroy()
    parent.destroy()

    // Fork of a resident region of 1 MiB and 64 MiB.
    for (label, megabytes) in [("fork_1mib", 1), ("fork_64mib", 64)] as [(StaticString, Int)] {
        let count = megabytes << 8
        let map = try! VMMap(system: system)
        try! map.map(nil, at: base, length: UInt64(count) << pageShift, protection: .readWrite)
        activate(map)
        for index in 0..<count { userStore(base + UInt64(index) << pageShift, UInt64(index)) }
        try! kernel.activate()
        active = nil
        var forked: VMMap? = nil
        bench.measure(label, operations: 1) { forked = try! map.fork() }
        forked?.destroy()
        map.destroy()
    }

    // 1000 nested forks, every generation alive, each writing page (generation % 64) of a
    // 64-page region: a write rarely covers what the chain below holds, so bypass seldom
    // helps and the depth bound (flattening) is what keeps chains short. Every flatten copies
    // at most the 64 visible pages.
    let flattensBefore = system.statistics.flattens
    let generations = 1000, regionPages = 64
    bench.value("nested_forks", UInt64(generations), unit: "forks")
    bench.value("nested_fork_region_pages", UInt64(regionPages), unit: "pages")
    var maps = [try! VMMap(system: system)]
    try! maps[0].map(nil, at: base, length: UInt64(regionPages) << pageShift, protection: .readWrite)
    activate(maps[0])
    userStore(base, 1)
    var lastForkCycles: UInt64 = 0
    var firstForkCycles: UInt64 = 0
    for generation in 1...generations {
        let start = bench.cycles()
        let next = try! maps[generation - 1].fork()
        let cycles = bench.cycles() &- start
        if generation == 1 { firstForkCycles = cycles }
        lastForkCycles = cycles
        activate(next)
        userStore(base + UInt64(generation % regionPages) << pageShift, UInt64(generation))
        maps.append(next)
    }
    var deepest = 0
    for map in maps { deepest = max(deepest, map.maximumChainDepth) }
    bench.value("nested_fork_max_chain_depth", UInt64(deepest), unit: "links")
    bench.value("nested_fork_depth_bound", UInt64(system.maximumChainDepth), unit: "links")
    bench.report("first_nested_fork", operations: 1, cycles: firstForkCycles)
    bench.report("fork_after_1000_nested_forks", operations: 1, cycles: lastForkCycles)
    try! kernel.activate()
    active = nil
    for map in maps.reversed() { map.destroy() }
    bench.value("objects_after_exit", UInt64(system.objects.count), unit: "objects")
    bench.value("nested_fork_flattens", UInt64(system.statistics.flattens - flattensBefore), unit: "flattens")
    PageFaultDispatcher.handler = savedHandler
}
