// SwapFilePager: a read-only window onto a region of a swap device, mapped like a file (the
// XNU swapfile pager's role). Unlike XNU's, which hands back zero-filled pages so nobody can
// read swap through a mapping, a fault here reads the device's real blocks: the point is to
// inspect a swap region (debugging, crash analysis), and only the kernel can create one.
// Invariants:
//  - The pager never stores data: `pageOut` fails, `discard`/`terminate` change nothing on
//    the device, `absorb` refuses (no other pager's data can move into a device region).
//  - Its object's pages are always clean: the mapping call refuses a writable shared
//    mapping (`writableSharedMapping`), and the maximum protection of a read-only mapping
//    excludes write, so no later `protect` can add it. A private writable mapping is
//    copy-on-write: writes land in a shadow object, never in the device region. (When that
//    shadow collapses over the region's object it adopts this pager; its written pages then
//    stay resident, as this pager refuses pageout, and never reach the device.)
//  - Page p of the region is device blocks firstBlock + p * blocksPerPage ..< + blocksPerPage.
//  - Erasure without existentials: the generic device is captured in one closure.
// Locks: (o) the owning object's lock; the device must be idle (synchronous reads).

/// Why a swap-file pager or mapping could not be made.
public enum SwapFilePagerError: Error, Equatable {
    /// A writable mapping that is not copy-on-write would write the device: refused.
    case writableSharedMapping
    /// The device's block size does not divide the page size.
    case unsupportedBlockSize
    /// The region does not lie inside the device, or holds less than one page.
    case regionOutOfRange
    /// The map refused the mapping.
    case map(MapError)
    /// The object could not be made.
    case object(ObjectError)
}

/// The pager of a read-only mapping of a swap device region.
public final class SwapFilePager: Pager {
    /// Most pages read on each side of a faulting page.
    public static var readAheadPages: UInt64 { 7 }

    /// First device block of the region.
    public let firstBlock: UInt64
    /// Whole pages in the region.
    public let pageCount: UInt64
    /// Device blocks per page.
    public let blocksPerPage: UInt64
    /// Device reads issued (for tests and benchmarks).
    public private(set) var reads: UInt64 = 0
    /// Pages read.
    public private(set) var pagesRead: UInt64 = 0

    private let readBlocks: (UInt64, [BlockSegment]) throws(BlockDeviceError) -> Void
    private let maxSegments: Int

    /// A pager over device blocks [firstBlock, firstBlock + blockCount) of `device`. Throws
    /// `unsupportedBlockSize` or `regionOutOfRange`. A read-only device is fine.
    public static func over<Device: BlockDevice>(_ device: Device, firstBlock: UInt64,
                                                 blockCount: UInt64) throws(SwapFilePagerError) -> SwapFilePager {
        let geometry = device.geometry
        guard geometry.blockSize > 0, geometry.blockSize <= Int(pageSize),
              Int(pageSize) % geometry.blockSize == 0 else { throw .unsupportedBlockSize }
        let perPage = pageSize / UInt64(geometry.blockSize)
        guard firstBlock < geometry.blockCount, blockCount <= geometry.blockCount - firstBlock,
              blockCount / perPage >= 1 else { throw .regionOutOfRange }
        return SwapFilePager(firstBlock: firstBlock, pageCount: blockCount / perPage, blocksPerPage: perPage,
                             maxSegments: max(geometry.maxSegments, 1)) { (block, segments) throws(BlockDeviceError) in
            try device.read(at: block, into: segments)
        }
    }

    private init(firstBlock: UInt64, pageCount: UInt64, blocksPerPage: UInt64, maxSegments: Int,
                 read: @escaping (UInt64, [BlockSegment]) throws(BlockDeviceError) -> Void) {
        self.firstBlock = firstBlock
        self.pageCount = pageCount
        self.blocksPerPage = blocksPerPage
        self.maxSegments = maxSegments
        readBlocks = read
    }

    /// Bytes the region covers (the size of the object that maps it).
    public var byteCount: UInt64 { pageCount << pageShift }

    /// Maps region bytes [offset, offset + length) into `map` at `address` (nil: anywhere)
    /// with `protection`, through a new object whose pager this is. `copyOnWrite`: a private
    /// mapping (writes go to a shadow). Throws `writableSharedMapping` for a writable mapping
    /// that is not copy-on-write, before anything changes; `map(error)` / `object(error)`.
    @discardableResult
    public func map(into map: VMMap, offset: UInt64 = 0, at address: UInt64?, length: UInt64,
                    protection: Protection, copyOnWrite: Bool = false) throws(SwapFilePagerError) -> UInt64 {
        guard !protection.contains(.write) || copyOnWrite else { throw .writableSharedMapping }
        let object: VMObject
        do { object = try VMObject(system: map.system, size: byteCount) } catch { throw .object(error) }
        do { try object.setPager(self) } catch {
            object.deallocate()
            throw .object(error)
        }
        defer { object.deallocate() }  // The map entry holds its own reference.
        do {
            return try map.map(object, offset: offset, at: address, length: length, protection: protection,
                               maxProtection: copyOnWrite ? .all : .readExecute, inheritance: .copy,
                               copyStrategy: .symmetric, copyOnWrite: copyOnWrite)
        } catch {
            throw .map(error)
        }
    }

    // MARK: Reading

    private func page(of offset: UInt64) -> UInt64? {
        guard offset & (pageSize - 1) == 0, offset >> pageShift < pageCount else { return nil }
        return offset >> pageShift
    }

    /// Reads region pages from `page` on into `frames` (one page each), in requests of at
    /// most the device's segment limit. Throws the device's error.
    public func read(page: UInt64, into frames: [PhysicalAddress]) throws(BlockDeviceError) {
        precondition(page < pageCount && UInt64(frames.count) <= pageCount - page, "SwapFilePager.read: outside the region")
        var position = 0
        while position < frames.count {
            let end = min(frames.count, position + maxSegments)
            let segments = (position..<end).map { BlockSegment(pages: 1, at: frames[$0]) }
            reads += 1
            try readBlocks(firstBlock + (page + UInt64(position)) * blocksPerPage, segments)
            pagesRead += UInt64(end - position)
            position = end
        }
    }

    // MARK: Pager protocol

    public func hasData(at offset: UInt64) -> Bool { page(of: offset) != nil }

    public func pageIn(_ page: Page, at offset: UInt64) throws(PagerError) {
        guard let index = self.page(of: offset) else { throw .noData }
        do { try read(page: index, into: [page.physicalAddress]) } catch { throw .ioError }
    }

    /// The region is never written: a clean page is simply dropped and read again.
    public func pageOut(_ page: Page, at offset: UInt64) throws(PagerError) { throw .ioError }

    public func discard(_ range: Range<UInt64>) {}

    public func offsetsWithData(in range: Range<UInt64>) -> [UInt64] {
        var offsets: [UInt64] = []
        var offset = (range.lowerBound + pageSize - 1) & ~(pageSize - 1)
        while offset < range.upperBound, offset >> pageShift < pageCount {
            offsets.append(offset)
            offset += pageSize
        }
        return offsets
    }

    public func absorb(_ source: any Pager, range: Range<UInt64>, destinationStart: UInt64,
                       keep: (UInt64) -> Bool) -> Bool { false }

    public func terminate() {}

    public func readAhead(around offset: UInt64, within bounds: Range<UInt64>,
                          isResident: (UInt64) -> Bool) -> Range<UInt64> {
        let single = offset..<(offset + pageSize)
        guard page(of: offset) != nil, bounds.contains(offset) else { return single }
        var low = offset
        while (offset - low) >> pageShift < SwapFilePager.readAheadPages, low >= pageSize,
              bounds.contains(low - pageSize), page(of: low - pageSize) != nil, !isResident(low - pageSize) {
            low -= pageSize
        }
        var high = offset + pageSize
        while (high - offset) >> pageShift <= SwapFilePager.readAheadPages, bounds.contains(high),
              page(of: high) != nil, !isResident(high) {
            high += pageSize
        }
        return low..<high
    }

    public func pageIn(batch pages: [Page], at offsets: Range<UInt64>) -> [PagerError?] {
        guard let first = page(of: offsets.lowerBound),
              UInt64(pages.count) <= pageCount - first,
              offsets.upperBound - offsets.lowerBound == UInt64(pages.count) << pageShift else {
            return [PagerError?](repeating: .noData, count: pages.count)
        }
        var results = [PagerError?](repeating: nil, count: pages.count)
        do { try read(page: first, into: pages.map { $0.physicalAddress }) } catch {
            // Isolate the failure: each page alone, so one bad block costs only its page.
            for position in pages.indices {
                do { try read(page: first + UInt64(position), into: [pages[position].physicalAddress]) } catch {
                    results[position] = .ioError
                }
            }
        }
        return results
    }

    public func pageOut(batch pages: [(offset: UInt64, page: Page)]) -> [PagerError?] {
        [PagerError?](repeating: .ioError, count: pages.count)
    }
}
