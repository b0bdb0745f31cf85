// PageQueue: an intrusive doubly-linked list of page records with a counter.
// The links are the records' own `next`/`previous` fields holding record indices (32 bits
// each instead of two pointers), so insertion, removal and moves are O(1) and need no memory.
// Invariants: a record is on at most one queue, the one its `queue` field names; `count` is
// the list length; head.previous == end and tail.next == end; an empty queue has head == tail
// == end. The owner (PageFrames) passes the record array, so a queue never outlives it.
// Locks: (q) the page queue lock, once there is one; one CPU today.

/// A list of pages linked through their records.
public struct PageQueue {
    /// The "no record" index.
    public static let end: UInt32 = .max

    /// Which queue this is (written into every record it links).
    public let kind: Page.Queue
    private(set) var head: UInt32 = PageQueue.end
    private(set) var tail: UInt32 = PageQueue.end
    /// Number of pages on the queue.
    public private(set) var count = 0

    init(_ kind: Page.Queue) { self.kind = kind }

    /// Links record `index` at the tail. The record must be on no queue.
    mutating func append(_ index: UInt32, in records: UnsafeMutablePointer<Page.Record>) {
        let record = records + Int(index)
        precondition(record.pointee.queue == .none, "PageQueue.append: page already on a queue")
        record.pointee.previous = tail
        record.pointee.next = PageQueue.end
        if tail == PageQueue.end { head = index } else { records[Int(tail)].next = index }
        tail = index
        record.pointee.queue = kind
        count += 1
    }

    /// Links record `index` at the head. The record must be on no queue.
    mutating func prepend(_ index: UInt32, in records: UnsafeMutablePointer<Page.Record>) {
        let record = records + Int(index)
        precondition(record.pointee.queue == .none, "PageQueue.prepend: page already on a queue")
        record.pointee.next = head
        record.pointee.previous = PageQueue.end
        if head == PageQueue.end { tail = index } else { records[Int(head)].previous = index }
        head = index
        record.pointee.queue = kind
        count += 1
    }

    /// Unlinks record `index`, which must be on this queue.
    mutating func remove(_ index: UInt32, in records: UnsafeMutablePointer<Page.Record>) {
        let record = records + Int(index)
        precondition(record.pointee.queue == kind, "PageQueue.remove: page is on another queue")
        precondition(count > 0, "PageQueue.remove: count underflow")
        let next = record.pointee.next, previous = record.pointee.previous
        if previous == PageQueue.end { head = next } else { records[Int(previous)].next = next }
        if next == PageQueue.end { tail = previous } else { records[Int(next)].previous = previous }
        record.pointee.next = PageQueue.end
        record.pointee.previous = PageQueue.end
        record.pointee.queue = .none
        count -= 1
    }

    /// The first record index, or nil when empty.
    var first: UInt32? { head == PageQueue.end ? nil : head }
    /// The last record index, or nil when empty.
    var last: UInt32? { tail == PageQueue.end ? nil : tail }

    /// Walks the list and returns the first broken link or count, or nil. O(count).
    func invariantViolation(in records: UnsafeMutablePointer<Page.Record>, recordCount: Int) -> StaticString? {
        var seen = 0
        var previous = PageQueue.end
        var index = head
        while index != PageQueue.end {
            guard Int(index) < recordCount else { return "PageQueue: link outside the record array" }
            let record = records[Int(index)]
            if record.queue != kind { return "PageQueue: linked record names another queue" }
            if record.previous != previous { return "PageQueue: broken back link" }
            seen += 1
            if seen > count { return "PageQueue: list longer than its count (cycle?)" }
            previous = index
            index = record.next
        }
        if previous != tail { return "PageQueue: tail is not the last record" }
        if seen != count { return "PageQueue: count disagrees with the list" }
        return nil
    }
}
