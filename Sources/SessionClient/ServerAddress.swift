import Foundation

/// Where a sessiond listens: `HOST:PORT`, `tcp://HOST:PORT`, `unix:/path`, `unix:///path` or `/path`.
public enum ServerAddress: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public static let `default` = ServerAddress.tcp(host: "127.0.0.1", port: 7420)

    public init?(_ text: String) {
        if text.hasPrefix("unix://") {
            self = .unix(path: String(text.dropFirst("unix://".count)))
        } else if text.hasPrefix("unix:") {
            self = .unix(path: String(text.dropFirst("unix:".count)))
        } else if text.hasPrefix("/") {
            self = .unix(path: text)
        } else {
            var rest = Substring(text)
            if rest.hasPrefix("tcp://") { rest = rest.dropFirst("tcp://".count) }
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
                (1...65535).contains(port)
            else { return nil }
            var host = String(rest[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            self = .tcp(host: host.isEmpty ? "127.0.0.1" : host, port: port)
        }
        if case .unix(let path) = self, path.isEmpty { return nil }
    }

    /// `SESSIOND_ADDR`, or the default.
    public static var fromEnvironment: ServerAddress {
        ProcessInfo.processInfo.environment["SESSIOND_ADDR"].flatMap(ServerAddress.init) ?? .default
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}
