// RadixTree: an ordered map from integer keys (below 2^60) to nonzero machine words, in
// 64-way nodes of 512 bytes each (one kernel-heap slab object, eight to a page). It is the
// index under the VM's sparse per-object structures (resident pages, swap metadata runs),
// the role FreeBSD's vm_radix/pctrie and Linux's xarray play: it grows one small node at a
// time, so it never needs a large contiguous allocation (a hash table's resize does), its
// allocation failures are typed instead of fatal, and it walks keys in order.
// Invariants:
//  - `height` levels: empty tree <=> root == nil <=> height == 0. Otherwise every key in the
//    tree is below 64^height and the root is at level height - 1; level 0 nodes (leaves) hold
//    values, higher nodes hold child pointers; slot i of a level-L node covers keys whose
//    bits 6L ..< 6L + 6 equal i. A zero word is an empty slot (so values are nonzero).
//  - No node is empty: removal frees every node it empties, and the root shrinks while only
//    its slot 0 is used (height > 1). `nodeCount` counts the nodes, `count` the values.
//  - Inserting allocates every node it needs before it links any, so a failed insert leaves
//    the tree exactly as it was.
//  - Nodes come from MetadataMemory; the tree frees all of them when it dies.
//  - Callbacks of `forEach` / `removeAll` must not modify the tree they run on.
// Not path-compressed: a tree whose keys are all near 0 (an object's pages from offset 0) is
// as shallow as its largest key requires; a lone key near 2^36 costs six nodes.
// Locks: none inside; the owner serialises every call.

/// Why a radix-tree insert was refused. The tree is unchanged.
public enum RadixTreeError: Error, Equatable {
    /// No memory for a node.
    case outOfMemory
    /// The key is at or above `RadixTree.keyLimit`.
    case keyOutOfRange
}

/// An ordered map from keys below 2^60 to nonzero words (see the file header).
public struct RadixTree: ~Copyable {
    /// Key bits resolved per level.
    static var slotBits: UInt64 { 6 }
    /// Slots per node.
    static var slots: Int { 64 }
    /// Bytes of one node.
    public static var nodeBytes: Int { 512 }
    /// Keys must be below this.
    public static var keyLimit: UInt64 { 1 << 60 }
    /// Levels needed for every key below `keyLimit`.
    static var maximumHeight: Int { 10 }

    private typealias Node = UnsafeMutablePointer<UInt>

    private var root: Node? = nil
    private var height = 0
    /// Values stored.
    public private(set) var count = 0
    /// Nodes allocated.
    public private(set) var nodeCount = 0

    public init() {}

    deinit {
        if let root { Self.freeSubtree(root, level: height - 1) }
    }

    public var isEmpty: Bool { count == 0 }

    /// Bytes of node memory the tree holds.
    public var memoryBytes: Int { nodeCount * Self.nodeBytes }

    // MARK: Geometry

    /// Slot of `key` in a node at `level`.
    @inline(__always) private static func slot(of key: UInt64, level: Int) -> Int {
        Int(truncatingIfNeeded: (key >> (UInt64(level) * slotBits)) & UInt64(slots - 1))
    }

    /// Smallest height whose tree holds `key` (at least 1).
    private static func height(for key: UInt64) -> Int {
        var height = 1
        while height < maximumHeight && key >> (UInt64(height) * slotBits) != 0 { height += 1 }
        return height
    }

    /// Keys a tree of `height` levels can hold: [0, capacity(height)).
    private static func capacity(_ height: Int) -> UInt64 {
        height >= maximumHeight ? keyLimit : 1 << (UInt64(height) * slotBits)
    }

    @inline(__always) private static func child(_ node: Node, _ slot: Int) -> Node? {
        Node(bitPattern: node[slot])
    }

    private static func isEmptyNode(_ node: Node) -> Bool {
        var used: UInt = 0
        for slot in 0..<slots { used |= node[slot] }
        return used == 0
    }

    /// True if only slot 0 of `node` is used.
    private static func usesOnlyFirstSlot(_ node: Node) -> Bool {
        var used: UInt = 0
        for slot in 1..<slots { used |= node[slot] }
        return used == 0
    }

    // MARK: Lookup

    /// The value at `key`, or nil.
    public subscript(key: UInt64) -> UInt? {
        guard var node = root, key < Self.capacity(height) else { return nil }
        var level = height - 1
        while level > 0 {
            guard let next = Self.child(node, Self.slot(of: key, level: level)) else { return nil }
            node = next
            level -= 1
        }
        let value = node[Self.slot(of: key, level: 0)]
        return value == 0 ? nil : value
    }

    // MARK: Insert

    /// Stores `value` (nonzero) at `key`, which must be empty. Throws `keyOutOfRange` or
    /// `outOfMemory`; the tree is unchanged when it throws.
    public mutating func insert(_ value: UInt, at key: UInt64) throws(RadixTreeError) {
        precondition(value != 0, "RadixTree.insert: zero marks an empty slot")
        guard key < Self.keyLimit else { throw .keyOutOfRange }
        let newHeight = max(height, Self.height(for: key))
        var spare = try Self.allocateNodes(nodesNeeded(for: key, height: newHeight))
        defer { precondition(spare == nil, "RadixTree.insert: allocated a node it did not link") }
        if let oldRoot = root {
            var top = oldRoot
            while height < newHeight {
                let newRoot = take(&spare)
                newRoot[0] = UInt(bitPattern: top)
                top = newRoot
                height += 1
            }
            root = top
        } else {
            root = take(&spare)
            height = newHeight
        }
        var node = root!
        var level = height - 1
        while level > 0 {
            let slot = Self.slot(of: key, level: level)
            if Self.child(node, slot) == nil { node[slot] = UInt(bitPattern: take(&spare)) }
            node = Self.child(node, slot)!
            level -= 1
        }
        let slot = Self.slot(of: key, level: 0)
        precondition(node[slot] == 0, "RadixTree.insert: key already present")
        node[slot] = value
        count += 1
    }

    /// Nodes an insert of `key` into a tree grown to `newHeight` must allocate.
    private func nodesNeeded(for key: UInt64, height newHeight: Int) -> Int {
        guard var node = root else { return newHeight }
        // Growing adds roots above the old one; the old root is slot 0 of the new top, so a
        // key outside slot 0's range needs a fresh path from the new top down.
        let needed = newHeight - height
        var level = newHeight - 1
        while level >= height {
            if Self.slot(of: key, level: level) != 0 { return needed + level }
            level -= 1
        }
        while level > 0 {
            guard let next = Self.child(node, Self.slot(of: key, level: level)) else { return needed + level }
            node = next
            level -= 1
        }
        return needed
    }

    /// `count` zeroed nodes linked through their slot 0, or nil for none. Throws
    /// `outOfMemory` after freeing any it got.
    private static func allocateNodes(_ count: Int) throws(RadixTreeError) -> Node? {
        var list: Node? = nil
        for _ in 0..<count {
            guard let raw = MetadataMemory.allocateBlock(bytes: nodeBytes) else {
                while let node = list {
                    list = child(node, 0)
                    MetadataMemory.freeBlock(UnsafeMutableRawPointer(node))
                }
                throw .outOfMemory
            }
            let node = raw.bindMemory(to: UInt.self, capacity: slots)
            node.initialize(repeating: 0, count: slots)
            node[0] = UInt(bitPattern: list)
            list = node
        }
        return list
    }

    /// Pops a node from a list built by `allocateNodes`, with its link slot cleared.
    private mutating func take(_ list: inout Node?) -> Node {
        guard let node = list else { preconditionFailure("RadixTree: node list exhausted") }
        list = Self.child(node, 0)
        node[0] = 0
        nodeCount += 1
        return node
    }

    // MARK: Remove

    /// Removes and returns the value at `key`, or nil. Never allocates.
    @discardableResult
    public mutating func remove(at key: UInt64) -> UInt? {
        guard let root, key < Self.capacity(height) else { return nil }
        let (value, rootEmptied) = removeValue(key, in: root, level: height - 1)
        guard value != nil else { return nil }
        count -= 1
        if rootEmptied {
            freeNode(root)
            self.root = nil
            height = 0
        } else {
            shrink()
        }
        return value
    }

    /// Removes `key` below `node`; frees children it empties. Returns the value and whether
    /// `node` itself is now empty (the caller frees it).
    private mutating func removeValue(_ key: UInt64, in node: Node, level: Int) -> (UInt?, Bool) {
        let slot = Self.slot(of: key, level: level)
        if level == 0 {
            let value = node[slot]
            guard value != 0 else { return (nil, false) }
            node[slot] = 0
            return (value, Self.isEmptyNode(node))
        }
        guard let child = Self.child(node, slot) else { return (nil, false) }
        let (value, childEmptied) = removeValue(key, in: child, level: level - 1)
        guard childEmptied else { return (value, false) }
        freeNode(child)
        node[slot] = 0
        return (value, Self.isEmptyNode(node))
    }

    /// Drops roots that only use slot 0 (their keys fit a lower tree).
    private mutating func shrink() {
        while height > 1, let top = root, Self.usesOnlyFirstSlot(top) {
            root = Self.child(top, 0)
            freeNode(top)
            height -= 1
        }
    }

    private mutating func freeNode(_ node: Node) {
        nodeCount -= 1
        MetadataMemory.freeBlock(UnsafeMutableRawPointer(node))
    }

    private static func freeSubtree(_ node: Node, level: Int) {
        if level > 0 {
            for slot in 0..<slots { if let child = child(node, slot) { freeSubtree(child, level: level - 1) } }
        }
        MetadataMemory.freeBlock(UnsafeMutableRawPointer(node))
    }

    // MARK: Ordered walks

    /// Calls `body(key, value)` for every key in `range`, ascending, until it returns false.
    /// Returns false if `body` stopped the walk. `body` must not modify this tree.
    @discardableResult
    public func forEach(in range: Range<UInt64> = 0..<UInt64.max, _ body: (UInt64, UInt) -> Bool) -> Bool {
        guard let root, !range.isEmpty else { return true }
        return Self.visit(root, level: height - 1, base: 0, range, body)
    }

    private static func visit(_ node: Node, level: Int, base: UInt64, _ range: Range<UInt64>,
                              _ body: (UInt64, UInt) -> Bool) -> Bool {
        let shift = UInt64(level) * slotBits
        var slot = range.lowerBound > base ? Int(min((range.lowerBound - base) >> shift, UInt64(slots))) : 0
        while slot < slots {
            let key = base + UInt64(slot) << shift
            if key >= range.upperBound { break }
            let word = node[slot]
            if word != 0 {
                if level == 0 {
                    if !body(key, word) { return false }
                } else if !visit(Node(bitPattern: word)!, level: level - 1, base: key, range, body) {
                    return false
                }
            }
            slot += 1
        }
        return true
    }

    /// The first (key, value) with key >= `key`, or nil.
    public func first(atOrAfter key: UInt64) -> (key: UInt64, value: UInt)? {
        var found: (key: UInt64, value: UInt)? = nil
        forEach(in: key..<UInt64.max) { foundKey, value in
            found = (foundKey, value)
            return false
        }
        return found
    }

    /// Removes every key in `range`, ascending, calling `body(key, value)` after each removal,
    /// and frees the nodes that empties. Never allocates. `body` must not modify this tree.
    public mutating func removeAll(in range: Range<UInt64> = 0..<UInt64.max, _ body: (UInt64, UInt) -> Void) {
        guard let root, !range.isEmpty else { return }
        if removeAll(in: root, level: height - 1, base: 0, range, body) {
            freeNode(root)
            self.root = nil
            height = 0
        } else {
            shrink()
        }
    }

    /// Returns whether `node` is empty afterwards (the caller frees it).
    private mutating func removeAll(in node: Node, level: Int, base: UInt64, _ range: Range<UInt64>,
                                    _ body: (UInt64, UInt) -> Void) -> Bool {
        let shift = UInt64(level) * Self.slotBits
        var slot = range.lowerBound > base ? Int(min((range.lowerBound - base) >> shift, UInt64(Self.slots))) : 0
        while slot < Self.slots {
            let key = base + UInt64(slot) << shift
            if key >= range.upperBound { break }
            let word = node[slot]
            if word != 0 {
                if level == 0 {
                    node[slot] = 0
                    count -= 1
                    body(key, word)
                } else {
                    let child = Node(bitPattern: word)!
                    if removeAll(in: child, level: level - 1, base: key, range, body) {
                        freeNode(child)
                        node[slot] = 0
                    }
                }
            }
            slot += 1
        }
        return Self.isEmptyNode(node)
    }

    // MARK: Checking

    /// The first broken invariant (empty node, wrong counts, oversized root), or nil. O(nodes).
    public func invariantViolation() -> StaticString? {
        guard let root else {
            return count == 0 && nodeCount == 0 && height == 0 ? nil : "RadixTree: empty tree with counts or height"
        }
        if height < 1 || height > Self.maximumHeight { return "RadixTree: height out of range" }
        if height > 1 && Self.usesOnlyFirstSlot(root) { return "RadixTree: root could shrink" }
        var values = 0
        var nodes = 0
        if let violation = Self.check(root, level: height - 1, values: &values, nodes: &nodes) { return violation }
        if values != count { return "RadixTree: count differs from the stored values" }
        if nodes != nodeCount { return "RadixTree: nodeCount differs from the nodes" }
        return nil
    }

    private static func check(_ node: Node, level: Int, values: inout Int, nodes: inout Int) -> StaticString? {
        nodes += 1
        if isEmptyNode(node) { return "RadixTree: empty node kept" }
        for slot in 0..<slots where node[slot] != 0 {
            if level == 0 {
                values += 1
            } else if let violation = check(Node(bitPattern: node[slot])!, level: level - 1, values: &values, nodes: &nodes) {
                return violation
            }
        }
        return nil
    }
}
