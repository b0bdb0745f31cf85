// CommandLine: the boot command line (PVH cmdline on x86_64, /chosen/bootargs on aarch64),
// copied into the kernel before the loader's memory can be reused.
// Invariants: at most `capacity` bytes are kept (a longer line is cut, and `wasTruncated`
// says so); words are separated by spaces; nothing here allocates.

struct KernelCommandLine {
    static let capacity = 256
    private var storage = InlineArray<256, UInt8>(repeating: 0)
    private(set) var count = 0
    private(set) var wasTruncated = false

    init() {}

    /// Copies `bytes` (stopping at a NUL).
    init(bytes: UnsafeRawBufferPointer) {
        for byte in bytes {
            if byte == 0 { break }
            guard count < Self.capacity else { wasTruncated = true; break }
            storage[count] = byte
            count += 1
        }
    }

    /// True when one space-separated word equals `word`.
    func contains(word: StaticString) -> Bool {
        var start = 0
        while start <= count {
            var end = start
            while end < count && storage[end] != UInt8(ascii: " ") { end += 1 }
            if wordMatches(word, from: start, to: end) { return true }
            start = end + 1
        }
        return false
    }

    private func wordMatches(_ word: StaticString, from start: Int, to end: Int) -> Bool {
        guard word.utf8CodeUnitCount == end - start, end > start else { return false }
        return word.withUTF8Buffer { expected in
            for index in 0..<expected.count where expected[index] != storage[start + index] { return false }
            return true
        }
    }

    func write() {
        for index in 0..<count { Console.put(storage[index]) }
    }
}
