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
        .executableTarget(
            name: "BlistReplay",
            dependencies: ["Kernel"],
            path: "scripts/BlistReplay",
            exclude: ["sample-2048.trace"]
        ),
        .testTarget(
            name: "KernelTests",
            dependencies: ["Kernel"],
            path: "Tests/KernelTests",
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
