// SPDX-License-Identifier: Apache-2.0

import Foundation
import PackagePlugin

/// Embeds the browser files of `Clients/` in the target that uses this plugin (realtime-server), so the
/// executable serves them with nothing beside it on disk: `Clients/js/*` at `/client/<name>` (the browser client
/// library) and `Clients/admin/*` at `/admin/<name>` (the admin console). The tool writes one Swift file,
/// `EmbeddedStaticFiles.swift`, with each file as a `StaticString` (see `Documentation/Architecture.md`,
/// "The admin console and the browser client"). Files change → the next build embeds them again.
@main
struct EmbedStaticFiles: BuildToolPlugin {
    /// The folders embedded, relative to the package, with the URL path each is served under.
    static let folders = [("Clients/js", "/client"), ("Clients/admin", "/admin")]

    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedStaticFiles.swift")
        var inputs: [URL] = []
        var arguments = [output.path]
        for (folder, prefix) in Self.folders {
            let directory = context.package.directoryURL.appending(path: folder)
            let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
                .filter { !$0.hasPrefix(".") }
                .sorted()
            for name in names {
                let file = directory.appending(path: name)
                inputs.append(file)
                arguments += [prefix + "/" + name, file.path]
            }
        }
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) browser files from Clients/",
                executable: try context.tool(named: "embed-static-files").url,
                arguments: arguments,
                inputFiles: inputs,
                outputFiles: [output]
            )
        ]
    }
}
