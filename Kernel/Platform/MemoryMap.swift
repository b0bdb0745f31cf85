// MemoryMap: the usable and reserved physical memory the boot protocol reported.
// Invariants: at most `capacity` ranges of each kind; usable ranges are page-aligned,
// non-empty, sorted and disjoint after `normalize()`; nothing here allocates from the heap,
// because the memory map is built before the heap exists.

/// Fixed-capacity list of physical ranges, usable before any heap exists.
public struct PhysicalRangeList {
    public static let capacity = 32
    private var storage: InlineArray<32, PhysicalRange>
    public private(set) var count: Int = 0

    public init() {
        storage = InlineArray(repeating: PhysicalRange(start: PhysicalAddress(0), end: PhysicalAddress(0)))
    }

    public var isFull: Bool { count == Self.capacity }

    /// Appends `range`; returns false (and drops it) when the list is full.
    @discardableResult
    public mutating func append(_ range: PhysicalRange) -> Bool {
        guard count < Self.capacity else { return false }
        storage[count] = range
        count += 1
        return true
    }

    public subscript(index: Int) -> PhysicalRange {
        get {
            precondition(index >= 0 && index < count, "PhysicalRangeList: index out of range")
            return storage[index]
        }
        set {
            precondition(index >= 0 && index < count, "PhysicalRangeList: index out of range")
            storage[index] = newValue
        }
    }

    public mutating func remove(at index: Int) {
        precondition(index >= 0 && index < count, "PhysicalRangeList: index out of range")
        var i = index
        while i + 1 < count { storage[i] = storage[i + 1]; i += 1 }
        count -= 1
    }

    /// Sorts by start address (insertion sort: the lists are tiny).
    public mutating func sort() {
        var i = 1
        while i < count {
            let item = storage[i]
            var j = i - 1
            while j >= 0 && storage[j].start.value > item.start.value {
                storage[j + 1] = storage[j]
                j -= 1
            }
            storage[j + 1] = item
            i += 1
        }
    }

    /// Total bytes covered.
    public var totalBytes: UInt64 {
        var sum: UInt64 = 0
        for i in 0..<count { sum &+= storage[i].byteCount }
        return sum
    }
}

/// Physical memory as the firmware or boot loader described it.
public struct MemoryMap {
    /// RAM the kernel may manage.
    public var usable = PhysicalRangeList()
    /// Ranges inside usable RAM that must never be handed out (kernel image, boot tables, DTB).
    public var reserved = PhysicalRangeList()
    /// Set when the firmware reported more ranges than fit; the extra ones were dropped.
    public var overflowed = false

    public init() {}

    public mutating func addUsable(_ range: PhysicalRange) {
        let aligned = range.pageAlignedInterior
        guard !aligned.isEmpty else { return }
        if !usable.append(aligned) { overflowed = true }
    }

    public mutating func addReserved(_ range: PhysicalRange) {
        guard !range.isEmpty else { return }
        if !reserved.append(range) { overflowed = true }
    }

    /// Sorts usable RAM and merges overlapping or touching ranges.
    public mutating func normalize() {
        usable.sort()
        var i = 0
        while i + 1 < usable.count {
            let a = usable[i], b = usable[i + 1]
            if b.start.value <= a.end.value {
                usable[i] = PhysicalRange(start: a.start, end: max(a.end, b.end))
                usable.remove(at: i + 1)
            } else {
                i += 1
            }
        }
        reserved.sort()
    }

    /// Usable ranges minus the reserved ones, page-aligned, written into `result`.
    public func availableRanges() -> PhysicalRangeList {
        var result = PhysicalRangeList()
        for u in 0..<usable.count {
            var pieceStart = usable[u].start.value
            let pieceEnd = usable[u].end.value
            for r in 0..<reserved.count where pieceStart < pieceEnd {
                // Reserved ranges grow outward to whole pages: a partly reserved page is reserved.
                let rStart = reserved[r].start.value & ~(pageSize - 1)
                let rEnd = (reserved[r].end.value &+ pageSize &- 1) & ~(pageSize - 1)
                if rEnd <= pieceStart || rStart >= pieceEnd { continue }
                if rStart > pieceStart {
                    if !result.append(PhysicalRange(start: PhysicalAddress(pieceStart), end: PhysicalAddress(rStart))) { return result }
                }
                pieceStart = max(pieceStart, rEnd)
            }
            if pieceStart < pieceEnd {
                if !result.append(PhysicalRange(start: PhysicalAddress(pieceStart), end: PhysicalAddress(pieceEnd))) { return result }
            }
        }
        return result
    }
}
