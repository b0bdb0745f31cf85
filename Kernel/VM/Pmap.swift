// Pmap: one address space's page tables and the machine-independent pmap interface over them
// (FreeBSD sys/vm/pmap.h): create/destroy, activate, enter, remove, protect, extract, wiring;
// page-wide operations over the reverse map live in ReverseMap. Generic over the page-table
// format and the MMU operations; the kernel binds both per architecture (MachinePmap in
// Arch/*/MMU.swift), host tests bind the real formats and a recording MMU.
// Invariants:
//  - The kernel pmap maps only [AddressSpaceLayout.kernelStart, kernelEnd), a user pmap only
//    [0, userEnd). A user root holds a copy of the kernel root's entries, so kernel mappings
//    are in every address space: the kernel never frees its level-1 tables, and a root entry
//    it creates is copied to every user pmap at once.
//  - Every public call validates all its arguments before changing anything and throws a
//    PmapError for a caller's mistake; preconditions guard only the pmap's own invariants.
//  - A VA maps at most one frame: entering a different page at a mapped VA is refused
//    (`alreadyMapped`); the caller removes first. Re-entering the same page updates it.
//  - Kernel mappings are W^X: a protection with both write and execute is refused.
//  - Every change to a valid entry that the TLB may cache is followed by an invalidation
//    before the call returns, when the pmap's translations can be cached: always for the
//    kernel pmap (its entries are global), for a user pmap only while it is active (switching
//    address spaces flushes the others' translations). Range operations batch: up to the
//    format's `rangeInvalidationLimit` pages one by one, beyond that one full flush.
//  - residentPages / wiredPages count 4 KiB pages mapped / wired; tablePages the tables.
// Locks: none yet (one CPU; no pmap call from interrupt context except the aarch64
// referenced/modified emulation fault, which only sets bits in one existing leaf).

/// Why a pmap call was refused. Every case leaves the pmap unchanged.
public enum PmapError: Error, Equatable {
    /// An address or length is not a multiple of the page size.
    case unalignedAddress
    /// The address cannot be translated at all (x86 non-canonical, or beyond 48 bits).
    case nonCanonicalAddress
    /// The address is outside this pmap's half: a kernel address in a user pmap, or a user
    /// address in the kernel pmap.
    case outsideAddressSpace
    /// start + length wraps around or runs past the end of the pmap's half.
    case rangeOverflow
    /// The VA already maps another page (or lies inside a large page): remove it first.
    case alreadyMapped
    /// Nothing maps the VA (for calls that need a mapping).
    case notMapped
    /// No memory for a page table or a reverse-map entry.
    case outOfMemory
    /// An empty protection for `enter`, or an `access` the protection does not permit.
    case invalidProtection
    /// A kernel mapping that would be both writable and executable (W^X).
    case writableAndExecutable
    /// The range covers only part of a large page (kernel direct map): it cannot be split.
    case partialLargePage
    /// `destroy` of the active address space: activate another one first.
    case addressSpaceActive
    /// The call needs a user pmap but got the kernel pmap, or vice versa.
    case wrongPmapKind
    /// The pmap was destroyed.
    case destroyed
}

/// What `extract` reports about a mapping.
public struct Translation: Equatable {
    /// The physical address `address` translates to (page offset included).
    public var physicalAddress: PhysicalAddress
    public var protection: Protection
    public var memoryType: MemoryType
    public var isWired: Bool
    /// Whether the reverse map tracks this mapping.
    public var isManaged: Bool
    public var isReferenced: Bool
    public var isModified: Bool
    /// Bytes the leaf maps: 4 KiB, or a large page / block.
    public var pageSize: UInt64
}

/// Pending TLB invalidations of one operation: the span of pages it changed. Four words, not
/// a list, so making and passing one costs nothing (a 256-byte inline list was zero-filled and
/// copied with `rep stosb/movsb` on every call). Invalidating an unchanged page inside the
/// span is harmless.
struct InvalidationBatch {
    private(set) var lowest = UInt64.max
    private(set) var highest: UInt64 = 0
    private(set) var count = 0
    let limit: Int

    init(limit: Int) { self.limit = limit }

    mutating func add(_ address: UInt64) {
        lowest = min(lowest, address)
        highest = max(highest, address)
        count += 1
    }

    var isEmpty: Bool { count == 0 }

    /// True when page-by-page invalidation would take more than `limit` operations.
    var overflowed: Bool { count > limit || (count > 0 && (highest - lowest) >> pageShift >= UInt64(limit)) }

    /// Calls `body` with every page address in the span.
    func forEach(_ body: (UInt64) -> Void) {
        guard count > 0 else { return }
        var address = lowest
        while address <= highest {
            body(address)
            address += pageSize
        }
    }
}

/// An address space: a page-table tree plus its bookkeeping.
public final class Pmap<Format: PageTableFormat, Hardware: MMUOperations> {
    public let format: Format
    public let hardware: Hardware
    public let pages: PageFrames
    /// The reverse map shared by the kernel pmap and its user pmaps.
    public let reverseMap: ReverseMap<Format, Hardware>
    public let isKernel: Bool
    /// The kernel pmap (self for the kernel pmap).
    private var kernelPmap: Pmap? = nil
    /// Physical address of the root table (CR3 / TTBR0 value).
    public private(set) var root: PhysicalAddress
    public private(set) var isDestroyed = false
    /// Lowest and one past the highest address this pmap maps.
    public let lowerBound: UInt64
    public let upperBound: UInt64

    /// 4 KiB pages mapped (a large page counts all its pages).
    public internal(set) var residentPages = 0
    /// 4 KiB pages mapped with the wired attribute.
    public private(set) var wiredPages = 0
    /// Page-table pages, the root included.
    public internal(set) var tablePages = 1
    /// Leaves above the last level (kernel direct map only).
    var largeLeaves = 0
    /// aarch64 referenced/modified emulation faults this pmap resolved.
    public internal(set) var emulationFaultsResolved = 0

    // Kernel pmap only.
    private var userPmaps: [Pmap] = []
    /// The user pmap whose root is loaded (kernel pmap only; nil: the kernel's own root).
    public private(set) var activeUserPmap: Pmap? = nil

    private init(format: Format, hardware: Hardware, pages: PageFrames, reverseMap: ReverseMap<Format, Hardware>,
                 isKernel: Bool, root: PhysicalAddress) {
        self.format = format
        self.hardware = hardware
        self.pages = pages
        self.reverseMap = reverseMap
        self.isKernel = isKernel
        self.root = root
        lowerBound = isKernel ? AddressSpaceLayout.kernelStart : 0
        upperBound = isKernel ? AddressSpaceLayout.kernelEnd : AddressSpaceLayout.userEnd
    }

    /// Creates the kernel pmap: an empty root for the kernel half and a new reverse map.
    /// Throws `outOfMemory`.
    public convenience init(kernelWith format: Format, hardware: Hardware, pages: PageFrames) throws(PmapError) {
        let root = try Self.allocateRoot(pages)
        self.init(format: format, hardware: hardware, pages: pages, reverseMap: ReverseMap(pages: pages),
                  isKernel: true, root: root)
    }

    /// Creates a user address space sharing `kernel`'s mappings. Throws `wrongPmapKind` unless
    /// `kernel` is the kernel pmap, `destroyed`, or `outOfMemory`.
    public convenience init(userOf kernel: Pmap) throws(PmapError) {
        guard kernel.isKernel else { throw .wrongPmapKind }
        guard !kernel.isDestroyed else { throw .destroyed }
        let root = try Self.allocateRoot(kernel.pages)
        self.init(format: kernel.format, hardware: kernel.hardware, pages: kernel.pages, reverseMap: kernel.reverseMap,
                  isKernel: false, root: root)
        kernelPmap = kernel
        kernel.copyKernelRootEntries(to: self)
        kernel.userPmaps.append(self)
    }

    private static func allocateRoot(_ pages: PageFrames) throws(PmapError) -> PhysicalAddress {
        do {
            return try pages.allocateTablePage().physicalAddress
        } catch {
            throw .outOfMemory
        }
    }

    @inline(__always) var pageTable: PageTable<Format> {
        PageTable(format: format, root: root, pages: pages, firstReclaimableLevel: isKernel ? 2 : 1)
    }

    /// The kernel pmap of this address space.
    private var kernel: Pmap {
        if isKernel { return self }
        guard let kernelPmap else { preconditionFailure("Pmap: user pmap without its kernel pmap") }
        return kernelPmap
    }

    /// True when this pmap's root is loaded in the MMU.
    public var isActive: Bool {
        isKernel ? activeUserPmap == nil : kernel.activeUserPmap === self
    }

    /// True when the TLB may hold this pmap's translations: kernel mappings are in every
    /// address space; a user pmap's are flushed when another one is activated.
    private var translationsMayBeCached: Bool { isKernel || isActive }

    /// Number of user pmaps created from this kernel pmap and not destroyed.
    public var userPmapCount: Int { userPmaps.count }

    // MARK: Argument checks

    private func checkUsable() throws(PmapError) {
        guard !isDestroyed else { throw .destroyed }
    }

    /// A page-aligned, canonical address inside this pmap's half.
    func checkPageAddress(_ address: UInt64) throws(PmapError) {
        try checkUsable()
        guard address & (pageSize - 1) == 0 else { throw .unalignedAddress }
        guard format.isCanonical(address) else { throw .nonCanonicalAddress }
        guard address >= lowerBound && address < upperBound else { throw .outsideAddressSpace }
    }

    /// [start, start + byteCount) inside this pmap's half; returns the end.
    func checkRange(_ start: VirtualAddress, _ byteCount: UInt64) throws(PmapError) -> UInt64 {
        try checkPageAddress(start.value)
        guard byteCount & (pageSize - 1) == 0 else { throw .unalignedAddress }
        let (end, overflow) = start.value.addingReportingOverflow(byteCount)
        guard !overflow && end <= upperBound else { throw .rangeOverflow }
        return end
    }

    func checkProtection(_ protection: Protection) throws(PmapError) {
        guard !protection.isEmpty else { throw .invalidProtection }
        if isKernel && protection.isWritableAndExecutable { throw .writableAndExecutable }
    }

    // MARK: Activation and lifetime

    /// Loads this address space into the MMU (CR3 / TTBR0), dropping the previous one's
    /// non-global translations. Activating the kernel pmap leaves only kernel mappings.
    public func activate() throws(PmapError) {
        try checkUsable()
        hardware.activate(root: root)
        kernel.activeUserPmap = isKernel ? nil : self
    }

    /// Removes every mapping of this user address space and frees its page tables. The pmap
    /// cannot be used afterwards. Throws `wrongPmapKind` for the kernel pmap,
    /// `addressSpaceActive` while it is loaded, `destroyed` the second time.
    public func destroy() throws(PmapError) {
        try checkUsable()
        guard !isKernel else { throw .wrongPmapKind }
        guard !isActive else { throw .addressSpaceActive }
        var changes = TableChanges()
        pageTable.forEachLeaf(from: lowerBound, to: upperBound, changes: &changes) { address, level, entry in
            self.forgetLeaf(entry.pointee, at: address, level: level)
            return .clear
        }
        // Not loaded, so the TLB holds nothing of it: free at once.
        finish(InvalidationBatch(limit: 0), changes)
        let slots = pageTable.entries(of: root)
        for index in format.index(of: AddressSpaceLayout.kernelStart, level: 0)...format.index(of: AddressSpaceLayout.kernelEnd - 1, level: 0) {
            slots[index] = 0
        }
        guard let rootPage = pages.page(at: root) else { preconditionFailure("Pmap.destroy: root outside the page array") }
        pages.freeTablePage(rootPage)
        tablePages -= 1
        precondition(residentPages == 0 && wiredPages == 0 && tablePages == 0, "Pmap.destroy: counters not zero after removing everything")
        let kernel = self.kernel
        kernel.userPmaps.removeAll { $0 === self }
        kernelPmap = nil
        isDestroyed = true
    }

    private func copyKernelRootEntries(to user: Pmap) {
        let first = format.index(of: lowerBound, level: 0)
        let last = format.index(of: upperBound - 1, level: 0)
        let source = pageTable.entries(of: root)
        let target = user.pageTable.entries(of: user.root)
        for index in first...last { target[index] = source[index] }
    }

    // MARK: Enter

    /// Maps the managed (or unmanaged) `page` at `address` with `protection`.
    /// `wired`: count it in `wiredPages` (and mark it so) until `setWired(false, at:)`.
    /// `access`: the access that caused this mapping (a fault's); it pre-sets the referenced
    /// bit (any access) and the modified bit (a write) so the access does not fault again.
    /// Without it, the mapping starts unreferenced and clean.
    /// Re-entering the page already mapped at `address` updates protection and wiring.
    /// Throws `unalignedAddress`, `nonCanonicalAddress`, `outsideAddressSpace`,
    /// `invalidProtection`, `writableAndExecutable`, `alreadyMapped`, `outOfMemory`, `destroyed`.
    public func enter(_ page: Page, at address: VirtualAddress, protection: Protection, wired: Bool = false,
                      access: Protection = []) throws(PmapError) {
        try checkPageAddress(address.value)
        try checkProtection(protection)
        let granted = protection.hardwareExpressible
        guard access.isSubset(of: granted) else { throw .invalidProtection }
        let attributes = LeafAttributes(protection: granted, isUser: !isKernel, isGlobal: isKernel, memoryType: .normal,
                                        isWired: wired, isManaged: page.isManaged, isReferenced: !access.isEmpty,
                                        isModified: access.contains(.write))
        try enter(frame: page.physicalAddress, at: address.value, attributes: attributes, page: page.isManaged ? page : nil)
    }

    /// Maps the physical page `frame` at `address` without reverse-map tracking (device
    /// memory, the kernel image): such mappings start referenced and modified and are never
    /// reported by ReverseMap. The caller keeps the frame alive (wired) while it is mapped:
    /// nothing stops `PageFrames.free` of a managed frame mapped this way.
    /// Throws like `enter(_:at:protection:)`.
    public func enter(physical frame: PhysicalAddress, at address: VirtualAddress, protection: Protection,
                      memoryType: MemoryType = .normal, wired: Bool = false) throws(PmapError) {
        try checkPageAddress(address.value)
        try checkProtection(protection)
        guard frame.isPageAligned else { throw .unalignedAddress }
        let attributes = unmanagedAttributes(protection: protection.hardwareExpressible, memoryType: memoryType, wired: wired)
        try enter(frame: frame, at: address.value, attributes: attributes, page: nil)
    }

    func unmanagedAttributes(protection: Protection, memoryType: MemoryType, wired: Bool) -> LeafAttributes {
        LeafAttributes(protection: protection, isUser: !isKernel, isGlobal: isKernel, memoryType: memoryType,
                       isWired: wired, isManaged: false, isReferenced: true, isModified: protection.contains(.write))
    }

    /// Validated enter of a 4 KiB leaf; `page` non-nil for a managed mapping.
    private func enter(frame: PhysicalAddress, at address: UInt64, attributes: LeafAttributes, page: Page?) throws(PmapError) {
        let table = pageTable
        let leafLevel = format.leafLevel
        if let existing = table.leaf(containing: address) {
            guard existing.level == leafLevel,
                  format.leafAddress(of: existing.value, level: leafLevel) == frame else { throw .alreadyMapped }
            updateInPlace(existing, at: address, with: attributes)
            return
        }
        // Everything that can fail happens before the leaf is written.
        var entry: UnsafeMutablePointer<PVEntry>? = nil
        if page != nil { entry = try reverseMap.allocateEntry() }
        var changes = TableChanges()
        let slot: PageTableSlot
        do {
            slot = try table.slot(for: address, level: leafLevel, isUser: !isKernel, changes: &changes)
        } catch {
            if let entry { reverseMap.releaseEntry(entry) }
            tablePages += changes.created   // all of them retired again: finish subtracts them
            var batch = InvalidationBatch(limit: format.rangeInvalidationLimit)
            if !changes.retired.isEmpty { batch.add(address) }
            finish(batch, changes)
            throw error
        }
        table.install(format.leafEntry(frame, level: leafLevel, attributes: attributes), in: slot)
        if let page, let entry { reverseMap.insert(entry, page: page, pmap: self, address: address) }
        residentPages += 1
        if attributes.isWired { wiredPages += 1 }
        tablePages += changes.created
        if changes.createdRootEntry && isKernel { propagateRootEntries() }
        // An invalid entry is never cached, so a new leaf needs no TLB invalidation; the
        // walker must just see the store before the next access.
        hardware.publishTableStores()
    }

    /// Re-enter of the frame already mapped: new protection and wiring, A/D kept (a dirty bit
    /// that would be lost with the write permission moves to the page record).
    private func updateInPlace(_ slot: PageTableSlot, at address: UInt64, with wanted: LeafAttributes) {
        let old = slot.value
        var attributes = format.attributes(of: old, level: slot.level)
        if !wanted.protection.contains(.write) && attributes.isModified {
            harvest(attributes, frame: format.leafAddress(of: old, level: slot.level), referenced: false)
            attributes.isModified = false
        }
        if attributes.isWired != wanted.isWired { wiredPages += wanted.isWired ? 1 : -1 }
        attributes.protection = wanted.protection
        attributes.isWired = wanted.isWired
        attributes.memoryType = wanted.memoryType
        attributes.isReferenced = attributes.isReferenced || wanted.isReferenced
        attributes.isModified = attributes.isModified || wanted.isModified
        let new = format.leafEntry(format.leafAddress(of: old, level: slot.level), level: slot.level, attributes: attributes)
        store(new, replacing: old, in: slot.entry, at: address)
    }

    // MARK: Remove, protect, wiring

    /// Removes every mapping in [start, start + byteCount). Unmapped holes are fine; tables
    /// left empty are freed. Throws `unalignedAddress`, `nonCanonicalAddress`,
    /// `outsideAddressSpace`, `rangeOverflow`, `partialLargePage`, `destroyed`.
    public func remove(start: VirtualAddress, byteCount: UInt64) throws(PmapError) {
        let end = try checkRange(start, byteCount)
        guard byteCount > 0 else { return }
        if largeLeaves > 0 && pageTable.hasPartialLargeLeaf(from: start.value, to: end) { throw .partialLargePage }
        var batch = InvalidationBatch(limit: format.rangeInvalidationLimit)
        var changes = TableChanges()
        if byteCount == pageSize && largeLeaves == 0 {
            // One page, no large leaves: the straight walk, without the range visitor.
            if let old = pageTable.clearLeaf(containing: start.value, changes: &changes) {
                forgetLeaf(old, at: start.value, level: format.leafLevel)
                batch.add(start.value)
            }
            finish(batch, changes)
            return
        }
        pageTable.forEachLeaf(from: start.value, to: end, changes: &changes) { address, level, entry in
            self.forgetLeaf(entry.pointee, at: address, level: level)
            batch.add(address)
            return .clear
        }
        finish(batch, changes)
    }

    /// Sets the protection of every mapping in [start, start + byteCount) to `protection`
    /// (raising or lowering it); `.none` removes them. Modified bits of mappings that lose
    /// write permission move to their pages' records. Throws like `remove`, plus
    /// `writableAndExecutable` for the kernel pmap.
    public func protect(start: VirtualAddress, byteCount: UInt64, to protection: Protection) throws(PmapError) {
        let end = try checkRange(start, byteCount)
        if protection.isEmpty {
            try remove(start: start, byteCount: byteCount)
            return
        }
        try checkProtection(protection)
        guard byteCount > 0 else { return }
        if largeLeaves > 0 && pageTable.hasPartialLargeLeaf(from: start.value, to: end) { throw .partialLargePage }
        let wanted = protection.hardwareExpressible
        var batch = InvalidationBatch(limit: format.rangeInvalidationLimit)
        var changes = TableChanges()
        pageTable.forEachLeaf(from: start.value, to: end, changes: &changes) { address, level, entry in
            let old = entry.pointee
            var attributes = self.format.attributes(of: old, level: level)
            guard attributes.protection != wanted else { return .keep }
            if !wanted.contains(.write) && attributes.isModified {
                self.harvest(attributes, frame: self.format.leafAddress(of: old, level: level), referenced: false)
                attributes.isModified = false
            }
            attributes.protection = wanted
            let new = self.format.leafEntry(self.format.leafAddress(of: old, level: level), level: level, attributes: attributes)
            entry.pointee = new
            if self.format.changeNeedsInvalidation(from: old, to: new) { batch.add(address) }
            return .keep
        }
        finish(batch, changes)
    }

    /// Changes the wired attribute of the mapping at `address`. Throws `notMapped` when
    /// nothing maps it, plus the address errors.
    public func setWired(_ wired: Bool, at address: VirtualAddress) throws(PmapError) {
        try checkPageAddress(address.value)
        guard let slot = pageTable.leaf(containing: address.value) else { throw .notMapped }
        var attributes = format.attributes(of: slot.value, level: slot.level)
        guard attributes.isWired != wired else { return }
        let count = Int(format.entrySize(level: slot.level) >> pageShift)
        wiredPages += wired ? count : -count
        attributes.isWired = wired
        // The wired bit is software-only: no TLB entry depends on it.
        slot.entry.pointee = format.leafEntry(format.leafAddress(of: slot.value, level: slot.level), level: slot.level,
                                              attributes: attributes)
    }

    // MARK: Extract

    /// The translation of `address` (any byte, not only page starts), or nil when nothing
    /// maps it. Throws `nonCanonicalAddress`, `outsideAddressSpace`, `destroyed`.
    public func extract(_ address: VirtualAddress) throws(PmapError) -> Translation? {
        try checkUsable()
        guard format.isCanonical(address.value) else { throw .nonCanonicalAddress }
        guard address.value >= lowerBound && address.value < upperBound else { throw .outsideAddressSpace }
        return leafTranslation(at: address.value)
    }

    func leafTranslation(at address: UInt64) -> Translation? {
        guard let slot = pageTable.leaf(containing: address) else { return nil }
        let attributes = format.attributes(of: slot.value, level: slot.level)
        let size = format.entrySize(level: slot.level)
        return Translation(physicalAddress: format.leafAddress(of: slot.value, level: slot.level).advanced(by: address & (size - 1)),
                           protection: attributes.protection, memoryType: attributes.memoryType,
                           isWired: attributes.isWired, isManaged: attributes.isManaged,
                           isReferenced: attributes.isReferenced, isModified: attributes.isModified, pageSize: size)
    }

    // MARK: Internals

    /// Accounts for a leaf that is being cleared: counters, reverse map, and the modified and
    /// referenced bits, which move into the page record.
    func forgetLeaf(_ entry: UInt64, at address: UInt64, level: Int) {
        let attributes = format.attributes(of: entry, level: level)
        let count = Int(format.entrySize(level: level) >> pageShift)
        residentPages -= count
        if attributes.isWired { wiredPages -= count }
        if level != format.leafLevel { largeLeaves -= 1 }
        guard attributes.isManaged else { return }
        let frame = format.leafAddress(of: entry, level: level)
        guard let page = pages.page(at: frame) else { preconditionFailure("Pmap.forgetLeaf: managed leaf outside the page array") }
        harvest(attributes, page: page, referenced: true)
        reverseMap.remove(page: page, pmap: self, address: address)
    }

    /// Copies a leaf's modified (and, if asked, referenced) bit into its page's record.
    func harvest(_ attributes: LeafAttributes, frame: PhysicalAddress, referenced: Bool) {
        guard attributes.isManaged, let page = pages.page(at: frame) else { return }
        harvest(attributes, page: page, referenced: referenced)
    }

    private func harvest(_ attributes: LeafAttributes, page: Page, referenced: Bool) {
        if attributes.isModified { page.record.pointee.flags.insert(.dirty) }
        if referenced && attributes.isReferenced { page.record.pointee.flags.insert(.referenced) }
    }

    /// Writes one changed leaf and invalidates its translation if the TLB may cache it.
    func store(_ new: UInt64, replacing old: UInt64, in entry: UnsafeMutablePointer<UInt64>, at address: UInt64) {
        guard new != old else { return }
        entry.pointee = new
        hardware.publishTableStores()
        if translationsMayBeCached && format.changeNeedsInvalidation(from: old, to: new) {
            hardware.invalidate(VirtualAddress(address), includingTableCaches: false)
            hardware.completeInvalidation()
        }
    }

    /// Ends an operation: invalidates what it changed (if the TLB may cache it), then frees
    /// the tables it retired.
    func finish(_ batch: InvalidationBatch, _ changes: TableChanges) {
        let retired = changes.retired
        if translationsMayBeCached && (!batch.isEmpty || !retired.isEmpty) {
            hardware.publishTableStores()
            if batch.overflowed || retired.count > format.rangeInvalidationLimit {
                hardware.invalidateAll(includingGlobal: isKernel || !retired.isEmpty)
            } else {
                batch.forEach { hardware.invalidate(VirtualAddress($0), includingTableCaches: false) }
                for address in changes.retiredAddresses {
                    hardware.invalidate(VirtualAddress(address), includingTableCaches: true)
                }
            }
            hardware.completeInvalidation()
        } else if !retired.isEmpty {
            hardware.publishTableStores()
        }
        for page in retired { pages.freeTablePage(page) }
        tablePages -= retired.count
    }

    /// Copies the kernel root's entries into every user root (after a new one appeared).
    func propagateRootEntries() {
        for user in userPmaps { copyKernelRootEntries(to: user) }
    }
}
