# SPDX-License-Identifier: Apache-2.0
"""realtime-client.js in a real browser against a real realtime-server (issue 16, "Tests in a real browser")."""

import time

from support import BrowserTestCase, Server, token


class ClientTests(BrowserTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = Server("client").start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        super().tearDownClass()

    def admin(self):
        return token("ops", admin=True)

    def page_with_client(self, name, user, session=None, ttl=600, options=None, server=None):
        """A client page whose client `name` connects as `user`; getToken mints a new token each call."""
        server = server or self.server
        page = self.client_page(server)
        page.expose_function("mint", lambda: token(user, session=session, ttl=ttl))
        page.evaluate(
            """([name, options]) => {
                const client = window.track(name, new window.RT.RealtimeClient({
                    url: '/ws/events', getToken: () => window.mint(), ...options }));
                client.connect();
            }""",
            [name, options or {}],
        )
        page.wait_for_function("(name) => window.log[name].connected.length === 1", arg=name)
        return page

    def test_pattern_rules_match_the_server(self):
        page = self.client_page(self.server)
        result = page.evaluate(
            """() => {
                const cases = [
                    ['authentication.login.success', 'authentication.login.success', true],
                    ['authentication.*', 'authentication.logout', true],
                    ['authentication.*', 'authentication.login.success', true],
                    ['authentication.*', 'authentication', false],
                    ['authentication.*.failure', 'authentication.login.failure', true],
                    ['authentication.*.failure', 'authentication.login.mfa.failure', false],
                    ['*', 'system.error.critical', true],
                    ['security.*', 'securityx.a', false],
                ];
                const wrong = cases.filter(([p, t, want]) => new window.RT.EventPattern(p).matches(t) !== want);
                const refused = ['', 'a..b', 'a.b c', 'x'.repeat(201), 'a.b.c.d.e.f.g.h.i', 'é.x']
                    .filter((text) => { try { new window.RT.EventPattern(text); return true; } catch { return false; } });
                const delays = [1, 2, 3, 10].map((n) => window.RT.backoffDelay(n,
                    { minReconnectDelayMs: 100, maxReconnectDelayMs: 1000, random: () => 0.999 }));
                return { wrong, refused, delays, zero: window.RT.backoffDelay(5,
                    { minReconnectDelayMs: 100, maxReconnectDelayMs: 1000, random: () => 0 }) };
            }"""
        )
        self.assertEqual(result["wrong"], [])
        self.assertEqual(result["refused"], [])
        # Full jitter: up to min(max, base * 2^(n-1)), and down to 0.
        self.assertEqual(result["delays"], [99, 199, 399, 999])
        self.assertEqual(result["zero"], 0)

    def test_subscriptions_survive_a_connection_lost_before_their_reply(self):
        # Sixth probe, HIGH: a connection lost while the resubscribe waited for its reply made the client forget
        # every pattern, so it came back `open` with no subscription (161 of 500 clients into a crash-looping
        # server). Only the server's refusal of a pattern forgets it. A scripted socket makes the timing exact.
        page = self.client_page(self.server)
        result = page.evaluate(
            """async () => {
                const sent = [];
                let sockets = 0;
                class ScriptedSocket {
                    constructor() {
                        this.n = ++sockets;
                        this.readyState = 0;
                        setTimeout(() => {
                            this.readyState = 1;
                            this.onopen?.();
                            this.reply({ type: 'connected', payload: { connectionId: 'c' + this.n, userId: 'u' } });
                        }, 1);
                    }
                    reply(message) { setTimeout(() => this.onmessage?.({ data: JSON.stringify(message) }), 1); }
                    send(text) {
                        const message = JSON.parse(text);
                        if (message.type !== 'subscribe') return;
                        const patterns = message.payload.eventTypes;
                        sent.push([this.n, patterns]);
                        if (this.n === 1) {
                            // Lost before the reply.
                            this.readyState = 3;
                            setTimeout(() => this.onclose?.({ code: 1006, reason: '' }), 1);
                        } else if (patterns.includes('admin.*')) {
                            this.reply({ type: 'error', id: message.id,
                                payload: { code: 'forbidden_pattern', message: 'admin only' } });
                        } else {
                            this.reply({ type: 'subscribed', id: message.id,
                                payload: { eventTypes: patterns, subscriptions: patterns } });
                        }
                    }
                    close() { this.readyState = 3; }
                }
                const client = new window.RT.RealtimeClient({ url: 'ws://127.0.0.1:9/ws/events',
                    getToken: () => 't', WebSocket: ScriptedSocket, random: () => 0,
                    subscriptions: ['security.*', 'session.*'] });
                const errors = [];
                client.on('error', (error) => errors.push(error.code));
                const opened = new Promise((resolve) => client.on('connected', (info) => {
                    if (info.connectionId === 'c2') resolve();
                }));
                client.connect();
                await opened;
                await new Promise((resolve) => setTimeout(resolve, 20));
                let refused = null;
                try { await client.subscribe(['admin.*']); } catch (error) { refused = error.code; }
                const held = [...client._subscriptions.keys()];
                client.close();
                return { sent, held, refused, errors };
            }"""
        )
        self.assertEqual(
            result["sent"],
            [[1, ["security.*", "session.*"]], [2, ["security.*", "session.*"]], [2, ["admin.*"]]],
        )
        self.assertEqual(result["refused"], "forbidden_pattern")
        self.assertEqual(result["held"], ["security.*", "session.*"], "kept across the drop; the refused one forgotten")
        self.assertEqual(result["errors"], [])

    def test_a_device_clock_ahead_of_the_server_does_not_refresh_in_a_loop(self):
        # Sixth probe, LOW: with the device's clock ahead of the server's, every fresh token looked expired and the
        # client refreshed (and called getToken) at once, again and again. Tokens here look expired by 30 min on
        # this device's clock; the server (a scripted socket) accepts every refresh.
        page = self.client_page(self.server)
        result = page.evaluate(
            """async () => {
                const sent = [];
                let tokens = 0;
                const now = Math.floor(Date.now() / 1000);
                const mint = () => {
                    tokens += 1;
                    const claims = { sub: 'u', iat: now - 3600 + tokens, exp: now - 1800 + tokens };
                    const body = btoa(JSON.stringify(claims)).replace(/=+$/, '').replace(/[+]/g, '-').replace(/[/]/g, '_');
                    return 'e30.' + body + '.sig';
                };
                class ScriptedSocket {
                    constructor() {
                        this.readyState = 0;
                        setTimeout(() => {
                            this.readyState = 1;
                            this.onopen?.();
                            this.reply({ type: 'connected', payload: { connectionId: 'c1', userId: 'u' } });
                        }, 1);
                    }
                    reply(message) { setTimeout(() => this.onmessage?.({ data: JSON.stringify(message) }), 1); }
                    send(text) {
                        const message = JSON.parse(text);
                        sent.push(message.type);
                        if (message.type === 'refresh_token') {
                            this.reply({ type: 'token_refreshed', id: message.id, payload: { expiresAt: 'later' } });
                        }
                    }
                    close() { this.readyState = 3; }
                }
                const client = new window.RT.RealtimeClient({ url: 'ws://127.0.0.1:9/ws/events',
                    getToken: mint, WebSocket: ScriptedSocket, random: () => 0 });
                const opened = new Promise((resolve) => client.on('connected', resolve));
                client.connect();
                await opened;
                // Long enough for a loop of refreshes (each takes a few ms here) to show.
                await new Promise((resolve) => setTimeout(resolve, 500));
                const state = client.state;
                client.close();
                return { tokens, refreshes: sent.filter((type) => type === 'refresh_token').length, state };
            }"""
        )
        self.assertEqual(result, {"tokens": 1, "refreshes": 0, "state": "open"})

    def test_connect_subscribe_and_receive_by_pattern(self):
        page = self.page_with_client("alice", "alice")
        reply = page.evaluate(
            """async () => {
                const client = window.clients.alice;
                window.securityEvents = [];
                client.onEvent('security.*', (event) => window.securityEvents.push(event.type));
                const reply = await client.subscribe(['security.*', 'system.maintenance.*']);
                return { reply, held: await client.getSubscriptions(), ping: await client.ping() };
            }"""
        )
        self.assertEqual(reply["reply"]["subscriptions"], ["security.*", "system.maintenance.*"])
        self.assertEqual(reply["held"], ["security.*", "system.maintenance.*"])
        self.assertGreaterEqual(reply["ping"]["rttMs"], 0)
        admin = self.admin()
        self.server.publish({"type": "authentication.login.success", "userId": "alice"}, admin)
        self.server.publish({"type": "security.suspicious.activity", "userId": "alice", "data": {"ip": "192.0.2.7"}}, admin)
        self.server.publish({"type": "system.maintenance.scheduled", "scope": "everyone"}, admin)
        page.wait_for_function("() => window.log.alice.events.length >= 2")
        events = page.evaluate("() => window.log.alice.events.map((event) => [event.type, event.userId ?? null, event.data])")
        self.assertEqual(
            events,
            [["security.suspicious.activity", "alice", {"ip": "192.0.2.7"}], ["system.maintenance.scheduled", None, {}]],
        )
        self.assertEqual(page.evaluate("() => window.securityEvents"), ["security.suspicious.activity"])
        # A pattern the server refuses on /ws/events rejects with its error and is not kept.
        refused = page.evaluate(
            """async () => { try { await window.clients.alice.subscribe(['admin.*']); return null; }
                catch (error) { return [error.code, await window.clients.alice.getSubscriptions()]; } }"""
        )
        self.assertEqual(refused, ["forbidden_pattern", ["security.*", "system.maintenance.*"]])
        self.assertEqual(page.evaluate("() => window.log.alice.errors"), [])

    def test_an_event_sent_twice_reaches_handlers_once(self):
        # Eighth probe H2: a server whose Redis connection lost the reply of a publish that went through publishes it
        # again, and a publisher may retry with the same id; the client drops the repeat by event id.
        page = self.page_with_client("dana", "dana")
        page.evaluate("async () => { await window.clients.dana.subscribe(['security.*']); }")
        admin = self.admin()
        for n in (1, 1, 2):
            self.server.publish(
                {"type": "security.suspicious.activity", "userId": "dana", "id": f"evt-dup-{n}", "data": {"n": n}}, admin
            )
        # The same id on another type is another event.
        self.server.publish({"type": "security.password.changed", "userId": "dana", "id": "evt-dup-1", "data": {"n": 3}}, admin)
        self.server.publish({"type": "security.suspicious.activity", "userId": "dana", "data": {"n": 4}}, admin)
        page.wait_for_function("() => window.log.dana.events.some((event) => event.data.n === 4)")
        numbers = page.evaluate("() => window.log.dana.events.map((event) => event.data.n)")
        self.assertEqual(numbers, [1, 2, 3, 4])

    def test_server_restart_reconnects_and_resubscribes(self):
        server = Server("restart").start()
        self.addCleanup(server.stop)
        page = self.page_with_client("bob", "bob", server=server, options={"maxReconnectDelayMs": 1000})
        page.evaluate("() => window.clients.bob.subscribe(['security.*'])")
        first = page.evaluate("() => window.log.bob.connected[0]")
        self.assertFalse(first["reconnected"])
        self.assertIsNone(first["recovered"])

        port = server.port
        self.assertEqual(server.stop(), 0)
        page.wait_for_function("() => window.log.bob.disconnected.length >= 1")
        disconnected = page.evaluate("() => window.log.bob.disconnected[0]")
        self.assertEqual(disconnected["code"], 1001)
        self.assertTrue(disconnected["willReconnect"])
        # The server said when to come back (its `reconnect` message): 1 s plus up to 200 ms of jitter.
        self.assertGreaterEqual(disconnected["retryInMs"], 1000)
        self.assertLessEqual(disconnected["retryInMs"], 1200)

        server.port = port
        server.start()
        page.wait_for_function("() => window.log.bob.connected.length === 2", timeout=30000)
        second = page.evaluate("() => window.log.bob.connected[1]")
        self.assertTrue(second["reconnected"])
        # The restarted server announces recovery, but its in-memory history started over: the client is told to
        # resynchronise (`recovered: false`, the stream's epoch changed).
        page.wait_for_function("() => window.log.bob.recovered.length === 1", timeout=10000)
        self.assertIs(page.evaluate("() => window.log.bob.connected[1].recovered"), False)
        answer = page.evaluate("() => window.log.bob.recovered[0]")
        self.assertIs(answer["recovered"], False)
        self.assertEqual(answer["streams"]["user:bob"]["reason"], "epoch_changed")
        self.assertNotEqual(second["serverId"], first["serverId"])
        # The subscription came back with the connection, by itself (the server answers a connection's messages
        # in order, so the resubscription sent on `connected` is in place when this reply comes).
        self.assertEqual(page.evaluate("() => window.clients.bob.getSubscriptions()"), ["security.*"])
        server.publish({"type": "security.suspicious.activity", "userId": "bob"}, self.admin())
        page.wait_for_function("() => window.log.bob.events.length === 1")
        self.assertEqual(page.evaluate("() => window.clients.bob.state"), "open")

    def test_a_network_blip_recovers_the_missed_events_in_order(self):
        page = self.page_with_client(
            "erin", "erin", options={"minReconnectDelayMs": 1500, "maxReconnectDelayMs": 1500}
        )
        page.evaluate("() => window.clients.erin.subscribe(['security.*'])")
        for n in (1, 2):
            self.server.publish({"type": "security.test.blip", "userId": "erin", "data": {"n": n}}, self.admin())
        page.wait_for_function("() => window.log.erin.events.length === 2")
        self.assertEqual(page.evaluate("() => window.clients.erin.positions.get('user:erin').offset"), 2)
        # The socket drops (not a server restart): the client reconnects after 1.5 s.
        page.evaluate("() => window.clients.erin._socket.close(4000, 'network blip')")
        page.wait_for_function("() => window.log.erin.disconnected.length === 1")
        for n in (3, 4, 5):
            self.server.publish({"type": "security.test.blip", "userId": "erin", "data": {"n": n}}, self.admin())
        page.wait_for_function("() => window.log.erin.recovered.length === 1", timeout=15000)
        answer = page.evaluate("() => window.log.erin.recovered[0]")
        self.assertIs(answer["recovered"], True)
        self.assertEqual(answer["replayed"], 3)
        self.assertIs(page.evaluate("() => window.log.erin.connected[1].recovered"), True)
        self.server.publish({"type": "security.test.blip", "userId": "erin", "data": {"n": 6}}, self.admin())
        page.wait_for_function("() => window.log.erin.events.length >= 6")
        events = page.evaluate("() => window.log.erin.events.map((event) => [event.data.n, event.position.offset])")
        self.assertEqual(events, [[n, n] for n in range(1, 7)], "missed events in order, then live, no repeat")
        self.assertEqual(page.evaluate("() => window.log.erin.errors"), [])

    def test_revoked_session_does_not_reconnect(self):
        page = self.page_with_client("carol", "carol", session="s-carol")
        status, body = self.server.api("POST", "/api/v1/sessions/s-carol/revoke", self.admin(), {"userId": "carol"})
        self.assertEqual(status, 200, body)
        page.wait_for_function("() => window.log.carol.disconnected.length === 1")
        outcome = page.evaluate(
            """() => ({ disconnected: window.log.carol.disconnected[0], state: window.clients.carol.state,
                scheduled: window.clients.carol.reconnectScheduled, states: window.log.carol.states })"""
        )
        self.assertEqual(outcome["disconnected"]["code"], 4009)
        self.assertFalse(outcome["disconnected"]["willReconnect"])
        self.assertIsNone(outcome["disconnected"]["retryInMs"])
        self.assertEqual(outcome["state"], "closed")
        self.assertFalse(outcome["scheduled"])
        self.assertNotIn("reconnecting", outcome["states"])
        # The server agrees: carol has no connection (the listing is cluster-wide).
        status, body = self.server.api("GET", "/api/v1/connections?userId=carol", self.admin())
        self.assertEqual((status, body["connections"]), (200, []))

    def test_token_is_refreshed_in_band_before_it_expires(self):
        # Tokens that live 4 s: the server closes an unrefreshed connection with 4002 at expiry.
        page = self.page_with_client("dave", "dave", ttl=4)
        started = time.monotonic()
        first_expiry = page.evaluate("() => window.log.dave.connected[0].expiresAt")
        page.wait_for_function("() => window.log.dave.refreshed.length >= 2")
        # Well past the first token's expiry (4 s, plus the server's 1 s tick), the connection is the same one.
        remaining = 7 - (time.monotonic() - started)
        if remaining > 0:
            page.wait_for_timeout(remaining * 1000)
        result = page.evaluate(
            """async () => ({ ping: await window.clients.dave.ping(), log: window.log.dave,
                state: window.clients.dave.state })"""
        )
        self.assertEqual(result["state"], "open")
        self.assertEqual(result["log"]["disconnected"], [])
        self.assertEqual(len(result["log"]["connected"]), 1)
        self.assertEqual(result["log"]["errors"], [])
        expiries = [reply["expiresAt"] for reply in result["log"]["refreshed"]]
        self.assertGreater(min(expiries), first_expiry)
        self.assertEqual(expiries, sorted(expiries))

