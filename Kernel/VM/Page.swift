// Page: the vm_page record (one per physical page frame) and the handle the VM passes around.
// Invariants:
//  - Records live in `PageFrames`' flat array, indexed by frame number; a record never moves,
//    so a `Page` (a pointer to its record) stays valid for the life of the kernel.
//  - `queue` names the one PageQueue the record is linked on (`none`: on no queue); `next` and
//    `previous` are meaningful only while it is on one. wireCount > 0 iff queue == .wired for
//    managed pages.
//  - `mappings` is the reverse map's list of (pmap, va) for this page, non-nil only for a
//    managed page that is mapped; `mappingCount` is its length. A page-table page is never
//    mapped this way; its `tableEntryCount` counts its valid entries.
//  - `isDirty` / `isReferenced` cache modified/referenced bits harvested from page-table
//    entries that were removed or cleared; the truth is the cache OR every live mapping's bits
//    (ReverseMap.isModified / isReferenced).
//  - `laundering` implies busy, unmapped and on no queue: the pageout daemon's write of the
//    page is in flight and only the daemon clears it.
// Locks: none yet (one CPU, no page operation from interrupt context). With SMP: (q) page
// queue lock for queue/next/previous/wireCount, (o) object lock for object/offset/busy,
// (p) pv lock for mappings/mappingCount/isDirty/isReferenced.

/// A physical page frame the VM knows about: a handle to its record. Copying the handle does
/// not copy the page; two handles are equal iff they name the same frame.
public struct Page: Hashable {
    /// Which page queue a page is on.
    public enum Queue: UInt8 {
        /// On no queue: reserved, owned by the page allocator, or allocated and not yet queued.
        case none
        /// Free and owned by `PageFrames` (the free queue, a cache in front of the allocator).
        case free
        /// In use, recently referenced.
        case active
        /// In use, a candidate for reclaim.
        case inactive
        /// Wired: never paged out while wireCount > 0 (page-table pages, kernel structures).
        case wired
    }

    /// Per-page state bits.
    public struct Flags: OptionSet {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// `PageFrames` owns the frame (free queue or handed out); mappings of it are tracked.
        public static let managed = Flags(rawValue: 1)
        /// Someone holds the page busy (I/O or a fault in progress).
        public static let busy = Flags(rawValue: 2)
        /// Modified bit harvested from a removed or cleared mapping.
        public static let dirty = Flags(rawValue: 4)
        /// Referenced bit harvested from a removed or cleared mapping.
        public static let referenced = Flags(rawValue: 8)
        /// The page holds a page table of some pmap.
        public static let pageTable = Flags(rawValue: 16)
        /// The pageout daemon is writing the page to its pager (it is also busy and on no
        /// queue until the write completes; see Kernel/VM/Pageout.swift).
        public static let laundering = Flags(rawValue: 32)
    }

    /// The stored record. Layout is pinned by the vm_page suite (size <= 64 bytes).
    public struct Record {
        /// The frame this record describes.
        var physicalAddress: PhysicalAddress
        /// Owning VM object (an opaque reference until vm_object exists) and the page's offset
        /// in it, in bytes.
        var object: UnsafeMutableRawPointer?
        var offset: UInt64
        /// Head of the reverse-map list.
        var mappings: UnsafeMutablePointer<PVEntry>?
        /// Queue links: record indices in the PageFrames array, `PageQueue.end` for none.
        var next: UInt32
        var previous: UInt32
        var wireCount: UInt32
        /// Number of entries on `mappings`.
        var mappingCount: UInt32
        /// Valid entries in the page table this page holds (page-table pages only).
        var tableEntryCount: UInt16
        var queue: Queue
        var flags: Flags

        init(physicalAddress: PhysicalAddress) {
            self.physicalAddress = physicalAddress
            object = nil
            offset = 0
            mappings = nil
            next = PageQueue.end
            previous = PageQueue.end
            wireCount = 0
            mappingCount = 0
            tableEntryCount = 0
            queue = .none
            flags = []
        }
    }

    /// Bytes of one record (the vm_page size).
    public static var recordSize: Int { MemoryLayout<Record>.stride }

    let record: UnsafeMutablePointer<Record>

    @inline(__always) init(record: UnsafeMutablePointer<Record>) { self.record = record }

    /// The frame's physical address.
    public var physicalAddress: PhysicalAddress { record.pointee.physicalAddress }
    /// The queue the page is on.
    public var queue: Queue { record.pointee.queue }
    /// How many times the page is wired.
    public var wireCount: Int { Int(record.pointee.wireCount) }
    /// Managed pages are owned by `PageFrames` and their mappings are tracked.
    public var isManaged: Bool { record.pointee.flags.contains(.managed) }
    /// True while someone holds the page busy.
    public var isBusy: Bool { record.pointee.flags.contains(.busy) }
    /// The cached modified bit (see `ReverseMap.isModified` for the whole truth).
    public var isDirty: Bool { record.pointee.flags.contains(.dirty) }
    /// The cached referenced bit (see `ReverseMap.isReferenced` for the whole truth).
    public var isReferenced: Bool { record.pointee.flags.contains(.referenced) }
    /// True while the pageout daemon's write of the page is in flight.
    public var isLaundering: Bool { record.pointee.flags.contains(.laundering) }
    /// True when the page holds a page table.
    public var isPageTable: Bool { record.pointee.flags.contains(.pageTable) }
    /// Number of virtual mappings of the page the reverse map tracks.
    public var mappingCount: Int { Int(record.pointee.mappingCount) }
    /// Valid entries of the page table this page holds (0 unless `isPageTable`).
    public var tableEntryCount: Int { Int(record.pointee.tableEntryCount) }

    /// The owning VM object (opaque until vm_object exists) and the page's byte offset in it.
    public var object: UnsafeMutableRawPointer? {
        get { record.pointee.object }
        nonmutating set { record.pointee.object = newValue }
    }
    public var offset: UInt64 {
        get { record.pointee.offset }
        nonmutating set { record.pointee.offset = newValue }
    }

    /// Records that the page's contents changed behind the pmap's back (a page-in, a copy).
    public func markDirty() { record.pointee.flags.insert(.dirty) }

    /// Marks or clears the laundry write in flight (the pageout daemon only).
    func setLaundering(_ laundering: Bool) {
        if laundering { record.pointee.flags.insert(.laundering) } else { record.pointee.flags.remove(.laundering) }
    }

    /// Pointer to the frame's bytes through the direct map.
    public var contents: UnsafeMutableRawPointer { DirectMap.pointer(to: physicalAddress) }
}
