// Virtqueue: the driver's half of a split virtqueue (virtio 1.x, section 2.7): a descriptor
// table, the available ring the driver fills and the used ring the device fills, in physical
// memory the device reads and writes directly.
// Invariants:
//  - Every descriptor is either free (on the shadow free list) or in exactly one posted chain;
//    `freeCount` + the lengths of all posted chains == `size`.
//  - The free list and chain lengths live in driver-private memory (`nextFree`,
//    `chainLengths`); the driver never reads back descriptor memory, so a device that
//    scribbles over it cannot corrupt the driver's bookkeeping.
//  - `availableIndex` is the next avail->idx to publish; `lastUsedIndex` the next used entry
//    to consume. Both wrap at 2^16 (ring positions are index mod `size`, `size` a power of 2).
//  - A used entry naming something other than a posted chain head, or more used entries than
//    chains posted, marks the queue broken: it stops returning entries.
// Memory ordering (section 2.7.13): descriptors and the ring slot are written before
// avail->idx (release fence); avail->idx is written before used->flags is read to decide on
// a notification (full fence); used->idx is read before the used entries (acquire fence).
// The fences are also compiler barriers, so a polled used->idx is re-read each time.
// The layout is the legacy one (used ring on a 4 KiB boundary, one contiguous block), which
// virtio 1.x transports accept too, so one layout serves modern and legacy devices.
// Locks: none. Thread context only; interrupt handlers never touch a virtqueue.

import Synchronization

/// Why a virtqueue could not be created or a chain not posted.
public enum VirtqueueError: Error, Equatable {
    /// The size is 0, above 32768, or not a power of two.
    case invalidSize
    /// No pages for the rings.
    case outOfMemory
    /// A chain with no buffers.
    case emptyChain
    /// Fewer free descriptors than the chain needs.
    case notEnoughDescriptors
}

/// Where the three parts of a split virtqueue of `size` entries lie, relative to its start.
public struct VirtqueueLayout: Equatable {
    /// Entries in each ring (and descriptors in the table).
    public let size: Int
    /// Legacy devices require the used ring to start on this boundary.
    public static let usedRingAlignment = 4096

    public init(size: Int) { self.size = size }

    /// The descriptor table: `size` descriptors of 16 bytes (addr u64, len u32, flags u16, next u16).
    public var descriptorTableOffset: Int { 0 }
    /// The available ring: flags u16, idx u16, ring[size] u16, used_event u16.
    public var availableRingOffset: Int { 16 * size }
    /// The used ring: flags u16, idx u16, ring[size] of (id u32, len u32), avail_event u16.
    public var usedRingOffset: Int { Self.alignUp(16 * size + 6 + 2 * size, to: Self.usedRingAlignment) }
    /// Bytes of the whole block.
    public var byteCount: Int { usedRingOffset + Self.alignUp(6 + 8 * size, to: Self.usedRingAlignment) }
    /// Page order of the block (`2^order` pages hold it).
    public var pageOrder: Int { PageAllocator.order(forPages: byteCount / Int(pageSize))! }

    static func alignUp(_ value: Int, to alignment: Int) -> Int { (value + alignment - 1) & ~(alignment - 1) }
}

/// One buffer of a descriptor chain.
public struct VirtqueueBuffer: Equatable {
    /// Physical address of the buffer.
    public var address: PhysicalAddress
    /// Length in bytes.
    public var length: UInt32
    /// True when the device writes the buffer (a read's data, a status byte); false when it
    /// only reads it.
    public var isDeviceWritable: Bool

    public init(address: PhysicalAddress, length: UInt32, isDeviceWritable: Bool) {
        self.address = address
        self.length = length
        self.isDeviceWritable = isDeviceWritable
    }
}

/// A chain the device has finished with.
public struct VirtqueueUsedElement: Equatable {
    /// The head descriptor `post` returned for the chain.
    public var head: UInt16
    /// Bytes the device says it wrote into the chain's device-writable buffers.
    public var length: UInt32
}

/// The driver side of one split virtqueue.
public final class SplitVirtqueue {
    /// Descriptor flags (section 2.7.5).
    public enum DescriptorFlag {
        public static let next: UInt16 = 1
        public static let write: UInt16 = 2
    }
    /// used->flags bit: the device asks not to be notified (section 2.7.10).
    public static let usedFlagNoNotify: UInt16 = 1

    /// Entries in each ring.
    public let size: Int
    /// Where the descriptor table and rings lie in `memory`.
    public let layout: VirtqueueLayout
    /// Physical address of the block holding all three parts.
    public let memory: PhysicalAddress
    private let base: UnsafeMutableRawPointer

    /// Shadow free list: `nextFree[i]` follows descriptor i, on the free list and in a chain.
    private var nextFree: [UInt16]
    private var freeHead: UInt16
    /// Descriptors on the free list.
    public private(set) var freeCount: Int
    /// Length of the chain headed by each descriptor; 0 when it heads none.
    private var chainLengths: [UInt16]
    /// Next avail->idx to publish.
    public private(set) var availableIndex: UInt16 = 0
    /// Next used entry to consume.
    public private(set) var lastUsedIndex: UInt16 = 0
    /// Chains posted and not yet returned through `popUsed`.
    public private(set) var postedChainCount = 0
    /// Set when the device returned an entry that breaks the protocol; the queue then returns
    /// no more entries and the device needs a reset.
    public private(set) var isBroken = false

    /// A queue of `size` entries in zeroed pages from `physicalPages`.
    /// Throws `invalidSize` or `outOfMemory`.
    public init(size: Int) throws(VirtqueueError) {
        guard size > 0, size <= 32768, size & (size - 1) == 0 else { throw .invalidSize }
        self.size = size
        layout = VirtqueueLayout(size: size)
        do {
            memory = try physicalPages.allocateZeroed(order: layout.pageOrder)
        } catch {
            throw .outOfMemory
        }
        base = DirectMap.pointer(to: memory)
        nextFree = (0..<size).map { UInt16(truncatingIfNeeded: $0 + 1) }
        freeHead = 0
        freeCount = size
        chainLengths = [UInt16](repeating: 0, count: size)
    }

    /// Gives the ring pages back. The device must be reset (or the queue disabled) first: it
    /// may otherwise still write them.
    public func releaseMemory() {
        do {
            try physicalPages.free(memory, order: layout.pageOrder)
        } catch {
            preconditionFailure("SplitVirtqueue.releaseMemory: ring pages were not allocated")
        }
    }

    /// Physical address of the descriptor table (virtio 1.x "descriptor area").
    public var descriptorArea: PhysicalAddress { memory.advanced(by: UInt64(layout.descriptorTableOffset)) }
    /// Physical address of the available ring ("driver area").
    public var driverArea: PhysicalAddress { memory.advanced(by: UInt64(layout.availableRingOffset)) }
    /// Physical address of the used ring ("device area").
    public var deviceArea: PhysicalAddress { memory.advanced(by: UInt64(layout.usedRingOffset)) }

    // MARK: Posting

    /// Writes `buffers` as one descriptor chain and makes it available to the device.
    /// Returns the chain's head descriptor, which `popUsed` reports when the device is done.
    /// The caller notifies the device afterwards if `needsNotification`.
    /// Throws `emptyChain` or `notEnoughDescriptors`; the queue is unchanged then.
    @discardableResult
    public func post<Buffers: Collection>(_ buffers: Buffers) throws(VirtqueueError) -> UInt16
        where Buffers.Element == VirtqueueBuffer {
        var position = buffers.startIndex
        return try post(count: buffers.count) { _ in
            defer { position = buffers.index(after: position) }
            return buffers[position]
        }
    }

    /// Like `post(_:)` for a chain of `count` buffers that `buffer` produces, called once per
    /// position in order 0..<count (so the caller can build a chain without an array).
    @discardableResult
    public func post(count: Int, buffer: (Int) -> VirtqueueBuffer) throws(VirtqueueError) -> UInt16 {
        guard count > 0 else { throw .emptyChain }
        guard count <= freeCount else { throw .notEnoughDescriptors }
        let head = freeHead
        var index = head
        for position in 0..<count {
            let item = buffer(position)
            let isLast = position == count - 1
            var flags: UInt16 = item.isDeviceWritable ? DescriptorFlag.write : 0
            if !isLast { flags |= DescriptorFlag.next }
            let descriptor = base + layout.descriptorTableOffset + Int(index) * 16
            descriptor.storeBytes(of: item.address.value.littleEndian, as: UInt64.self)
            descriptor.storeBytes(of: item.length.littleEndian, toByteOffset: 8, as: UInt32.self)
            descriptor.storeBytes(of: flags.littleEndian, toByteOffset: 12, as: UInt16.self)
            descriptor.storeBytes(of: (isLast ? 0 : nextFree[Int(index)]).littleEndian, toByteOffset: 14, as: UInt16.self)
            if !isLast { index = nextFree[Int(index)] }
        }
        freeHead = nextFree[Int(index)]
        freeCount -= count
        chainLengths[Int(head)] = UInt16(count)
        postedChainCount += 1

        let slot = base + layout.availableRingOffset + 4 + Int(availableIndex) % size * 2
        slot.storeBytes(of: head.littleEndian, as: UInt16.self)
        availableIndex &+= 1
        atomicMemoryFence(ordering: .releasing)   // descriptors and slot before the index
        (base + layout.availableRingOffset).storeBytes(of: availableIndex.littleEndian, toByteOffset: 2, as: UInt16.self)
        return head
    }

    /// True unless the device has asked not to be notified of new buffers (used->flags
    /// NO_NOTIFY). Call after `post`: the full fence orders the published index before the
    /// flag is read, so a device that is about to go idle is never missed.
    public var needsNotification: Bool {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let flags = UInt16(littleEndian: (base + layout.usedRingOffset).load(as: UInt16.self))
        return flags & Self.usedFlagNoNotify == 0
    }

    // MARK: Consuming

    /// used->idx as the device last wrote it.
    private var deviceUsedIndex: UInt16 {
        atomicMemoryFence(ordering: .acquiring)   // also makes the compiler re-read it each time
        let index = UInt16(littleEndian: (base + layout.usedRingOffset).load(fromByteOffset: 2, as: UInt16.self))
        atomicMemoryFence(ordering: .acquiring)   // the index before the entries it covers
        return index
    }

    /// True when the device has returned a chain that `popUsed` has not consumed yet.
    public var hasUsedElements: Bool { !isBroken && deviceUsedIndex != lastUsedIndex }

    /// The next chain the device has finished with, its descriptors back on the free list;
    /// nil when there is none or the queue is broken. O(chain length).
    public func popUsed() -> VirtqueueUsedElement? {
        guard !isBroken else { return nil }
        let deviceIndex = deviceUsedIndex
        if deviceIndex == lastUsedIndex { return nil }
        // More outstanding entries than chains posted: the device invented some.
        guard Int(deviceIndex &- lastUsedIndex) <= postedChainCount else {
            isBroken = true
            return nil
        }
        let entry = base + layout.usedRingOffset + 4 + Int(lastUsedIndex) % size * 8
        let id = UInt32(littleEndian: entry.load(as: UInt32.self))
        let length = UInt32(littleEndian: entry.load(fromByteOffset: 4, as: UInt32.self))
        guard id < UInt32(size), chainLengths[Int(id)] != 0 else {
            isBroken = true
            return nil
        }
        lastUsedIndex &+= 1
        let head = UInt16(id)
        freeChain(head)
        return VirtqueueUsedElement(head: head, length: length)
    }

    /// Puts the chain headed by `head` back on the free list, following the shadow links.
    private func freeChain(_ head: UInt16) {
        let count = Int(chainLengths[Int(head)])
        var last = head
        for _ in 1..<count { last = nextFree[Int(last)] }
        nextFree[Int(last)] = freeHead
        freeHead = head
        freeCount += count
        chainLengths[Int(head)] = 0
        postedChainCount -= 1
    }

    /// Number of descriptors in the chain headed by `head` (0 when none is posted there).
    public func chainLength(head: UInt16) -> Int { Int(chainLengths[Int(head)]) }
}
