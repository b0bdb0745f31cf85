// ObjectCache: unreferenced objects marked cacheable stay resident, in LRU order, so that a
// lookup by their key (a pager or file identity) revives them with their pages instead of
// reading everything back. Beyond `limit` objects, or when the page allocator runs dry
// (VMSystem.allocatePage), the least recently used ones are terminated.
// Invariants: a cached object has referenceCount 0, `isCached`, and is linked exactly once
// between `newest` and `oldest` through cacheNewer/cacheOlder; `count` is the list length;
// keys of cached objects are distinct (a second object with a live key evicts the first).
// Locks: (c) a cache lock, then (o); one CPU today.

/// LRU cache of unreferenced cacheable objects.
public final class ObjectCache {
    /// Most objects kept.
    public var limit: Int
    public private(set) var count = 0
    /// Objects revived by `lookup` / terminated by eviction so far.
    public private(set) var hits = 0
    public private(set) var evictions = 0
    private var newest: VMObject? = nil
    private var oldest: VMObject? = nil

    init(limit: Int) { self.limit = limit }

    /// Caches `object` (its last reference was just dropped), evicting the oldest beyond the
    /// limit.
    func insert(_ object: VMObject, in system: VMSystem) {
        precondition(object.referenceCount == 0 && !object.isCached, "ObjectCache.insert: object referenced or cached")
        if object.cacheKey != 0, let twin = find(object.cacheKey) {
            unlink(twin)
            terminate(twin)
        }
        object.isCached = true
        object.cacheOlder = newest
        object.cacheNewer = nil
        if let newest { newest.cacheNewer = object } else { oldest = object }
        newest = object
        count += 1
        while count > limit, let victim = oldest {
            unlink(victim)
            terminate(victim)
        }
    }

    /// Revives the cached object with `key`: it leaves the cache with one reference (the
    /// caller's) and its pages. Nil if none is cached.
    public func lookup(key: UInt64) -> VMObject? {
        guard key != 0, let object = find(key) else { return nil }
        unlink(object)
        object.referenceCount = 1
        hits += 1
        return object
    }

    /// Takes `object` out of the cache because someone referenced it again.
    func remove(_ object: VMObject) {
        unlink(object)
        hits += 1
    }

    /// Memory pressure: terminates least recently used objects until at least `pages` pages
    /// were freed or the cache is empty. Returns the pages freed.
    @discardableResult
    public func trim(freeingPages pages: Int, in system: VMSystem) -> Int {
        var freed = 0
        while freed < pages, let victim = oldest {
            freed += victim.residentPageCount
            unlink(victim)
            terminate(victim)
        }
        return freed
    }

    /// Terminates everything cached.
    public func purge() {
        while let victim = oldest {
            unlink(victim)
            terminate(victim)
        }
    }

    /// Cached objects, newest first (for the auditor and tests).
    public var objects: [VMObject] {
        var list: [VMObject] = []
        var cursor = newest
        while let object = cursor {
            list.append(object)
            cursor = object.cacheOlder
        }
        return list
    }

    private func find(_ key: UInt64) -> VMObject? {
        var cursor = newest
        while let object = cursor {
            if object.cacheKey == key { return object }
            cursor = object.cacheOlder
        }
        return nil
    }

    private func unlink(_ object: VMObject) {
        precondition(object.isCached, "ObjectCache.unlink: object not cached")
        if let newer = object.cacheNewer { newer.cacheOlder = object.cacheOlder } else { newest = object.cacheOlder }
        if let older = object.cacheOlder { older.cacheNewer = object.cacheNewer } else { oldest = object.cacheNewer }
        object.cacheNewer = nil
        object.cacheOlder = nil
        object.isCached = false
        count -= 1
    }

    /// Terminates an evicted object and drops its reference to its shadow (which may
    /// terminate in turn, through the iterative `deallocate`).
    private func terminate(_ object: VMObject) {
        evictions += 1
        if let backing = object.terminate() { backing.deallocate() }
    }
}
