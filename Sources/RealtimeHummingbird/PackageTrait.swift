// SPDX-License-Identifier: Apache-2.0

// RealtimeHummingbird's Hummingbird, Prometheus and swift-nio-extras dependencies exist only under the package
// trait `Hummingbird` (Package.swift; Documentation/Architecture.md, "Packaging"). Without it the module cannot
// build: say why, instead of only "no such module 'Hummingbird'".
#if !Hummingbird
    #error(
        "RealtimeHummingbird needs the package trait \"Hummingbird\": declare swift-realtime-hub with its default traits or with traits: [\"Hummingbird\"]"
    )
#endif
