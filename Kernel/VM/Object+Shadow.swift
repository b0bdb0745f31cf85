// Object+Shadow: shadow chains and the three copy strategies.
//  - Symmetric copy-on-write: both sides keep the object and mark their mappings needs-copy;
//    the first write on either side puts a new `shadow(offset:length:)` object on top of it.
//  - Delayed copy (Mach's copy object): the source keeps writing its object; the copy gets a
//    copy object that shadows the source, and before the source changes a page the copy does
//    not have yet, the fault pushes the old contents into the copy object.
//  - Share: both sides reference the same object.
// Invariants: a lookup walks at most `chainDepth` links; the depth bound (VMSystem.
// maximumChainDepth) is kept by flattening: a copy of every visible page into one new object.
// Locks: (o) of every object on the chain, top first.

/// Where the contents of one page of an object come from.
public enum PageSource {
    /// A resident page of `object` (the object itself or one below it) at `offset`.
    case resident(Page, object: VMObject, offset: UInt64)
    /// A frame of a physical object.
    case frame(PhysicalAddress)
    /// No object on the chain has it: zeros.
    case zero
}

extension VMObject {
    /// Links below this object (0: it shadows nothing). O(depth).
    public var chainDepth: Int {
        var depth = 0
        var object = shadow
        while let next = object {
            depth += 1
            object = next.shadow
        }
        return depth
    }

    /// A new anonymous object of `length` bytes that shadows this one from `offset`: it reads
    /// through to this object until a page is written. The new object takes over the caller's
    /// reference to this one (Mach's vm_object_shadow) and is returned with one reference.
    /// Throws `unaligned`, `outOfRange` (offset + length overflows).
    public func shadow(offset: UInt64, length: UInt64) throws(ObjectError) -> VMObject {
        guard offset & (pageSize - 1) == 0, length & (pageSize - 1) == 0 else { throw .unaligned }
        guard !offset.addingReportingOverflow(length).overflow else { throw .outOfRange }
        let top = try VMObject(system: system, size: length)
        top.shadow = self
        top.shadowOffset = offset
        addShadower(top)
        system.statistics.shadowsCreated += 1
        return top
    }

    /// Delayed copy of the whole object: returns a copy object (one reference, the caller's;
    /// same size, offset 0) that keeps the contents this object has now while this object goes
    /// on being written. Every mapping of this object's resident pages is write-protected, so
    /// the next write faults and pushes the old page into the copy first (the fault path does
    /// that for pages that are not resident too). An older copy object is made to shadow the
    /// new one: it still needs the pages the source had at its creation, and those the source
    /// changed since were pushed into it already. Throws `wrongKind` for a physical object.
    public func makeDelayedCopy() throws(ObjectError) -> VMObject {
        guard isAnonymous else { throw .wrongKind }
        let newCopy = try VMObject(system: system, size: size)
        newCopy.shadow = self
        addShadower(newCopy)
        referenceCount += 1
        if let old = copy {
            precondition(old.shadow === self, "VMObject.makeDelayedCopy: copy object off its source")
            // Same offsets: the new copy sits at offset 0 of this object.
            removeShadower(old)
            old.shadow = newCopy
            newCopy.addShadower(old)
            newCopy.referenceCount += 1
            precondition(referenceCount > 1, "VMObject.makeDelayedCopy: source lost its last reference")
            referenceCount -= 1
        }
        copy = newCopy
        residentPages.forEach { _, page in
            system.mappings.pageProtect(page, to: .readExecute)
            return true
        }
        system.statistics.copyObjectsCreated += 1
        return newCopy
    }

    /// Finds where the page at `offset` comes from, walking down the chain (paging in from a
    /// pager on the way). Throws `outOfMemory` or `pager(_)` from a page-in.
    public func lookup(_ offset: UInt64) throws(ObjectError) -> PageSource {
        var object = self
        var objectOffset = offset
        while true {
            if let page = object.residentPages[objectOffset] {
                guard page.isLaundering else { return .resident(page, object: object, offset: objectOffset) }
                // Its write is in flight: wait for it, keep the page (clean) and use it.
                object.settleLaundry(keeping: page)
                return .resident(page, object: object, offset: objectOffset)
            }
            if case .physical(let base) = object.kind {
                guard objectOffset < object.size else { return .zero }
                return .frame(base.advanced(by: objectOffset))
            }
            if let pager = object.pager, objectOffset < object.size, pager.hasData(at: objectOffset + object.pagerOffset) {
                let page = try object.pageIn(at: objectOffset)
                return .resident(page, object: object, offset: objectOffset)
            }
            guard let next = object.shadow else { return .zero }
            objectOffset += object.shadowOffset
            object = next
        }
    }

    /// Pointer to the bytes of a page source (nil for zeros).
    static func contents(of source: PageSource) -> UnsafeMutableRawPointer? {
        switch source {
        case .resident(let page, _, _): return page.contents
        case .frame(let frame): return DirectMap.pointer(to: frame)
        case .zero: return nil
        }
    }

    /// A new page holding a copy of `source` (zeros for `.zero`), or nil when memory is out.
    /// The source page is busy while the allocation runs, so the pageout daemon that the
    /// allocation may start cannot free it under the copy.
    func copyOfPage(_ source: PageSource) -> Page? {
        guard let from = VMObject.contents(of: source) else { return system.allocatePage(zeroed: true) }
        var busied: Page? = nil
        if case .resident(let sourcePage, _, _) = source, system.pages.tryBusy(sourcePage) { busied = sourcePage }
        defer { if let busied { try? system.pages.unbusy(busied) } }
        guard let page = system.allocatePage(zeroed: false) else { return nil }
        page.contents.copyMemory(from: from, byteCount: Int(pageSize))
        return page
    }

    /// A new anonymous object (one reference) holding a copy of every page visible through
    /// this object's chain in [offset, offset + length), shadowing only the physical object at
    /// the bottom of the chain if there is one. The bounded-chain escape hatch: it costs a
    /// copy of the visible pages, never more. Throws `outOfMemory` (nothing allocated stays).
    public func flattenedCopy(offset: UInt64, length: UInt64) throws(ObjectError) -> VMObject {
        guard !offset.addingReportingOverflow(length).overflow else { throw .outOfRange }
        let flat = try VMObject(system: system, size: length)
        // The physical object at the bottom, if any, keeps providing the pages no one wrote.
        var bottom: VMObject = self
        var bottomOffset = offset
        while let next = bottom.shadow {
            bottomOffset += bottom.shadowOffset
            bottom = next
        }
        if case .physical = bottom.kind {
            flat.shadow = bottom
            flat.shadowOffset = bottomOffset
            bottom.addShadower(flat)
            bottom.referenceCount += 1
        }
        var page = UInt64(0)
        while page < length {
            let source: PageSource
            do {
                source = try lookup(offset + page)
            } catch {
                flat.deallocate()
                throw error
            }
            switch source {
            case .resident:
                guard let copy = copyOfPage(source) else {
                    flat.deallocate()
                    throw .outOfMemory
                }
                do { try flat.attach(copy, at: page) } catch {
                    system.releasePage(copy)
                    flat.deallocate()
                    throw error
                }
                try? system.pages.activate(copy)
            case .frame, .zero:
                break   // zeros and physical frames read through (or zero-fill) as before
            }
            page += pageSize
        }
        system.statistics.flattens += 1
        return flat
    }
}
