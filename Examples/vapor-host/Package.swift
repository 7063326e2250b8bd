// swift-tools-version:6.1
import PackageDescription

// A second example host: RealtimeHub on Vapor 4 (README.md beside this file). A package of its own, so the root
// package and its users never resolve or build Vapor; `scripts/check-vapor-host` builds and checks it.
let package = Package(
    name: "vapor-host",
    platforms: [.macOS(.v15)],
    dependencies: [
        // The repository root, with its traits off: no Hummingbird, Prometheus or ArgumentParser in this graph.
        .package(name: "swift-realtime-hub", path: "../..", traits: []),
        .package(url: "https://github.com/vapor/vapor.git", from: "4.100.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
    ],
    targets: [
        .executableTarget(
            name: "vapor-host",
            dependencies: [
                .product(name: "RealtimeCore", package: "swift-realtime-hub"),
                .product(name: "RealtimeNIO", package: "swift-realtime-hub"),
                .product(name: "RealtimeJWT", package: "swift-realtime-hub"),
                .product(name: "Vapor", package: "vapor"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("MemberImportVisibility"),
                .enableUpcomingFeature("InternalImportsByDefault"),
            ]
        )
    ]
)
