// Runtime: the C symbols the Embedded Swift runtime and stdlib call into.
// They are defined under their real C names even though Swift warns that the names are
// reserved: bound only at link time (ld --defsym), LLVM would treat `free` as the C library's
// and reuse loads of heap state across it; with the bodies visible in the module it reloads.
// Invariants: allocation goes to the kernel heap only after `setUpMemory` ran (an earlier
// allocation is a boot-order bug and panics by name); a bad `free` panics with the reason,
// since the runtime cannot take an error back; `arc4random_buf` is a seeding source for
// hashing only — it is not cryptographic.

@_cdecl("putchar")
func putchar(_ character: CInt) -> CInt {
    Console.put(UInt8(truncatingIfNeeded: character))
    return character
}

@_cdecl("posix_memalign")
func posixMemalign(_ result: UnsafeMutablePointer<UnsafeMutableRawPointer?>, _ alignment: Int, _ size: Int) -> CInt {
    guard alignment > 0, alignment & (alignment - 1) == 0 else { return 22 }   // EINVAL
    guard let pointer = heapAllocate(size: max(size, 1), alignment: alignment) else {
        result.pointee = nil
        return 12   // ENOMEM
    }
    result.pointee = pointer
    return 0
}

@_cdecl("malloc")
func kernelMalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    heapAllocate(size: max(size, 1), alignment: 16)
}

@_cdecl("calloc")
func kernelCalloc(_ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
    guard !overflow, let pointer = heapAllocate(size: max(bytes, 1), alignment: 16) else { return nil }
    pointer.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    return pointer
}

@_cdecl("free")
func kernelFree(_ pointer: UnsafeMutableRawPointer?) {
    guard let pointer else { return }
    do {
        try kernelHeap.free(pointer)
    } catch {
        Console.write("free(")
        Console.writeHex(UInt64(UInt(bitPattern: pointer)))
        Console.writeLine(")")
        panic("free: pointer was not allocated by the kernel heap, or was freed twice")
    }
}

private func heapAllocate(size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
    guard memoryIsSetUp else { panic("heap used before setUpMemory: boot-order bug") }
    do {
        return try kernelHeap.allocate(size: size, alignment: alignment)
    } catch {
        return nil
    }
}

/// xorshift64* state, seeded from the cycle counter on first use.
private nonisolated(unsafe) var randomState: UInt64 = 0

@_cdecl("arc4random_buf")
func arc4randomBuffer(_ buffer: UnsafeMutableRawPointer, _ count: Int) {
    if randomState == 0 { randomState = Platform.cycles() | 1 }
    for index in 0..<count {
        randomState ^= randomState >> 12
        randomState ^= randomState << 25
        randomState ^= randomState >> 27
        buffer.storeBytes(of: UInt8(truncatingIfNeeded: (randomState &* 0x2545_F491_4F6C_DD1D) >> 56),
                          toByteOffset: index, as: UInt8.self)
    }
}
