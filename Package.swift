// swift-tools-version:6.1
import PackageDescription

// One shared settings array for every Swift target (the hummingbird habit): Swift 6 language mode,
// strict concurrency, and explicit imports so only public API leaks.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "nurture",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "nurture", targets: ["nurture"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // ── C system libraries (Debian: libhiredis-dev, libpq-dev, libcurl4-openssl-dev) ──
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CLibpq", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        // ── foundations shared by the clients: errors, blocking-thread executor, durations, URLs ──
        .target(name: "NurtureCore", dependencies: [
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),

        // ── Swift clients over the C libraries ──
        .target(name: "Redis", dependencies: ["CHiredis", "NurtureCore",
            .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),
        .target(name: "Postgres", dependencies: ["CLibpq", "NurtureCore",
            .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),
        .target(name: "Transport", dependencies: ["CCurl", "NurtureCore"], swiftSettings: swiftSettings),

        // ── queue / store ──
        .target(name: "JobQueue", dependencies: ["Redis", "NurtureCore",
            .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),
        .target(name: "Store", dependencies: ["Postgres", "NurtureCore",
            .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),

        // ── channels: rendering a template into a message, MIME, provider requests, signed links ──
        .target(name: "Channels", dependencies: ["Domain", "Transport", "NurtureCore"], swiftSettings: swiftSettings),

        // ── pure domain logic: no I/O ──
        .target(name: "Domain", dependencies: [
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),   // SHA-256 / HMAC (BoringSSL's, assembly)
        ], swiftSettings: swiftSettings),

        // ── runtime: config, clock, logging, services ──
        .target(name: "Runtime", dependencies: [
            "NurtureCore", "Redis", "Postgres", "Transport", "JobQueue", "Store", "Domain", "Channels",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ], swiftSettings: swiftSettings),

        // ── web: the public endpoints (unsubscribe, preference centre, open pixel, click redirect) ──
        .target(name: "Web", dependencies: [
            "Runtime", "NurtureCore", "Redis", "Postgres", "Store", "Domain", "Channels",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: swiftSettings),

        // ── the one binary ──
        .executableTarget(name: "nurture", dependencies: [
            "Runtime", "Web", "NurtureCore", "Redis", "Postgres", "Transport", "JobQueue", "Store", "Domain", "Channels",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: swiftSettings),

        // ── tests ──
        .target(name: "TestSupport", dependencies: ["NurtureCore", "Redis", "Postgres"],
                path: "Tests/TestSupport", exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "CoreTests", dependencies: ["NurtureCore", "Runtime"], swiftSettings: swiftSettings),
        .testTarget(name: "RedisTests", dependencies: ["Redis", "NurtureCore", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "TransportTests", dependencies: ["Transport", "TestSupport"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "StoreTests", dependencies: ["Store", "Postgres", "Runtime", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "JobQueueTests", dependencies: ["JobQueue", "Runtime", "Redis", "NurtureCore", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "DomainTests", dependencies: ["Domain"], swiftSettings: swiftSettings),
        .testTarget(name: "CLITests", dependencies: ["NurtureCore", "TestSupport", "Transport"], swiftSettings: swiftSettings),
        .testTarget(name: "DefinitionsStoreTests", dependencies: ["Domain", "Store", "Postgres", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "IngestTests", dependencies: ["Runtime", "Store", "Domain", "Redis", "Postgres", "JobQueue", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ContactsTests", dependencies: ["Store", "Postgres", "Runtime", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "SegmentStoreTests", dependencies: ["Domain", "Store", "Postgres", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ReportTests", dependencies: ["Domain", "Store", "Postgres", "Runtime", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ChannelsTests", dependencies: ["Channels", "Domain", "Transport", "JobQueue", "Redis", "TestSupport"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "WorkflowTests", dependencies: ["Runtime", "Store", "Domain", "Channels", "Redis", "Postgres", "JobQueue", "NurtureCore", "TestSupport"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "WebTests", dependencies: ["Web", "Runtime", "Store", "Domain", "Channels", "Redis", "Postgres", "NurtureCore", "TestSupport", "Transport"],
                    exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "ExpressionSQLTests", dependencies: ["Domain", "Store", "Postgres", "TestSupport"], swiftSettings: swiftSettings),
    ]
)
