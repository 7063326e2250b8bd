// SPDX-License-Identifier: Apache-2.0

import ArgumentParser

/// `realtime-server`: the example host of RealtimeHub on Hummingbird.
@main
struct RealtimeServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "realtime-server",
        abstract: "Real-time authentication and security events over WebSocket.",
        subcommands: [Serve.self, Token.self, VerifyToken.self],
        defaultSubcommand: Serve.self
    )
}
