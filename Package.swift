// swift-tools-version: 6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "sessiond",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sessiond", targets: ["sessiond"]),
        .executable(name: "sessionctl", targets: ["sessionctl"]),
        .library(name: "SessionProtocol", targets: ["SessionProtocol"]),
        .library(name: "SessionStore", targets: ["SessionStore"]),
        .library(name: "SessionServer", targets: ["SessionServer"]),
        .library(name: "SessionClient", targets: ["SessionClient"]),
        .library(name: "SessionRunner", targets: ["SessionRunner"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        /// Wire types, the method catalogue, error codes and the frame codec. No sockets.
        .target(
            name: "SessionProtocol",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        /// What Swift cannot call in SQLite's C API (`sqlite3_config` is variadic).
        .target(name: "CSQLiteConfig", linkerSettings: [.linkedLibrary("sqlite3")]),
        /// The SQLite registry: schema migrations, records and the session lifecycle. No networking.
        .target(
            name: "SessionStore",
            dependencies: [
                "SessionProtocol",
                "CSQLiteConfig",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [
                .embedInCode("../../schema/0001_initial.sql"),
                .embedInCode("../../schema/0002_turn_indexes.sql"),
                .embedInCode("../../schema/0003_plain_checks.sql"),
                .embedInCode("../../schema/0004_audit_chain.sql"),
                .embedInCode("../../schema/0005_expiry_bound.sql"),
                .embedInCode("../../schema/0006_linked_chain.sql"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The NIO listener, the generic JSON-RPC dispatcher, auth and the background sweeper.
        .target(
            name: "SessionServer",
            dependencies: [
                "SessionProtocol",
                "SessionStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The async Swift client: one pipelined connection, typed calls and the `turn` helper.
        .target(
            name: "SessionClient",
            dependencies: [
                "SessionProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        /// `sessionctl run`: one CLI turn against the registry, behind a ``CLIAdapter`` seam.
        .target(
            name: "SessionRunner",
            dependencies: [
                "SessionClient",
                "SessionProtocol",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Test support: a real sessiond on an ephemeral port, for any test target.
        .target(
            name: "SessionTesting",
            dependencies: [
                "SessionServer", "SessionStore", "SessionClient", "SessionProtocol",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "sessiond",
            dependencies: [
                "SessionServer",
                "SessionStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The load generator of Benchmarks/: drives any server that speaks the protocol.
        .executableTarget(
            name: "sessiond-bench",
            dependencies: [
                "SessionClient",
                "SessionProtocol",
                "SessionStore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            path: "Benchmarks/sessiond-bench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "sessionctl",
            dependencies: [
                "SessionClient",
                "SessionProtocol",
                "SessionRunner",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SessionProtocolTests",
            dependencies: [
                "SessionProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The load generator's own parsing (its Redis driver's RESP2).
        .testTarget(
            name: "BenchTests",
            dependencies: [
                "sessiond-bench",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SessionStoreTests",
            dependencies: ["SessionStore", "CSQLiteConfig", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SessionRunnerTests",
            dependencies: ["SessionRunner", "SessionTesting", "SessionClient", "SessionProtocol", "SessionStore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SessionServerTests",
            dependencies: [
                "SessionServer", "SessionClient", "SessionProtocol", "SessionStore", "SessionTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
