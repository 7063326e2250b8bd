# SPDX-License-Identifier: Apache-2.0
"""The admin console at /admin in a real browser against a real realtime-server (issue 16)."""

import os
import shutil
import time
from pathlib import Path

from playwright.sync_api import expect

from support import ARTIFACTS, BrowserTestCase, Server, token

REPOSITORY = Path(__file__).resolve().parents[2]


class ConsoleTests(BrowserTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = Server("console").start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        super().tearDownClass()

    def admin(self):
        return token("ops", admin=True, session="s-ops")

    def signed_in_console(self, viewport=None):
        page = self.new_page(viewport)
        response = page.goto(self.server.base + "/admin/")
        page.fill("#token-input", self.admin())
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#dashboard")).to_be_visible()
        expect(page.locator("#socket-status")).to_have_attribute("data-state", "open")
        return page, response

    def user_page(self, user, session=None):
        """A second browser context where the client library is connected as `user`."""
        page = self.client_page(self.server)
        page.expose_function("mint", lambda: token(user, session=session))
        page.evaluate(
            """(user) => {
                const client = window.track(user, new window.RT.RealtimeClient({
                    url: '/ws/events', getToken: () => window.mint() }));
                client.connect();
            }""",
            user,
        )
        page.wait_for_function("(user) => window.log[user].connected.length === 1", arg=user)
        return page

    def publish(self, **event):
        self.server.publish(event, self.admin())

    def test_headers_sign_in_and_no_console_error(self):
        page, response = self.signed_in_console()
        headers = response.headers
        csp = headers["content-security-policy"]
        for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                          "frame-ancestors 'none'"]:
            self.assertIn(directive, csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertEqual(headers["x-frame-options"], "DENY")
        self.assertEqual(headers["referrer-policy"], "no-referrer")
        self.assertEqual(headers["x-content-type-options"], "nosniff")
        # No inline script or style element anywhere in the page.
        self.assertEqual(page.evaluate("document.querySelectorAll('script:not([src]), style').length"), 0)
        # The token lives in this tab's session storage only: not in the URL, a cookie or local storage.
        self.assertNotIn("ey", page.url)
        self.assertEqual(page.evaluate("document.cookie"), "")
        self.assertEqual(page.evaluate("localStorage.length"), 0)
        self.assertEqual(page.evaluate("sessionStorage.getItem('realtimehub.adminToken') !== null"), True)
        # Statistics arrive (GET /api/v1/stats with the token in a header) and the charts are drawn.
        expect(page.locator("#stats-summary")).to_contain_text("connections on 1 server")
        expect(page.locator("#chart-legend li")).to_have_count(1)
        # A laptop screen: nothing wider than the window.
        for width, height in [(1280, 800), (1366, 768)]:
            page.set_viewport_size({"width": width, "height": height})
            self.assertLessEqual(
                page.evaluate("document.documentElement.scrollWidth"), width, f"horizontal scroll at {width}px"
            )
        self.assertEqual(page.console_errors, [])

        # A token that is valid but not an administrator's is refused with a message, and not kept.
        other = self.new_page()
        other.goto(self.server.base + "/admin/")
        other.fill("#token-input", token("mallory"))
        other.click("#sign-in-form button[type=submit]")
        expect(other.locator("#sign-in-error")).to_contain_text("not an administrator")
        self.assertIsNone(other.evaluate("sessionStorage.getItem('realtimehub.adminToken')"))
        expect(other.locator("#dashboard")).to_be_hidden()

    def test_event_appears_within_a_second_filters_and_pause(self):
        page, _ = self.signed_in_console()
        self.publish(type="security.suspicious.activity", userId="erin", data={"ip": "192.0.2.9"})
        row = page.locator('#event-list li[data-type="security.suspicious.activity"]')
        expect(row).to_be_visible(timeout=1000)
        expect(row).to_contain_text("user erin")
        expect(row).to_contain_text('"ip":"192.0.2.9"')

        self.publish(type="authentication.login.failure", userId="frank")
        self.publish(type="system.maintenance.scheduled", scope="everyone")
        expect(page.locator('#event-list li[data-type="system.maintenance.scheduled"]')).to_have_count(1)
        rows = page.locator("#event-list li")

        page.fill("#filter-type", "security.*")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-type", "security.suspicious.activity")
        page.fill("#filter-type", "security.")  # not a pattern: said so, and no filter applies
        expect(page.locator("#filter-error")).not_to_be_empty()
        expect(page.locator("#filter-type")).to_have_attribute("aria-invalid", "true")
        page.fill("#filter-type", "")
        page.fill("#filter-user", "frank")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-type", "authentication.login.failure")
        page.fill("#filter-user", "")
        page.select_option("#filter-level", "critical")
        expect(rows).to_have_count(0)
        self.publish(type="security.high_risk.detected", userId="erin")
        expect(rows).to_have_count(1)
        page.select_option("#filter-level", "")

        # Every publish through the API is also an audit event (admin.action.publish_event) for administrators:
        # wait for the four so far, so that none of them arrives during the pause.
        audits = page.locator('#event-list li[data-type="admin.action.publish_event"]')
        expect(audits).to_have_count(4)

        # Paused: new events are kept and counted, not shown, until resumed. One publish: its event and its audit.
        page.click("#pause")
        shown = rows.count()
        self.publish(type="session.created", userId="erin")
        expect(page.locator("#event-counts")).to_contain_text("paused (2 new)")
        self.assertEqual(rows.count(), shown)
        page.click("#pause")
        expect(page.locator('#event-list li[data-type="session.created"]')).to_have_count(1)
        expect(audits).to_have_count(5)
        self.assertEqual(page.console_errors, [])

    def test_revoke_session_button_closes_the_client_with_4009(self):
        victim = self.user_page("victim", session="s-victim")
        page, _ = self.signed_in_console()
        page.fill("#connection-user", "victim")
        page.click("#connection-filter button[type=submit]")
        group = page.locator('article[data-user="victim"]')
        expect(group).to_contain_text("1 connection, 1 session")
        button = group.get_by_role("button", name="Revoke session")
        button.click()
        # The first click only arms the button: nothing is revoked yet.
        confirm = group.get_by_role("button", name="Confirm revoke")
        expect(confirm).to_be_visible()
        self.assertEqual(victim.evaluate("window.log.victim.disconnected.length"), 0)
        # A refresh of the list while the button is armed (as a live connection event triggers) rebuilds the rows:
        # the new button is still armed, so the second click confirms.
        armed = confirm.element_handle()
        page.click("#connection-filter button[type=submit]")
        page.wait_for_function("(button) => !button.isConnected", arg=armed)
        expect(confirm).to_be_visible()
        self.assertEqual(victim.evaluate("window.log.victim.disconnected.length"), 0)
        confirm.click()
        expect(page.locator("#toasts")).to_contain_text("Revoked session s-victim of victim")
        victim.wait_for_function("() => window.log.victim.disconnected.length === 1")
        closed = victim.evaluate("() => [window.log.victim.disconnected[0], window.clients.victim.state]")
        self.assertEqual(closed[0]["code"], 4009)
        self.assertFalse(closed[0]["willReconnect"])
        self.assertEqual(closed[1], "closed")
        # The list follows: the victim has no connection left.
        expect(page.locator("#connection-groups")).to_contain_text("victim has no live connection")
        self.assertEqual(page.console_errors, [])

    def test_revoke_all_tokens_button_closes_the_user_with_4009(self):
        victim = self.user_page("mallory", session="s-mallory")
        page, _ = self.signed_in_console()
        page.fill("#connection-user", "mallory")
        page.click("#connection-filter button[type=submit]")
        group = page.locator('article[data-user="mallory"]')
        expect(group).to_contain_text("1 connection")
        group.get_by_role("button", name="Revoke all tokens").click()
        # The first click only arms the button.
        confirm = group.get_by_role("button", name="Confirm revoke all")
        expect(confirm).to_be_visible()
        self.assertEqual(victim.evaluate("window.log.mallory.disconnected.length"), 0)
        confirm.click()
        expect(page.locator("#toasts")).to_contain_text("Revoked every token of mallory")
        victim.wait_for_function("() => window.log.mallory.disconnected.length === 1")
        closed = victim.evaluate("() => window.log.mallory.disconnected[0]")
        self.assertEqual(closed["code"], 4009)
        self.assertFalse(closed["willReconnect"])
        expect(page.locator("#connection-groups")).to_contain_text("mallory has no live connection")
        self.assertEqual(page.console_errors, [])

    def test_notification_reaches_the_user_in_another_context(self):
        grace = self.user_page("grace")
        page, _ = self.signed_in_console()
        title = "<img src=x onerror=window.__xss=1> New sign-in"
        page.select_option("#notify-target", "user")
        page.fill("#notify-user", "grace")
        page.select_option("#notify-level", "warning")
        page.fill("#notify-title-input", title)
        page.fill("#notify-message", "From Lyon, just now")
        page.click("#notify-form button[type=submit]")
        expect(page.locator("#toasts")).to_contain_text("sent to user grace")
        grace.wait_for_function("() => window.log.grace.notifications.length === 1")
        notification = grace.evaluate("() => window.log.grace.notifications[0]")
        self.assertEqual(notification["title"], title)
        self.assertEqual(notification["message"], "From Lyon, just now")
        self.assertEqual(notification["level"], "warning")
        # A broadcast reaches her too; an admin notification does not.
        page.select_option("#notify-target", "admin")
        self.assertTrue(page.is_disabled("#notify-user"))
        page.fill("#notify-title-input", "admins only")
        page.click("#notify-form button[type=submit]")
        expect(page.locator("#toasts")).to_contain_text("sent to administrators")
        page.select_option("#notify-target", "broadcast")
        page.fill("#notify-title-input", "everyone")
        page.click("#notify-form button[type=submit]")
        grace.wait_for_function("() => window.log.grace.notifications.length === 2")
        self.assertEqual(grace.evaluate("() => window.log.grace.notifications.map((n) => n.title)"), [title, "everyone"])
        self.assertEqual(page.console_errors, [])

    def test_markup_in_events_is_shown_as_text(self):
        page, _ = self.signed_in_console()
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        image = "<img src=x onerror=\"alert(1);window.__xss=1\">"
        script = "<script>window.__xss=2</script>"
        self.publish(type="security.suspicious.activity", userId="<b>mallory</b>", data={"note": image, "more": script})
        self.server.api("POST", "/api/v1/notifications/admin", self.admin(),
                        {"title": "<img src=y onerror=alert(2)>", "message": script, "level": "critical"})
        row = page.locator('#event-list li[data-type="security.suspicious.activity"]')
        expect(row).to_contain_text(image.replace('"', '\\"'))
        expect(row).to_contain_text(script)
        expect(row).to_contain_text("user <b>mallory</b>")
        notification = page.locator('#event-list li[data-type="notification.critical"]')
        expect(notification).to_contain_text("<img src=y onerror=alert(2)>")
        page.wait_for_timeout(300)  # time for an injected image's error handler to have fired, were there one
        self.assertEqual(page.evaluate("document.querySelectorAll('#event-list img, #event-list script, #event-list b').length"), 0)
        self.assertIsNone(page.evaluate("window.__xss ?? null"))
        self.assertEqual(dialogs, [])
        self.assertEqual(page.console_errors, [])

    def test_screenshot_with_live_data(self):
        users = [self.user_page(name, session=f"s-{name}") for name in ("alice", "bob")]
        page, _ = self.signed_in_console(viewport={"width": 1366, "height": 900})
        events = [
            dict(type="authentication.login.success", userId="alice", data={"ip": "198.51.100.4", "method": "password"}),
            dict(type="authentication.login.failure", userId="bob", data={"ip": "203.0.113.50", "attempt": 3}),
            dict(type="authentication.mfa.challenge", userId="alice", data={"method": "totp"}),
            dict(type="security.suspicious.activity", userId="bob", data={"ip": "203.0.113.50", "risk": 0.92}),
            dict(type="security.high_risk.detected", userId="bob", data={"reason": "impossible travel"}),
            dict(type="system.maintenance.scheduled", scope="everyone", data={"at": "02:00Z"}),
        ]
        # Spread over a few seconds, so the rate charts show a trend rather than one spike.
        for event in events:
            self.publish(**event)
            time.sleep(0.6)
        self.server.api("POST", "/api/v1/notifications/broadcast", self.admin(),
                        {"title": "Maintenance tonight", "message": "Sign-in paused 02:00-02:10 UTC", "level": "warning"})
        expect(page.locator('#event-list li[data-type="system.maintenance.scheduled"]')).to_have_count(1)
        expect(page.locator("#connection-groups article")).to_have_count(3)
        # Two statistics polls, so the rate charts have a segment.
        page.wait_for_function("() => document.querySelector('#stats-summary').textContent.includes('3 connections')")
        page.wait_for_timeout(4500)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / "admin-console.png"
        page.screenshot(path=str(path))
        self.assertGreater(path.stat().st_size, 10000)
        if os.environ.get("UPDATE_DOCUMENTATION_SCREENSHOT") == "1":
            shutil.copyfile(path, REPOSITORY / "Documentation" / "admin-console.png")
        self.assertEqual(page.console_errors, [])
        self.assertEqual(len(users), 2)
