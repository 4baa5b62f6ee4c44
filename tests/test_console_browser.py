"""The web console (/ui/) in a real browser: Debian's chromium, headless,
driven through its chromedriver by selenium, against a real glusterpyd with
real bricks.

An administrator signs in with an admin token, creates a replica 3 volume
from the form, starts it, sets an option (a bad value first: the error shows
at the form), finds it with the search box by keyboard, watches a rebalance
of a second volume to its end on the Tasks page, and reads the audit
entries; a read-only token's console shows none of the buttons that change
state, and the API refuses the same call when the page makes it anyway.
Every step is checked against the daemon through the CLI as well, not only
against what the page says.

Screenshots of every page go to build/test-artifacts/console/ (or
$GLUSTERPY_TEST_ARTIFACTS/console/), to be looked at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from glusterpy.gfapi import Volume
from test_glusterd_support import running_daemon
from test_heal_task import leave_pending
from test_status_clients import my_tcp_ports

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException, StaleElementReferenceException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)"),
    pytest.mark.skipif(not CHROMIUM or not os.path.exists(CHROMEDRIVER),
                       reason="needs Debian's chromium and chromium-driver (make installs them)"),
]

ARTIFACTS = Path(os.environ.get("GLUSTERPY_TEST_ARTIFACTS",
                                Path(__file__).resolve().parent.parent / "build" /
                                "test-artifacts")) / "console"


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1280,900", "--lang=en-US",
                # the node's own self-signed certificate, for the https:// check
                "--ignore-certificate-errors"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    drv.implicitly_wait(0)
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture
def node(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        d.admin = d.ok("token", "create", "alice", "--role", "admin").out.splitlines()[1]
        d.reader = d.ok("token", "create", "bob", "--role", "read-only").out.splitlines()[1]
        yield d


class Page:
    """The console as a person uses it: find by label, id or text, type, click."""

    def __init__(self, drv, node, shots: Path):
        self.drv, self.node, self.shots = drv, node, shots
        self.base = f"http://{node.remote}/ui/"

    def wait(self, predicate, timeout=30, what="the page"):
        try:
            # the page re-renders under us: an element found a moment ago may be gone
            return WebDriverWait(self.drv, timeout, poll_frequency=0.2, ignored_exceptions=(
                StaleElementReferenceException, NoSuchElementException)).until(
                lambda _: predicate())
        except Exception:
            self.shot("failure")
            raise AssertionError(f"timed out waiting for {what}; page text:\n"
                                 f"{self.text()[:3000]}") from None

    def text(self) -> str:
        return self.drv.find_element(By.TAG_NAME, "body").text

    def has_text(self, words: str, timeout=30):
        self.wait(lambda: words in self.text(), timeout, repr(words))

    def by_id(self, ident: str):
        return self.wait(lambda: self.drv.find_elements(By.ID, ident) and
                         self.drv.find_element(By.ID, ident), what=f"#{ident}")

    def labelled(self, label: str):
        """The form control whose <label> says `label` (so labels must exist)."""
        lab = self.wait(lambda: [e for e in self.drv.find_elements(By.TAG_NAME, "label")
                                 if e.text.strip().startswith(label)], what=f"label {label}")[0]
        if lab.get_attribute("for"):
            return self.drv.find_element(By.ID, lab.get_attribute("for"))
        return lab.find_element(By.CSS_SELECTOR, "input, select, textarea")  # wrapped

    def buttons(self, scope=None) -> list[str]:
        # hidden ones too (a closed <details>): a read-only page must have none
        return [b.get_attribute("textContent").strip()
                for b in (scope or self.drv).find_elements(By.TAG_NAME, "button")]

    def button(self, text: str, scope=None):
        return self.wait(lambda: [b for b in (scope or self.drv).find_elements(
            By.TAG_NAME, "button") if b.text == text and b.is_enabled()],
            what=f"button {text!r}")[0]

    def go(self, fragment: str, heading: str):
        self.drv.get(self.base + fragment)
        self.wait(lambda: any(h.text.startswith(heading)
                              for h in self.drv.find_elements(By.TAG_NAME, "h1")),
                  what=f"heading {heading!r}")

    def sign_in(self, token: str):
        self.drv.get(self.base)
        self.labelled("API token").send_keys(token)
        self.button("Sign in").click()
        self.has_text("Dashboard")

    def sign_out(self):
        self.button("Sign out").click()
        self.labelled("API token")

    def row(self, table_id: str, attr: str, value: str):
        sel = f"#{table_id} tr[{attr}='{value}']"
        return self.wait(lambda: self.drv.find_elements(By.CSS_SELECTOR, sel) and
                         self.drv.find_element(By.CSS_SELECTOR, sel), what=sel)

    def shot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        self.drv.save_screenshot(str(path))
        return path

    def script_errors(self) -> list[str]:
        return [e["message"] for e in self.drv.get_log("browser")
                if e["level"] == "SEVERE" and "status of 4" not in e["message"]]


def test_admin_and_read_only_in_the_console(browser, node, tmp_path):
    shots = ARTIFACTS
    shutil.rmtree(shots, ignore_errors=True)
    p = Page(browser, node, shots)
    browser.set_window_size(1280, 900)

    # a wrong token is refused at the door
    browser.get(p.base)
    p.labelled("API token").send_keys("alice.wrong.token")
    p.button("Sign in").click()
    p.has_text("not valid")
    p.shot("01-sign-in-refused")

    p.sign_in(node.admin)
    assert p.by_id("role").text == "alice: admin"
    p.has_text("1 up")
    p.shot("02-dashboard")

    # create a replica 3 volume with the form
    p.go("#/volumes", "Volumes")
    p.button("Create a volume").click()
    p.labelled("Name").send_keys("web3")
    Select(p.labelled("Layout")).select_by_value("replicate")
    count = p.labelled("Replica count")
    count.send_keys(Keys.CONTROL, "a", Keys.DELETE)
    count.send_keys("3")
    p.labelled("Bricks").send_keys("\n".join(f"127.0.0.1:{tmp_path / f'w{i}'}"
                                             for i in range(1, 4)))
    p.labelled("force").click()
    p.shot("03-create-form")
    p.by_id("c-submit").click()
    row = p.row("volume-table", "data-volume", "web3")
    p.wait(lambda: "Created" in p.row("volume-table", "data-volume", "web3").text,
           what="web3 created")
    info = node.ok("volume", "info", "web3", "--json").json()["volumes"][0]
    assert info["replica"] == 3 and info["type"] == "Replicate" and len(info["bricks"]) == 3

    # start it from its row
    p.button("Start", row).click()
    # the volume reads Started as soon as it is committed; the call returns
    # once its bricks are up, and says so
    p.wait(lambda: "Start: done" in p.by_id("notice").text, what="the start's answer")
    p.wait(lambda: "Started" in p.row("volume-table", "data-volume", "web3").text,
           what="web3 started")
    assert node.ok("volume", "info", "web3", "--json").json()["volumes"][0]["status"] == \
        "Started"
    p.shot("04-volumes")

    # its page: three bricks online; an option, a bad value first
    p.go("#/volumes/web3", "Volume web3")
    p.wait(lambda: p.by_id("brick-table").text.count("yes") == 3, what="3 bricks online")
    p.labelled("Key").send_keys("performance.cache-size")
    p.has_text("32MB")           # the option's help text and default, as one types
    p.labelled("Value").send_keys("lots")
    p.button("Set").click()
    alert = p.wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#o-error [role=alert]"),
                   what="the inline error")[0]
    assert "lots" in alert.text, alert.text
    assert p.labelled("Value").get_attribute("aria-invalid") == "true"
    p.shot("05-option-refused")
    value = p.labelled("Value")
    value.send_keys(Keys.CONTROL, "a", Keys.DELETE)
    value.send_keys("64MB")
    p.button("Set").click()
    p.wait(lambda: "64MB" in p.row("option-table", "data-key", "performance.cache-size").text,
           what="the option in the table")
    got = node.ok("volume", "get", "web3", "performance.cache-size", "--json").json()
    assert "64MB" in str(got), got
    p.shot("06-volume-page")
    # self-heal: every brick of the replica set answers, nothing pending
    p.wait(lambda: p.by_id("heal-table").text.count("Connected") == 3, what="heal info")
    assert "used of" not in p.by_id("brick-table").text
    assert " of " in p.row("brick-table", "data-brick", f"127.0.0.1:{tmp_path / 'w1'}").text
    # clients: this test mounts the volume; its connection shows on each brick
    with Volume("127.0.0.1", "web3", port=node.port) as vol:
        with vol.fopen("/hello", "wb") as f:
            f.write(b"hello" * 1000)
        mine = {f"127.0.0.1:{port}" for port in my_tcp_ports()}
        rows = p.wait(lambda: [r for r in browser.find_elements(
            By.CSS_SELECTOR, "#client-table tr[data-client]")
            if r.get_attribute("data-client") in mine] or None, what="our client's rows")
        p.wait(lambda: len([r for r in browser.find_elements(
            By.CSS_SELECTOR, "#client-table tr[data-client]")
            if r.get_attribute("data-client") in mine]) == 3, what="a row on each brick")
        rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#client-table tr")
                if r.get_attribute("data-client") in mine]
        assert all("127.0.0.1:" in r and "B" in r for r in rows), rows
        assert sorted(r.split()[0] for r in rows) == sorted(
            f"127.0.0.1:{tmp_path / f'w{i}'}" for i in range(1, 4)), rows
        browser.execute_script("arguments[0].scrollIntoView()", p.by_id("client-table"))
        p.shot("06a-clients")

    # the dashboard: capacity of the started volume, no heal pending
    p.go("#/dashboard", "Dashboard")
    p.wait(lambda: "web3" in p.by_id("capacity").text, what="capacity")
    p.wait(lambda: p.by_id("heal-pending").text == "0 pending", what="heal count")
    p.shot("06b-dashboard-volume")

    # profile: start it from the console, then per-brick fop counters
    p.go("#/profile/web3", "Profile of web3")
    p.button("Start profiling").click()
    # (a brick that saw writes has a second table, its block sizes)
    p.wait(lambda: len([s for s in browser.find_elements(
        By.CSS_SELECTOR, "section[aria-label^='brick']") if s.find_elements(By.TAG_NAME, "table")])
        == 3, timeout=40, what="three bricks' profiles")
    assert node.ok("volume", "info", "web3", "--json").json()["volumes"][0].get("profile")
    p.button("Stop profiling")
    assert browser.execute_script(  # the heading stays on top as the sections arrive
        "return document.querySelector('main h1').getBoundingClientRect().top < "
        "document.querySelector('main section').getBoundingClientRect().top")
    p.shot("06c-profile")

    # the search box, by keyboard only: completion of field, operator and value
    p.go("#/volumes", "Volumes")
    box = p.labelled("Search volumes")

    def offered(*options):
        # as a person would: look at the list before picking from it
        p.wait(lambda: [o.text for o in browser.find_elements(
            By.CSS_SELECTOR, "#search-options [role=option]")] == list(options),
            what=f"completions {options}")

    box.send_keys(Keys.END, "sta")
    offered("status")
    box.send_keys(Keys.ARROW_DOWN, Keys.ENTER)
    p.wait(lambda: box.get_attribute("value") == "Volumes: status ", what="field completed")
    offered("=", "!=")
    box.send_keys(Keys.ARROW_DOWN, Keys.ENTER)          # "="
    p.wait(lambda: box.get_attribute("value") == "Volumes: status = ", what="operator")
    box.send_keys("star")
    offered("started")
    box.send_keys(Keys.ARROW_DOWN, Keys.ENTER)
    p.wait(lambda: box.get_attribute("value") == "Volumes: status = started ", what="value")
    box.send_keys(Keys.ENTER)
    p.has_text("1 volume Volumes: status = started")
    p.shot("07-search")
    box.send_keys(Keys.CONTROL, "a", Keys.DELETE)    # (clear() fires no input event)
    box.send_keys("Volumes: name = ", Keys.ESCAPE, Keys.ENTER)
    p.has_text("position 16")    # the API's 400, naming the position, shown as typed

    # a heal on Tasks: entries left pending (the self-heal daemon off, a brick
    # killed under writes) show per brick, with no time left to guess yet;
    # turned on and asked from the CLI, it ends completed
    leave_pending(node, "web3")
    p.go("#/tasks", "Tasks")
    sel = ".task[data-kind='heal'][data-volume='web3']"
    p.wait(lambda: "waiting" in browser.find_element(By.CSS_SELECTOR, f"{sel} .task-status").text,
           what="the heal task, waiting")
    heal = browser.find_element(By.CSS_SELECTOR, sel)
    pending = [c.text for c in heal.find_elements(By.CSS_SELECTOR, "td.pending")]
    assert len(pending) == 3 and int(pending[0]) > 0, pending
    assert "time left not known yet" in heal.text and "disabled" in heal.text, heal.text
    p.shot("07b-heal-pending")
    node.ok("volume", "heal", "web3", "enable")
    node.ok("volume", "heal", "web3")
    p.wait(lambda: "completed" in browser.find_element(By.CSS_SELECTOR, f"{sel} .task-status").text,
           timeout=60, what="the heal completed")
    heal = browser.find_element(By.CSS_SELECTOR, sel)
    assert [c.text for c in heal.find_elements(By.CSS_SELECTOR, "td.pending")] == ["0"] * 3
    assert "nothing left to heal" in heal.text, heal.text
    p.shot("07c-heal-completed")

    # a rebalance, watched to its end: a distribute volume made through the CLI
    # shows up here too
    node.ok("volume", "create", "dist", f"127.0.0.1:{tmp_path / 'd1'}")
    node.ok("volume", "start", "dist")
    p.go("#/volumes/dist", "Volume dist")
    # grow it from the console first
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    p.labelled("Bricks to add").send_keys(f"127.0.0.1:{tmp_path / 'd2'}")
    p.button("Add bricks").click()
    p.wait(lambda: p.by_id("brick-table").text.count("127.0.0.1:") == 2, what="the new brick")
    assert len(node.ok("volume", "info", "dist", "--json").json()["volumes"][0]["bricks"]) == 2
    p.button("Rebalance").click()
    p.wait(lambda: "Tasks" in [h.text for h in browser.find_elements(By.TAG_NAME, "h1")],
           what="the Tasks page")
    task = p.wait(lambda: browser.find_elements(By.CSS_SELECTOR,
                                                ".task[data-volume='dist']"),
                  what="the rebalance task")[0]
    p.wait(lambda: "completed" in browser.find_element(
        By.CSS_SELECTOR, ".task[data-volume='dist'] .task-status").text, timeout=60,
        what="the rebalance completed")
    assert browser.find_elements(By.CSS_SELECTOR, ".task [role=progressbar]")
    assert task is not None
    p.shot("08-tasks")

    # shrink it again: remove-brick start from the volume's page, watched on
    # Tasks to its end, then committed there
    p.go("#/volumes/dist", "Volume dist")
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    p.labelled(f"127.0.0.1:{tmp_path / 'd2'}").click()
    p.button("Start removing").click()
    p.wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".task[data-kind='remove-brick']"),
           what="the remove-brick task")
    p.wait(lambda: "completed" in browser.find_element(
        By.CSS_SELECTOR, ".task[data-kind='remove-brick'] .task-status").text, timeout=60,
        what="the migration completed")
    p.shot("08b-remove-brick")
    p.button("Commit the removal").click()
    p.wait(lambda: len(node.ok("volume", "info", "dist", "--json").json()["volumes"][0]
                       ["bricks"]) == 1, what="the brick removed")

    # the audit log: who set what
    p.go("#/audit", "Audit log")
    p.labelled("Who").send_keys("alice")    # (root set cluster.self-heal-daemon too)
    p.labelled("Operation").send_keys("set")
    p.labelled("Volume").send_keys("web3")
    Select(p.labelled("Result")).select_by_value("success")
    p.wait(lambda: "performance.cache-size=64MB" in p.text(), what="the set in the audit")
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, ".audit-table tbody tr")]
    assert len(rows) == 1 and "token alice" in rows[0] and "success" in rows[0], rows
    p.shot("09-audit")
    assert p.script_errors() == []

    # read-only: no button that changes state, and the API says no anyway
    p.sign_out()
    p.sign_in(node.reader)
    assert p.by_id("role").text == "bob: read-only"
    p.go("#/volumes", "Volumes")
    p.row("volume-table", "data-volume", "web3")
    assert p.buttons() == ["Sign out", "Search"], p.buttons()
    p.shot("10-read-only-volumes")
    p.go("#/volumes/web3", "Volume web3")
    p.wait(lambda: p.by_id("brick-table").text.count("yes") == 3, what="bricks")
    assert p.buttons() == ["Sign out"], p.buttons()
    assert not browser.find_elements(By.ID, "option-form")
    p.shot("11-read-only-volume")
    p.go("#/profile/web3", "Profile of web3")
    assert p.buttons() == ["Sign out"], p.buttons()
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/v1/volumes/web3/stop', {method: 'POST', body: '{}', headers: {
            'Content-Type': 'application/json',
            Authorization: 'Bearer ' + sessionStorage.getItem('glusterpy-console-token')}})
          .then(r => done(r.status), e => done(String(e)));""")
    assert status == 403
    assert node.ok("volume", "info", "web3", "--json").json()["volumes"][0]["status"] == \
        "Started"
    _, log = node.api("GET", "/api/v1/log")
    assert [e["op"] for e in log["entries"] if (e.get("who") or {}).get("token") == "bob"
            and e["result"].startswith("refused")] == ["POST /api/v1/volumes/web3/stop"]

    # a phone-sized screen: everything reachable without sideways scrolling
    browser.set_window_size(390, 844)
    p.go("#/dashboard", "Dashboard")
    p.has_text("1 up")
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1")
    p.shot("12-narrow-dashboard")
    p.go("#/volumes", "Volumes")
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1")
    p.shot("13-narrow-volumes")
    assert p.script_errors() == []

    # the same port speaks TLS: the console works over https:// as well
    p.sign_out()
    p.base = f"https://{node.remote}/ui/"
    p.sign_in(node.reader)
    p.has_text("1 up")
    assert browser.current_url.startswith("https://")
    p.shot("14-https")


def test_console_files_and_headers(node):
    """The console's files are public, typed, and locked down by CSP; no path
    outside its directory is served; everything else still wants a token."""
    status, doc = node.api_tcp("GET", "/ui/", tls=False)
    assert status == 200 and doc["content_type"].startswith("text/html")
    assert '<script type="module" src="/ui/app.js">' in doc["text"]
    status, doc = node.api_tcp("GET", "/ui/app.js", tls=True)
    assert status == 200 and doc["content_type"].startswith("text/javascript")
    for path in ("/ui/../trust/node.key", "/ui/%2e%2e/glusterd.info", "/ui/console.py",
                 "/ui/vendor/../../api.py", "/ui/.hidden", "/ui/vendor/VENDOR.md",
                 "/ui/" + "a" * 300, "/ui/vendor/" + "b" * 300):
        status, _ = node.api_tcp("GET", path, tls=False)
        assert status == 404, path
    status, _ = node.api_tcp("POST", "/ui/", b"{}", tls=False)
    assert status == 405
    status, _ = node.api_tcp("GET", "/api/v1/whoami", tls=False)
    assert status == 401
    status, who = node.api_tcp("GET", "/api/v1/whoami",
                               headers={"Authorization": f"Bearer {node.reader}"})
    assert status == 200 and who["role"] == "read-only" and who["name"] == "bob"

    import http.client
    conn = http.client.HTTPConnection(node.address, node.port, timeout=10)
    conn.request("GET", "/ui/app.js")
    resp = conn.getresponse()
    resp.read()
    csp = resp.getheader("content-security-policy")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.getheader("x-content-type-options") == "nosniff"
    conn.request("GET", "/ui")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 301 and resp.getheader("location") == "/ui/"
    conn.close()
