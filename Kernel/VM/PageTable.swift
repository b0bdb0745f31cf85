// PageTable: the one page-table walker/mapper, generic over the format. It finds, creates,
// installs, visits and clears entries in a tree of tables reached through the direct map;
// it knows nothing about TLBs, the reverse map or policy (that is Pmap's job).
// Invariants:
//  - Every table is a page from `PageFrames` flagged `pageTable`, wired, and its record's
//    tableEntryCount equals its number of valid entries. A user root counts only its user-half
//    entries (the kernel half is a copy of the kernel root's entries).
//  - Tables at levels below `firstReclaimableLevel` are never freed: the root, and in the
//    kernel pmap the level-1 tables, whose root entries every user pmap shares.
//  - A table that becomes empty is unlinked from its parent at once but not freed: it is
//    handed back in `TableChanges.retired`, and the pmap frees it only after the TLB and
//    paging-structure caches have forgotten it (a walk cache may still point at it; reusing
//    the page first could let a speculative walk load junk translations).
// Locks: the owning pmap's (one CPU today).

/// Where an entry lives: its slot, its level and the table holding it.
public struct PageTableSlot {
    public let entry: UnsafeMutablePointer<UInt64>
    public let level: Int
    public let table: PhysicalAddress
    public var value: UInt64 { entry.pointee }
}

/// Tables created and retired by one operation, for the pmap to account and free.
struct TableChanges {
    var created = 0
    var createdRootEntry = false
    /// Unlinked empty tables, to free after TLB invalidation.
    var retired: [Page] = []
    /// One address under each retired table, for walk-cache invalidation.
    var retiredAddresses: [UInt64] = []

    mutating func retire(_ page: Page, coveringAddress address: UInt64) {
        retired.append(page)
        retiredAddresses.append(address)
    }
}

/// What a range visitor wants done with a leaf.
enum LeafAction {
    /// Leave it (the visitor may have rewritten it in place, keeping it valid).
    case keep
    /// Clear it; tables it leaves empty are retired.
    case clear
}

/// A tree of page tables rooted at `root`.
public struct PageTable<Format: PageTableFormat> {
    public let format: Format
    public let root: PhysicalAddress
    let pages: PageFrames
    let firstReclaimableLevel: Int

    init(format: Format, root: PhysicalAddress, pages: PageFrames, firstReclaimableLevel: Int) {
        self.format = format
        self.root = root
        self.pages = pages
        self.firstReclaimableLevel = firstReclaimableLevel
    }

    @inline(__always) func entries(of table: PhysicalAddress) -> UnsafeMutablePointer<UInt64> {
        DirectMap.pointer(to: table).assumingMemoryBound(to: UInt64.self)
    }

    @inline(__always) private func tablePage(_ table: PhysicalAddress) -> Page {
        guard let page = pages.page(at: table) else { preconditionFailure("PageTable: table outside the page array") }
        return page
    }

    @inline(__always) private func countUp(_ table: PhysicalAddress) {
        let page = tablePage(table)
        precondition(page.isPageTable && page.record.pointee.tableEntryCount < 512, "PageTable.countUp: not a table, or more than 512 entries")
        page.record.pointee.tableEntryCount += 1
    }

    @inline(__always) private func countDown(_ table: PhysicalAddress) -> Int {
        let page = tablePage(table)
        precondition(page.record.pointee.tableEntryCount > 0, "PageTable.countDown: entry count underflow")
        page.record.pointee.tableEntryCount -= 1
        return Int(page.record.pointee.tableEntryCount)
    }

    // MARK: Lookup

    /// The leaf mapping `address`, at whatever level, or nil when some level is invalid.
    public func leaf(containing address: UInt64) -> PageTableSlot? {
        var table = root
        var level = 0
        while true {
            let slot = entries(of: table) + format.index(of: address, level: level)
            switch format.kind(of: slot.pointee, level: level) {
            case .invalid:
                return nil
            case .leaf:
                return PageTableSlot(entry: slot, level: level, table: table)
            case .table:
                precondition(level + 1 < format.levelCount, "PageTable.leaf: table entry at the last level")
                table = format.tableAddress(of: slot.pointee)
                level += 1
            }
        }
    }

    // MARK: Creation

    /// The slot at `level` for `address`, creating the missing tables above it.
    /// The slot may hold anything (the caller decides). Throws `alreadyMapped` when a leaf
    /// above `level` covers `address`, `outOfMemory` when a table cannot be allocated; either
    /// way the tables this call created are unlinked again and retired in `changes`.
    func slot(for address: UInt64, level target: Int, isUser: Bool,
              changes: inout TableChanges) throws(PmapError) -> PageTableSlot {
        var table = root
        var createdSlots = InlineArray<4, UnsafeMutablePointer<UInt64>?>(repeating: nil)
        var createdParents = InlineArray<4, PhysicalAddress>(repeating: PhysicalAddress(0))
        var createdCount = 0
        for level in 0..<target {
            let slot = entries(of: table) + format.index(of: address, level: level)
            switch format.kind(of: slot.pointee, level: level) {
            case .table:
                table = format.tableAddress(of: slot.pointee)
            case .leaf:
                unwind(createdSlots, createdParents, createdCount, address: address, changes: &changes)
                throw .alreadyMapped
            case .invalid:
                let page: Page
                do {
                    page = try pages.allocateTablePage()
                } catch {
                    unwind(createdSlots, createdParents, createdCount, address: address, changes: &changes)
                    throw .outOfMemory
                }
                slot.pointee = format.tableEntry(page.physicalAddress, level: level, isUser: isUser)
                countUp(table)
                createdSlots[createdCount] = slot
                createdParents[createdCount] = table
                createdCount += 1
                changes.created += 1
                if level == 0 { changes.createdRootEntry = true }
                table = page.physicalAddress
            }
        }
        return PageTableSlot(entry: entries(of: table) + format.index(of: address, level: target), level: target, table: table)
    }

    /// Unlinks the tables a failed `slot(for:)` created, deepest first (each is empty once its
    /// child is gone).
    private func unwind(_ slots: InlineArray<4, UnsafeMutablePointer<UInt64>?>, _ parents: InlineArray<4, PhysicalAddress>,
                        _ count: Int, address: UInt64, changes: inout TableChanges) {
        var index = count - 1
        while index >= 0 {
            guard let slot = slots[index] else { preconditionFailure("PageTable.unwind: missing slot") }
            let child = tablePage(format.tableAddress(of: slot.pointee))
            precondition(child.tableEntryCount == 0, "PageTable.unwind: a table created by this call is not empty")
            slot.pointee = 0
            _ = countDown(parents[index])
            changes.retire(child, coveringAddress: address)
            index -= 1
        }
        if count > 0 && parents[0] == root { changes.createdRootEntry = false }
    }

    /// Stores `entry` in an invalid slot.
    func install(_ entry: UInt64, in slot: PageTableSlot) {
        precondition(format.kind(of: slot.value, level: slot.level) == .invalid, "PageTable.install: slot is not empty")
        slot.entry.pointee = entry
        countUp(slot.table)
    }

    // MARK: Visiting and clearing

    /// Calls `body` for every valid leaf that overlaps [start, end), in address order, with the
    /// leaf's first address, its level and its slot. Leaves the body clears are invalidated
    /// here; tables that become empty (at reclaimable levels) are unlinked and retired.
    func forEachLeaf(from start: UInt64, to end: UInt64, changes: inout TableChanges,
                     _ body: (UInt64, Int, UnsafeMutablePointer<UInt64>) -> LeafAction) {
        guard start < end else { return }
        visit(table: root, level: 0, base: 0, start: start, end: end, changes: &changes, body)
    }

    private func visit(table: PhysicalAddress, level: Int, base: UInt64, start: UInt64, end: UInt64,
                       changes: inout TableChanges, _ body: (UInt64, Int, UnsafeMutablePointer<UInt64>) -> LeafAction) {
        let shift = format.entryShift(level: level)
        let size: UInt64 = 1 << shift
        let first = format.index(of: start, level: level)
        let last = format.index(of: end - 1, level: level)
        let slots = entries(of: table)
        var index = first
        while index <= last {
            let entry = slots[index]
            let address = base | (UInt64(index) << shift)
            switch format.kind(of: entry, level: level) {
            case .invalid:
                break
            case .leaf:
                if body(address, level, slots + index) == .clear {
                    slots[index] = 0
                    _ = countDown(table)
                }
            case .table:
                let child = format.tableAddress(of: entry)
                visit(table: child, level: level + 1, base: address, start: max(start, address),
                      end: min(end, address + size), changes: &changes, body)
                if level + 1 >= firstReclaimableLevel && tablePage(child).tableEntryCount == 0 {
                    slots[index] = 0
                    _ = countDown(table)
                    changes.retire(tablePage(child), coveringAddress: address)
                }
            }
            index += 1
        }
    }

    /// Clears the leaf mapping `address` (found by `leaf(containing:)`) and retires the tables
    /// it leaves empty. Returns the old entry, or nil when nothing maps `address`.
    func clearLeaf(containing address: UInt64, changes: inout TableChanges) -> UInt64? {
        var path = InlineArray<4, UnsafeMutablePointer<UInt64>?>(repeating: nil)
        var tables = InlineArray<4, PhysicalAddress>(repeating: PhysicalAddress(0))
        var table = root
        var level = 0
        while true {
            let slot = entries(of: table) + format.index(of: address, level: level)
            path[level] = slot
            tables[level] = table
            switch format.kind(of: slot.pointee, level: level) {
            case .invalid:
                return nil
            case .table:
                table = format.tableAddress(of: slot.pointee)
                level += 1
                continue
            case .leaf:
                break
            }
            break
        }
        guard let leafSlot = path[level] else { preconditionFailure("PageTable.clearLeaf: lost the leaf slot") }
        let old = leafSlot.pointee
        leafSlot.pointee = 0
        var remaining = countDown(tables[level])
        // Walk back up while the table just emptied may be reclaimed.
        while remaining == 0 && level >= firstReclaimableLevel && level > 0 {
            let emptied = tablePage(tables[level])
            guard let parentSlot = path[level - 1] else { preconditionFailure("PageTable.clearLeaf: lost a parent slot") }
            parentSlot.pointee = 0
            remaining = countDown(tables[level - 1])
            changes.retire(emptied, coveringAddress: address)
            level -= 1
        }
        return old
    }

    /// True when a leaf above the last level overlaps [start, end) without lying inside it.
    func hasPartialLargeLeaf(from start: UInt64, to end: UInt64) -> Bool {
        var partial = false
        var changes = TableChanges()
        forEachLeaf(from: start, to: end, changes: &changes) { address, level, _ in
            let size = format.entrySize(level: level)
            if address < start || address + size > end { partial = true }
            return .keep
        }
        return partial
    }

    /// True when any valid leaf overlaps [start, end).
    func hasLeaf(from start: UInt64, to end: UInt64) -> Bool {
        var found = false
        var changes = TableChanges()
        forEachLeaf(from: start, to: end, changes: &changes) { _, _, _ in
            found = true
            return .keep
        }
        return found
    }
}
