// SPDX-License-Identifier: Apache-2.0

import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import RealtimeCore

/// What one publisher lane did in one phase.
struct LaneResult: Sendable {
    /// Sequence numbers the server accepted (202).
    var accepted: [Int] = []
    /// Refused or failed requests: status (0 for a transport error) and a short reason.
    var failures: [(sequence: Int, status: Int, reason: String)] = []
    /// `localDeliveries` summed over the receipts: what the server says it queued.
    var serverDeliveries = 0
    /// HTTP round trip of each publish, nanoseconds.
    var roundTrip = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    var firstSend: UInt64 = .max
    var lastSend: UInt64 = 0
    /// How far behind its schedule a rate-mode lane fell at worst, nanoseconds.
    var maxLag: UInt64 = 0
    var stoppedByDeadline = false
}

/// A tiny HTTP/1.1 client for the publishing API: one keep-alive connection, one request in flight.
struct PublisherLane: Sendable {
    let group: any EventLoopGroup
    let address: SocketAddress
    let hostHeader: String
    let apiPrefix: String
    let token: String
    let plan: Plan
    let lane: Int
    /// Events per request in `batch` mode.
    var batchSize = 1

    /// Publishes this lane's share of `phase`. In `rate` mode event `k` of the phase is due `k / rate` seconds after
    /// `start`.
    func run(phase: Plan.Phase, rate: Int, start: ContinuousClock.Instant, deadline: ContinuousClock.Instant) async
        -> LaneResult
    {
        var result = LaneResult()
        let sequences = Array(stride(from: phase.range.lowerBound + lane, to: phase.range.upperBound, by: plan.lanes))
        // One request per event, or per `batchSize` events in batch mode.
        let perRequest = phase.mode == .batch ? max(batchSize, 1) : 1
        let requests = stride(from: 0, to: sequences.count, by: perRequest).map {
            sequences[$0..<min($0 + perRequest, sequences.count)]
        }
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(10))
                .connect(to: address) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                            wrappingChannelSynchronously: channel
                        )
                    }
                }
        } catch {
            for sequence in sequences { result.failures.append((sequence, 0, "connect: \(error)")) }
            return result
        }
        do {
            try await channel.executeThenClose { inbound, outbound in
                var responses = inbound.makeAsyncIterator()
                for batch in requests {
                    let sequence = batch.first ?? 0
                    let now = ContinuousClock.now
                    if now >= deadline {
                        result.stoppedByDeadline = true
                        break
                    }
                    if phase.mode == .rate {
                        let offset = sequence - phase.range.lowerBound
                        let due = start + .nanoseconds(Int64(offset) * 1_000_000_000 / Int64(max(rate, 1)))
                        if due > now {
                            try await Task.sleep(until: min(due, deadline), clock: .continuous)
                        } else {
                            let lag = now - due
                            let lagNanos =
                                UInt64(lag.components.seconds) * 1_000_000_000
                                + UInt64(lag.components.attoseconds / 1_000_000_000)
                            result.maxLag = max(result.maxLag, lagNanos)
                        }
                    }
                    let sent = NIODeadline.now().uptimeNanoseconds
                    result.firstSend = min(result.firstSend, sent)
                    result.lastSend = sent
                    let body =
                        phase.mode == .batch
                        ? batchBody(batch, sent: sent) : requestBody(sequence: sequence, sent: sent)
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: hostHeader)
                    headers.add(name: "Authorization", value: "Bearer \(token)")
                    headers.add(name: "Content-Type", value: "application/json")
                    headers.add(name: "Content-Length", value: String(body.readableBytes))
                    let uri =
                        switch plan.target {
                        case .realtime: apiPrefix + (phase.mode == .batch ? "/events/batch" : "/events")
                        case .nchan: "/pub?id=" + plan.nchanChannel
                        }
                    let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: uri, headers: headers)
                    try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(body)), .end(nil)])
                    var status = 0
                    var responseBody = ByteBuffer()
                    var complete = false
                    while !complete, let part = try await responses.next() {
                        switch part {
                        case .head(let head): status = Int(head.status.code)
                        case .body(var buffer):
                            if responseBody.readableBytes < 4096 { responseBody.writeBuffer(&buffer) }
                        case .end: complete = true
                        }
                    }
                    guard complete else {
                        for sequence in batch {
                            result.failures.append((sequence, 0, "connection closed before the response"))
                        }
                        break
                    }
                    let done = NIODeadline.now().uptimeNanoseconds
                    _ = result.roundTrip.record(done >= sent ? done - sent : 0)
                    // realtime-server answers 202; Nchan 201 (delivered to subscribers) or 202 (none yet).
                    if plan.target == .realtime ? status == 202 : (200..<300).contains(status) {
                        result.accepted += batch
                        result.serverDeliveries += Self.localDeliveries(responseBody)
                    } else {
                        let reason = String(buffer: responseBody).prefix(200).description
                        for sequence in batch { result.failures.append((sequence, status, reason)) }
                    }
                }
            }
        } catch {
            result.failures.append((-1, 0, "publisher lane \(lane): \(error)"))
        }
        return result
    }

    /// The request body: for realtime-server the publishing API's event object, for Nchan the event frame itself
    /// (the bytes realtime-server would send each subscriber), so both servers deliver the same frames.
    private func requestBody(sequence: Int, sent: UInt64) -> ByteBuffer {
        let event = plan.event(sequence: sequence, lane: lane, sentNanos: sent)
        switch plan.target {
        case .nchan:
            return ByteBuffer(string: RealtimeHub.encodeForBenchmark(event))
        case .realtime:
            return ByteBuffer(string: publishedEvent(event))
        }
    }

    /// `POST /events/batch`'s body: `{"events":[…]}` with the events of `sequences`, sent at the same instant.
    private func batchBody(_ sequences: ArraySlice<Int>, sent: UInt64) -> ByteBuffer {
        let events = sequences.map { publishedEvent(plan.event(sequence: $0, lane: lane, sentNanos: sent)) }
        return ByteBuffer(string: #"{"events":["# + events.joined(separator: ",") + "]}")
    }

    /// The publishing API's event object for `event`.
    private func publishedEvent(_ event: RealtimeEvent) -> String {
        var text = #"{"type":""# + plan.eventType + "\","
        if let userID = event.userID {
            text += #""scope":"user","userId":""# + userID + "\","
        } else {
            text += #""scope":"everyone","#
        }
        return text + #""data":"# + JSONWriter.string(.object(event.data)) + "}"
    }

    /// `localDeliveries` of the receipt, or summed over a batch's receipts.
    private static func localDeliveries(_ body: ByteBuffer) -> Int {
        guard let value = try? JSONParser().parse(Array(body.readableBytesView)) else { return 0 }
        if let count = value["localDeliveries"]?.intValue { return Int(count) }
        guard case .array(let receipts)? = value["receipts"] else { return 0 }
        return receipts.reduce(0) { $0 + Int($1["localDeliveries"]?.intValue ?? 0) }
    }
}
