// swift-tools-version: 6.0
// Host build of the machine-independent kernel (Kernel/) and its unit tests.
// The freestanding kernel images are built by the Makefile, not by SwiftPM:
// Kernel/Core and Kernel/SelfTest talk to the hardware and exist only there.
import PackageDescription

let package = Package(
    name: "SwiftVMKernel",
    products: [
        .executable(name: "blist-replay", targets: ["BlistReplay"]),
    ],
    targets: [
        .target(
            name: "Kernel",
            path: "Kernel",
            exclude: ["Core", "SelfTest"]
        ),
        // The concrete page-table formats (Arch/*/...PageTableFormat.swift), compiled on the
        // host too so tests build and walk real x86_64 and aarch64 tables. In the kernel they
        // are part of the one Kernel module; HOST_FORMATS makes them import it here.
        .target(
            name: "PageTableFormats",
            dependencies: ["Kernel"],
            path: "Arch",
            sources: ["x86_64/X86PageTableFormat.swift", "aarch64/ARM64PageTableFormat.swift"],
            swiftSettings: [.define("HOST_FORMATS")]
        ),
        .executableTarget(
            name: "BlistReplay",
            dependencies: ["Kernel"],
            path: "scripts/BlistReplay",
            exclude: ["sample-2048.trace"]
        ),
        .testTarget(
            name: "KernelTests",
            dependencies: ["Kernel", "PageTableFormats"],
            path: "Tests/KernelTests",
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
