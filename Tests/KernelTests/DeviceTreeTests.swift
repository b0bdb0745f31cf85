// DeviceTreeTests: the flattened-devicetree parser against a real QEMU `virt` blob, against
// machines written with DeviceTreeBuilder (one- and two-cell roots, bus windows, reservations),
// and against corrupt blobs: every truncation, every header lie, bad tokens and seeded random
// byte flips must end in a typed error or a successful parse, never a crash or a hang.
//
// Fixtures/qemu-virt.dtb is `qemu-system-aarch64 -machine virt -cpu cortex-a72 -m 256M
// -machine dumpdtb=...` packed as libfdt's fdt_pack() does: QEMU pads its blob with zeros to
// 1 MiB; the fixture drops that padding and sets totalsize to the 7510 bytes in use.

import Foundation
import XCTest
@testable import Kernel

final class DeviceTreeTests: IdentityDirectMapTestCase {

    // MARK: - Helpers


    /// The packed QEMU virt blob.
    static let qemuVirt: [UInt8] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/qemu-virt.dtb")
        guard let data = try? Data(contentsOf: url) else { return [] }
        return [UInt8](data)
    }()

    func fixture() throws -> [UInt8] {
        let blob = Self.qemuVirt
        guard !blob.isEmpty else {
            XCTFail("Fixtures/qemu-virt.dtb missing")
            throw DeviceTreeError.truncatedHeader
        }
        return blob
    }

    /// Runs `body` with a tree over `blob` (the view must not outlive the bytes).
    func withTree<R>(_ blob: [UInt8], _ body: (DeviceTree) throws -> R) throws -> R {
        try blob.withUnsafeBytes { buffer in try body(try DeviceTree(buffer: buffer)) }
    }

    /// The error `init(buffer:)` throws for `blob`, or nil when it parses.
    func parseError(_ blob: [UInt8]) -> DeviceTreeError? {
        blob.withUnsafeBytes { buffer in
            do throws(DeviceTreeError) {
                _ = try DeviceTree(buffer: buffer)
                return nil
            } catch {
                return error
            }
        }
    }

    /// The error `query` throws on a tree over `blob` (which must parse), or nil.
    func queryError(_ blob: [UInt8], _ query: (DeviceTree) throws(DeviceTreeError) -> Void) -> DeviceTreeError? {
        blob.withUnsafeBytes { buffer in
            do throws(DeviceTreeError) {
                try query(try DeviceTree(buffer: buffer))
                return nil
            } catch {
                return error
            }
        }
    }

    func ranges(_ list: PhysicalRangeList) -> [ClosedRange<UInt64>] {
        (0..<list.count).map { list[$0].start.value...(list[$0].end.value &- 1) }
    }

    func range(_ start: UInt64, size: UInt64) -> ClosedRange<UInt64> { start...(start + size - 1) }

    /// A small Raspberry Pi 3-like machine: one-cell root, a /soc bus window mapping bus
    /// 0x7e000000 to CPU 0x3f000000, an interrupt controller, a disabled UART, aliases.
    func piLikeMachine() -> DeviceTreeBuilder {
        var b = DeviceTreeBuilder()
        b.node("") { b in
            b.property("#address-cells", cells: [1])
            b.property("#size-cells", cells: [1])
            b.property("compatible", strings: ["raspberrypi,3-model-b", "brcm,bcm2837"])
            b.property("interrupt-parent", cells: [1])
            b.node("aliases") { b in
                b.property("serial0", string: "/soc/serial@7e201000")
                b.property("broken", string: "soc/serial@7e201000")
            }
            b.node("chosen") { b in b.property("stdout-path", string: "serial0:115200n8") }
            b.node("memory@0") { b in
                b.property("device_type", string: "memory")
                b.property("reg", cells: [0, 0x3b40_0000])
            }
            b.node("soc") { b in
                b.property("compatible", string: "simple-bus")
                b.property("#address-cells", cells: [1])
                b.property("#size-cells", cells: [1])
                b.property("ranges", cells: [0x7e00_0000, 0x3f00_0000, 0x0100_0000,
                                             0x4000_0000, 0x4000_0000, 0x0000_1000])
                b.node("interrupt-controller@7e00b200") { b in
                    b.property("compatible", string: "brcm,bcm2836-armctrl-ic")
                    b.property("reg", cells: [0x7e00_b200, 0x200])
                    b.flag("interrupt-controller")
                    b.property("#interrupt-cells", cells: [2])
                    b.property("phandle", cells: [1])
                }
                b.node("serial@7e201000") { b in
                    b.property("compatible", strings: ["arm,pl011", "arm,primecell"])
                    b.property("reg", cells: [0x7e20_1000, 0x200])
                    b.property("interrupts", cells: [2, 25])
                }
                b.node("serial@7e215040") { b in
                    b.property("compatible", string: "brcm,bcm2835-aux-uart")
                    b.property("reg", cells: [0x7e21_5040, 0x40])
                    b.property("status", string: "disabled")
                }
                b.node("local_intc@40000000") { b in
                    b.property("compatible", string: "brcm,bcm2836-l1-intc")
                    b.property("reg", cells: [0x4000_0000, 0x100])
                }
            }
        }
        return b
    }

    /// A two-cell machine: RAM above 4 GiB, several memory nodes (one disabled), header
    /// reservations and /reserved-memory children (one disabled, one placed by size only).
    func twoCellMachine() -> DeviceTreeBuilder {
        var b = DeviceTreeBuilder()
        b.reserve(address: 0x4000_0000, size: 0x1000)
        b.reserve(address: 0x8_0000_0000, size: 0x10_0000)
        b.node("") { b in
            b.property("#address-cells", cells: [2])
            b.property("#size-cells", cells: [2])
            b.node("memory@40000000") { b in
                b.property("device_type", string: "memory")
                b.property("reg", cells: DeviceTreeBuilder.cells64(0x4000_0000) + DeviceTreeBuilder.cells64(0x2000_0000)
                                       + DeviceTreeBuilder.cells64(0x7000_0000) + DeviceTreeBuilder.cells64(0x1000_0000))
            }
            b.node("memory@800000000") { b in
                b.property("device_type", string: "memory")
                b.property("reg", cells: DeviceTreeBuilder.cells64(0x8_0000_0000) + DeviceTreeBuilder.cells64(0x1_0000_0000))
            }
            b.node("memory@60000000") { b in   // no device_type: found by name
                b.property("reg", cells: DeviceTreeBuilder.cells64(0x6000_0000) + DeviceTreeBuilder.cells64(0x1000))
            }
            b.node("memory@90000000") { b in
                b.property("device_type", string: "memory")
                b.property("status", string: "disabled")
                b.property("reg", cells: DeviceTreeBuilder.cells64(0x9000_0000) + DeviceTreeBuilder.cells64(0x100_0000))
            }
            b.node("reserved-memory") { b in
                b.property("#address-cells", cells: [2])
                b.property("#size-cells", cells: [2])
                b.flag("ranges")
                b.node("secmon@48000000") { b in
                    b.property("reg", cells: DeviceTreeBuilder.cells64(0x4800_0000) + DeviceTreeBuilder.cells64(0x20_0000))
                    b.flag("no-map")
                }
                b.node("dynamic") { b in b.property("size", cells: DeviceTreeBuilder.cells64(0x40_0000)) }
                b.node("off@4c000000") { b in
                    b.property("reg", cells: DeviceTreeBuilder.cells64(0x4c00_0000) + DeviceTreeBuilder.cells64(0x1000))
                    b.property("status", string: "disabled")
                }
            }
        }
        return b
    }

    /// A two-cell root holding one memory node whose properties `memory` writes.
    func machine(memory: (inout DeviceTreeBuilder) -> Void) -> DeviceTreeBuilder {
        var b = DeviceTreeBuilder()
        b.node("") { b in
            b.property("#address-cells", cells: [2])
            b.property("#size-cells", cells: [2])
            b.node("memory@40000000") { b in
                b.property("device_type", string: "memory")
                memory(&b)
            }
        }
        return b
    }

    // MARK: - QEMU virt

    func testQemuVirtMemoryIs256MiBAt1GiB() throws {
        let blob = try fixture()
        try withTree(blob) { tree in
            XCTAssertEqual(tree.totalSize, 7510)
            let map = try tree.memoryMap()
            XCTAssertEqual(ranges(map.usable), [range(0x4000_0000, size: 256 << 20)])
            XCTAssertFalse(map.overflowed)
            // QEMU reserves nothing in the header; the only reservation is the blob itself.
            XCTAssertEqual(map.reserved.count, 1)
            XCTAssertEqual(map.reserved[0], tree.physicalRange)
            XCTAssertEqual(tree.physicalRange.byteCount, 7510)
        }
    }

    func testQemuVirtFindsPl011WithItsInterrupt() throws {
        try withTree(try fixture()) { tree in
            let uart = try XCTUnwrap(try tree.firstDevice(compatibleWith: "arm,pl011"))
            XCTAssertEqual(uart.node.name.string, "pl011@9000000")
            XCTAssertEqual(uart.region, DeviceTreeRegion(base: PhysicalAddress(0x0900_0000), size: 0x1000))
            let interrupts = try XCTUnwrap(try uart.interrupts())
            XCTAssertEqual(interrupts.cellsPerInterrupt, 3, "the GIC binding uses three cells")
            XCTAssertEqual(interrupts.count, 1)
            XCTAssertEqual([0, 1, 2].map { interrupts.cell($0, ofInterrupt: 0) }, [0, 1, 4], "SPI 1, level-high")
            XCTAssertEqual(interrupts.controller.name.string, "intc@8000000")
            XCTAssertNil(interrupts.cell(3, ofInterrupt: 0))
            XCTAssertNil(interrupts.cell(0, ofInterrupt: 1))
        }
    }

    func testQemuVirtFindsGicDistributorCpuInterfaceAndV2mFrame() throws {
        try withTree(try fixture()) { tree in
            XCTAssertNil(try tree.firstDevice(compatibleWith: "arm,gic-400"), "virt with GICv2 says cortex-a15-gic")
            let gic = try XCTUnwrap(try tree.firstDevice(compatibleWith: "arm,cortex-a15-gic"))
            XCTAssertEqual(gic.region, DeviceTreeRegion(base: PhysicalAddress(0x0800_0000), size: 0x1_0000))
            XCTAssertEqual(try gic.node.regionCount(), 2)
            XCTAssertEqual(try gic.node.region(at: 1), DeviceTreeRegion(base: PhysicalAddress(0x0801_0000), size: 0x1_0000))
            XCTAssertNil(try gic.node.region(at: 2))
            XCTAssertEqual(try gic.node.property(named: "#interrupt-cells")?.u32Value, 3)
            // The v2m frame is a child of the GIC: decoded with the GIC's cells, mapped by its
            // empty `ranges`.
            let v2m = try XCTUnwrap(try tree.firstDevice(compatibleWith: "arm,gic-v2m-frame"))
            XCTAssertEqual(v2m.node.depth, 2)
            XCTAssertEqual(v2m.region, DeviceTreeRegion(base: PhysicalAddress(0x0802_0000), size: 0x1000))
        }
    }

    func testQemuVirtListsAll32VirtioMmioSlotsInAddressOrder() throws {
        try withTree(try fixture()) { tree in
            var bases: [UInt64] = []
            var interruptNumbers: [UInt32] = []
            try tree.forEachDevice(compatibleWith: "virtio,mmio") { device throws(DeviceTreeError) in
                XCTAssertEqual(device.region?.size, 0x200)
                bases.append(device.region?.base.value ?? 0)
                interruptNumbers.append(try device.interrupts()?.cell(1, ofInterrupt: 0) ?? 0)
                return true
            }
            XCTAssertEqual(bases, (0..<32).map { 0x0a00_0000 + UInt64($0) * 0x200 })
            XCTAssertEqual(interruptNumbers, (0..<32).map { 16 + UInt32($0) })
            var firstTwo = 0
            try tree.forEachDevice(compatibleWith: "virtio,mmio") { _ throws(DeviceTreeError) in
                firstTwo += 1
                return firstTwo < 2
            }
            XCTAssertEqual(firstTwo, 2, "returning false stops the walk")
        }
    }

    func testQemuVirtTimerHasFourPpis() throws {
        try withTree(try fixture()) { tree in
            let timer = try XCTUnwrap(try tree.firstDevice(compatibleWith: "arm,armv8-timer"))
            XCTAssertNil(timer.region)
            let interrupts = try XCTUnwrap(try timer.interrupts())
            XCTAssertEqual(interrupts.count, 4)
            XCTAssertEqual((0..<4).map { interrupts.cell(1, ofInterrupt: $0) }, [13, 14, 11, 10])
            XCTAssertEqual((0..<4).map { interrupts.cell(0, ofInterrupt: $0) }, [1, 1, 1, 1], "all PPIs")
        }
    }

    func testQemuVirtStdoutPathResolvesToPl011() throws {
        try withTree(try fixture()) { tree in
            XCTAssertEqual(try tree.stdoutPath()?.string, "/pl011@9000000")
            XCTAssertEqual(try tree.stdoutNode()?.name.string, "pl011@9000000")
        }
    }

    func testQemuVirtWalkVisitsEveryNodeOnceInOrder() throws {
        try withTree(try fixture()) { tree in
            var count = 0
            var maximumDepth = 0
            var names: [String] = []
            try tree.forEachNode { node throws(DeviceTreeError) in
                count += 1
                maximumDepth = max(maximumDepth, node.depth)
                if node.depth <= 1 && names.count < 3 { names.append(node.name.string) }
                return true
            }
            // dtc -I dtb -O dts shows 56 nodes, the deepest /cpus/cpu-map/socket0/cluster0/core0.
            XCTAssertEqual(count, 56)
            XCTAssertEqual(maximumDepth, 5)
            XCTAssertEqual(names, ["", "psci", "memory@40000000"])
            let root = try tree.root()
            XCTAssertEqual(root.depth, 0)
            XCTAssertNil(root.parent)
            XCTAssertEqual(try root.property(named: "model")?.stringValue?.string, "linux,dummy-virt")
            var children = 0
            try root.forEachChild { child throws(DeviceTreeError) in
                XCTAssertEqual(child.depth, 1)
                XCTAssertEqual(child.parent?.offset, root.offset)
                children += 1
                return true
            }
            XCTAssertEqual(children, 48)
        }
    }

    func testQemuVirtPathLookupMatchesWithAndWithoutUnitAddress() throws {
        try withTree(try fixture()) { tree in
            XCTAssertEqual(try tree.node(atPath: "/")?.depth, 0)
            XCTAssertEqual(try tree.node(atPath: "/memory")?.name.string, "memory@40000000")
            XCTAssertEqual(try tree.node(atPath: "/memory@40000000")?.name.string, "memory@40000000")
            XCTAssertNil(try tree.node(atPath: "/memory@50000000"))
            XCTAssertEqual(try tree.node(atPath: "/intc@8000000/v2m")?.name.string, "v2m@8020000")
            XCTAssertEqual(try tree.node(atPath: "//cpus//cpu-map/socket0/cluster0/core0/")?.depth, 5)
            XCTAssertNil(try tree.node(atPath: "/cpus/nonexistent"))
            XCTAssertNil(try tree.node(atPath: "nonexistent-alias"))
            XCTAssertNil(try tree.node(atPath: "/mem"), "a prefix of a name is not a match")
        }
    }

    func testQemuVirtCpuRegUsesZeroSizeCells() throws {
        try withTree(try fixture()) { tree in
            let cpu = try XCTUnwrap(try tree.node(atPath: "/cpus/cpu@0"))
            XCTAssertEqual(try cpu.parent?.childAddressCells(), 1)
            XCTAssertEqual(try cpu.parent?.childSizeCells(), 0)
            XCTAssertEqual(try cpu.untranslatedRegion(at: 0), DeviceTreeRegion(base: PhysicalAddress(0), size: 0))
            // /cpus has no `ranges`: a CPU's reg is an MPIDR value, not a memory address.
            let cpus = try XCTUnwrap(cpu.parent)
            XCTAssertThrowsError(try cpu.region(at: 0)) { error in
                XCTAssertEqual(error as? DeviceTreeError, .untranslatableAddress(offset: cpus.offset))
            }
            XCTAssertEqual(try cpu.property(named: "device_type")?.stringValue?.string, "cpu")
        }
    }

    func testQemuVirtAsHandedOverPaddedToOneMiB() throws {
        // What x0 really points at: the same blob with totalsize 1 MiB of which the tail is zero.
        var blob = try fixture()
        blob += [UInt8](repeating: 0, count: (1 << 20) - blob.count)
        blob.setDeviceTreeWord(at: DeviceTreeBuilder.Field.totalSize, 1 << 20)
        try blob.withUnsafeBytes { buffer in
            let tree = try DeviceTree(blob: buffer.baseAddress!)
            XCTAssertEqual(tree.totalSize, 1 << 20)
            let map = try tree.memoryMap()
            XCTAssertEqual(map.reserved.count, 1)
            XCTAssertEqual(map.reserved[0].byteCount, 1 << 20, "the whole blob, padding included, is reserved")
            XCTAssertEqual(try tree.firstDevice(compatibleWith: "arm,pl011")?.region?.base.value, 0x0900_0000)
        }
    }

    func testInitFromPointerReadsOnlyTotalSize() throws {
        // Bytes past totalsize are never looked at: garbage after the blob changes nothing.
        var blob = try fixture()
        blob += [UInt8](repeating: 0xff, count: 64)
        try blob.withUnsafeBytes { buffer in
            let tree = try DeviceTree(blob: buffer.baseAddress!)
            XCTAssertEqual(tree.totalSize, 7510)
            let wide = try DeviceTree(buffer: buffer)
            XCTAssertEqual(wide.totalSize, 7510)
        }
    }

    // MARK: - Built machines

    func testOneCellRootDecodesMemoryAndTranslatesSocBusWindow() throws {
        try withTree(piLikeMachine().build()) { tree in
            let map = try tree.memoryMap()
            XCTAssertEqual(ranges(map.usable), [range(0, size: 0x3b40_0000)])
            let uart = try XCTUnwrap(try tree.firstDevice(compatibleWith: "arm,pl011"))
            XCTAssertEqual(uart.region, DeviceTreeRegion(base: PhysicalAddress(0x3f20_1000), size: 0x200),
                           "bus 0x7e201000 is CPU 0x3f201000 through /soc ranges")
            let local = try XCTUnwrap(try tree.firstDevice(compatibleWith: "brcm,bcm2836-l1-intc"))
            XCTAssertEqual(local.region?.base.value, 0x4000_0000, "second ranges entry")
        }
    }

    func testDisabledDevicesAreSkippedButStillWalked() throws {
        try withTree(piLikeMachine().build()) { tree in
            XCTAssertNil(try tree.firstDevice(compatibleWith: "brcm,bcm2835-aux-uart"))
            let aux = try XCTUnwrap(try tree.node(atPath: "/soc/serial@7e215040"))
            XCTAssertFalse(try aux.isEnabled())
            XCTAssertTrue(try aux.isCompatible(with: "brcm,bcm2835-aux-uart"))
            XCTAssertTrue(try XCTUnwrap(try tree.node(atPath: "/soc/serial@7e201000")).isEnabled())
        }
    }

    func testInterruptParentIsInheritedFromTheRoot() throws {
        try withTree(piLikeMachine().build()) { tree in
            let uart = try XCTUnwrap(try tree.firstDevice(compatibleWith: "arm,pl011"))
            let interrupts = try XCTUnwrap(try uart.interrupts())
            XCTAssertEqual(interrupts.cellsPerInterrupt, 2)
            XCTAssertEqual(interrupts.count, 1)
            XCTAssertEqual(interrupts.cell(0, ofInterrupt: 0), 2)
            XCTAssertEqual(interrupts.cell(1, ofInterrupt: 0), 25)
            XCTAssertEqual(interrupts.controller.name.string, "interrupt-controller@7e00b200")
            XCTAssertEqual(try tree.node(withPhandle: 1)?.name.string, "interrupt-controller@7e00b200")
            XCTAssertNil(try tree.node(withPhandle: 2))
            XCTAssertNil(try tree.node(withPhandle: 0))
            let local = try XCTUnwrap(try tree.firstDevice(compatibleWith: "brcm,bcm2836-l1-intc"))
            XCTAssertNil(try local.interrupts(), "no interrupts property")
        }
    }

    func testStdoutPathResolvesThroughAliasesAndDropsOptions() throws {
        try withTree(piLikeMachine().build()) { tree in
            XCTAssertEqual(try tree.stdoutPath()?.string, "serial0")
            XCTAssertEqual(try tree.stdoutNode()?.name.string, "serial@7e201000")
            XCTAssertEqual(try tree.node(atPath: "serial0")?.name.string, "serial@7e201000")
            XCTAssertNil(try tree.node(atPath: "serial1"))
            XCTAssertNil(try tree.node(atPath: "broken"), "an alias must hold an absolute path")
        }
    }

    func testAliasFollowedByRelativePath() throws {
        var b = DeviceTreeBuilder()
        b.node("") { b in
            b.node("aliases") { b in b.property("bus", string: "/soc") }
            b.node("soc") { b in b.node("uart@1") }
        }
        try withTree(b.build()) { tree in
            XCTAssertEqual(try tree.node(atPath: "bus/uart")?.name.string, "uart@1")
            XCTAssertEqual(try tree.node(atPath: "bus")?.name.string, "soc")
            XCTAssertNil(try tree.node(atPath: "bus/uart@2"))
            XCTAssertNil(try tree.stdoutPath(), "no /chosen")
        }
    }

    func testTwoCellRootWithSeveralMemoryNodesAndReservations() throws {
        try withTree(twoCellMachine().build()) { tree in
            let map = try tree.memoryMap()
            XCTAssertEqual(ranges(map.usable), [
                range(0x4000_0000, size: 0x2000_1000),       // memory@40000000 + touching memory@60000000
                range(0x7000_0000, size: 0x1000_0000),       // second reg entry of memory@40000000
                range(0x8_0000_0000, size: 0x1_0000_0000),   // above 4 GiB
            ], "the disabled memory@90000000 is ignored")
            let reserved = ranges(map.reserved)
            XCTAssertEqual(reserved.count, 4)
            XCTAssertTrue(reserved.contains(range(0x4000_0000, size: 0x1000)), "header reservation")
            XCTAssertTrue(reserved.contains(range(0x8_0000_0000, size: 0x10_0000)), "header reservation above 4 GiB")
            XCTAssertTrue(reserved.contains(range(0x4800_0000, size: 0x20_0000)), "/reserved-memory/secmon")
            XCTAssertTrue(reserved.contains(tree.physicalRange.start.value...(tree.physicalRange.end.value - 1)))
            XCTAssertFalse(reserved.contains(range(0x4c00_0000, size: 0x1000)), "disabled reserved-memory child")
            let available = ranges(map.availableRanges())
            XCTAssertTrue(available.contains(range(0x4000_1000, size: 0x0800_0000 - 0x1000)))
            XCTAssertTrue(available.contains(range(0x8_0010_0000, size: 0x1_0000_0000 - 0x10_0000)))
        }
    }

    func testReservationBlockIsReadInOrder() throws {
        try withTree(twoCellMachine().build()) { tree in
            var entries: [DeviceTreeRegion] = []
            try tree.forEachReservation { region throws(DeviceTreeError) in
                entries.append(region)
                return true
            }
            XCTAssertEqual(entries, [DeviceTreeRegion(base: PhysicalAddress(0x4000_0000), size: 0x1000),
                                     DeviceTreeRegion(base: PhysicalAddress(0x8_0000_0000), size: 0x10_0000)])
        }
    }

    func testMemoryBeyondRangeListCapacitySetsOverflowed() throws {
        let b = machine { b in
            var cells: [UInt32] = []
            for i in 0..<40 { cells += DeviceTreeBuilder.cells64(UInt64(i) * 0x200_0000) + DeviceTreeBuilder.cells64(0x100_0000) }
            b.property("reg", cells: cells)
        }
        try withTree(b.build()) { tree in
            let map = try tree.memoryMap()
            XCTAssertTrue(map.overflowed)
            XCTAssertEqual(map.usable.count, PhysicalRangeList.capacity)
        }
    }

    func testNopTokensAnywhereAreSkipped() throws {
        var b = DeviceTreeBuilder()
        b.nop()
        b.node("") { b in
            b.nop()
            b.property("#address-cells", cells: [1])
            b.nop()
            b.property("#size-cells", cells: [1])
            b.node("memory") { b in
                b.nop()
                b.property("reg", cells: [0x8000_0000, 0x100_0000])
                b.nop()
            }
            b.nop()
        }
        b.nop()
        try withTree(b.build()) { tree in
            XCTAssertEqual(ranges(try tree.memoryMap().usable), [range(0x8000_0000, size: 0x100_0000)])
            let memory = try XCTUnwrap(try tree.node(atPath: "/memory"))
            var names: [String] = []
            try memory.forEachProperty { property throws(DeviceTreeError) in
                names.append(property.name.string)
                return true
            }
            XCTAssertEqual(names, ["reg"])
        }
    }

    func testPropertyAccessorsDecodeBigEndianAndStayInBounds() throws {
        var b = DeviceTreeBuilder()
        b.node("") { b in
            b.property("cells", cells: [0x0102_0304, 0xa0b0_c0d0, 7])
            b.property("list", strings: ["first", "", "third"])
            b.property("odd", bytes: [1, 2, 3, 4, 5])
            b.property("unterminated", bytes: Array("abc".utf8))
            b.flag("flag")
        }
        try withTree(b.build()) { tree in
            let root = try tree.root()
            let cells = try XCTUnwrap(try root.property(named: "cells"))
            XCTAssertEqual(cells.cellCount, 3)
            XCTAssertEqual(cells.u32(at: 0), 0x0102_0304)
            XCTAssertEqual(cells.u32(at: 2), 7)
            XCTAssertNil(cells.u32(at: 3))
            XCTAssertNil(cells.u32(at: -1))
            XCTAssertEqual(cells.u64(at: 0), 0x0102_0304_a0b0_c0d0)
            XCTAssertNil(cells.u64(at: 2))
            XCTAssertEqual(cells.number(at: 1, cells: 1), 0xa0b0_c0d0)
            XCTAssertEqual(cells.number(at: 3, cells: 0), 0)
            XCTAssertNil(cells.number(at: 0, cells: 3))
            XCTAssertNil(cells.u32Value)

            let list = try XCTUnwrap(try root.property(named: "list"))
            var strings: [String] = []
            list.forEachString { strings.append($0.string); return true }
            XCTAssertEqual(strings, ["first", "", "third"])
            XCTAssertTrue(list.containsString("third"))
            XCTAssertFalse(list.containsString("thir"))
            XCTAssertEqual(list.stringValue?.string, "first")
            XCTAssertTrue(list.stringValue?.hasPrefix("fir") ?? false)
            XCTAssertFalse(list.stringValue?.hasPrefix("firsts") ?? true)

            let odd = try XCTUnwrap(try root.property(named: "odd"))
            XCTAssertEqual(odd.cellCount, 1)
            XCTAssertNil(odd.u32(at: 1), "a partial cell is not a cell")
            XCTAssertNil(try root.property(named: "unterminated")?.stringValue, "no NUL, no string")
            XCTAssertTrue(try XCTUnwrap(try root.property(named: "flag")).isEmpty)
            XCTAssertNil(try root.property(named: "absent"))
        }
    }

    func testNodeNamesSplitAtUnitAddress() throws {
        var b = DeviceTreeBuilder()
        b.node("") { b in b.node("serial@7e201000") { b in b.node("child") } }
        try withTree(b.build()) { tree in
            let serial = try XCTUnwrap(try tree.node(atPath: "/serial"))
            XCTAssertEqual(serial.name.string, "serial@7e201000")
            XCTAssertEqual(serial.baseName.string, "serial")
            XCTAssertTrue(serial.name == "serial@7e201000")
            XCTAssertTrue(serial.name != "serial")
            XCTAssertEqual(serial.name.suffix(after: UInt8(ascii: "@"))?.string, "7e201000")
            let child = try XCTUnwrap(try tree.node(atPath: "/serial/child"))
            XCTAssertEqual(child.parent?.name.string, "serial@7e201000")
            XCTAssertEqual(child.parent?.parent?.depth, 0)
            var visited: [String] = []
            try serial.forEachDescendant { node throws(DeviceTreeError) in
                visited.append(node.name.string)
                return true
            }
            XCTAssertEqual(visited, ["serial@7e201000", "child"])
        }
    }

    // MARK: - Errors in meaning

    func testMissingMemoryNodeThrows() {
        var b = DeviceTreeBuilder()
        b.node("") { b in b.node("chosen") }
        XCTAssertEqual(queryError(b.build()) { tree throws(DeviceTreeError) in _ = try tree.memoryMap() }, .missingMemoryNode)
        let empty = machine { b in b.property("reg", cells: []) }
        XCTAssertEqual(queryError(empty.build()) { tree throws(DeviceTreeError) in _ = try tree.memoryMap() }, .missingMemoryNode)
        let zeroSized = machine { b in b.property("reg", cells: [0, 0x4000_0000, 0, 0]) }
        XCTAssertEqual(queryError(zeroSized.build()) { tree throws(DeviceTreeError) in _ = try tree.memoryMap() }, .missingMemoryNode)
    }

    func testBadAddressAndSizeCellsAreReportedAtTheBusNode() {
        var b = DeviceTreeBuilder()
        let root = b.beginNode("")
        b.property("#address-cells", cells: [3])
        b.node("memory") { b in b.property("reg", cells: [0, 0, 0, 0x1000]) }
        b.endNode()
        XCTAssertEqual(queryError(b.build()) { tree throws(DeviceTreeError) in _ = try tree.memoryMap() },
                       .badAddressCells(offset: root))

        var c = DeviceTreeBuilder()
        let root2 = c.beginNode("")
        c.property("#size-cells", cells: [1, 1])
        c.node("memory") { b in b.property("reg", cells: [0, 0, 0x1000]) }
        c.endNode()
        XCTAssertEqual(queryError(c.build()) { tree throws(DeviceTreeError) in _ = try tree.memoryMap() },
                       .badSizeCells(offset: root2))
    }

    func testRegThatIsNotWholeEntriesThrows() {
        var reg = 0
        let b = machine { b in reg = b.property("reg", cells: [0, 0x4000_0000, 0]) }
        XCTAssertEqual(queryError(b.build()) { tree throws(DeviceTreeError) in _ = try tree.memoryMap() },
                       .badPropertyLength(offset: reg))
    }

    func testRegionWrappingTheAddressSpaceThrows() {
        var reg = 0
        let b = machine { b in
            reg = b.property("reg", cells: DeviceTreeBuilder.cells64(0xffff_ffff_ffff_f000) + DeviceTreeBuilder.cells64(0x2000))
        }
        XCTAssertEqual(queryError(b.build()) { tree throws(DeviceTreeError) in _ = try tree.memoryMap() },
                       .regionOverflows(offset: reg))

        var c = DeviceTreeBuilder()
        c.reserve(address: 0xffff_ffff_ffff_0000, size: 0x1_0000)
        c.node("") { b in b.node("memory") { b in b.property("reg", cells: [0, 0, 0x1000]) } }
        XCTAssertEqual(queryError(c.build()) { tree throws(DeviceTreeError) in _ = try tree.memoryMap() },
                       .regionOverflows(offset: 40), "a reservation ending exactly at 2^64 is not representable")
    }

    func testBusWithoutRangesOrWithoutCoveringEntryIsUntranslatable() {
        var b = DeviceTreeBuilder()
        var bus = 0
        b.node("") { b in
            b.property("#address-cells", cells: [1])
            b.property("#size-cells", cells: [1])
            bus = b.node("isa") { b in
                b.property("#address-cells", cells: [1])
                b.property("#size-cells", cells: [1])
                b.node("port@60") { b in
                    b.property("compatible", string: "test,port")
                    b.property("reg", cells: [0x60, 4])
                }
            }
        }
        XCTAssertEqual(queryError(b.build()) { tree throws(DeviceTreeError) in
            _ = try tree.firstDevice(compatibleWith: "test,port")
        }, .untranslatableAddress(offset: bus), "no ranges: not memory-mapped")

        var c = DeviceTreeBuilder()
        var soc = 0
        c.node("") { b in
            b.property("#address-cells", cells: [1])
            b.property("#size-cells", cells: [1])
            soc = b.node("soc") { b in
                b.property("#address-cells", cells: [1])
                b.property("#size-cells", cells: [1])
                b.property("ranges", cells: [0x7e00_0000, 0x3f00_0000, 0x0100_0000])
                b.node("outside@7f000000") { b in
                    b.property("compatible", string: "test,outside")
                    b.property("reg", cells: [0x7f00_0000, 0x100])
                }
            }
        }
        XCTAssertEqual(queryError(c.build()) { tree throws(DeviceTreeError) in
            _ = try tree.firstDevice(compatibleWith: "test,outside")
        }, .untranslatableAddress(offset: soc))
    }

    func testNestedBusesTranslateThroughEveryLevel() throws {
        var b = DeviceTreeBuilder()
        b.node("") { b in
            b.property("#address-cells", cells: [2])
            b.property("#size-cells", cells: [2])
            b.node("outer") { b in   // child 0x0 -> CPU 0x1_0000_0000, 2 cells down to 1
                b.property("#address-cells", cells: [1])
                b.property("#size-cells", cells: [1])
                b.property("ranges", cells: [0x0] + DeviceTreeBuilder.cells64(0x1_0000_0000) + [0x1000_0000])
                b.node("inner") { b in   // child 0x100 -> outer 0x2000
                    b.property("#address-cells", cells: [1])
                    b.property("#size-cells", cells: [1])
                    b.property("ranges", cells: [0x100, 0x2000, 0x100])
                    b.node("device@110") { b in
                        b.property("compatible", string: "test,nested")
                        b.property("reg", cells: [0x110, 0x10])
                    }
                }
            }
        }
        try withTree(b.build()) { tree in
            let device = try XCTUnwrap(try tree.firstDevice(compatibleWith: "test,nested"))
            XCTAssertEqual(device.region, DeviceTreeRegion(base: PhysicalAddress(0x1_0000_2010), size: 0x10))
        }
    }

    func testBadInterruptParentAndInterruptCellsAreReported() {
        var b = DeviceTreeBuilder()
        var reference = 0, controller = 0, badLength = 0
        b.node("") { b in
            controller = b.node("intc") { b in
                b.property("phandle", cells: [5])
                b.flag("interrupt-controller")   // no #interrupt-cells
            }
            b.node("dangling") { b in
                b.property("compatible", string: "test,dangling")
                reference = b.property("interrupt-parent", cells: [9])
                b.property("interrupts", cells: [1])
            }
            b.node("uses-intc") { b in
                b.property("compatible", string: "test,uses")
                b.property("interrupt-parent", cells: [5])
                b.property("interrupts", cells: [1])
            }
            b.node("orphan") { b in
                b.property("compatible", string: "test,orphan")
                badLength = b.property("interrupts", cells: [1])
            }
        }
        let blob = b.build()
        XCTAssertEqual(queryError(blob) { tree throws(DeviceTreeError) in
            _ = try tree.firstDevice(compatibleWith: "test,dangling")?.interrupts()
        }, .badPhandle(offset: reference))
        XCTAssertEqual(queryError(blob) { tree throws(DeviceTreeError) in
            _ = try tree.firstDevice(compatibleWith: "test,uses")?.interrupts()
        }, .badInterruptCells(offset: controller))
        XCTAssertEqual(queryError(blob) { tree throws(DeviceTreeError) in
            _ = try tree.firstDevice(compatibleWith: "test,orphan")?.interrupts()
        }, .badPhandle(offset: badLength), "no interrupt-parent anywhere up the tree")
    }

    func testInterruptsThatAreNotWholeSpecifiersThrow() {
        var b = DeviceTreeBuilder()
        var interrupts = 0
        b.node("") { b in
            b.property("interrupt-parent", cells: [1])
            b.node("gic") { b in
                b.property("phandle", cells: [1])
                b.property("#interrupt-cells", cells: [3])
            }
            b.node("device") { b in
                b.property("compatible", string: "test,device")
                interrupts = b.property("interrupts", cells: [0, 1, 4, 0])
            }
        }
        XCTAssertEqual(queryError(b.build()) { tree throws(DeviceTreeError) in
            _ = try tree.firstDevice(compatibleWith: "test,device")?.interrupts()
        }, .badPropertyLength(offset: interrupts))
    }

    // MARK: - Corrupt headers

    func testBadMagicThrows() throws {
        var blob = piLikeMachine().build()
        blob.setDeviceTreeWord(at: DeviceTreeBuilder.Field.magic, 0xfeed_d00d)
        XCTAssertEqual(parseError(blob), .badMagic)
        try blob.withUnsafeBytes { buffer in
            XCTAssertThrowsError(try DeviceTree(blob: buffer.baseAddress!)) { error in
                XCTAssertEqual(error as? DeviceTreeError, .badMagic)
            }
        }
    }

    func testVersionMustBeCompatibleWith17() {
        var b = piLikeMachine()
        b.version = 16
        XCTAssertEqual(parseError(b.build()), .unsupportedVersion)
        b.version = 18
        b.lastCompatibleVersion = 18
        XCTAssertEqual(parseError(b.build()), .unsupportedVersion)
        b.lastCompatibleVersion = 17
        XCTAssertNil(parseError(b.build()), "a newer blob that stays compatible with 17 is accepted")
    }

    func testTotalSizeMustFitHeaderAndBuffer() {
        let blob = piLikeMachine().build()
        var tooBig = blob
        tooBig.setDeviceTreeWord(at: DeviceTreeBuilder.Field.totalSize, UInt32(blob.count + 1))
        XCTAssertEqual(parseError(tooBig), .totalSizeBeyondBuffer)
        var tooSmall = blob
        tooSmall.setDeviceTreeWord(at: DeviceTreeBuilder.Field.totalSize, 39)
        XCTAssertEqual(parseError(tooSmall), .totalSizeTooSmall)
        XCTAssertEqual(parseError(Array(blob.prefix(39))), .truncatedHeader)
        XCTAssertEqual(parseError([]), .truncatedHeader)
    }

    func testInitFromPointerRejectsHugeTotalSizeBeforeReadingIt() throws {
        var blob = piLikeMachine().build()
        blob.setDeviceTreeWord(at: DeviceTreeBuilder.Field.totalSize, 0xffff_fff0)
        try blob.withUnsafeBytes { buffer in
            XCTAssertThrowsError(try DeviceTree(blob: buffer.baseAddress!)) { error in
                XCTAssertEqual(error as? DeviceTreeError, .totalSizeTooLarge)
            }
        }
        var small = piLikeMachine().build()
        small.setDeviceTreeWord(at: DeviceTreeBuilder.Field.totalSize, 8)
        try small.withUnsafeBytes { buffer in
            XCTAssertThrowsError(try DeviceTree(blob: buffer.baseAddress!)) { error in
                XCTAssertEqual(error as? DeviceTreeError, .totalSizeTooSmall)
            }
        }
    }

    func testBlockOffsetsOutsideTheBlobThrow() {
        let blob = piLikeMachine().build()
        let total = UInt32(blob.count)
        func patched(_ field: Int, _ value: UInt32) -> [UInt8] {
            var copy = blob
            copy.setDeviceTreeWord(at: field, value)
            return copy
        }
        typealias F = DeviceTreeBuilder.Field
        XCTAssertEqual(parseError(patched(F.structOffset, (total + 3) & ~3)), .structBlockOutOfBounds)
        XCTAssertEqual(parseError(patched(F.structOffset, 0)), .structBlockOutOfBounds, "overlaps the header")
        XCTAssertEqual(parseError(patched(F.structSize, 0xffff_ffff)), .structBlockOutOfBounds)
        XCTAssertEqual(parseError(patched(F.structOffset, 0xffff_fffc)), .structBlockOutOfBounds)
        XCTAssertEqual(parseError(patched(F.stringsOffset, total)), .stringsBlockOutOfBounds)
        XCTAssertEqual(parseError(patched(F.stringsOffset, 4)), .stringsBlockOutOfBounds)
        XCTAssertEqual(parseError(patched(F.stringsSize, 0xffff_ffff)), .stringsBlockOutOfBounds)
        XCTAssertEqual(parseError(patched(F.reservationOffset, (total + 8) & ~7)), .reservationBlockOutOfBounds)
        XCTAssertEqual(parseError(patched(F.reservationOffset, 8)), .reservationBlockOutOfBounds)
        XCTAssertEqual(parseError(patched(F.reservationOffset, 44)), .misalignedBlock)
        XCTAssertEqual(parseError(patched(F.structOffset, blob.deviceTreeWord(at: F.structOffset) + 2)), .misalignedBlock)
    }

    func testReservationBlockWithoutTerminatorThrows() {
        let blob = piLikeMachine().build()
        var copy = blob
        copy.setDeviceTreeWord(at: DeviceTreeBuilder.Field.reservationOffset, UInt32(blob.count) & ~7)
        XCTAssertEqual(parseError(copy), .unterminatedReservationBlock)
        // Point it at the structure block, which holds no four zero words in a row.
        copy = blob
        copy.setDeviceTreeWord(at: DeviceTreeBuilder.Field.reservationOffset, 56)
        let structOffset = Int(blob.deviceTreeWord(at: DeviceTreeBuilder.Field.structOffset))
        XCTAssertEqual(structOffset, 56)
        for i in stride(from: structOffset, to: blob.count, by: 4) { copy[i] |= 0x80 }
        XCTAssertEqual(parseError(copy), .unterminatedReservationBlock)
    }

    // MARK: - Corrupt structure blocks

    func testBadTokenReportsItsOffset() {
        var b = DeviceTreeBuilder()
        var bad = 0
        b.node("") { b in
            b.property("a", cells: [1])
            b.node("child") { b in bad = b.rawWord(7) }
        }
        XCTAssertEqual(parseError(b.build()), .badToken(offset: bad))
        XCTAssertEqual(DeviceTreeError.badToken(offset: bad).offset, bad)
    }

    func testPropertyAfterSubnodeIsRejected() {
        var b = DeviceTreeBuilder()
        var late = 0
        b.node("") { b in
            b.node("child")
            late = b.property("late", cells: [1])
        }
        XCTAssertEqual(parseError(b.build()), .unexpectedToken(offset: late))
    }

    func testTokensOutsideTheRootAreRejected() {
        var extraEnd = DeviceTreeBuilder()
        extraEnd.node("")
        let stray = extraEnd.endNode()
        XCTAssertEqual(parseError(extraEnd.build()), .unexpectedToken(offset: stray))

        var twoRoots = DeviceTreeBuilder()
        twoRoots.node("")
        let second = twoRoots.node("")
        XCTAssertEqual(parseError(twoRoots.build()), .unexpectedToken(offset: second))

        var propertyFirst = DeviceTreeBuilder()
        let property = propertyFirst.property("x", cells: [1])
        propertyFirst.node("")
        XCTAssertEqual(parseError(propertyFirst.build()), .unexpectedToken(offset: property))

        var endInsideNode = DeviceTreeBuilder()
        endInsideNode.appendsEndToken = false
        endInsideNode.beginNode("")
        let end = endInsideNode.rawWord(9)
        XCTAssertEqual(parseError(endInsideNode.build()), .unexpectedToken(offset: end))
    }

    func testMissingRootOrMissingEndThrows() {
        let empty = DeviceTreeBuilder()
        XCTAssertEqual(parseError(empty.build()), .missingRootNode)

        var noEnd = DeviceTreeBuilder()
        noEnd.appendsEndToken = false
        noEnd.node("")
        let blob = noEnd.build()
        let structEnd = Int(blob.deviceTreeWord(at: DeviceTreeBuilder.Field.structOffset)
                            + blob.deviceTreeWord(at: DeviceTreeBuilder.Field.structSize))
        XCTAssertEqual(parseError(blob), .truncatedStructure(offset: structEnd))

        var unclosed = DeviceTreeBuilder()
        unclosed.appendsEndToken = false
        unclosed.beginNode("")
        unclosed.node("child")
        XCTAssertNotNil(parseError(unclosed.build()))
    }

    func testUnterminatedNodeNameThrows() {
        var b = DeviceTreeBuilder()
        var child = 0
        b.node("") { b in child = b.node("a-rather-long-node-name") }
        var blob = b.build()
        // End the structure block in the middle of the child's name.
        let structOffset = Int(blob.deviceTreeWord(at: DeviceTreeBuilder.Field.structOffset))
        blob.setDeviceTreeWord(at: DeviceTreeBuilder.Field.structSize, UInt32(child - structOffset + 4 + 8))
        XCTAssertEqual(parseError(blob), .unterminatedNodeName(offset: child))
    }

    func testPropertyNameProblemsAreReported() {
        var b = DeviceTreeBuilder()
        var property = 0
        b.node("") { b in property = b.property("only-name", cells: [1]) }
        let blob = b.build()

        var cut = blob
        cut.setDeviceTreeWord(at: DeviceTreeBuilder.Field.stringsSize, blob.deviceTreeWord(at: DeviceTreeBuilder.Field.stringsSize) - 1)
        XCTAssertEqual(parseError(cut), .unterminatedPropertyName(offset: property))

        var outside = blob
        outside.setDeviceTreeWord(at: property + 8, 0x1000)
        XCTAssertEqual(parseError(outside), .propertyNameOutOfBounds(offset: property))
        outside.setDeviceTreeWord(at: property + 8, blob.deviceTreeWord(at: DeviceTreeBuilder.Field.stringsSize))
        XCTAssertEqual(parseError(outside), .propertyNameOutOfBounds(offset: property), "one past the end")
    }

    func testPropertyValuePastEndThrows() {
        var b = DeviceTreeBuilder()
        var property = 0
        b.node("") { b in property = b.property("value", cells: [1, 2]) }
        for length: UInt32 in [0x1000, 0xffff_fff0, 0xffff_ffff] {
            var blob = b.build()
            blob.setDeviceTreeWord(at: property + 4, length)
            XCTAssertEqual(parseError(blob), .propertyPastEnd(offset: property), "length \(length)")
        }
        // A property header itself cut by the end of the block.
        var blob = b.build()
        let structOffset = Int(blob.deviceTreeWord(at: DeviceTreeBuilder.Field.structOffset))
        blob.setDeviceTreeWord(at: DeviceTreeBuilder.Field.structSize, UInt32(property - structOffset + 8))
        XCTAssertEqual(parseError(blob), .propertyPastEnd(offset: property))
    }

    func testNestingIsCappedAtMaximumDepth() {
        func nested(_ levels: Int) -> (blob: [UInt8], deepest: Int) {
            var b = DeviceTreeBuilder()
            var deepest = 0
            for level in 0..<levels { deepest = b.beginNode(level == 0 ? "" : "n") }
            for _ in 0..<levels { b.endNode() }
            return (b.build(), deepest)
        }
        XCTAssertNil(parseError(nested(DeviceTree.maximumDepth).blob), "depths 0...15 are fine")
        let tooDeep = nested(DeviceTree.maximumDepth + 1)
        XCTAssertEqual(parseError(tooDeep.blob), .nestingTooDeep(offset: tooDeep.deepest))
        XCTAssertNotNil(parseError(nested(1000).blob))
    }

    func testEveryErrorHasAMessage() {
        let errors: [DeviceTreeError] = [.truncatedHeader, .badMagic, .unsupportedVersion, .totalSizeTooSmall,
                                         .totalSizeBeyondBuffer, .totalSizeTooLarge, .structBlockOutOfBounds,
                                         .stringsBlockOutOfBounds, .reservationBlockOutOfBounds, .misalignedBlock,
                                         .unterminatedReservationBlock, .truncatedStructure(offset: 1),
                                         .badToken(offset: 2), .unexpectedToken(offset: 3),
                                         .unterminatedNodeName(offset: 4), .propertyPastEnd(offset: 5),
                                         .propertyNameOutOfBounds(offset: 6), .unterminatedPropertyName(offset: 7),
                                         .nestingTooDeep(offset: 8), .missingRootNode, .badAddressCells(offset: 9),
                                         .badSizeCells(offset: 10), .badPropertyLength(offset: 11),
                                         .regionOverflows(offset: 12), .untranslatableAddress(offset: 13),
                                         .badPhandle(offset: 14), .badInterruptCells(offset: 15), .missingMemoryNode]
        var messages = Set<String>()
        for error in errors {
            let message = error.message.description
            XCTAssertTrue(message.hasPrefix("DeviceTree: "), message)
            messages.insert(message)
        }
        XCTAssertEqual(messages.count, errors.count, "each error says something different")
        XCTAssertEqual(errors.compactMap(\.offset), Array(1...15))
    }

    // MARK: - Truncation and fuzzing

    func testEveryTruncationOfASmallBlobThrows() throws {
        let blob = piLikeMachine().build()
        XCTAssertNil(parseError(blob))
        typealias F = DeviceTreeBuilder.Field
        let structSize = Int(blob.deviceTreeWord(at: F.structSize))
        let stringsSize = Int(blob.deviceTreeWord(at: F.stringsSize))
        for length in 0..<blob.count {
            let prefix = Array(blob.prefix(length))
            XCTAssertNotNil(parseError(prefix), "prefix of \(length) bytes")
            if length >= 40 {
                var lying = prefix
                lying.setDeviceTreeWord(at: F.totalSize, UInt32(length))
                XCTAssertNotNil(parseError(lying), "prefix of \(length) bytes claiming to be whole")
            }
        }
        for size in 0..<structSize {
            var cut = blob
            cut.setDeviceTreeWord(at: F.structSize, UInt32(size))
            XCTAssertNotNil(parseError(cut), "structure block cut to \(size) bytes")
        }
        for size in 0..<stringsSize {
            var cut = blob
            cut.setDeviceTreeWord(at: F.stringsSize, UInt32(size))
            XCTAssertNotNil(parseError(cut), "strings block cut to \(size) bytes")
        }
    }

    func testEveryStructureCutOfTheQemuBlobThrows() throws {
        let blob = try fixture()
        let structSize = Int(blob.deviceTreeWord(at: DeviceTreeBuilder.Field.structSize))
        for size in 0..<structSize {
            var cut = blob
            cut.setDeviceTreeWord(at: DeviceTreeBuilder.Field.structSize, UInt32(size))
            XCTAssertNotNil(parseError(cut), "structure block cut to \(size) bytes")
        }
    }

    /// Exercises every query on `tree`; each may succeed or throw, never trap.
    func exerciseEveryQuery(_ tree: DeviceTree) -> Int {
        var work = 0
        func attempt(_ body: () throws(DeviceTreeError) -> Void) {
            do throws(DeviceTreeError) { try body() } catch { work += 1 }
        }
        attempt { () throws(DeviceTreeError) in
            try tree.forEachNode { node throws(DeviceTreeError) in
                work += node.name.count + node.baseName.count
                try node.forEachProperty { property throws(DeviceTreeError) in
                    property.forEachString { work += $0.count; return true }
                    work += Int(property.u32(at: 0) ?? 0) & 1
                    return true
                }
                attempt { () throws(DeviceTreeError) in try node.forEachRegion { region throws(DeviceTreeError) in work += Int(region.size & 1); return true } }
                attempt { () throws(DeviceTreeError) in work += try node.regionCount() }
                attempt { () throws(DeviceTreeError) in _ = try node.interrupts() }
                _ = try? node.isEnabled()
                return true
            }
        }
        attempt { () throws(DeviceTreeError) in _ = try tree.memoryMap() }
        attempt { () throws(DeviceTreeError) in _ = try tree.stdoutNode() }
        attempt { () throws(DeviceTreeError) in _ = try tree.node(atPath: "/cpus/cpu-map/socket0/cluster0/core0") }
        attempt { () throws(DeviceTreeError) in _ = try tree.node(atPath: "serial0/x") }
        for compatible: StaticString in ["arm,pl011", "arm,cortex-a15-gic", "arm,armv8-timer"] {
            attempt { () throws(DeviceTreeError) in _ = try tree.firstDevice(compatibleWith: compatible)?.interrupts() }
        }
        attempt { () throws(DeviceTreeError) in
            try tree.forEachDevice(compatibleWith: "virtio,mmio") { _ throws(DeviceTreeError) in true }
        }
        attempt { () throws(DeviceTreeError) in try tree.forEachReservation { _ throws(DeviceTreeError) in true } }
        return work
    }

    /// 7500 mutations by default; DEVICETREE_FUZZ_SCALE=N runs N times as many (and
    /// DEVICETREE_FUZZ_SEED another seed) for a longer soak outside CI.
    func testRandomByteFlipsEitherParseOrThrow() throws {
        let environment = ProcessInfo.processInfo.environment
        let scale = environment["DEVICETREE_FUZZ_SCALE"].flatMap { Int($0) } ?? 1
        let seedValue = environment["DEVICETREE_FUZZ_SEED"].flatMap { UInt64($0, radix: 16) } ?? 0x5eed_f17d
        var generator = SplitMix64(seed: seedValue)
        let seeds: [(name: String, blob: [UInt8], iterations: Int)] = [
            ("qemu-virt", try fixture(), 1500 * scale),
            ("pi-like", piLikeMachine().build(), 3000 * scale),
            ("two-cell", twoCellMachine().build(), 3000 * scale),
        ]
        for seed in seeds {
            var parsed = 0
            var rejected = 0
            for _ in 0..<seed.iterations {
                var blob = seed.blob
                let flips = Int.random(in: 1...4, using: &generator)
                for _ in 0..<flips {
                    // Half the flips land in the header and the first structure words, where
                    // they hit lengths and offsets rather than property payload.
                    let limit = Bool.random(using: &generator) ? min(blob.count, 160) : blob.count
                    let index = Int.random(in: 0..<limit, using: &generator)
                    if Bool.random(using: &generator) {
                        blob[index] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &generator)
                    } else {
                        blob[index] = UInt8.random(in: 0...255, using: &generator)
                    }
                }
                blob.withUnsafeBytes { buffer in
                    do throws(DeviceTreeError) {
                        let tree = try DeviceTree(buffer: buffer)
                        parsed += 1
                        XCTAssertGreaterThanOrEqual(exerciseEveryQuery(tree), 0)
                    } catch {
                        rejected += 1
                    }
                }
            }
            print("DeviceTree fuzz \(seed.name): seed 0x\(String(seedValue, radix: 16)), \(seed.iterations) mutations, \(parsed) parsed, \(rejected) rejected")
            XCTAssertGreaterThan(parsed, 0, "\(seed.name): some mutations must still parse")
            XCTAssertGreaterThan(rejected, 0, "\(seed.name): some mutations must be rejected")
        }
    }
}

/// A seeded generator so a failing mutation can be replayed (Steele et al., SplitMix64).
private struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

fileprivate extension DeviceTreeString {
    /// The bytes as a Swift string (tests only: the kernel never builds a String from the blob).
    var string: String { String(decoding: bytes, as: UTF8.self) }
}
