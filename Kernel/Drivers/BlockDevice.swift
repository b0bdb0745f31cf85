// BlockDevice: the one interface the swap pager (and anything else that pages to a disk) uses,
// so that virtio-blk, an SD card or a host-test RAM disk can stand behind it unchanged.
// Invariants:
//  - Requests move whole blocks between the device and caller-owned physical memory, named by
//    segments (address, length). The caller keeps the memory alive and untouched from `submit`
//    until the request's completion has been handed back by `reapCompletions`.
//  - Every request that `submit` accepts is completed exactly once, with the caller's tag.
//    A request that `submit` refuses never reaches the device and changes no state.
//  - Bad input is refused by `BlockGeometry.validate` at the public boundary, before any state
//    changes: the same rules for every driver.
// Locks: none yet. One CPU; drivers touch their rings only in thread context, and interrupt
// handlers only acknowledge the device (see VirtioBlock.swift).

/// Why a block request was refused or failed.
public enum BlockDeviceError: Error, Equatable {
    /// There is no such device (no disk attached, an empty slot, an unknown device type).
    case noDevice
    /// The device does not speak a protocol version or feature set the driver needs.
    case unsupportedDevice
    /// The requested blocks are not all below `blockCount` (or their end overflows).
    case outOfRange
    /// A read or write with no data, or a segment whose length is zero or not a multiple of
    /// the block size.
    case invalidLength
    /// A segment is longer than `BlockGeometry.maxSegmentBytes`, or wraps around the end of
    /// the physical address space.
    case segmentTooLarge
    /// More segments than `BlockGeometry.maxSegments`.
    case tooManySegments
    /// A write to a read-only device.
    case readOnly
    /// A flush on a device without a volatile write cache command.
    case flushUnsupported
    /// No room for the request right now: reap completions first (`inFlightCount` is at its
    /// limit, or the queue has too few free descriptors).
    case queueFull
    /// A synchronous helper was called with requests still in flight (their completions would
    /// be lost); reap them first.
    case busy
    /// The device reported an I/O error for the request.
    case ioError
    /// The device does not support the request type.
    case unsupportedRequest
    /// The device broke the protocol (bad status, bogus completion, refused a set-up step) or
    /// could not be started; it must be reset before further use.
    case deviceFailed
    /// No memory for the driver's rings and request headers.
    case outOfMemory

    /// The case name, for console and test diagnostics (Embedded Swift has no reflection).
    public var name: StaticString {
        switch self {
        case .noDevice: return "noDevice"
        case .unsupportedDevice: return "unsupportedDevice"
        case .outOfRange: return "outOfRange"
        case .invalidLength: return "invalidLength"
        case .segmentTooLarge: return "segmentTooLarge"
        case .tooManySegments: return "tooManySegments"
        case .readOnly: return "readOnly"
        case .flushUnsupported: return "flushUnsupported"
        case .queueFull: return "queueFull"
        case .busy: return "busy"
        case .ioError: return "ioError"
        case .unsupportedRequest: return "unsupportedRequest"
        case .deviceFailed: return "deviceFailed"
        case .outOfMemory: return "outOfMemory"
        }
    }
}

/// What a request does.
public enum BlockOperation: Equatable {
    /// Device to memory.
    case read
    /// Memory to device.
    case write
    /// Makes every write that completed before it durable. Carries no data.
    case flush
}

/// A run of physical memory taking part in a transfer.
public struct BlockSegment: Equatable {
    /// First byte, a physical (DMA) address.
    public var address: PhysicalAddress
    /// Length in bytes.
    public var byteCount: Int

    public init(address: PhysicalAddress, byteCount: Int) {
        self.address = address
        self.byteCount = byteCount
    }

    /// `pages` whole pages starting at `address`.
    public init(pages: Int, at address: PhysicalAddress) {
        self.init(address: address, byteCount: pages * Int(pageSize))
    }
}

/// The finished request handed back by `reapCompletions`.
public struct BlockCompletion {
    /// The tag the caller gave `submit`.
    public var tag: UInt64
    /// Success, or what went wrong (`ioError`, `unsupportedRequest`, `deviceFailed`).
    public var result: Result<Void, BlockDeviceError>

    public init(tag: UInt64, result: Result<Void, BlockDeviceError>) {
        self.tag = tag
        self.result = result
    }

    /// True when the request succeeded.
    public var succeeded: Bool {
        if case .success = result { return true }
        return false
    }

    /// The failure, or nil on success.
    public var error: BlockDeviceError? {
        if case .failure(let error) = result { return error }
        return nil
    }
}

/// Sizes and limits of a block device, constant once it is attached.
public struct BlockGeometry: Equatable {
    /// Bytes per block: the unit of addresses and lengths (a power of two, at least 512).
    public var blockSize: Int
    /// Blocks on the device: valid block numbers are `0..<blockCount`.
    public var blockCount: UInt64
    /// Most segments one request may carry.
    public var maxSegments: Int
    /// Longest segment in bytes (a multiple of `blockSize`).
    public var maxSegmentBytes: Int
    /// How many single-segment requests can be in flight at once.
    public var queueDepth: Int
    /// True when `flush` is supported (the device has a volatile write cache command).
    public var supportsFlush: Bool
    /// True when writes are refused.
    public var isReadOnly: Bool

    public init(blockSize: Int, blockCount: UInt64, maxSegments: Int, maxSegmentBytes: Int,
                queueDepth: Int, supportsFlush: Bool, isReadOnly: Bool) {
        self.blockSize = blockSize
        self.blockCount = blockCount
        self.maxSegments = maxSegments
        self.maxSegmentBytes = maxSegmentBytes
        self.queueDepth = queueDepth
        self.supportsFlush = supportsFlush
        self.isReadOnly = isReadOnly
    }

    /// Capacity in bytes.
    public var byteCount: UInt64 { blockCount &* UInt64(blockSize) }

    /// Checks a request against the device's limits and returns its length in blocks (0 for a
    /// flush). Changes nothing. O(segments).
    ///
    /// Throws, in this order: `readOnly`, `flushUnsupported`, `invalidLength` (a flush with
    /// segments, a transfer without any, a segment of zero bytes or not whole blocks),
    /// `tooManySegments`, `segmentTooLarge`, `outOfRange`.
    public func validate<Segments: Collection>(_ operation: BlockOperation, at block: UInt64,
                                               segments: Segments) throws(BlockDeviceError) -> UInt64
        where Segments.Element == BlockSegment {
        switch operation {
        case .flush:
            guard supportsFlush else { throw .flushUnsupported }
            guard segments.isEmpty else { throw .invalidLength }
            return 0
        case .write:
            guard !isReadOnly else { throw .readOnly }
        case .read:
            break
        }
        guard !segments.isEmpty else { throw .invalidLength }
        var count = 0
        var blocks: UInt64 = 0
        let blockMask = blockSize - 1
        for segment in segments {
            guard segment.byteCount > 0, segment.byteCount & blockMask == 0 else { throw .invalidLength }
            count += 1
        }
        guard count <= maxSegments else { throw .tooManySegments }
        for segment in segments {
            guard segment.byteCount <= maxSegmentBytes,
                  UInt64(segment.byteCount) <= UInt64.max - segment.address.value else { throw .segmentTooLarge }
            blocks &+= UInt64(segment.byteCount / blockSize)
        }
        guard block < blockCount, blocks <= blockCount - block else { throw .outOfRange }
        return blocks
    }
}

/// A disk as the pager sees it: asynchronous reads and writes of whole blocks between the
/// device and physical memory, flush, and the device's geometry.
///
/// The protocol is used through generics only (`func swapOn<Disk: BlockDevice>(_ disk: Disk)`),
/// never as an existential: every call is specialised and statically dispatched.
///
/// Use: `submit` requests (each with a caller-chosen tag), then `waitForCompletions()` and
/// `reapCompletions` to learn which finished, in whatever order the device finished them.
public protocol BlockDevice: AnyObject {
    /// Sizes and limits; constant after attach.
    var geometry: BlockGeometry { get }

    /// Requests accepted by `submit` whose completion has not been handed back yet.
    var inFlightCount: Int { get }

    /// Starts `operation` on the blocks from `block` on, moving data through `segments` in
    /// order (ignored, and must be empty, for a flush). Returns once the device has the
    /// request; its completion is handed back later by `reapCompletions` with `tag`.
    ///
    /// The memory `segments` name belongs to the device until then. Throws what
    /// `BlockGeometry.validate` throws, `queueFull`, or `deviceFailed` (the device broke
    /// earlier); nothing reaches the device when it throws.
    func submit<Segments: Collection>(_ operation: BlockOperation, at block: UInt64, segments: Segments,
                                      tag: UInt64) throws(BlockDeviceError)
        where Segments.Element == BlockSegment

    /// Hands every request the device has reported finished since the last call to `body`, in
    /// the order the device finished them, and returns how many. Never blocks. Thread context
    /// only. A driver may hold back a finished request until its interrupt has arrived, so
    /// call `waitForCompletions()` first when something must have finished.
    @discardableResult
    func reapCompletions(_ body: (BlockCompletion) -> Void) -> Int

    /// Blocks until at least one in-flight request has finished and can be reaped (the driver
    /// sleeps until the device interrupts). Returns at once when nothing is in flight or a
    /// completion is already waiting.
    func waitForCompletions()
}

extension BlockDevice {
    /// Reads `segments.byteCount` bytes from `block` on and waits for them.
    /// Throws `busy` when other requests are in flight, what `submit` throws, or the request's
    /// own failure.
    public func read<Segments: Collection>(at block: UInt64, into segments: Segments) throws(BlockDeviceError)
        where Segments.Element == BlockSegment {
        try perform(.read, at: block, segments: segments)
    }

    /// Writes `segments` to the blocks from `block` on and waits until the device has them.
    /// Throws as `read(at:into:)`.
    public func write<Segments: Collection>(at block: UInt64, from segments: Segments) throws(BlockDeviceError)
        where Segments.Element == BlockSegment {
        try perform(.write, at: block, segments: segments)
    }

    /// Makes every completed write durable and waits for it. Throws as `read(at:into:)`.
    public func flush() throws(BlockDeviceError) {
        try perform(.flush, at: 0, segments: EmptyCollection<BlockSegment>())
    }

    /// Submits one request on an idle device and waits for its completion.
    public func perform<Segments: Collection>(_ operation: BlockOperation, at block: UInt64,
                                              segments: Segments) throws(BlockDeviceError)
        where Segments.Element == BlockSegment {
        guard inFlightCount == 0 else { throw .busy }
        try submit(operation, at: block, segments: segments, tag: 0)
        var outcome: Result<Void, BlockDeviceError>?
        while outcome == nil {
            waitForCompletions()
            reapCompletions { completion in outcome = completion.result }
        }
        try outcome!.get()
    }
}
