// Pager: the protocol between a VM object and its backing store (swap, a device, a test
// double). The object owns resident pages; the pager owns everything that is not resident.
// Offsets given to a pager are pager offsets: object offset + the object's `pagerOffset`
// (collapse can hand a backing object's pager to its shadow, whose offsets are shifted).
// Invariants: a pager belongs to at most one live object; data the pager holds for an offset
// is older than a resident page at the same offset (pageOut makes them equal, the object
// then decides); `discard` and `absorb` are the only ways data leaves a pager besides
// `terminate`. The batch calls (`readAhead`, `pageIn(batch:at:)`, `pageOut(batch:)`) let a
// pager read around a fault and write clusters in one I/O; their defaults loop over the
// single-page calls, so a simple pager implements only those.
// Locks: (o) the owning object's lock; one CPU today.

/// Why a pager call failed. Every case leaves the pager's data unchanged.
public enum PagerError: Error, Equatable {
    /// The backing store has no room (swap full).
    case noSpace
    /// The device reported an error.
    case ioError
    /// The pager holds no data at that offset.
    case noData
    /// The data read back is not what was written (checksum mismatch): never handed out.
    case corrupted
    /// No memory for the pager's own bookkeeping (swap metadata); the page stays as it was.
    case outOfMemory
}

/// Backing store of one VM object. Class-bound so an object can hold `any Pager`
/// (Embedded Swift allows existentials of class-bound protocols only).
public protocol Pager: AnyObject {
    /// True if the pager holds data for the page at `offset`.
    func hasData(at offset: UInt64) -> Bool

    /// Fills `page` with the data at `offset`. Throws `noData` or `ioError`.
    func pageIn(_ page: Page, at offset: UInt64) throws(PagerError)

    /// Stores `page`'s contents as the data at `offset` (the page stays resident).
    /// Throws `noSpace` or `ioError`.
    func pageOut(_ page: Page, at offset: UInt64) throws(PagerError)

    /// Forgets the data of every page in `range` (pages freed, or shadowed by newer ones).
    func discard(_ range: Range<UInt64>)

    /// Offsets in `range` for which the pager holds data, ascending.
    func offsetsWithData(in range: Range<UInt64>) -> [UInt64]

    /// Calls `body` with each offset in `range` the pager holds data for, ascending, until it
    /// returns false; returns false if it did. No array: a large object's offsets would need
    /// one large contiguous block exactly when memory is short. `body` must not change this
    /// pager. Default: over `offsetsWithData`.
    func forEachOffsetWithData(in range: Range<UInt64>, _ body: (UInt64) -> Bool) -> Bool

    /// Pages the pager holds data for, if it knows (nil: unknown). Lets collapse and bypass
    /// rule themselves out without a scan.
    var dataPageCount: Int? { get }

    /// Collapse support: takes over `source`'s data for source offsets in `range`, storing the
    /// data found at source offset `s` at `s - range.lowerBound + destinationStart`, except
    /// where `keep(destinationOffset)` says this pager's object already has a newer page (that
    /// data is discarded). Data outside `range` stays with `source`, which the caller then
    /// terminates. Returns false if this pager cannot take that source's data: a different
    /// kind of store (nothing changed), or no memory for its bookkeeping (what moved so far is
    /// here, the rest stays with `source`; each datum is in exactly one of them, which the
    /// collapse tolerates because only this pager's object can see `source`'s). The object
    /// then does not collapse.
    func absorb(_ source: any Pager, range: Range<UInt64>, destinationStart: UInt64,
                keep: (UInt64) -> Bool) -> Bool

    /// Releases every resource (swap blocks); the pager is never used again.
    func terminate()

    /// Batch pagein planning: the pager offsets worth reading together with the faulting
    /// `offset` (read-ahead), a range containing `offset` inside `bounds` in which the
    /// pager holds data for every offset and `isResident` is false. Default: `offset` alone.
    func readAhead(around offset: UInt64, within bounds: Range<UInt64>,
                   isResident: (UInt64) -> Bool) -> Range<UInt64>

    /// Batch pagein: fills `pages[i]` with the data at `offsets.lowerBound + i * pageSize`
    /// (`offsets` from `readAhead`, one page per offset). Returns one result per page: nil
    /// when the page holds its data. Default: one `pageIn` per page.
    func pageIn(batch pages: [Page], at offsets: Range<UInt64>) -> [PagerError?]

    /// Batch pageout of (pager offset, page) pairs, ascending distinct offsets; the pager may
    /// cluster consecutive offsets into one I/O. One result per pair: nil when the data is
    /// stored (the caller may mark the page clean). Default: one `pageOut` per page.
    func pageOut(batch pages: [(offset: UInt64, page: Page)]) -> [PagerError?]
}

extension Pager {
    public func forEachOffsetWithData(in range: Range<UInt64>, _ body: (UInt64) -> Bool) -> Bool {
        for offset in offsetsWithData(in: range) where !body(offset) { return false }
        return true
    }

    public var dataPageCount: Int? { nil }

    public func readAhead(around offset: UInt64, within bounds: Range<UInt64>,
                          isResident: (UInt64) -> Bool) -> Range<UInt64> {
        offset..<(offset + pageSize)
    }

    public func pageIn(batch pages: [Page], at offsets: Range<UInt64>) -> [PagerError?] {
        var results = [PagerError?](repeating: nil, count: pages.count)
        for position in pages.indices {
            do { try pageIn(pages[position], at: offsets.lowerBound + UInt64(position) * pageSize) } catch {
                results[position] = error
            }
        }
        return results
    }

    public func pageOut(batch pages: [(offset: UInt64, page: Page)]) -> [PagerError?] {
        var results = [PagerError?](repeating: nil, count: pages.count)
        for position in pages.indices {
            do { try pageOut(pages[position].page, at: pages[position].offset) } catch {
                results[position] = error
            }
        }
        return results
    }
}
