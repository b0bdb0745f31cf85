// Auditor: walks every map, object and page of a VMSystem and reports the first broken
// invariant. The in-kernel VM suites run it after every test; host tests after every step of
// their random model. O(objects + pages + mapped pages); never changes anything.
// Checks: reference counts equal the real references (entries + shadowers + what the caller
// says it holds); every resident page belongs to exactly one object at one offset and is in
// use (not free); shadow links are acyclic and mirrored by `shadowers`; copy objects shadow
// their source; every translation of every map lies under an entry, maps exactly the page
// the entry's chain shows there, is writable only when it may be, and has its pv entry;
// every pv entry of an object page names a real page-table entry; the page queues are sane;
// cached objects are unreferenced; each object's resident-page index is well formed; a page
// in the pageout daemon's laundry is busy, unmapped, on no queue and counted by its object
// and by the daemon.

/// A broken invariant: what broke, and (when it matters) where.
public struct AuditFailure: Error {
    public var rule: StaticString
    public var address: UInt64
    public var value: Int
}

/// The VM invariant auditor.
public enum Auditor {
    /// Checks everything. `held`: objects the caller holds references to (one per listing).
    public static func check(_ system: VMSystem, holding held: [VMObject] = []) -> AuditFailure? {
        if let broken = system.pages.invariantViolation() { return AuditFailure(rule: broken, address: 0, value: 0) }
        if let failure = checkObjects(system, holding: held) { return failure }
        for map in system.maps {
            if let failure = checkMap(map) { return failure }
        }
        return nil
    }

    /// The first broken rule of resident page `page` at `offset` of `object`, or nil.
    private static func auditResidentPage(_ page: Page, at offset: UInt64, of object: VMObject, index: Int) -> AuditFailure? {
        if page.object != object.identity { return AuditFailure(rule: "Auditor: page names another object", address: offset, value: index) }
        if page.offset != offset { return AuditFailure(rule: "Auditor: page names another offset", address: offset, value: index) }
        if offset >= object.size || offset & (pageSize - 1) != 0 {
            return AuditFailure(rule: "Auditor: page outside its object", address: offset, value: index)
        }
        if !page.isManaged || page.queue == .free { return AuditFailure(rule: "Auditor: object page is free", address: offset, value: index) }
        if let broken = object.system.mappings.mappingViolation(of: page) { return AuditFailure(rule: broken, address: offset, value: index) }
        if page.isLaundering { return auditLaunderingPage(page, at: offset, of: object, index: index) }
        return nil
    }

    /// The first broken rule of a page whose laundry write is in flight, or nil.
    private static func auditLaunderingPage(_ page: Page, at offset: UInt64, of object: VMObject, index: Int) -> AuditFailure? {
        if !page.isBusy { return AuditFailure(rule: "Auditor: laundering page not busy", address: offset, value: index) }
        if page.mappingCount != 0 { return AuditFailure(rule: "Auditor: laundering page still mapped", address: offset, value: index) }
        if page.queue != .none { return AuditFailure(rule: "Auditor: laundering page on a queue", address: offset, value: index) }
        if object.laundryWrites == 0 || object.pagingInProgress < object.laundryWrites {
            return AuditFailure(rule: "Auditor: laundering page of an object without laundry writes", address: offset, value: index)
        }
        return nil
    }

    private static func checkObjects(_ system: VMSystem, holding held: [VMObject]) -> AuditFailure? {
        let objects = system.objects
        var expected: [ObjectIdentifier: Int] = [:]
        for object in held { expected[ObjectIdentifier(object), default: 0] += 1 }
        for map in system.maps {
            for entry in map.entries {
                if let object = entry.object { expected[ObjectIdentifier(object), default: 0] += 1 }
            }
        }
        // An object some entry shares copy-on-write must not be written in place by another.
        var copyOnWriteUsers: Set<ObjectIdentifier> = []
        var inPlaceWriters: Set<ObjectIdentifier> = []
        for map in system.maps {
            for entry in map.entries {
                guard let object = entry.object else { continue }
                if entry.needsCopy {
                    copyOnWriteUsers.insert(ObjectIdentifier(object))
                } else if entry.maxProtection.contains(.write) {
                    inPlaceWriters.insert(ObjectIdentifier(object))
                }
            }
        }
        if !copyOnWriteUsers.isDisjoint(with: inPlaceWriters) {
            return AuditFailure(rule: "Auditor: object shared copy-on-write is written in place", address: 0, value: 0)
        }
        for (index, object) in objects.enumerated() {
            if object.registryIndex != index { return AuditFailure(rule: "Auditor: object registry index wrong", address: 0, value: index) }
            if object.isTerminated { return AuditFailure(rule: "Auditor: terminated object registered", address: 0, value: index) }
            if let shadow = object.shadow {
                expected[ObjectIdentifier(shadow), default: 0] += 1
                if shadow.isTerminated { return AuditFailure(rule: "Auditor: shadow link to a terminated object", address: 0, value: index) }
                if !shadow.shadowers.contains(where: { $0 === object }) {
                    return AuditFailure(rule: "Auditor: shadow does not list its shadower", address: 0, value: index)
                }
            }
            for shadower in object.shadowers where shadower.shadow !== object {
                return AuditFailure(rule: "Auditor: shadower does not shadow the object", address: 0, value: index)
            }
            if let copy = object.copy, copy.shadow !== object {
                return AuditFailure(rule: "Auditor: copy object does not shadow its source", address: 0, value: index)
            }
            // Acyclic: a chain longer than the number of objects loops.
            var depth = 0
            var cursor = object.shadow
            while let next = cursor {
                depth += 1
                if depth > objects.count { return AuditFailure(rule: "Auditor: shadow chain has a cycle", address: 0, value: index) }
                cursor = next.shadow
            }
            if case .physical = object.kind, object.residentPageCount != 0 {
                return AuditFailure(rule: "Auditor: physical object with resident pages", address: 0, value: index)
            }
            if let broken = object.residentPages.invariantViolation() { return AuditFailure(rule: broken, address: 0, value: index) }
            var failure: AuditFailure? = nil
            object.residentPages.forEach { offset, page in
                failure = auditResidentPage(page, at: offset, of: object, index: index)
                return failure == nil
            }
            if let failure { return failure }
        }
        if let failure = checkLaundryTotals(system) { return failure }
        for object in objects {
            let count = expected[ObjectIdentifier(object)] ?? 0
            if object.isCached {
                if object.referenceCount != 0 || count != 0 { return AuditFailure(rule: "Auditor: cached object referenced", address: 0, value: count) }
            } else if object.referenceCount != count {
                return AuditFailure(rule: "Auditor: reference count differs from the real references", address: UInt64(object.referenceCount), value: count)
            }
        }
        for object in system.cache.objects where object.isTerminated || !object.isCached {
            return AuditFailure(rule: "Auditor: cache lists a dead or uncached object", address: 0, value: 0)
        }
        if system.cache.objects.count != system.cache.count { return AuditFailure(rule: "Auditor: cache count wrong", address: 0, value: system.cache.count) }
        return nil
    }

    /// The daemon's count of pages and writes in flight equals what the objects show.
    private static func checkLaundryTotals(_ system: VMSystem) -> AuditFailure? {
        var pages = 0
        var writes = 0
        for object in system.objects {
            writes += object.laundryWrites
            object.residentPages.forEach { _, page in
                if page.isLaundering { pages += 1 }
                return true
            }
        }
        if pages != system.pageout.pagesInLaundry { return AuditFailure(rule: "Auditor: laundering pages differ from the daemon's count", address: UInt64(pages), value: system.pageout.pagesInLaundry) }
        if writes != system.pageout.laundryWrites { return AuditFailure(rule: "Auditor: laundry writes differ from the daemon's count", address: UInt64(writes), value: system.pageout.laundryWrites) }
        return nil
    }

    private static func checkMap(_ map: VMMap) -> AuditFailure? {
        var previousEnd = map.lowerBound
        for entry in map.entries {
            if entry.start < previousEnd || entry.start >= entry.end || entry.end > map.upperBound
                || entry.start & (pageSize - 1) != 0 || entry.end & (pageSize - 1) != 0 {
                return AuditFailure(rule: "Auditor: map entries unsorted, overlapping or out of bounds", address: entry.start, value: 0)
            }
            if !entry.protection.isSubset(of: entry.maxProtection) {
                return AuditFailure(rule: "Auditor: protection above maximum", address: entry.start, value: 0)
            }
            if let object = entry.object, object.isTerminated {
                return AuditFailure(rule: "Auditor: entry names a terminated object", address: entry.start, value: 0)
            }
            if entry.wiredCount > 0 {
                if entry.needsCopy { return AuditFailure(rule: "Auditor: wired entry needs copy", address: entry.start, value: 0) }
                var address = entry.start
                while address < entry.end {
                    guard let top = entry.object, let page = top.page(at: entry.objectOffset(of: address)), page.wireCount > 0 else {
                        return AuditFailure(rule: "Auditor: page of a wired entry not resident and wired in its object", address: address, value: 0)
                    }
                    address += pageSize
                }
            }
            previousEnd = entry.end
            if let failure = checkTranslations(of: entry, in: map) { return failure }
        }
        // Nothing mapped in the holes between entries.
        var cursor = map.lowerBound
        for entry in map.entries + [MapEntry(start: map.upperBound, end: map.upperBound, object: nil, offset: 0, protection: [],
                                             maxProtection: [], inheritance: .none, copyStrategy: .symmetric, wiredCount: 0, needsCopy: false)] {
            // Holes can be huge: probe at most the first 64 pages after each entry.
            var address = cursor
            let limit = min(entry.start, cursor + 64 * pageSize)
            while address < limit {
                if (try? map.pmap.extract(VirtualAddress(address))) != nil {
                    return AuditFailure(rule: "Auditor: translation outside every entry", address: address, value: 0)
                }
                address += pageSize
            }
            cursor = entry.end
        }
        return nil
    }

    private static func checkTranslations(of entry: MapEntry, in map: VMMap) -> AuditFailure? {
        let identity = map.pmap.mapIdentity
        var address = entry.start
        while address < entry.end {
            defer { address += pageSize }
            guard let translation = try? map.pmap.extract(VirtualAddress(address)) else { continue }
            guard let top = entry.object else { return AuditFailure(rule: "Auditor: translation under an entry without object", address: address, value: 0) }
            if !translation.protection.isSubset(of: entry.protection.hardwareExpressible) {
                return AuditFailure(rule: "Auditor: translation grants more than its entry", address: address, value: 0)
            }
            // What the chain shows here, without paging anything in.
            var object = top
            var offset = entry.objectOffset(of: address)
            var visible: PageSource = .zero
            var owner: VMObject? = nil
            while true {
                if let page = object.residentPages[offset] { visible = .resident(page, object: object, offset: offset); owner = object; break }
                if case .physical(let base) = object.kind { visible = .frame(base.advanced(by: offset)); owner = object; break }
                guard let next = object.shadow else { break }
                offset += object.shadowOffset
                object = next
            }
            switch visible {
            case .zero:
                return AuditFailure(rule: "Auditor: translation where the chain has no page", address: address, value: 0)
            case .frame(let frame):
                if translation.physicalAddress != frame { return AuditFailure(rule: "Auditor: translation to the wrong frame", address: address, value: 0) }
            case .resident(let page, _, _):
                if translation.physicalAddress != page.physicalAddress {
                    return AuditFailure(rule: "Auditor: translation to a page the chain does not show", address: address, value: 0)
                }
                if !translation.isManaged { return AuditFailure(rule: "Auditor: object page mapped unmanaged", address: address, value: 0) }
                var hasEntry = false
                map.system.mappings.forEachMappingIdentity(of: page) { pmap, va in
                    if pmap == identity && va.value == address { hasEntry = true }
                }
                if !hasEntry { return AuditFailure(rule: "Auditor: translation without its pv entry", address: address, value: 0) }
                if translation.isWired && page.wireCount == 0 { return AuditFailure(rule: "Auditor: wired translation of an unwired page", address: address, value: 0) }
            }
            if translation.protection.contains(.write) {
                if owner !== top || entry.needsCopy {
                    return AuditFailure(rule: "Auditor: page below the top object mapped writable", address: address, value: 0)
                }
                if let copy = top.copy {
                    let objectOffset = entry.objectOffset(of: address)
                    if objectOffset >= copy.shadowOffset && objectOffset - copy.shadowOffset < copy.size
                        && !copy.hasOwnData(at: objectOffset - copy.shadowOffset) {
                        return AuditFailure(rule: "Auditor: page writable while its copy object needs it", address: address, value: 0)
                    }
                }
            }
        }
        return nil
    }
}
