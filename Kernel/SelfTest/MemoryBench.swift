// MemoryBench: cycles per page-allocator and heap operation, next to a baseline (filling one
// 4 KiB page with a store loop) measured in the same run, so ratios mean something under TCG.
// Parameters are printed as `value` lines; nothing here judges the numbers.
// A failed allocation here means the machine is out of memory before the benchmarks even
// started, which is a bug in the boot set-up: `try!` turns it into a panic.

/// The memory benchmark suite.
let memoryBenchmarks = BenchmarkSuite("memory") { bench in
    let iterations = 10_000
    let batch = 256
    bench.value("iterations", UInt64(iterations), unit: "ops")
    bench.value("page_metadata_bytes_per_page", UInt64(PageAllocator.metadataBytesPerPage), unit: "bytes")
    bench.value("page_junk_fill", physicalPages.fillsFreedPages ? 1 : 0, unit: "bool")
    bench.value("heap_junk_fill", kernelHeap.fillsFreedMemory ? 1 : 0, unit: "bool")

    // Baseline: one 4 KiB page written a word at a time.
    let scratch = try! physicalPages.allocate()
    let words = DirectMap.pointer(to: scratch)
    bench.measure("baseline_write_4k", operations: iterations) {
        for i in 0..<iterations {
            for w in 0..<512 { words.storeBytes(of: UInt64(truncatingIfNeeded: i &+ w), toByteOffset: w * 8, as: UInt64.self) }
        }
    }
    try! physicalPages.free(scratch)

    // The fast path: the hot cache hands back the page just freed.
    bench.measure("page_alloc_free", operations: iterations) {
        for _ in 0..<iterations {
            let page = try! physicalPages.allocate()
            try! physicalPages.free(page)
        }
    }

    bench.measure("page_alloc_free_order4", operations: iterations) {
        for _ in 0..<iterations {
            let run = try! physicalPages.allocate(order: 4)
            try! physicalPages.free(run)
        }
    }

    // Batches overflow the 32-page hot cache, so most pages split from and re-coalesce into
    // buddy blocks: 256 single pages out, then all back, per round. The pages are chained
    // through their first word, so the loop needs no heap.
    let rounds = iterations / batch
    bench.measure("page_alloc_batch256_then_free", operations: rounds * batch * 2) {
        for _ in 0..<rounds {
            var head = UInt64.max
            for _ in 0..<batch {
                let page = try! physicalPages.allocate()
                DirectMap.pointer(to: page).storeBytes(of: head, as: UInt64.self)
                head = page.value
            }
            while head != UInt64.max {
                let next = DirectMap.pointer(to: PhysicalAddress(head)).load(as: UInt64.self)
                try! physicalPages.free(PhysicalAddress(head))
                head = next
            }
        }
    }

    bench.measure("heap_alloc_free_32", operations: iterations) {
        for _ in 0..<iterations {
            let p = try! kernelHeap.allocate(size: 32, alignment: 16)
            try! kernelHeap.free(p)
        }
    }

    bench.measure("heap_alloc_free_1k", operations: iterations) {
        for _ in 0..<iterations {
            let p = try! kernelHeap.allocate(size: 1024, alignment: 16)
            try! kernelHeap.free(p)
        }
    }

    // The full runtime path: swift_slowAlloc -> posix_memalign/malloc shim -> kernelHeap.
    bench.measure("runtime_alloc_free_32", operations: iterations) {
        for _ in 0..<iterations {
            let p = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
            p.storeBytes(of: 1, as: UInt8.self)
            p.deallocate()
        }
    }
}
