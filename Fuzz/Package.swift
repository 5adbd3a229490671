// swift-tools-version: 6.2
// libFuzzer targets for sessiond. Built on their own (scripts/fuzz), because every target here is
// linked with -sanitize=fuzzer and has no main of its own.
import Foundation
import PackageDescription

/// The root package's identity: the name of the directory it was cloned into.
let root = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent.lowercased()

let fuzzFlags: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"]), .swiftLanguageMode(.v6)]

let package = Package(
    name: "sessiond-fuzz",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        /// Arbitrary bytes through the frame decoder, then every frame through the JSON-RPC envelope and the
        /// params of every method.
        .executableTarget(
            name: "FuzzFrames",
            dependencies: [
                .product(name: "SessionProtocol", package: root),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: fuzzFlags
        ),
        /// Arbitrary frame payloads through the server's whole dispatch path against an in-memory store.
        .executableTarget(
            name: "FuzzDispatch",
            dependencies: [
                .product(name: "SessionServer", package: root),
                .product(name: "SessionStore", package: root),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: fuzzFlags
        ),
    ]
)
