// VMSystem: the machine-independent VM's shared state: the page frames, the reverse map seen
// through `PageMappings`, a factory for address spaces, the registry of every live object and
// map (for the auditor), the object cache, the chain-depth bound and statistics.
// The kernel has one (`vmSystem`, built in Kernel/Core); host tests build their own over an
// arena. Objects and maps keep a strong reference to it; it lives as long as they do.
// Invariants: `objects` holds every object that is not terminated, each at its
// `registryIndex`; `maps` every map that is not destroyed.
// Locks: none yet (one CPU, no VM operation from interrupt context except faults, which run
// with the faulting thread's view). With SMP: a global VM lock around each public call.

/// The pmap operations the VM needs from one address space. `Pmap` conforms.
public protocol PhysicalMap: AnyObject {
    func enter(_ page: Page, at address: VirtualAddress, protection: Protection, wired: Bool,
               access: Protection) throws(PmapError)
    func enter(physical frame: PhysicalAddress, at address: VirtualAddress, protection: Protection,
               memoryType: MemoryType, wired: Bool) throws(PmapError)
    func remove(start: VirtualAddress, byteCount: UInt64) throws(PmapError)
    func protect(start: VirtualAddress, byteCount: UInt64, to protection: Protection) throws(PmapError)
    func extract(_ address: VirtualAddress) throws(PmapError) -> Translation?
    func setWired(_ wired: Bool, at address: VirtualAddress) throws(PmapError)
    func activate() throws(PmapError)
    func destroy() throws(PmapError)
    /// True while this address space is loaded in the MMU.
    var isActive: Bool { get }
}

extension PhysicalMap {
    /// The pointer the reverse map uses to name this pmap in its pv entries.
    public var mapIdentity: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
}

extension Pmap: PhysicalMap {}

/// The page-wide operations the VM needs from the reverse map. `ReverseMap` conforms.
public protocol PageMappings: AnyObject {
    func removeAll(_ page: Page)
    func pageProtect(_ page: Page, to protection: Protection)
    func isModified(_ page: Page) -> Bool
    func clearModified(_ page: Page)
    func isReferenced(_ page: Page) -> Bool
    func clearReferenced(_ page: Page)
    /// Calls `body` with (pmap identity, address) for every mapping of `page`; the identity is
    /// `Unmanaged.passUnretained(pmap).toOpaque()`.
    func forEachMappingIdentity(of page: Page, _ body: (UnsafeMutableRawPointer, VirtualAddress) -> Void)
    /// The first pv entry of `page` that names no real page-table entry, or nil.
    func mappingViolation(of page: Page) -> StaticString?
}

extension ReverseMap: PageMappings {
    public func forEachMappingIdentity(of page: Page, _ body: (UnsafeMutableRawPointer, VirtualAddress) -> Void) {
        forEachMapping(of: page) { map, address in body(Unmanaged.passUnretained(map).toOpaque(), address) }
    }

    public func mappingViolation(of page: Page) -> StaticString? { invariantViolation(of: page) }
}

/// Counters the VM keeps; tests and benchmarks read them.
public struct VMStatistics {
    public var objectsCreated = 0
    public var objectsTerminated = 0
    public var shadowsCreated = 0
    public var copyObjectsCreated = 0
    public var collapses = 0
    public var bypasses = 0
    /// Pages moved from a backing object into its shadow by collapse.
    public var pagesMovedByCollapse = 0
    /// Pages freed by collapse because the shadow already had a newer one.
    public var pagesFreedByCollapse = 0
    /// Chains flattened because they reached the depth bound.
    public var flattens = 0
    public var zeroFillFaults = 0
    public var copyOnWriteFaults = 0
    public var copyPushes = 0
    public var pageIns = 0
    /// Pager reads for faults (a read-ahead counts once).
    public var pageInOperations = 0
    /// Neighbours brought in by read-ahead.
    public var pagesReadAhead = 0
    /// Anonymous objects given a swap pager at their first pageout.
    public var swapPagersCreated = 0
    /// Swap copies forgotten because their page was written again.
    public var swapSlotsDiscardedOnWrite = 0
    public var faults = 0
    /// Longest chain a fault walked under its entry (after bounding it).
    public var deepestChainAtFault = 0
    public init() {}
}

/// The VM's shared state.
public final class VMSystem {
    public let pages: PageFrames
    public let mappings: any PageMappings
    /// Creates an empty user address space (a pmap) for `VMMap` and `fork`.
    let makePmap: () throws(PmapError) -> any PhysicalMap
    public let cache: ObjectCache
    /// Every live (not terminated) object, in no order.
    public private(set) var objects: [VMObject] = []
    /// Every live map.
    public private(set) var maps: [VMMap] = []
    /// Longest shadow chain (links below a top object) `fork` and `shadow` let grow; beyond it
    /// the chain is flattened by copying, so a clone never costs more than copying its pages.
    public var maximumChainDepth = 8
    public var statistics = VMStatistics()
    /// Where anonymous objects page out to (nil: no swap, dirty anonymous pages stay).
    public var swapSpace: SwapSpace? = nil
    /// Pages resident in live objects (kept by VMObject.attach/detach).
    public internal(set) var residentPageTotal = 0
    /// The pageout daemon (free-page targets, queue scans, laundering).
    public private(set) lazy var pageout = PageoutDaemon(system: self)

    public init(pages: PageFrames, mappings: any PageMappings, cacheLimit: Int = 16,
                makePmap: @escaping () throws(PmapError) -> any PhysicalMap) {
        self.pages = pages
        self.mappings = mappings
        self.makePmap = makePmap
        cache = ObjectCache(limit: cacheLimit)
    }

    func register(_ object: VMObject) {
        object.registryIndex = objects.count
        objects.append(object)
        statistics.objectsCreated += 1
    }

    func unregister(_ object: VMObject) {
        let index = object.registryIndex
        precondition(index >= 0 && index < objects.count && objects[index] === object, "VMSystem.unregister: object not registered")
        let last = objects.removeLast()
        if last !== object {
            objects[index] = last
            last.registryIndex = index
        }
        object.registryIndex = -1
        statistics.objectsTerminated += 1
    }

    func register(_ map: VMMap) { maps.append(map) }

    func unregister(_ map: VMMap) { maps.removeAll { $0 === map } }

    /// A page for an object: from the free queue or the allocator; when both are empty the
    /// object cache is trimmed (memory pressure) and the allocation retried once.
    /// Below the free minimum the pageout daemon runs first (synchronously: there are no
    /// kernel threads), and again if the allocation still fails; then it waits for the
    /// daemon's laundry writes, oldest first, until one frees a page. Nil when nothing is in
    /// flight or a write freed nothing.
    func allocatePage(zeroed: Bool) -> Page? {
        if pageout.isBelowMinimum { pageout.run() }
        if pageout.hasRoom(for: 1), let page = try? pages.allocate(zeroed: zeroed) { return page }
        _ = cache.trim(freeingPages: 64, in: self)
        pageout.run(urgent: true)
        // A write that freed nothing failed (swap full, device errors): the access gets
        // out-of-memory rather than a retry loop.
        while !pageout.hasRoom(for: 1) {
            guard let freed = pageout.waitForLaundry(), freed > 0 else { return nil }
            if !pageout.hasRoom(for: 1) { pageout.run(urgent: true) }
        }
        return try? pages.allocate(zeroed: zeroed)
    }

    /// Frees a page that belongs to no object any more: unmapped everywhere first.
    func releasePage(_ page: Page) {
        mappings.removeAll(page)
        do {
            try pages.free(page)
        } catch {
            preconditionFailure("VMSystem.releasePage: object page in a bad state")
        }
    }

    /// Pages held by live objects.
    public var residentPageCount: Int {
        var total = 0
        for object in objects { total += object.residentPageCount }
        return total
    }
}
