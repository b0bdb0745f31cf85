// RaspberryPiDeviceTreeTests: the DTB boot path of the Raspberry Pi 3B build, on the host.
// Fixtures/raspi3b.dtb is `dtc -I dts -O dtb Boot/aarch64/raspi3b.dts` (the tree `make test`
// also passes to QEMU raspi3b with -dtb): RAM from /memory, and the PL011 and SD host
// controller translated from VideoCore bus addresses (0x7E...) to ARM physical ones (0x3F...)
// through /soc's ranges, exactly what Arch/aarch64/Entry.swift and Board.swift rely on.

import Foundation
import XCTest
@testable import Kernel

final class RaspberryPiDeviceTreeTests: IdentityDirectMapTestCase {

    private func withPiTree<R>(_ body: (DeviceTree) throws -> R) throws -> R {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/raspi3b.dtb")
        let blob = [UInt8](try Data(contentsOf: url))
        return try blob.withUnsafeBytes { buffer in try body(try DeviceTree(buffer: buffer)) }
    }

    func testMemoryComesFromTheMemoryNode() throws {
        try withPiTree { tree in
            var map = try tree.memoryMap()
            map.normalize()
            XCTAssertEqual(map.usable.count, 1)
            XCTAssertEqual(map.usable[0], PhysicalRange(start: PhysicalAddress(0), end: PhysicalAddress(0x3C00_0000)))
        }
    }

    func testPeripheralsAreTranslatedFromBusToARMPhysicalAddresses() throws {
        try withPiTree { tree in
            let uart = try XCTUnwrap(try tree.firstDevice(compatibleWith: "arm,pl011"))
            XCTAssertEqual(uart.region?.base, PhysicalAddress(0x3F20_1000), "PL011 at bus 0x7E201000")
            let sd = try XCTUnwrap(try tree.firstDevice(compatibleWith: "brcm,bcm2835-sdhci"))
            XCTAssertEqual(sd.region?.base, PhysicalAddress(0x3F30_0000), "Arasan SDHCI at bus 0x7E300000")
        }
    }
}
