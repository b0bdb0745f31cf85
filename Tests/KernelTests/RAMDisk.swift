// RAMDisk: a BlockDevice in host memory for the swap tests, with fault injection: read or
// write errors on chosen blocks (or the next N requests), silent corruption of stored
// blocks, a segment limit, requests completed out of order across `waitForCompletions`,
// and a slow mode in which only waiting completes requests.
// Data moves between the disk and fake physical memory through DirectMap, as DMA would.

@testable import Kernel

final class RAMDisk: BlockDevice {
    let geometry: BlockGeometry
    private(set) var storage: [UInt8]
    /// Device blocks whose reads / writes fail with ioError (every time).
    var failingReadBlocks: Set<UInt64> = []
    var failingWriteBlocks: Set<UInt64> = []
    /// Requests submitted, by operation, and the largest page count of one request.
    private(set) var readRequests = 0
    /// Submissions refused with queueFull.
    private(set) var refusedAsFull = 0
    private(set) var writeRequests = 0
    private(set) var flushRequests = 0
    private var pending: [BlockCompletion] = []
    /// The most requests ever in flight at once.
    private(set) var peakInFlight = 0

    var inFlightCount: Int { pending.count }

    init(blocks: UInt64, blockSize: Int = 512, maxSegments: Int = 32, maxSegmentBytes: Int = 1 << 20, queueDepth: Int = 16) {
        geometry = BlockGeometry(blockSize: blockSize, blockCount: blocks, maxSegments: maxSegments,
                                 maxSegmentBytes: maxSegmentBytes, queueDepth: queueDepth, supportsFlush: true, isReadOnly: false)
        storage = [UInt8](repeating: 0, count: Int(blocks) * blockSize)
    }

    func submit<Segments: Collection>(_ operation: BlockOperation, at block: UInt64, segments: Segments,
                                      tag: UInt64) throws(BlockDeviceError) where Segments.Element == BlockSegment {
        let blocks = try geometry.validate(operation, at: block, segments: segments)
        guard pending.count < geometry.queueDepth else { refusedAsFull += 1; throw .queueFull }
        let range = block..<(block + blocks)
        var result: Result<Void, BlockDeviceError> = .success(())
        switch operation {
        case .read:
            readRequests += 1
            if range.contains(where: { failingReadBlocks.contains($0) }) {
                result = .failure(.ioError)
            } else {
                var byte = Int(block) * geometry.blockSize
                for segment in segments {
                    storage.withUnsafeBytes { disk in
                        DirectMap.pointer(to: segment.address).copyMemory(from: disk.baseAddress! + byte, byteCount: segment.byteCount)
                    }
                    byte += segment.byteCount
                }
            }
        case .write:
            writeRequests += 1
            if range.contains(where: { failingWriteBlocks.contains($0) }) {
                result = .failure(.ioError)  // A failed write may leave anything: leave it unchanged.
            } else {
                var byte = Int(block) * geometry.blockSize
                for segment in segments {
                    storage.withUnsafeMutableBytes { disk in
                        (disk.baseAddress! + byte).copyMemory(from: DirectMap.pointer(to: segment.address), byteCount: segment.byteCount)
                    }
                    byte += segment.byteCount
                }
            }
        case .flush:
            flushRequests += 1
        }
        pending.append(BlockCompletion(tag: tag, result: result))
        peakInFlight = max(peakInFlight, pending.count)
    }

    /// A slow disk: requests finish only when someone waits (`waitForCompletions`), never
    /// by polling alone — so a caller's asynchronous writes really are still in flight.
    var isSlow = false
    /// Pending requests the device has finished (all of them unless `isSlow`).
    private var finishedCount = 0

    /// Completes in reverse submission order, to prove callers match tags, not order.
    func reapCompletions(_ body: (BlockCompletion) -> Void) -> Int {
        let count = isSlow ? finishedCount : pending.count
        let done = pending[0..<count].reversed()
        pending.removeFirst(count)
        finishedCount = 0
        for completion in done { body(completion) }
        return done.count
    }

    func waitForCompletions() { finishedCount = pending.count }

    /// Flips one bit of the stored data of device block `block` (silent corruption).
    func corrupt(block: UInt64, byte: Int = 100) {
        storage[Int(block) * geometry.blockSize + byte] ^= 0x10
    }

    /// Overwrites the device blocks from `block` with `bytes` (a whole number of blocks), as
    /// another system writing the disk would.
    func store(_ bytes: [UInt8], block: UInt64) {
        let start = Int(block) * geometry.blockSize
        storage.replaceSubrange(start..<(start + bytes.count), with: bytes)
    }

    /// The bytes of device block range [block, block + count).
    func bytes(block: UInt64, count: UInt64) -> ArraySlice<UInt8> {
        let start = Int(block) * geometry.blockSize
        return storage[start..<(start + Int(count) * geometry.blockSize)]
    }
}
