// swift-tools-version:6.1
import PackageDescription

// Every Swift target builds in Swift 6 language mode (complete strict concurrency) with these upcoming features.
let swiftSettings: [SwiftSetting] = [
    // https://github.com/swiftlang/swift-evolution/blob/main/proposals/0335-existential-any.md
    .enableUpcomingFeature("ExistentialAny"),
    // https://github.com/swiftlang/swift-evolution/blob/main/proposals/0444-member-import-visibility.md
    .enableUpcomingFeature("MemberImportVisibility"),
    // https://github.com/swiftlang/swift-evolution/blob/main/proposals/0409-access-level-on-imports.md
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// The traits below that guard the host-only dependencies.
let hummingbirdTrait = TargetDependencyCondition.when(traits: ["Hummingbird"])
let examplesTrait = TargetDependencyCondition.when(traits: ["Examples"])
let jwksTrait = TargetDependencyCondition.when(traits: ["JWKS"])
let redisTLSTrait = TargetDependencyCondition.when(traits: ["RedisTLS"])

let package = Package(
    name: "swift-realtime-hub",
    platforms: [.macOS(.v15)],
    products: [
        // The core: hub, wire protocol, backend protocols and in-memory backends. Pulls in no C library,
        // no HTTP server and no crypto library.
        .library(name: "RealtimeCore", targets: ["RealtimeCore"]),
        // MARK: products (helpers add theirs below this line)
        // The WebSocket host on SwiftNIO alone: upgrades decided by the hub, request-head limits, the
        // per-connection channel handler. Any NIO server installs it with `configureRealtimeHubPipeline`.
        .library(name: "RealtimeNIO", targets: ["RealtimeNIO"]),
        // Hummingbird 2 glue over RealtimeNIO: the server channel, health, metrics and the HTTP publishing API.
        .library(name: "RealtimeHummingbird", targets: ["RealtimeHummingbird"]),
        // The example host: `swift run realtime-server`.
        .executable(name: "realtime-server", targets: ["realtime-server"]),
        // An example publisher: events, notifications, health and statistics through the HTTP API.
        .executable(name: "realtime-example", targets: ["realtime-example"]),
        // Redis backends (connection store, event bus, rate limiter, sessions) on SwiftNIO + hiredis's RESP codec.
        .library(name: "RealtimeRedis", targets: ["RealtimeRedis"]),
        // Backend conformance suites (swift-testing) and a manual clock, for backend authors' tests.
        .library(name: "RealtimeTesting", targets: ["RealtimeTesting"]),
        // JSON Web Token verification and signing on OpenSSL's libcrypto (a `TokenVerifier`).
        .library(name: "RealtimeJWT", targets: ["RealtimeJWT"]),
        // An identity provider's JWK Set over HTTPS (async-http-client) for RealtimeJWT's verifier: cached, refreshed
        // in the background, refetched (rate-limited) for an unknown `kid`. Needs the `JWKS` trait.
        .library(name: "RealtimeJWKS", targets: ["RealtimeJWKS"]),
    ],
    // Package traits (SE-0450), both on by default. Every use of a host-only package (Hummingbird,
    // swift-prometheus, swift-nio-extras, swift-argument-parser) is conditioned on one of them, so a consumer that
    // declares this package with `traits: []` resolves and builds none of those packages (SwiftPM resolves every
    // dependency a product-unused target names otherwise). `scripts/check-consumer-build` proves it.
    // See Documentation/Architecture.md, "Packaging".
    traits: [
        .trait(
            name: "Hummingbird",
            description: "The RealtimeHummingbird product (Hummingbird 2, swift-prometheus, swift-nio-extras)."
        ),
        .trait(
            name: "JWKS",
            description: "The RealtimeJWKS product (async-http-client, swift-nio-ssl)."
        ),
        .trait(
            name: "RedisTLS",
            description: "TLS to Redis (rediss://, REDIS_TLS_*) in RealtimeRedis (swift-nio-ssl)."
        ),
        .trait(
            name: "Examples",
            description: "realtime-server, realtime-example and the end-to-end tests (swift-argument-parser).",
            enabledTraits: ["Hummingbird", "JWKS", "RedisTLS"]
        ),
        .default(enabledTraits: ["Examples", "RedisTLS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        // MARK: dependencies (helpers add theirs below this line)
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.3.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.20.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.30.0"),
    ],
    targets: [
        // OpenSSL's libcrypto (Debian: libssl-dev, OpenSSL >= 3.0), used by RealtimeJWT and for the Redis bus's message
        // HMAC, owned by RealtimeCrypto alone. This system library gives CCryptoShim pkg-config's include and library
        // paths (Homebrew's openssl@3 is on neither default path) and links libcrypto; no Swift file imports it.
        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"]), .brew(["openssl@3"])]
        ),
        // The C half of RealtimeCrypto: Swift-friendly entry points over libcrypto (include/ccryptoshim.h declares,
        // ccryptoshim.c defines). Every failing call clears the thread's OpenSSL error queue.
        // Only `internal import CCryptoShim`, and only in RealtimeCrypto.
        .target(name: "CCryptoShim", dependencies: ["CLibCrypto"]),
        // The one owner of libcrypto: digests, HMAC, keys (PEM, JWK components), signature verification and
        // signing, constant-time comparison. Not a product: its API is `package`, for RealtimeJWT and RealtimeRedis.
        .target(name: "RealtimeCrypto", dependencies: ["CCryptoShim"], swiftSettings: swiftSettings),
        .testTarget(name: "RealtimeCryptoTests", dependencies: ["RealtimeCrypto"], swiftSettings: swiftSettings),
        .target(
            name: "RealtimeCore",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RealtimeCoreTests",
            dependencies: [
                "RealtimeCore",
                "RealtimeTesting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        // MARK: targets (helpers add theirs below this line)
        // SwiftNIO only: no Hummingbird, no HTTP types beyond NIOHTTP1.
        .target(
            name: "RealtimeNIO",
            dependencies: [
                "RealtimeCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RealtimeNIOTests",
            dependencies: [
                "RealtimeNIO",
                "RealtimeCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "RealtimeHummingbird",
            dependencies: [
                "RealtimeCore",
                "RealtimeNIO",
                .product(name: "Hummingbird", package: "hummingbird", condition: hummingbirdTrait),
                .product(name: "Prometheus", package: "swift-prometheus", condition: hummingbirdTrait),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras", condition: hummingbirdTrait),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras", condition: hummingbirdTrait),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "realtime-server",
            dependencies: [
                "RealtimeCore",
                "RealtimeJWT",
                "RealtimeJWKS",
                "RealtimeRedis",
                "RealtimeNIO",
                "RealtimeHummingbird",
                .product(name: "Hummingbird", package: "hummingbird", condition: hummingbirdTrait),
                .product(name: "ArgumentParser", package: "swift-argument-parser", condition: examplesTrait),
                .product(name: "Prometheus", package: "swift-prometheus", condition: hummingbirdTrait),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/realtime-server",
            swiftSettings: swiftSettings,
            plugins: ["EmbedStaticFiles"]
        ),
        // The browser files of Clients/ (the client library, the admin console), embedded in realtime-server at
        // build time as Swift string literals by this build tool plugin and its tool: no file beside the binary.
        .plugin(name: "EmbedStaticFiles", capability: .buildTool(), dependencies: ["embed-static-files"]),
        .executableTarget(name: "embed-static-files", path: "Plugins/EmbedStaticFilesTool"),
        .executableTarget(
            name: "realtime-example",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser", condition: examplesTrait),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Examples/publisher-example",
            swiftSettings: swiftSettings
        ),
        // Unit tests of the Hummingbird layer's own types (no sockets).
        // End-to-end tests: real sockets against an in-process Hummingbird server, the realtime-server and
        // realtime-example executables, and two servers on one Redis.
        .testTarget(
            name: "RealtimeEndToEndTests",
            dependencies: [
                "RealtimeTesting",
                "RealtimeHummingbird",
                "RealtimeNIO",
                "RealtimeCore",
                "RealtimeJWT",
                "RealtimeRedis",
                "RealtimeRedisTestSupport",
                "RealtimeJWKSTestSupport",
                .product(name: "Hummingbird", package: "hummingbird", condition: hummingbirdTrait),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // hiredis (Debian: libhiredis-dev, 0.14), used only for RESP: its command formatter and reply reader.
        // Only `internal import CHiredis` anywhere: no C type reaches a public API.
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"]), .brew(["hiredis"])]
        ),
        .target(
            name: "RealtimeRedis",
            dependencies: [
                "RealtimeCore",
                "CHiredis",
                "RealtimeCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: redisTLSTrait),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RealtimeRedisTests",
            dependencies: [
                "RealtimeRedis",
                "RealtimeCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                "RealtimeTesting",
                "RealtimeRedisTestSupport",
            ],
            swiftSettings: swiftSettings
        ),
        // The one Redis fixture of the tests (a redis-server on a free loopback port, or REDIS_URL), shared by the
        // test targets that need Redis. Not a product: only this package's tests build it.
        .target(
            name: "RealtimeRedisTestSupport",
            // The TLS nodes use the certificates RealtimeJWKSTestSupport makes with `openssl`.
            dependencies: ["RealtimeRedis", "RealtimeCore", "RealtimeJWKSTestSupport"],
            path: "Tests/RealtimeRedisTestSupport",
            swiftSettings: swiftSettings
        ),
        // `Testing` ships with the toolchain; it is not a package dependency.
        .target(
            name: "RealtimeTesting",
            dependencies: ["RealtimeCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "RealtimeJWT",
            dependencies: ["RealtimeCore", "RealtimeCrypto"],
            swiftSettings: swiftSettings
        ),
        // Every use of async-http-client and swift-nio-ssl is conditioned on the JWKS trait (see "Packaging").
        .target(
            name: "RealtimeJWKS",
            dependencies: [
                "RealtimeJWT",
                "RealtimeCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client", condition: jwksTrait),
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: jwksTrait),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RealtimeJWKSTests",
            dependencies: [
                "RealtimeJWKS",
                "RealtimeJWT",
                "RealtimeCore",
                "RealtimeTesting",
                "RealtimeJWKSTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTPS server of the JWKS tests (certificates made with `openssl`) and the test identity provider's
        // keys, shared by RealtimeJWKSTests and the end-to-end tests. Not a product.
        .target(
            name: "RealtimeJWKSTestSupport",
            dependencies: [
                "RealtimeJWT",
                "RealtimeCrypto",
                "RealtimeCore",
                .product(name: "NIOSSL", package: "swift-nio-ssl", condition: jwksTrait),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/RealtimeJWKSTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RealtimeJWTTests",
            dependencies: ["RealtimeJWT", "RealtimeCore", "RealtimeCrypto", "RealtimeTesting"],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
    ]
)

// Benchmarks: built only when REALTIMEHUB_BENCHMARKS is set, so library consumers never resolve or build them.
//     REALTIMEHUB_BENCHMARKS=1 swift build -c release --product HubBenchmarks
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release JWTBenchmarks
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release RedisBenchmarks
//     scripts/load-test (realtime-loadgen against realtime-server)
// See Documentation/Performance.md for the exact commands and the numbers.
if Context.environment["REALTIMEHUB_BENCHMARKS"] != nil {
    package.dependencies.append(.package(url: "https://github.com/ordo-one/malloc-interposer.git", from: "1.6.0"))
    package.dependencies.append(.package(url: "https://github.com/vapor/jwt-kit.git", from: "5.0.0"))
    package.dependencies.append(.package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"))
    package.targets.append(
        .executableTarget(
            name: "HubBenchmarks",
            dependencies: [
                "RealtimeCore",
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            ],
            path: "Benchmarks/HubBenchmarks",
            swiftSettings: swiftSettings
        )
    )
    package.targets.append(
        .executableTarget(
            name: "JWTBenchmarks",
            dependencies: [
                "RealtimeJWT",
                "RealtimeCore",
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            path: "Benchmarks/JWTBenchmarks",
            swiftSettings: swiftSettings
        )
    )
    package.targets.append(
        .executableTarget(
            name: "RedisBenchmarks",
            dependencies: [
                "RealtimeRedis",
                "RealtimeCore",
                // The tests' Redis fixture starts the six-node cluster of the `cluster` comparison.
                "RealtimeRedisTestSupport",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/RedisBenchmarks",
            swiftSettings: swiftSettings
        )
    )
    // The load generator: `scripts/load-test`, or `REALTIMEHUB_BENCHMARKS=1 swift run -c release realtime-loadgen`
    // against a running `realtime-server` on loopback (see Documentation/Performance.md).
    package.targets.append(
        .executableTarget(
            name: "realtime-loadgen",
            dependencies: [
                "RealtimeCore",
                "RealtimeJWT",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "Benchmarks/LoadGenerator",
            swiftSettings: swiftSettings
        )
    )
}
