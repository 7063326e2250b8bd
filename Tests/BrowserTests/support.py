# SPDX-License-Identifier: Apache-2.0
"""What the browser tests share: a realtime-server of their own on a free loopback port, tokens, the HTTP API and a
headless Chromium (Debian's, driven by Playwright for Python; no browser is downloaded).

Environment (set by scripts/test-browser): REALTIME_SERVER_BIN (the built realtime-server), CHROMIUM (default
/usr/bin/chromium), BROWSER_ARTIFACTS (where screenshots and server logs go, under .build/).
"""

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

SECRET = "browser-test-secret-0123456789abcdef0123456789abcdef"
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", ".build/browser-artifacts"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Every wait of these tests is for something to happen; this bounds a wait that never ends (a bug), it is no
# timing requirement. The one timing requirement (an event on screen within 1 s) passes its own bound.
WAIT_MS = 15000


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_last_expiry = {}
_expiry_lock = threading.Lock()


def token(user, session=None, admin=False, ttl=600):
    """An HS256 access token signed with the test server's secret. Tokens of one user minted in a row expire at
    least a second apart, so a refreshed token always expires later than the one it replaces."""
    now = int(time.time())
    with _expiry_lock:
        exp = max(now + ttl, _last_expiry.get(user, 0) + 1)
        _last_expiry[user] = exp
    claims = {"sub": user, "iat": now, "exp": exp, "sid": session or f"s-{user}"}
    if admin:
        claims["roles"] = ["admin"]
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A realtime-server child process, started and stopped by PID."""

    def __init__(self, name, port=0, arguments=("--development",), environment=None):
        self.name = name
        self.port = port
        self.arguments = list(arguments)
        self.environment = environment or {}
        self.process = None
        self.log_path = ARTIFACTS / f"server-{name}.log"
        self._log = None

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        binary = os.environ.get("REALTIME_SERVER_BIN")
        if not binary or not os.access(binary, os.X_OK):
            raise RuntimeError(f"REALTIME_SERVER_BIN is not an executable: {binary!r} (run scripts/test-browser)")
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "WEBSOCKET_", "REDIS_"))}
        environment.update(
            {
                "JWT_SECRET": SECRET,
                # A restart test reconnects within a second or two, and many clients share 127.0.0.1.
                "WEBSOCKET_RECONNECT_JITTER": "200",
                "WEBSOCKET_CONNECTION_RATE_LIMIT_PER_IP": "10000",
                "WEBSOCKET_CONNECTION_RATE_LIMIT_PER_USER": "10000",
            }
        )
        environment.update(self.environment)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [binary, "serve", "--port", str(self.port), "--log-level", "info", *self.arguments],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=environment,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self._log.write(line)
            match = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                # Keep draining stdout into the log so the child never blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError(f"realtime-server did not start; see {self.log_path}")

    def _drain(self):
        for line in self.process.stdout:
            self._log.write(line)
            self._log.flush()

    def stop(self, timeout=20):
        """SIGTERM (a graceful drain, clients get 1001), then SIGKILL if it is still running after `timeout`."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        status = self.process.returncode
        self.process = None
        if self._log:
            self._log.close()
            self._log = None
        return status

    def api(self, method, path, token_value=None, body=None):
        """One HTTP API request: (status, JSON body)."""
        headers = {"Accept": "application/json"}
        if token_value:
            headers["Authorization"] = f"Bearer {token_value}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def publish(self, event, admin_token):
        status, body = self.api("POST", "/api/v1/events", admin_token, event)
        if status != 202:
            raise AssertionError(f"publish answered {status}: {body}")
        return body


class BrowserTestCase(unittest.TestCase):
    """One headless Chromium for the test class; a fresh context per page."""

    playwright = None
    browser = None

    @classmethod
    def setUpClass(cls):
        cls.playwright = sync_playwright().start()
        cls.browser = cls.playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

    @classmethod
    def tearDownClass(cls):
        if cls.browser:
            cls.browser.close()
        if cls.playwright:
            cls.playwright.stop()

    def new_page(self, viewport=None):
        context = self.browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
        self.addCleanup(context.close)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.console_errors = []
        page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
        page.on("pageerror", lambda error: page.console_errors.append(f"page error: {error}"))
        return page

    def client_page(self, server):
        """A page of the server's origin that has imported /client/realtime-client.js as `window.RT` and keeps what
        each client reports in `window.log`. The page is `/health/live`, a real response of the server: Chromium
        lets a page reach loopback WebSockets only when it came from a local address itself."""
        page = self.new_page()
        page.goto(server.base + "/health/live")
        page.evaluate(
            """async () => {
                window.RT = await import('/client/realtime-client.js');
                window.log = {};
                window.clients = {};
                window.track = (name, client) => {
                    const log = window.log[name] = { events: [], notifications: [], connected: [], disconnected: [],
                        errors: [], states: [], refreshed: [], recovered: [] };
                    client.on('event', (event) => log.events.push(event));
                    client.on('notification', (notification) => log.notifications.push(notification));
                    client.on('connected', (info) => log.connected.push(info));
                    client.on('disconnected', (info) => log.disconnected.push(info));
                    client.on('error', (error) => log.errors.push(error));
                    client.on('state', ({ state }) => log.states.push(state));
                    client.on('tokenRefreshed', (reply) => log.refreshed.push(reply));
                    client.on('recovered', (answer) => log.recovered.push(answer));
                    window.clients[name] = client;
                    return client;
                };
            }"""
        )
        return page
