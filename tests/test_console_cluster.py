"""The console's dashboard on a three-node pool: a node that goes down shows
within seconds, and so does its return.

Three glusterpyd nodes in network namespaces (tests/test_glusterd_cluster.py
builds the network); the browser - Debian's chromium through selenium, as in
tests/test_console_browser.py - runs inside node 1's namespace, where the
pool's addresses exist, signed in with node 1's admin token.  Node 3 goes
down the way a machine does for its peers: its link is cut (nothing of it
answers any more).  The dashboard, polling the API, must say so without a
reload; screenshots before, during and after go to
build/test-artifacts/console-cluster/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from test_console_browser import ARTIFACTS, CHROMEDRIVER, CHROMIUM
from test_glusterd_cluster import PORT, SUBNET, ip, switched_namespaces
from test_glusterd_support import Daemon, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not CHROMIUM or not os.path.exists(CHROMEDRIVER),
                       reason="needs Debian's chromium and chromium-driver"),
]

#: how soon the dashboard must show a change (it polls every 2 s; a peer
#: check gives up after 3 s)
WITHIN = 12.0

BROWSER = """
import json, sys, time
from pathlib import Path
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

url, token, shots, control = sys.argv[1:5]
shots, control = Path(shots), Path(control)
opts = webdriver.ChromeOptions()
opts.binary_location = {chromium!r}
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
          "--window-size=1024,800"):
    opts.add_argument(a)
drv = webdriver.Chrome(options=opts, service=Service({chromedriver!r}))

def nodes():
    try:
        return [(li.get_attribute("data-node"), li.get_attribute("data-state"))
                for li in drv.find_elements(By.CSS_SELECTOR, "#node-list li")]
    except Exception:
        return []

def until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = nodes()
        if pred(got):
            return got
        time.sleep(0.2)
    drv.save_screenshot(str(shots / "failure.png"))
    print(json.dumps({{"error": f"timed out: {{what}}", "nodes": nodes()}}))
    sys.exit(1)

def step(name):
    (control / name).write_text(str(time.time()))

def wait_for_step(name):
    while not (control / name).exists():
        time.sleep(0.1)
    return float((control / name).read_text())

try:
    drv.get(url)
    drv.find_element(By.ID, "token").send_keys(token)
    drv.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(lambda n: len(n) == 3 and all(s == "up" for _, s in n), 30, "three nodes up")
    drv.save_screenshot(str(shots / "01-three-up.png"))
    step("ready")
    cut = wait_for_step("cut")
    got = until(lambda n: sorted(s for _, s in n) == ["down", "up", "up"], {within}, "one down")
    down_after = time.time() - cut
    assert "1 down" in drv.find_element(By.ID, "nodes-down").text
    drv.save_screenshot(str(shots / "02-one-down.png"))
    step("seen-down")
    back = wait_for_step("back")
    until(lambda n: len(n) == 3 and all(s == "up" for _, s in n), {within}, "all up again")
    up_after = time.time() - back
    drv.save_screenshot(str(shots / "03-back-up.png"))
    print(json.dumps({{"down_after": down_after, "up_after": up_after, "nodes": got}}))
finally:
    drv.quit()
"""


def test_a_node_going_down_shows_on_the_dashboard(tmp_path):
    shots = ARTIFACTS.parent / "console-cluster"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    control = tmp_path / "control"
    control.mkdir()
    with switched_namespaces(3) as namespaces:
        nodes = [Daemon(tmp_path / f"node{i}", port=PORT, address=f"{SUBNET}.{i}", netns=ns)
                 for i, ns in enumerate(namespaces, 1)]
        browser = None
        try:
            for d in nodes:
                d.start()
            n1 = nodes[0]
            n1.ok("peer", "probe", f"{SUBNET}.2:{PORT}")
            n1.ok("peer", "probe", f"{SUBNET}.3:{PORT}")
            token = n1.ok("token", "create", "ops", "--role", "admin").out.splitlines()[1]
            script = BROWSER.format(chromium=CHROMIUM, chromedriver=CHROMEDRIVER, within=WITHIN)
            browser = subprocess.Popen(
                ["ip", "netns", "exec", n1.netns, sys.executable, "-c", textwrap.dedent(script),
                 f"http://{SUBNET}.1:{PORT}/ui/", token, str(shots), str(control)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wait_for(lambda: (control / "ready").exists() or browser.poll() is not None,
                     timeout=90, what="the dashboard showing three nodes")
            assert browser.poll() is None, browser.communicate()
            ip("-n", nodes[2].netns, "link", "set", "eth0", "down")
            (control / "cut").write_text(str(time.time()))
            wait_for(lambda: (control / "seen-down").exists() or browser.poll() is not None,
                     timeout=WITHIN + 10, what="the dashboard showing node 3 down")
            ip("-n", nodes[2].netns, "link", "set", "eth0", "up")
            (control / "back").write_text(str(time.time()))
            out, err = browser.communicate(timeout=WITHIN + 30)
            assert browser.returncode == 0, out + err
            result = json.loads(out.strip().splitlines()[-1])
            assert result["down_after"] < WITHIN and result["up_after"] < WITHIN, result
            assert (f"{SUBNET}.3", "down") in [tuple(n) for n in result["nodes"]], result
        finally:
            if browser is not None and browser.poll() is None:
                browser.kill()
                browser.wait(10)
            for d in nodes:
                d.cleanup()
