// Swapoff: the VM side of removing a swap device. Every object (cached and shadowed ones
// included) whose swap pager holds blocks on the device gets those pages back: resident
// again, dirty (their only copy is now in memory), the blocks freed; then SwapSpace removes
// the device. Memory is checked first: if the pages to bring in do not fit above the
// pageout daemon's free minimum, nothing is touched and the call fails.
// Invariants: a slot whose page is resident already (newer or clean copy) is dropped and the
// page marked dirty; a slot outside its object's window (invisible data) is simply freed.
// Locks: the global VM lock (one CPU today).

/// Why swapoff failed. Every case leaves the device on and every page where it was (pages
/// evacuated before an I/O error stay resident and dirty, which is equivalent).
public enum SwapOffError: Error, Equatable {
    /// The VM has no swap space.
    case noSwap
    /// The pages on the device do not fit in free memory (checked before anything moves).
    case outOfMemory
    /// The swap space refused (no such device, reservations not covered, blocks left after
    /// an I/O error during evacuation).
    case swap(SwapError)
}

extension VMSystem {
    /// Pages every swapped page on device `identifier` back in and removes the device.
    /// Throws `noSwap`, `outOfMemory` (nothing changed) or `swap(error)`.
    public func swapOff(identifier: UInt64) throws(SwapOffError) {
        guard let space = swapSpace else { throw .noSwap }
        guard space.deviceIdentifiers.contains(identifier) else { throw .swap(.noSuchDevice) }
        // Writes in flight may land on this device; their pages become ordinary ones first.
        pageout.settle(nil)
        let work = swappedPages(onDevice: identifier, of: space)
        var needed = 0
        for (object, offsets) in work {
            for offset in offsets where object.needsFrame(forPagerOffset: offset) { needed += 1 }
        }
        guard pageout.freePages - needed >= pageout.freeMinimum,
              pages.count(of: .free) + physicalPages.freePages >= needed else { throw .outOfMemory }
        do {
            try space.swapOff(identifier: identifier) { _, _ in
                for (object, offsets) in work { object.evacuate(pagerOffsets: offsets) }
            }
        } catch {
            throw .swap(error)
        }
    }

    /// Each object whose swap pager has blocks on the device, with those pager offsets.
    private func swappedPages(onDevice identifier: UInt64, of space: SwapSpace) -> [(VMObject, [UInt64])] {
        var onDevice = Set<UInt64>()
        for block in space.blocksInUse(onDevice: identifier) { onDevice.insert(block) }
        var work: [(VMObject, [UInt64])] = []
        for object in objects {
            guard let pager = object.pager as? SwapPager, pager.space === space else { continue }
            var offsets: [UInt64] = []
            pager.metadata.forEach(in: 0..<SwapMetadata.maximumIndex) { index, slot in
                if onDevice.contains(UInt64(slot.block)) { offsets.append(index << pageShift) }
            }
            if !offsets.isEmpty {
                offsets.sort()
                work.append((object, offsets))
            }
        }
        return work
    }
}

extension VMObject {
    /// True if the pager data at `offset` is visible and its page is not resident.
    fileprivate func needsFrame(forPagerOffset offset: UInt64) -> Bool {
        guard offset >= pagerOffset, offset - pagerOffset < size else { return false }
        return residentPages[offset - pagerOffset] == nil
    }

    /// Brings the pager's pages at `offsets` back in (dirty) and drops their slots. A page
    /// that cannot be read keeps its slot (swapoff then reports the device busy).
    fileprivate func evacuate(pagerOffsets offsets: [UInt64]) {
        guard let pager else { return }
        pagingInProgress += 1
        defer { pagingInProgress -= 1 }
        for offset in offsets {
            let slot = offset..<(offset + pageSize)
            guard offset >= pagerOffset, offset - pagerOffset < size else {
                pager.discard(slot)
                continue
            }
            let objectOffset = offset - pagerOffset
            if let resident = residentPages[objectOffset] {
                resident.markDirty()
                pager.discard(slot)
                continue
            }
            guard let page = try? system.pages.allocate(zeroed: false) else { continue }
            do {
                try pager.pageIn(page, at: offset)
            } catch {
                try? system.pages.free(page)
                continue
            }
            do { try attach(page, at: objectOffset) } catch {
                try? system.pages.free(page)   // No index node: the slot stays, swapoff reports busy.
                continue
            }
            page.markDirty()
            try? system.pages.activate(page)
            pager.discard(slot)
        }
    }
}
