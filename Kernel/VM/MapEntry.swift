// MapEntry: one contiguous range of an address space over one object.
// Invariants: start < end, both page-aligned; protection ⊆ maxProtection; `object` nil means
// anonymous memory not touched yet (the first fault creates its object); `needsCopy` means
// the object is shared copy-on-write and the first write must shadow it, so the entry's
// mappings are never writable while it is set; a wired entry (wiredCount > 0) has every page
// resident in the entry's own (top) object, wired and mapped, and never needs copy.
// Locks: (m) the map lock.

/// What a child address space gets of an entry at fork.
public enum Inheritance: Equatable {
    /// The child shares the object: writes are seen by both.
    case share
    /// The child gets a copy (copy-on-write, per the entry's `copyStrategy`).
    case copy
    /// The child does not get the range.
    case none
}

/// How an entry inherited as `.copy` is copied.
public enum CopyStrategy: Equatable {
    /// Both sides keep the object and shadow it on their first write.
    case symmetric
    /// The parent keeps writing its object; the child reads a copy object the parent's
    /// writes push old pages into (Mach's delayed copy).
    case delayed
}

/// One entry of a VMMap.
public struct MapEntry {
    public internal(set) var start: UInt64
    public internal(set) var end: UInt64
    public internal(set) var object: VMObject?
    /// Offset in `object` of `start`.
    public internal(set) var offset: UInt64
    public internal(set) var protection: Protection
    public internal(set) var maxProtection: Protection
    public internal(set) var inheritance: Inheritance
    public internal(set) var copyStrategy: CopyStrategy
    public internal(set) var wiredCount: Int
    public internal(set) var needsCopy: Bool

    /// Bytes covered.
    public var length: UInt64 { end - start }

    /// True if `address` lies in the entry.
    public func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    /// The object offset of `address` (which the entry contains).
    func objectOffset(of address: UInt64) -> UInt64 { offset + (address - start) }

    /// True if `next` starts where this one ends and could be one entry with it.
    func canMerge(with next: MapEntry) -> Bool {
        guard end == next.start, protection == next.protection, maxProtection == next.maxProtection,
              inheritance == next.inheritance, copyStrategy == next.copyStrategy,
              wiredCount == 0, next.wiredCount == 0, needsCopy == next.needsCopy else { return false }
        guard let object, let nextObject = next.object else { return false }
        return object === nextObject && offset + length == next.offset
    }
}
