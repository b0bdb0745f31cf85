// StringFunctionSuite: the assembly memcpy/memmove/memset/memcmp (Boot/<arch>/string.S) that
// the Swift runtime and every page copy depend on: overlap in both directions, every tail
// length around the 8/16-byte fast paths, and byte values with the high bit set; and
// zero_pages (DirectMap.zeroPages), which clears exactly the pages it is given.

@_extern(c, "memcpy") private func cMemcpy(_ d: UnsafeMutableRawPointer, _ s: UnsafeRawPointer, _ n: Int) -> UnsafeMutableRawPointer
@_extern(c, "memmove") private func cMemmove(_ d: UnsafeMutableRawPointer, _ s: UnsafeRawPointer, _ n: Int) -> UnsafeMutableRawPointer
@_extern(c, "memset") private func cMemset(_ d: UnsafeMutableRawPointer, _ c: CInt, _ n: Int) -> UnsafeMutableRawPointer
@_extern(c, "memcmp") private func cMemcmp(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> CInt

let stringFunctionSuite = SelfTestSuite("string_functions", [
    SelfTest("memcpy_copies_every_length_and_offset", memcpyCopiesEveryLengthAndOffset),
    SelfTest("memmove_overlap_forward_and_backward", memmoveOverlapForwardAndBackward),
    SelfTest("memset_fills_exact_range", memsetFillsExactRange),
    SelfTest("memcmp_orders_by_first_difference", memcmpOrdersByFirstDifference),
    SelfTest("zero_pages_clears_exactly_its_pages", zeroPagesClearsExactlyItsPages),
])

private let bufferSize = 192   // memmove: source 40 + shift 33 + length 100 stays inside

private func withBuffers(_ body: (UnsafeMutablePointer<UInt8>, UnsafeMutablePointer<UInt8>) -> Void) {
    let a = UnsafeMutablePointer<UInt8>.allocate(capacity: bufferSize)
    let b = UnsafeMutablePointer<UInt8>.allocate(capacity: bufferSize)
    body(a, b)
    a.deallocate()
    b.deallocate()
}

private func fillPattern(_ p: UnsafeMutablePointer<UInt8>, seed: UInt8) {
    for i in 0..<bufferSize { p[i] = UInt8(truncatingIfNeeded: i &* 37) &+ seed }
}

private func memcpyCopiesEveryLengthAndOffset(_ t: inout TestContext) {
    var wrong = 0
    withBuffers { source, destination in
        fillPattern(source, seed: 0x80)
        for offset in 0..<9 {
            for length in 0..<(bufferSize - 16) {
                fillPattern(destination, seed: 3)
                let result = cMemcpy(destination + offset, source + 1, length)
                if result != UnsafeMutableRawPointer(destination + offset) { wrong += 1 }
                for i in 0..<bufferSize {
                    let inside = i >= offset && i < offset + length
                    let expected = inside ? source[1 + i - offset] : UInt8(truncatingIfNeeded: i &* 37) &+ 3
                    if destination[i] != expected { wrong += 1 }
                }
            }
        }
    }
    t.expectEqual(wrong, 0, "bytes wrong (or bad return values) after memcpy")
}

private func memmoveOverlapForwardAndBackward(_ t: inout TestContext) {
    var wrong = 0
    withBuffers { buffer, reference in
        for shift in [-9, -8, -7, -1, 1, 7, 8, 9, 33] {
            for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 100] {
                fillPattern(buffer, seed: 0xF0)
                fillPattern(reference, seed: 0xF0)
                let source = 40, destination = 40 + shift
                _ = cMemmove(buffer + destination, buffer + source, length)
                // Reference: copy through a temporary, which is what memmove must behave like.
                var temporary = [UInt8](repeating: 0, count: length)
                for i in 0..<length { temporary[i] = reference[source + i] }
                for i in 0..<length { reference[destination + i] = temporary[i] }
                for i in 0..<bufferSize where buffer[i] != reference[i] { wrong += 1 }
            }
        }
    }
    t.expectEqual(wrong, 0, "bytes wrong after overlapping memmove")
}

private func memsetFillsExactRange(_ t: inout TestContext) {
    var wrong = 0
    withBuffers { buffer, _ in
        for offset in 0..<9 {
            for length in 0..<(bufferSize - 16) {
                fillPattern(buffer, seed: 1)
                _ = cMemset(buffer + offset, 0x1C5, length)   // only the low byte (0xC5) counts
                for i in 0..<bufferSize {
                    let inside = i >= offset && i < offset + length
                    if buffer[i] != (inside ? 0xC5 : UInt8(truncatingIfNeeded: i &* 37) &+ 1) { wrong += 1 }
                }
            }
        }
    }
    t.expectEqual(wrong, 0, "bytes wrong after memset")
}

private func memcmpOrdersByFirstDifference(_ t: inout TestContext) {
    withBuffers { a, b in
        fillPattern(a, seed: 9)
        fillPattern(b, seed: 9)
        t.expectEqual(cMemcmp(a, b, bufferSize), 0, "equal buffers compare equal")
        t.expectEqual(cMemcmp(a, b, 0), 0, "zero length compares equal")
        b[70] = a[70] &+ 1
        b[100] = a[100] &- 1
        t.expect(cMemcmp(a, b, bufferSize) < 0, "first difference decides (a < b at 70)")
        t.expect(cMemcmp(b, a, bufferSize) > 0, "and the reverse order")
        t.expectEqual(cMemcmp(a, b, 70), 0, "bytes before the difference are equal")
        a[5] = 0xFF
        b[5] = 0x01
        t.expect(cMemcmp(a, b, bufferSize) > 0, "bytes compare as unsigned")
    }
}

/// Four pages of 0xA5: zeroing the middle two clears every byte of them and none around them.
private func zeroPagesClearsExactlyItsPages(_ t: inout TestContext) {
    let size = 4 * Int(pageSize)
    let block = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: Int(pageSize))
    defer { block.deallocate() }
    let bytes = block.bindMemory(to: UInt8.self, capacity: size)
    for count in [0, 1, 2] {
        bytes.initialize(repeating: 0xA5, count: size)
        DirectMap.zeroPages(block + Int(pageSize), count: count)
        var wrong = 0
        for i in 0..<size {
            let cleared = i >= Int(pageSize) && i < (1 + count) * Int(pageSize)
            if bytes[i] != (cleared ? 0 : 0xA5) { wrong += 1 }
        }
        t.expectEqual(wrong, 0, "bytes wrong after zeroPages")
    }
}
