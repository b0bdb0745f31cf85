// ReverseMap: physical page -> every (pmap, virtual address) that maps it (pv entries), and
// the operations that act on all mappings of a page at once: modified/referenced queries and
// clears, pageProtect and removeAll.
// Invariants:
//  - A managed page's record lists exactly the leaf entries, in every pmap, that map it with
//    the managed software bit; `mappingCount` is the list length. Pmap.enter, remove, protect
//    to none and destroy keep this true; nothing else edits managed leaves.
//  - A pv entry names its pmap unretained: a pmap cannot go away while it has mappings,
//    because `destroy` removes them all first.
//  - Entries come from a pool of wired pages (170 per page) that only grows; free entries are
//    on a singly-linked free list threaded through `next`.
// Locks: none yet (one CPU). With SMP, (p) a pv lock per page and the pmap lock of each entry.

/// One mapping of a managed page.
public struct PVEntry {
    var next: UnsafeMutablePointer<PVEntry>?
    /// The pmap, as `Unmanaged.toOpaque()` (the pmap outlives its mappings).
    var pmap: UnsafeMutableRawPointer?
    var address: UInt64
}

/// The reverse map shared by the kernel pmap and every user pmap created from it.
public final class ReverseMap<Format: PageTableFormat, Hardware: MMUOperations> {
    public typealias Map = Pmap<Format, Hardware>

    let pages: PageFrames
    private var freeEntries: UnsafeMutablePointer<PVEntry>?
    /// pv entries describing live mappings.
    public private(set) var entriesInUse = 0
    /// pv entries the pool holds (in use or free).
    public private(set) var entryCapacity = 0
    /// Wired pages the pool took from PageFrames.
    public private(set) var poolPages = 0

    init(pages: PageFrames) { self.pages = pages }

    // MARK: Pool

    /// A free entry; grows the pool by one page when it is empty. Throws `outOfMemory`.
    func allocateEntry() throws(PmapError) -> UnsafeMutablePointer<PVEntry> {
        if freeEntries == nil { try grow() }
        guard let entry = freeEntries else { preconditionFailure("ReverseMap.allocateEntry: pool empty after growing") }
        freeEntries = entry.pointee.next
        entriesInUse += 1
        return entry
    }

    /// Puts an entry back on the free list.
    func releaseEntry(_ entry: UnsafeMutablePointer<PVEntry>) {
        precondition(entriesInUse > 0, "ReverseMap.releaseEntry: more entries released than allocated")
        entry.pointee = PVEntry(next: freeEntries, pmap: nil, address: 0)
        freeEntries = entry
        entriesInUse -= 1
    }

    private func grow() throws(PmapError) {
        let page: Page
        do {
            page = try pages.allocate(zeroed: false)
            try pages.wire(page)
        } catch {
            throw .outOfMemory
        }
        let perPage = Int(pageSize) / MemoryLayout<PVEntry>.stride
        let entries = page.contents.bindMemory(to: PVEntry.self, capacity: perPage)
        for index in 0..<perPage {
            (entries + index).initialize(to: PVEntry(next: freeEntries, pmap: nil, address: 0))
            freeEntries = entries + index
        }
        entryCapacity += perPage
        poolPages += 1
    }

    // MARK: Linking (Pmap only)

    /// Links a mapping of `page` at `address` in `pmap` using an entry from `allocateEntry`.
    func insert(_ entry: UnsafeMutablePointer<PVEntry>, page: Page, pmap: Map, address: UInt64) {
        entry.pointee = PVEntry(next: page.record.pointee.mappings,
                                pmap: Unmanaged.passUnretained(pmap).toOpaque(), address: address)
        page.record.pointee.mappings = entry
        page.record.pointee.mappingCount += 1
    }

    /// Unlinks the mapping of `page` at `address` in `pmap` and frees its entry. The mapping
    /// must be on the list: a managed leaf without a pv entry is a broken invariant.
    func remove(page: Page, pmap: Map, address: UInt64) {
        let key = Unmanaged.passUnretained(pmap).toOpaque()
        var link = page.record.pointee.mappings
        var previous: UnsafeMutablePointer<PVEntry>? = nil
        while let entry = link {
            if entry.pointee.pmap == key && entry.pointee.address == address {
                if let previous { previous.pointee.next = entry.pointee.next } else { page.record.pointee.mappings = entry.pointee.next }
                precondition(page.record.pointee.mappingCount > 0, "ReverseMap.remove: mappingCount underflow")
                page.record.pointee.mappingCount -= 1
                releaseEntry(entry)
                return
            }
            previous = entry
            link = entry.pointee.next
        }
        preconditionFailure("ReverseMap.remove: a managed mapping missing from its page's pv list")
    }

    @inline(__always) private func pmap(of entry: UnsafeMutablePointer<PVEntry>) -> Map {
        guard let opaque = entry.pointee.pmap else { preconditionFailure("ReverseMap: pv entry without a pmap") }
        return Unmanaged<Map>.fromOpaque(opaque).takeUnretainedValue()
    }

    // MARK: Queries

    /// Number of mappings of `page` (0 for unmanaged pages: their mappings are not tracked).
    public func mappingCount(of page: Page) -> Int { page.mappingCount }

    /// Calls `body` with every (pmap, address) mapping `page`, most recent first.
    public func forEachMapping(of page: Page, _ body: (Map, VirtualAddress) -> Void) {
        var link = page.record.pointee.mappings
        while let entry = link {
            link = entry.pointee.next
            body(pmap(of: entry), VirtualAddress(entry.pointee.address))
        }
    }

    /// True if the page was written through any mapping since its modified state was last
    /// cleared, or its cached dirty bit is set.
    public func isModified(_ page: Page) -> Bool {
        if page.isDirty { return true }
        var modified = false
        forEachMapping(of: page) { map, address in
            if map.leafAttributes(mapping: address.value).isModified { modified = true }
        }
        return modified
    }

    /// True if the page was accessed through any mapping since its referenced state was last
    /// cleared, or its cached referenced bit is set.
    public func isReferenced(_ page: Page) -> Bool {
        if page.isReferenced { return true }
        var referenced = false
        forEachMapping(of: page) { map, address in
            if map.leafAttributes(mapping: address.value).isReferenced { referenced = true }
        }
        return referenced
    }

    /// Clears the modified state of the page: its cached dirty bit and every mapping's modified
    /// bit (hardware D / AP[2]), invalidating each changed translation, so the next write
    /// through any mapping is seen again.
    public func clearModified(_ page: Page) {
        page.record.pointee.flags.remove(.dirty)
        forEachMapping(of: page) { map, address in
            map.rewriteLeaf(mapping: address.value) { entry in map.format.clearingModified(entry) }
        }
    }

    /// Clears the referenced state of the page: its cached bit and every mapping's A / AF bit,
    /// invalidating each changed translation, so the next access through any mapping is seen.
    public func clearReferenced(_ page: Page) {
        page.record.pointee.flags.remove(.referenced)
        forEachMapping(of: page) { map, address in
            map.rewriteLeaf(mapping: address.value) { entry in map.format.clearingReferenced(entry) }
        }
    }

    // MARK: Page-wide changes

    /// Restricts every mapping of `page` to at most `protection`: `.readOnly` write-protects
    /// them all (their modified bits move into the page's dirty bit first), `.none` removes
    /// them (`removeAll`). A protection that takes nothing away changes nothing.
    public func pageProtect(_ page: Page, to protection: Protection) {
        if protection.isEmpty {
            removeAll(page)
            return
        }
        let allowed = protection.hardwareExpressible
        forEachMapping(of: page) { map, address in
            map.restrictLeaf(mapping: address.value, to: allowed)
        }
    }

    /// Removes every mapping of `page` from every pmap, folding their modified and referenced
    /// bits into the page's record.
    public func removeAll(_ page: Page) {
        while let entry = page.record.pointee.mappings {
            let map = pmap(of: entry)
            map.removeMapping(at: entry.pointee.address)
        }
    }

    /// Checks every pv entry of `page` against the page tables: each names a live managed leaf
    /// mapping this page. Returns the first broken rule, or nil. For tests.
    public func invariantViolation(of page: Page) -> StaticString? {
        var count = 0
        var broken: StaticString? = nil
        forEachMapping(of: page) { map, address in
            count += 1
            guard let translation = map.leafTranslation(at: address.value) else {
                broken = "ReverseMap: pv entry for an unmapped address"
                return
            }
            if translation.physicalAddress != page.physicalAddress { broken = "ReverseMap: pv entry for another frame" }
            if !translation.isManaged { broken = "ReverseMap: pv entry for an unmanaged leaf" }
        }
        if count != page.mappingCount { return "ReverseMap: mappingCount disagrees with the list" }
        return broken
    }
}
