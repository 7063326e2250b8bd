// SPDX-License-Identifier: Apache-2.0

import ArgumentParser

/// `realtime-example`: both sides of the hub as another program sees them. `publish` (the default) is a service
/// that publishes events through the HTTP API; `listen` is a client that connects over WebSocket and prints what
/// it receives.
@main
struct RealtimeExample: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "realtime-example",
        abstract: "Publish events to a realtime-server through its HTTP API, or listen on its WebSocket.",
        subcommands: [Publish.self, Listen.self],
        defaultSubcommand: Publish.self
    )
}
