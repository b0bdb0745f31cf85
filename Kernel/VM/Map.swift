// Map: an address space as a sorted array of non-overlapping entries over objects, with the
// pmap that holds its translations. Lookup is a binary search (O(log n)) behind a one-entry
// hint; insertion and removal shift the array (O(n) moves of small values, cheap next to
// the page-table work every change does anyway).
// Invariants: entries are sorted by start, pairwise disjoint and inside [lowerBound,
// upperBound); every entry satisfies MapEntry's invariants; every object an entry names holds
// one reference for it; the pmap never maps an address no entry covers, never maps a page
// writable whose entry needs copy, and maps only the page the entry's chain shows there.
// Every public call validates all its arguments before changing anything.
// Locks: (m) map lock, then (o) object locks; one CPU today.

/// Why a map call was refused. Every case leaves the map unchanged.
public enum MapError: Error, Equatable {
    /// An address or length is not a multiple of the page size.
    case unaligned
    /// A zero length, a range that wraps, or one outside the map's bounds.
    case outOfRange
    /// Part of the range is already mapped.
    case overlapping
    /// Part of the range is not mapped (where the call needs every page mapped).
    case notMapped
    /// The protection exceeds the maximum protection, or would raise the maximum.
    case protectionExceedsMaximum
    /// No free range large enough.
    case noSpace
    /// `unwire` of a range that is not wired.
    case notWired
    /// The object call failed.
    case object(ObjectError)
    /// The pmap refused (out of memory for page tables, or an active address space).
    case pmap(PmapError)
    /// Wiring faulted and failed.
    case fault(FaultError)
}

/// An address space.
public final class VMMap {
    public let system: VMSystem
    public let pmap: any PhysicalMap
    public let lowerBound: UInt64
    public let upperBound: UInt64
    public internal(set) var entries: [MapEntry] = []
    public private(set) var isDestroyed = false
    private var hint = 0

    /// A new empty address space over a new pmap. Addresses [lowerBound, upperBound) are
    /// mappable; the default leaves page 0 unmapped forever (null pointers fault).
    public init(system: VMSystem, lowerBound: UInt64 = pageSize,
                upperBound: UInt64 = AddressSpaceLayout.userEnd) throws(MapError) {
        guard lowerBound & (pageSize - 1) == 0, upperBound & (pageSize - 1) == 0 else { throw .unaligned }
        guard lowerBound < upperBound, upperBound <= AddressSpaceLayout.userEnd else { throw .outOfRange }
        do {
            pmap = try system.makePmap()
        } catch {
            throw .pmap(error)
        }
        self.system = system
        self.lowerBound = lowerBound
        self.upperBound = upperBound
        system.register(self)
    }

    // MARK: Lookup

    /// Index of the entry containing `address`, or nil. O(log n).
    func index(containing address: UInt64) -> Int? {
        if hint < entries.count, entries[hint].contains(address) { return hint }
        let candidate = firstIndex(endingAfter: address)
        guard candidate < entries.count, entries[candidate].contains(address) else { return nil }
        hint = candidate
        return candidate
    }

    /// Index of the first entry whose end is above `address` (entries.count if none).
    func firstIndex(endingAfter address: UInt64) -> Int {
        var low = 0, high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].end <= address { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The entry containing `address`, or nil.
    public func entry(containing address: UInt64) -> MapEntry? {
        index(containing: address).map { entries[$0] }
    }

    /// Checks [start, start + length) is a non-empty aligned range inside the map; its end.
    private func checkRange(_ start: UInt64, _ length: UInt64) throws(MapError) -> UInt64 {
        guard start & (pageSize - 1) == 0, length & (pageSize - 1) == 0 else { throw .unaligned }
        guard length > 0 else { throw .outOfRange }
        let (end, overflow) = start.addingReportingOverflow(length)
        guard !overflow, start >= lowerBound, end <= upperBound else { throw .outOfRange }
        return end
    }

    /// True if no entry intersects [start, end).
    private func isFree(_ start: UInt64, _ end: UInt64) -> Bool {
        let index = firstIndex(endingAfter: start)
        return index == entries.count || entries[index].start >= end
    }

    /// True if entries cover [start, end) without a hole.
    private func isFullyMapped(_ start: UInt64, _ end: UInt64) -> Bool {
        var cursor = start
        var index = firstIndex(endingAfter: start)
        while cursor < end {
            guard index < entries.count, entries[index].start <= cursor else { return false }
            cursor = entries[index].end
            index += 1
        }
        return true
    }

    /// The lowest `alignment`-aligned address at or above `hint` where `length` bytes are
    /// free, or nil. `alignment` is a power of two, at least a page.
    public func findFreeSpace(length: UInt64, alignment: UInt64 = pageSize, from hint: UInt64 = 0) -> UInt64? {
        guard length > 0, length & (pageSize - 1) == 0, alignment >= pageSize, alignment.nonzeroBitCount == 1 else { return nil }
        var candidate = max(hint, lowerBound)
        var index = firstIndex(endingAfter: candidate)
        while true {
            let (aligned, overflow) = candidate.addingReportingOverflow(alignment - 1)
            guard !overflow else { return nil }
            candidate = aligned & ~(alignment - 1)
            let (end, overflow2) = candidate.addingReportingOverflow(length)
            guard !overflow2, end <= upperBound else { return nil }
            if index == entries.count || entries[index].start >= end { return candidate }
            candidate = max(candidate, entries[index].end)
            index += 1
        }
    }

    // MARK: Clipping and merging

    /// Splits the entry containing `address` so that an entry starts there. No-op when one
    /// already does or nothing contains it.
    private func clip(at address: UInt64) {
        guard let index = index(containing: address), entries[index].start < address else { return }
        var front = entries[index]
        var back = front
        front.end = address
        back.start = address
        back.offset = front.offset + front.length
        back.object?.reference()
        entries[index] = front
        entries.insert(back, at: index + 1)
    }

    /// Merges entry `index` with its neighbours where MapEntry.canMerge allows.
    private func simplify(around index: Int) {
        var index = index
        if index > 0 && index < entries.count && entries[index - 1].canMerge(with: entries[index]) { index -= 1 }
        while index + 1 < entries.count && index >= 0 && entries[index].canMerge(with: entries[index + 1]) {
            let next = entries.remove(at: index + 1)
            entries[index].end = next.end
            next.object?.deallocate()
        }
        hint = 0
    }

    // MARK: Map and unmap

    /// Maps `length` bytes of `object` from `offset` at `address` (or, if nil, at the first
    /// free range) and returns the address. The entry takes its own reference to `object`;
    /// nil maps anonymous zero-fill memory (grown in place from an adjacent anonymous entry
    /// when possible: coalesce). `copyOnWrite`: the object is shared copy-on-write (the first
    /// write shadows it). Throws `unaligned`, `outOfRange`, `overlapping`, `noSpace`,
    /// `protectionExceedsMaximum`, `object(.outOfRange)` if the range passes the object's end.
    @discardableResult
    public func map(_ object: VMObject?, offset: UInt64 = 0, at address: UInt64?, length: UInt64,
                    protection: Protection, maxProtection: Protection = .all, inheritance: Inheritance = .copy,
                    copyStrategy: CopyStrategy = .symmetric, copyOnWrite: Bool = false) throws(MapError) -> UInt64 {
        guard length & (pageSize - 1) == 0, offset & (pageSize - 1) == 0 else { throw .unaligned }
        guard length > 0 else { throw .outOfRange }
        guard protection.isSubset(of: maxProtection) else { throw .protectionExceedsMaximum }
        if let object {
            guard !object.isTerminated else { throw .object(.outOfRange) }
            let (objectEnd, overflow) = offset.addingReportingOverflow(length)
            guard !overflow, objectEnd <= object.size else {
                throw .object(.outOfRange)
            }
        }
        let start: UInt64
        if let address {
            let end = try checkRange(address, length)
            guard isFree(address, end) else { throw .overlapping }
            start = address
        } else {
            guard let found = findFreeSpace(length: length) else { throw .noSpace }
            start = found
        }
        let end = start + length
        let index = firstIndex(endingAfter: start)
        // Coalesce: fresh anonymous memory right after an anonymous entry of the same kind
        // grows that entry's object instead of creating a new entry.
        if object == nil, index > 0 {
            let previous = entries[index - 1]
            if previous.end == start, let previousObject = previous.object, previous.protection == protection,
               previous.maxProtection == maxProtection, previous.inheritance == inheritance,
               previous.copyStrategy == copyStrategy, previous.wiredCount == 0, !previous.needsCopy, !copyOnWrite,
               previousObject.coalesce(offset: previous.offset, length: previous.length, extra: length) {
                entries[index - 1].end = end
                return start
            }
        }
        object?.reference()
        let entry = MapEntry(start: start, end: end, object: object, offset: object == nil ? 0 : offset,
                             protection: protection, maxProtection: maxProtection, inheritance: inheritance,
                             copyStrategy: copyStrategy, wiredCount: 0, needsCopy: copyOnWrite && object != nil)
        entries.insert(entry, at: index)
        hint = index
        return start
    }

    /// Removes every mapping in [start, start + length): holes are fine. Wired pages are
    /// unwired, translations removed, the entries' object references dropped (which may
    /// collapse or terminate objects). Throws `unaligned`, `outOfRange`.
    public func unmap(start: UInt64, length: UInt64) throws(MapError) {
        let end = try checkRange(start, length)
        clip(at: start)
        clip(at: end)
        let index = firstIndex(endingAfter: start)
        while index < entries.count && entries[index].start < end {
            let entry = entries.remove(at: index)
            if entry.wiredCount > 0 { unwirePages(of: entry) }
            removeTranslations(entry.start, entry.end)
            entry.object?.deallocate()
        }
        hint = 0
    }

    func removeTranslations(_ start: UInt64, _ end: UInt64) {
        do {
            try pmap.remove(start: VirtualAddress(start), byteCount: end - start)
        } catch {
            preconditionFailure("VMMap: pmap refused to remove a validated range")
        }
    }

    // MARK: Protection, inheritance, wiring

    /// Sets the protection of [start, start + length) (every page must be mapped). With
    /// `setMaximum`, sets the maximum protection instead (it can only be lowered) and lowers
    /// the protection to fit it. Rights taken away are taken from the pmap at once; rights
    /// given are granted by the next fault. Throws `unaligned`, `outOfRange`, `notMapped`,
    /// `protectionExceedsMaximum`.
    public func protect(start: UInt64, length: UInt64, to protection: Protection, setMaximum: Bool = false) throws(MapError) {
        let end = try checkRange(start, length)
        guard isFullyMapped(start, end) else { throw .notMapped }
        var index = firstIndex(endingAfter: start)
        while index < entries.count && entries[index].start < end {
            let entry = entries[index]
            // A new protection must fit the maximum; a new maximum may only lower it.
            guard protection.isSubset(of: entry.maxProtection) else { throw .protectionExceedsMaximum }
            index += 1
        }
        clip(at: start)
        clip(at: end)
        index = firstIndex(endingAfter: start)
        while index < entries.count && entries[index].start < end {
            let old = entries[index].protection
            if setMaximum {
                entries[index].maxProtection = protection
                entries[index].protection = old.intersection(protection)
            } else {
                entries[index].protection = protection
            }
            let new = entries[index].protection
            if !old.subtracting(new).isEmpty {
                let entry = entries[index]
                do {
                    // Every leaf is at least readable: read-only only lowers; the next fault
                    // grants back what `new` still allows.
                    try pmap.protect(start: VirtualAddress(entry.start), byteCount: entry.length,
                                     to: new.isEmpty ? .none : .readOnly)
                } catch {
                    preconditionFailure("VMMap.protect: pmap refused a validated range")
                }
            }
            index += 1
        }
        simplify(around: firstIndex(endingAfter: start))
    }

    /// Sets what a fork gives the child of [start, start + length); holes are skipped.
    /// `copyStrategy` (optional) also sets how a `.copy` is made. Throws `unaligned`, `outOfRange`.
    public func inherit(start: UInt64, length: UInt64, _ inheritance: Inheritance,
                        copyStrategy: CopyStrategy? = nil) throws(MapError) {
        let end = try checkRange(start, length)
        clip(at: start)
        clip(at: end)
        var index = firstIndex(endingAfter: start)
        while index < entries.count && entries[index].start < end {
            entries[index].inheritance = inheritance
            if let copyStrategy { entries[index].copyStrategy = copyStrategy }
            index += 1
        }
        simplify(around: firstIndex(endingAfter: start))
    }

    /// Wires [start, start + length): every page is faulted in (for write if the entry is
    /// writable, which resolves copy-on-write), mapped wired and its page wired, so no later
    /// access faults. Throws `unaligned`, `outOfRange`, `notMapped`, `fault(_)` (pages wired
    /// before the failure are unwired again).
    public func wire(start: UInt64, length: UInt64) throws(MapError) {
        let end = try checkRange(start, length)
        guard isFullyMapped(start, end) else { throw .notMapped }
        clip(at: start)
        clip(at: end)
        var index = firstIndex(endingAfter: start)
        while index < entries.count && entries[index].start < end {
            if entries[index].wiredCount == 0 {
                let access: FaultAccess = entries[index].protection.contains(.write) ? .write : .read
                var address = entries[index].start
                while address < entries[index].end {
                    do {
                        try fault(at: address, access: access, wiring: true)
                    } catch {
                        // Undo this entry's pages, then the entries wired before it.
                        var undo = entries[index]
                        undo.end = address
                        if undo.start < undo.end { unwirePages(of: undo) }
                        var back = firstIndex(endingAfter: start)
                        while back < index {
                            entries[back].wiredCount -= 1
                            if entries[back].wiredCount == 0 { unwirePages(of: entries[back]) }
                            back += 1
                        }
                        throw .fault(error)
                    }
                    address += pageSize
                }
            }
            entries[index].wiredCount += 1
            index += 1
        }
    }

    /// Undoes one `wire` of [start, start + length). Throws `unaligned`, `outOfRange`,
    /// `notMapped`, `notWired` (some entry in the range is not wired).
    public func unwire(start: UInt64, length: UInt64) throws(MapError) {
        let end = try checkRange(start, length)
        guard isFullyMapped(start, end) else { throw .notMapped }
        var index = firstIndex(endingAfter: start)
        while index < entries.count && entries[index].start < end {
            guard entries[index].wiredCount > 0 else { throw .notWired }
            index += 1
        }
        clip(at: start)
        clip(at: end)
        index = firstIndex(endingAfter: start)
        while index < entries.count && entries[index].start < end {
            entries[index].wiredCount -= 1
            if entries[index].wiredCount == 0 { unwirePages(of: entries[index]) }
            index += 1
        }
        simplify(around: firstIndex(endingAfter: start))
    }

    /// Undoes one wiring of every page of `entry`: the pages are the entry's top object's own
    /// (wiring copies them up), found there even if a translation was removed meanwhile.
    private func unwirePages(of entry: MapEntry) {
        guard let top = entry.object else { return }
        var address = entry.start
        while address < entry.end {
            let va = VirtualAddress(address)
            if let page = top.page(at: entry.objectOffset(of: address)), page.wireCount > 0 {
                try? system.pages.unwire(page)
            }
            if let translation = try? pmap.extract(va), translation.isWired { try? pmap.setWired(false, at: va) }
            address += pageSize
        }
    }

    // MARK: Fork and destroy

    /// A new address space with this one's entries per their inheritance: `.share` entries
    /// share the object, `.copy` entries are copied (symmetric: both sides shadow on first
    /// write; delayed: the child gets a copy object; wired entries and chains at the depth
    /// bound are copied eagerly), `.none` entries are left out. Throws `pmap(.outOfMemory)`
    /// or `object(.outOfMemory)`.
    public func fork() throws(MapError) -> VMMap {
        let child = try VMMap(system: system, lowerBound: lowerBound, upperBound: upperBound)
        for index in entries.indices {
            let inheritance = entries[index].inheritance
            if inheritance == .none { continue }
            if entries[index].object == nil {
                if inheritance == .copy {
                    child.entries.append(fresh(entries[index]))
                    continue
                }
                entries[index].object = createObject(for: entries[index])
                entries[index].offset = 0
            }
            do {
                switch inheritance {
                case .share:
                    if entries[index].needsCopy { try resolveNeedsCopy(index) }
                    entries[index].object?.reference()
                    child.entries.append(fresh(entries[index]))
                case .copy:
                    try copyEntry(index, into: child)
                case .none:
                    break
                }
            } catch {
                child.destroy()
                throw .object(error)
            }
        }
        return child
    }

    /// The entry as the child gets it: not wired.
    private func fresh(_ entry: MapEntry) -> MapEntry {
        var copy = entry
        copy.wiredCount = 0
        return copy
    }

    /// Copies entry `index` into `child` (its object exists).
    private func copyEntry(_ index: Int, into child: VMMap) throws(ObjectError) {
        guard var object = entries[index].object else { return }
        let entry = entries[index]
        object.collapse()
        if entry.wiredCount > 0 {
            // Wired pages must never fault: the child gets its own pages now.
            let flat = try object.flattenedCopy(offset: entry.offset, length: entry.length)
            var childEntry = fresh(entry)
            childEntry.object = flat
            childEntry.offset = 0
            childEntry.needsCopy = false
            child.entries.append(childEntry)
            return
        }
        if object.chainDepth >= system.maximumChainDepth {
            // At the bound: the parent moves to a flat copy of what it sees (the cost of
            // copying its pages, once) and the copy-on-write below starts from depth <= 1.
            let flat = try object.flattenedCopy(offset: entry.offset, length: entry.length)
            removeTranslations(entry.start, entry.end)
            entries[index].object = flat
            entries[index].offset = 0
            entries[index].needsCopy = false
            object.deallocate()
            object = flat
        }
        // Symmetric copy-on-write needs every writer of the object to shadow it first; if
        // others may write it directly (it is shared and this entry writes it in place), only
        // a delayed copy keeps the child's snapshot: every writer's fault pushes to it.
        let sharedWithWriters = !entries[index].needsCopy && object.referenceCount > 1
        if (entry.copyStrategy == .delayed || sharedWithWriters) && !entries[index].needsCopy && object.isAnonymous {
            let copy = try object.makeDelayedCopy()
            var childEntry = fresh(entries[index])
            childEntry.object = copy
            childEntry.needsCopy = true
            child.entries.append(childEntry)
            return
        }
        object.reference()
        entries[index].needsCopy = true
        var childEntry = fresh(entries[index])
        childEntry.needsCopy = true
        child.entries.append(childEntry)
        if entries[index].protection.contains(.write) || entries[index].protection.contains(.execute) {
            do {
                try pmap.protect(start: VirtualAddress(entries[index].start), byteCount: entries[index].length, to: .readOnly)
            } catch {
                preconditionFailure("VMMap.fork: pmap refused to write-protect a validated range")
            }
        }
    }

    /// A new anonymous object for an entry first touched.
    func createObject(for entry: MapEntry) -> VMObject {
        do {
            return try VMObject(system: system, size: entry.length)
        } catch {
            preconditionFailure("VMMap: entry length not page-aligned")
        }
    }

    /// Gives entry `index` its own object: a shadow of the shared one, unless nobody else
    /// can see the shared one any more (one reference, no copy object), in which case the
    /// entry simply stops needing copy.
    func resolveNeedsCopy(_ index: Int) throws(ObjectError) {
        guard entries[index].needsCopy, let object = entries[index].object else { return }
        if object.referenceCount == 1 && object.copy == nil && object.shadowers.isEmpty && !object.isCached {
            entries[index].needsCopy = false
            return
        }
        let top = try object.shadow(offset: entries[index].offset, length: entries[index].length)
        entries[index].object = top
        entries[index].offset = 0
        entries[index].needsCopy = false
    }

    /// Removes every entry and destroys the pmap. The map cannot be used afterwards. The
    /// pmap must not be active (activate the kernel's first); if it is, its translations stay
    /// until it is destroyed by the caller.
    public func destroy() {
        guard !isDestroyed else { return }
        var index = entries.count
        while index > 0 {
            index -= 1
            let entry = entries.remove(at: index)
            if entry.wiredCount > 0 { unwirePages(of: entry) }
            removeTranslations(entry.start, entry.end)
            entry.object?.deallocate()
        }
        try? pmap.destroy()
        isDestroyed = true
        system.unregister(self)
    }

    // MARK: Statistics

    /// The longest shadow chain under any entry (links below the entry's object).
    public var maximumChainDepth: Int {
        var deepest = 0
        for entry in entries { if let object = entry.object { deepest = max(deepest, object.chainDepth) } }
        return deepest
    }
}
