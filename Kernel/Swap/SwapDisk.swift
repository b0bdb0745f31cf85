// SwapDisk: one block device (or a window of one) as swap space sees it: whole pages moved
// between the device and physical memory, split into requests the device accepts.
// Invariants:
//  - The window [firstBlock, firstBlock + pageCount * blocksPerPage) lies inside the device;
//    page p of the window is device block firstBlock + p * blocksPerPage.
//  - The disk is used by swap alone while it is swapped on: every completion it reaps belongs
//    to a request it submitted, and `transfer` returns only when all of its requests finished.
//  - Erasure without existentials: the generic device is captured by four closures when the
//    disk is made, so SwapSpace holds disks of different driver types in one array and every
//    call into the driver is still specialised.
// Locks: none; SwapSpace's owner serialises calls.

/// Request tags, unique across every SwapDisk: several windows of one device share its
/// completions, so a window may reap another's.
private nonisolated(unsafe) var nextSwapDiskTag: UInt64 = 1
/// Completions of asynchronous requests reaped but not yet claimed by `SwapDisk.poll`, from
/// any window of any device (tags are unique).
private nonisolated(unsafe) var unclaimedCompletions: [(tag: UInt64, error: BlockDeviceError?)] = []

/// A page-granular view of a window of a `BlockDevice`, used by `SwapSpace`.
public final class SwapDisk {
    /// The device's geometry.
    public let geometry: BlockGeometry
    /// First device block of the window.
    public let firstBlock: UInt64
    /// Whole pages in the window.
    public let pageCount: UInt64
    /// Device blocks per page.
    public let blocksPerPage: UInt64

    private let submitRequest: (BlockOperation, UInt64, [BlockSegment], UInt64) throws(BlockDeviceError) -> Void
    private let reapRequests: ((BlockCompletion) -> Void) -> Int
    private let waitForDevice: () -> Void
    private let deviceInFlight: () -> Int

    /// Wraps `device`, using device blocks [firstBlock, firstBlock + blockCount) (to the end of
    /// the device when `blockCount` is nil). Throws `unsupportedBlockSize` when the device's
    /// block size does not divide the page size, `readOnlyDevice`, and `windowOutOfRange`
    /// when the window does not lie inside the device or holds less than one page.
    /// (A static function, not an init: Embedded Swift allows no generic initialiser on a class.)
    public static func over<Device: BlockDevice>(_ device: Device, firstBlock: UInt64 = 0,
                                                 blockCount: UInt64? = nil) throws(SwapError) -> SwapDisk {
        let geometry = device.geometry
        guard geometry.blockSize > 0, geometry.blockSize <= Int(pageSize),
              Int(pageSize) % geometry.blockSize == 0 else { throw .unsupportedBlockSize }
        guard !geometry.isReadOnly else { throw .readOnlyDevice }
        guard firstBlock < geometry.blockCount else { throw .windowOutOfRange }
        let available = geometry.blockCount - firstBlock
        let blocks = blockCount ?? available
        guard blocks <= available else { throw .windowOutOfRange }
        let perPage = pageSize / UInt64(geometry.blockSize)
        guard blocks / perPage >= 1 else { throw .windowOutOfRange }
        return SwapDisk(geometry: geometry, firstBlock: firstBlock, pageCount: blocks / perPage, blocksPerPage: perPage,
                        submit: { (operation, block, segments, tag) throws(BlockDeviceError) in
                            try device.submit(operation, at: block, segments: segments, tag: tag)
                        },
                        reap: { body in device.reapCompletions(body) },
                        wait: { device.waitForCompletions() }, inFlight: { device.inFlightCount })
    }

    private init(geometry: BlockGeometry, firstBlock: UInt64, pageCount: UInt64, blocksPerPage: UInt64,
                 submit: @escaping (BlockOperation, UInt64, [BlockSegment], UInt64) throws(BlockDeviceError) -> Void,
                 reap: @escaping ((BlockCompletion) -> Void) -> Int, wait: @escaping () -> Void,
                 inFlight: @escaping () -> Int) {
        self.geometry = geometry
        self.firstBlock = firstBlock
        self.pageCount = pageCount
        self.blocksPerPage = blocksPerPage
        submitRequest = submit
        reapRequests = reap
        waitForDevice = wait
        deviceInFlight = inFlight
    }

    /// Moves the pages `frames` to or from window pages `page ..< page + frames.count`, as
    /// few requests as the device's segment limits allow, all in flight together, and waits
    /// for every one. Throws the first failure (after all requests finished); a failed read
    /// leaves the frames' contents undefined. Precondition: the pages lie in the window.
    public func transfer(_ operation: BlockOperation, page: UInt64, frames: [PhysicalAddress]) throws(BlockDeviceError) {
        precondition(page < pageCount && UInt64(frames.count) <= pageCount - page, "SwapDisk.transfer: pages outside the window")
        let requests = plan(frames)
        var outstanding: [UInt64] = []
        var failure: BlockDeviceError? = nil
        var pageIndex = page
        for request in requests {
            let tag = nextSwapDiskTag
            nextSwapDiskTag &+= 1
            let block = firstBlock + pageIndex * blocksPerPage
            var submitted = false
            while !submitted {
                do {
                    try submitRequest(operation, block, request.segments, tag)
                    submitted = true
                } catch .queueFull where !outstanding.isEmpty {
                    collect(&outstanding, &failure, all: false)
                } catch {
                    failure = failure ?? error
                    break
                }
            }
            if submitted { outstanding.append(tag) }
            pageIndex += UInt64(request.pages)
            if failure != nil { break }
        }
        collect(&outstanding, &failure, all: true)
        if let failure { throw failure }
    }

    /// Makes every write that completed durable, waiting for it: one flush request, or
    /// nothing when the device has no volatile write cache to flush.
    public func flush() throws(BlockDeviceError) {
        guard geometry.supportsFlush else { return }
        let tag = nextSwapDiskTag
        nextSwapDiskTag &+= 1
        try submitRequest(.flush, 0, [], tag)
        var outstanding = [tag]
        var failure: BlockDeviceError? = nil
        collect(&outstanding, &failure, all: true)
        if let failure { throw failure }
    }

    /// Waits for and reaps completions of `outstanding` (all of them, or at least one).
    /// Completions of asynchronous requests (`start`) reaped on the way are kept for `poll`.
    private func collect(_ outstanding: inout [UInt64], _ failure: inout BlockDeviceError?, all: Bool) {
        let target = all ? 0 : outstanding.count - 1
        while outstanding.count > target {
            waitForDevice()
            _ = reapRequests { completion in
                if let index = outstanding.firstIndex(of: completion.tag) {
                    outstanding.remove(at: index)
                    if let error = completion.error, failure == nil { failure = error }
                } else {
                    unclaimedCompletions.append((completion.tag, completion.error))
                }
            }
        }
    }

    // MARK: Asynchronous transfers

    /// Asynchronous requests submitted and not yet claimed.
    public private(set) var asynchronousInFlight = 0

    /// Starts moving `frames` to or from window pages `page ..< page + frames.count` and
    /// returns at once, appending the tags of its requests to `tags` (pass them to `poll`).
    /// When the device queue is full it waits for a completion first. Throws what `submit`
    /// throws; the requests submitted before the failure are then in `tags`, still in
    /// flight: `poll` them before reusing the frames. Precondition: the pages lie in the window.
    public func start(_ operation: BlockOperation, page: UInt64, frames: [PhysicalAddress],
                      tags: inout [UInt64]) throws(BlockDeviceError) {
        precondition(page < pageCount && UInt64(frames.count) <= pageCount - page, "SwapDisk.start: pages outside the window")
        var pageIndex = page
        for request in plan(frames) {
            let tag = nextSwapDiskTag
            nextSwapDiskTag &+= 1
            let block = firstBlock + pageIndex * blocksPerPage
            while true {
                do {
                    try submitRequest(operation, block, request.segments, tag)
                    break
                } catch .queueFull where deviceInFlight() > 0 {
                    waitForDevice()
                    reapFinished()
                }
            }
            asynchronousInFlight += 1
            tags.append(tag)
            pageIndex += UInt64(request.pages)
        }
    }

    /// Reaps whatever the device has finished (never blocks).
    private func reapFinished() {
        _ = reapRequests { completion in unclaimedCompletions.append((completion.tag, completion.error)) }
    }

    /// Claims the completions of `tags`: removes the finished ones from `tags`, recording the
    /// first failure in `failure`. `wait`: block until every one has finished.
    public func poll(_ tags: inout [UInt64], failure: inout BlockDeviceError?, wait: Bool) {
        reapFinished()
        while true {
            var position = 0
            while position < unclaimedCompletions.count {
                if let index = tags.firstIndex(of: unclaimedCompletions[position].tag) {
                    tags.remove(at: index)
                    if let error = unclaimedCompletions[position].error, failure == nil { failure = error }
                    unclaimedCompletions.remove(at: position)
                    asynchronousInFlight -= 1
                } else {
                    position += 1
                }
            }
            if tags.isEmpty || !wait { return }
            waitForDevice()
            reapFinished()
        }
    }

    /// One device request: its segments and how many pages it moves.
    struct Request {
        var segments: [BlockSegment]
        var pages: Int
    }

    /// Splits `frames` into requests: physically adjacent frames share a segment (up to
    /// `maxSegmentBytes`), and a request carries at most `maxSegments` segments.
    func plan(_ frames: [PhysicalAddress]) -> [Request] {
        var requests: [Request] = []
        var current = Request(segments: [], pages: 0)
        let maxSegmentBytes = max(geometry.maxSegmentBytes, Int(pageSize))
        let maxSegments = max(geometry.maxSegments, 1)
        for frame in frames {
            if let last = current.segments.last,
               last.address.advanced(by: UInt64(last.byteCount)) == frame,
               last.byteCount + Int(pageSize) <= maxSegmentBytes {
                current.segments[current.segments.count - 1].byteCount += Int(pageSize)
            } else {
                if current.segments.count == maxSegments {
                    requests.append(current)
                    current = Request(segments: [], pages: 0)
                }
                current.segments.append(BlockSegment(pages: 1, at: frame))
            }
            current.pages += 1
        }
        if current.pages > 0 { requests.append(current) }
        return requests
    }
}
