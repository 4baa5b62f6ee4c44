"""The glusterpy CLI against a real glusterpyd process on one node.

Each test starts glusterpyd on a private working directory and a free port
(never 24007), drives it with `glusterpy volume|peer|pool` as an
administrator would, and checks what the CLI prints, what the daemon keeps
on disk, and what the brick processes and clients see.  Bad input must be
refused with a clear message and a non-zero exit code, and leave every
state file byte-for-byte as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from glusterpy.gfapi import Volume
from test_glusterd_support import running_daemon, snapshot, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")


@pytest.fixture
def daemon(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        yield d


def bricks(tmp_path: Path, *names: str) -> list[str]:
    return [f"127.0.0.1:{tmp_path / n}" for n in names]


def status_rows(d, vol: str) -> list[dict]:
    return d.ok("volume", "status", vol, "--json").json()["volumes"][0]["bricks"]


def test_volume_lifecycle(daemon, tmp_path):
    d = daemon
    assert d.ok("volume", "list").out.strip() == "No volumes present in cluster"
    r = d.ok("volume", "create", "demo", *bricks(tmp_path, "b1", "b2"))
    assert r.out.strip() == "volume create: demo: success: please start the volume to access data"
    info = d.ok("volume", "info", "demo").out
    for line in ("Volume Name: demo", "Type: Distribute", "Status: Created",
                 "Number of Bricks: 2", "Transport-type: tcp",
                 f"Brick1: 127.0.0.1:{tmp_path / 'b1'}", f"Brick2: 127.0.0.1:{tmp_path / 'b2'}"):
        assert line in info.splitlines(), (line, info)
    # the brick directories exist and carry the volume-id, as glusterd leaves them
    vid = d.ok("volume", "info", "demo", "--json").json()["volumes"][0]["id"]
    import uuid
    assert os.getxattr(tmp_path / "b1", "trusted.glusterfs.volume-id") == uuid.UUID(vid).bytes
    assert d.ok("volume", "start", "demo").out.strip() == "volume start: demo: success"
    rows = status_rows(d, "demo")
    assert [r["online"] for r in rows] == [True, True] and all(r["pid"] for r in rows)
    text = d.ok("volume", "status", "demo").out
    assert "Status of volume: demo" in text and "There are no active volume tasks" in text
    assert f"Brick 127.0.0.1:{tmp_path / 'b1'}" in text and " Y " in text

    # a client through GETSPEC on the daemon's port (the same port as the API)
    with Volume("127.0.0.1", "demo", port=d.port) as vol:
        for i in range(8):
            with vol.fopen(f"/f{i}", "w") as f:
                f.write(b"data %d" % i)
        assert sorted(vol.listdir("/")) == [f"f{i}" for i in range(8)]
    on_bricks = sorted(os.listdir(tmp_path / "b1") + os.listdir(tmp_path / "b2"))
    assert [n for n in on_bricks if n.startswith("f")] == [f"f{i}" for i in range(8)]
    # the named volfile without performance translators
    with Volume("127.0.0.1", "demo.noperf", port=d.port) as vol:
        assert vol.open("/f3").read() == b"data 3"
    noperf = (d.workdir / "vols" / "demo" / "demo.noperf.vol").read_text()
    assert "performance/io-cache" not in noperf
    assert "performance/io-cache" in (d.workdir / "vols/demo/demo.tcp-fuse.vol").read_text()

    # options: set, get, reset, help
    assert d.ok("volume", "set", "demo", "performance.cache-size", "64MB").out.strip() == \
        "volume set: success"
    got = d.ok("volume", "get", "demo", "performance.cache-size").out.splitlines()
    assert got[0].split() == ["Option", "Value"] and got[2].split() == [
        "performance.cache-size", "64MB"]
    assert "performance.cache-size: 64MB" in d.ok("volume", "info", "demo").out
    assert "option cache-size 64MB" in (d.workdir / "vols/demo/demo.tcp-fuse.vol").read_text()
    d.ok("volume", "reset", "demo", "performance.cache-size")
    assert "64MB" not in (d.workdir / "vols/demo/demo.tcp-fuse.vol").read_text()
    helptext = d.ok("volume", "set", "help").out
    assert "Option: performance.cache-size" in helptext and "Option: auth.allow" in helptext
    assert "Option: network.ping-timeout" in helptext
    all_opts = d.ok("volume", "get", "demo", "all", "--json").json()["options"]
    assert {"key": "performance.io-cache", "value": "on", "set": False} in all_opts

    # stop asks for confirmation and reads no answer from a non-terminal
    r = d.cli("volume", "stop", "demo")
    assert r.rc != 0 and "--mode=script" in r.err
    assert d.ok("volume", "info", "demo", "--json").json()["volumes"][0]["status"] == "Started"
    assert d.ok("--mode=script", "volume", "stop", "demo").out.strip() == \
        "volume stop: demo: success"
    assert not any(r["online"] for r in d.ok("volume", "info", "demo", "--json").json()
                   ["volumes"][0]["bricks"] if "online" in r)
    assert d.ok("volume", "delete", "demo", "--yes").out.strip() == \
        "volume delete: demo: success"
    assert d.ok("volume", "list").out.strip() == "No volumes present in cluster"
    assert not (d.workdir / "vols" / "demo").exists()

    # every change is in the audit log, with who asked
    entries = d.ok("volume", "log", "demo", "--json").json()["entries"]
    ops = [(e["op"], e["result"]) for e in entries]
    assert ("create", "success") in ops and ("delete", "success") in ops
    assert all(e["who"]["uid"] == os.getuid() for e in entries)
    assert "root(uid 0) on the node" in d.ok("volume", "log", "demo").out


def test_bad_input_is_refused_and_changes_nothing(daemon, tmp_path):
    d = daemon
    d.ok("volume", "create", "good", *bricks(tmp_path, "g1", "g2"))
    d.ok("volume", "start", "good")
    before = snapshot(d.workdir)
    cases = [
        (["volume", "create", "bad/name", *bricks(tmp_path, "x1")], "failed"),
        (["volume", "create", "all", *bricks(tmp_path, "x1")], "cannot be the name of a volume"),
        (["volume", "create", "sp ace", *bricks(tmp_path, "x1")], "should not contain"),
        (["volume", "create", "-dash", *bricks(tmp_path, "x1")], "should not start"),
        (["volume", "create", "nested", f"127.0.0.1:{tmp_path / 'g1' / 'inner'}"],
         "containing or be contained"),
        (["volume", "create", "outer", f"127.0.0.1:{tmp_path}"], "containing or be contained"),
        (["volume", "create", "inwd", f"127.0.0.1:{d.workdir / 'brick'}"],
         "inside glusterd's working directory"),
        (["volume", "create", "twice", *bricks(tmp_path, "t1", "t1")], "duplicate"),
        (["volume", "create", "reused", *bricks(tmp_path, "g1")], "already part of a volume"),
        (["volume", "create", "rep", "replica", "3", *bricks(tmp_path, "r1", "r2")],
         "not a multiple of replica count"),
        (["volume", "create", "rep1", "replica", "1", *bricks(tmp_path, "r1")],
         "replica count should be greater than 1"),
        (["volume", "create", "str", "stripe", "2", *bricks(tmp_path, "s1", "s2", "s3")],
         "not a multiple of stripe count"),
        (["volume", "create", "arb", "replica", "4", "arbiter", "1",
          *bricks(tmp_path, "a1", "a2", "a3", "a4")], "arbiter"),
        (["volume", "create", "unknownhost", "no-such-host.invalid:/srv/b1"],
         "is not in 'Peer in Cluster' state"),
        (["volume", "create", "farhost", "192.0.2.1:/srv/b1"],
         "is not in 'Peer in Cluster' state"),
        (["volume", "create", "relpath", "127.0.0.1:relative/b1"], "wrong brick type"),
        (["volume", "create", "good", *bricks(tmp_path, "x9")], "already exists"),
        (["volume", "set", "good", "no.such-key", "1"], "does not exist"),
        (["volume", "set", "good", "performance.cache-siz", "64MB"],
         "Did you mean performance.cache-size"),
        (["volume", "set", "good", "network.ping-timeout", "5000"], "above the maximum"),
        (["volume", "set", "good", "performance.cache-size", "lots"], "not a size"),
        (["volume", "set", "good", "performance.io-cache", "maybe"], "not a boolean"),
        (["volume", "set", "good", "cluster.stripe-block-size", "1000"],
         "below the minimum"),
        # gf_rebalance_thread_count's rule and words: a number up to this node's cores
        (["volume", "set", "good", "cluster.rebal-throttle", "0"], "in range from 1 to"),
        (["volume", "set", "good", "cluster.rebal-throttle", str((os.cpu_count() or 1) + 1)],
         f"in range from 1 to {os.cpu_count() or 1}"),
        (["volume", "set", "good", "cluster.rebal-throttle", "fast"],
         "{lazy|normal|aggressive} or a number"),
        (["volume", "set", "nosuch", "performance.cache-size", "64MB"], "does not exist"),
        (["volume", "get", "good", "no.such-key"], "does not exist"),
        (["--yes", "volume", "delete", "good"], "needs to be stopped"),
        (["--yes", "volume", "stop", "nosuch"], "does not exist"),
        (["volume", "start", "good"], "already started"),
        (["volume", "start", "nosuch"], "does not exist"),
        (["volume", "add-brick", "good", *bricks(tmp_path, "g2")], "already part of"),
        (["volume", "add-brick", "good", "replica", "2", *bricks(tmp_path, "n1", "n2")],
         "replica count"),
        (["volume", "remove-brick", "good", *bricks(tmp_path, "nope"), "start"],
         "Incorrect brick"),
        (["--yes", "volume", "remove-brick", "good", *bricks(tmp_path, "g1", "g2"), "force"],
         "all the bricks"),
        (["--yes", "volume", "remove-brick", "good", *bricks(tmp_path, "g1"), "commit"],
         "No remove-brick task"),
        (["volume", "frobnicate"], "Usage"),
        (["volume", "create"], "Usage"),
        (["volume", "profile", "good", "sideways"], "Usage"),
        (["peer", "probe", "127.0.0.1:1"], "not connected"),
        (["peer", "detach", "no-such-peer.invalid", "--yes"], "not part of cluster"),
    ]
    for argv, message in cases:
        r = d.cli(*argv)
        assert r.rc != 0, f"{argv} was accepted: {r.text}"
        assert message in r.text, f"{argv}: expected {message!r} in {r.text!r}"
        assert snapshot(d.workdir) == before, f"{argv} changed the state on disk"
    # nothing of the refused volumes reached the disk either
    assert not any((tmp_path / n).exists() for n in ("x1", "t1", "r1", "s1", "a1", "n1"))
    # the refusals are in the audit log, with their reasons
    failed = [e for e in d.ok("volume", "log", "--json").json()["entries"]
              if e["result"].startswith("failed")]
    assert any("does not exist" in e["result"] for e in failed)


def test_malformed_rest_requests(daemon):
    d = daemon
    status, doc = d.api("POST", "/api/v1/volumes", b"{not json",
                        {"Content-Type": "application/json"})
    assert status == 400 and "not JSON" in doc["error"]
    status, doc = d.api("POST", "/api/v1/volumes", b"[1, 2]")
    assert status == 400 and "JSON object" in doc["error"]
    status, doc = d.api("POST", "/api/v1/volumes", json.dumps(
        {"name": "x", "bricks": "127.0.0.1:/srv/a"}).encode())
    assert status == 400 and "bricks" in doc["error"]
    status, doc = d.api("POST", "/api/v1/volumes", json.dumps(
        {"name": "x", "bricks": ["127.0.0.1:/srv/a"], "replica": "many"}).encode())
    assert status == 400 and "count must be a number" in doc["error"]
    status, doc = d.api("GET", "/api/v1/no/such/thing")
    assert status == 404 and "no such resource" in doc["error"]
    status, doc = d.api("PUT", "/api/v1/volumes")
    assert status == 405 and "not allowed" in doc["error"]
    status, doc = d.api("GET", "/api/v1/volumes/nosuch")
    assert status == 404 and doc["error"] == "Volume nosuch does not exist"
    # peer routes want a member's certificate: neither root on the socket nor a
    # header naming a node opens them
    status, doc = d.api("POST", "/api/v1/cluster/lock", b"{}")
    assert status == 403 and "members of this node's pool" in doc["error"]
    status, doc = d.api("POST", "/api/v1/cluster/commit", b"{}",
                        {"X-Glusterpy-Node": "not-a-peer"})
    assert status == 403 and "members of this node's pool" in doc["error"]
    # garbage that is not HTTP at all: a 400 with a JSON body, then the connection closes
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(b"HELLO THERE\x01\x02\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in body
    # over TCP, without a token: 401, and the same garbage after TLS is a 400 too
    status, doc = d.api_tcp("GET", "/api/v1/volumes", tls=False)
    assert status == 401 and "token" in doc["error"]
    # a body too large
    # (sent by hand: the daemon answers before the body ends, and closes)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(d.socket))
        s.sendall(b"POST /api/v1/volumes HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nContent-Length: %d\r\n\r\n{" % (2 << 20))
        with contextlib.suppress(OSError):
            for _ in range(32):
                s.sendall(b" " * 65536)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 413")
    # the API is described
    status, spec = d.api("GET", "/api/v1/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    for path in ("/api/v1/volumes", "/api/v1/volumes/{name}/options", "/api/v1/peers",
                 "/api/v1/volumes/{name}/profile", "/api/v1/log"):
        assert path in spec["paths"], path
    assert "requestBody" in spec["paths"]["/api/v1/volumes"]["post"]
    # and the daemon still works
    assert d.ok("volume", "list").out.strip() == "No volumes present in cluster"


def test_daemon_kill9_keeps_state_and_bricks(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "keep", *bricks(tmp_path, "k1", "k2"))
        d.ok("volume", "set", "keep", "performance.cache-size", "48MB")
        d.ok("volume", "start", "keep")
        d.ok("volume", "create", "idle", *bricks(tmp_path, "i1"))
        before = snapshot(d.workdir)
        info_before = d.ok("volume", "info").out
        pids = sorted(r["pid"] for r in status_rows(d, "keep"))
        d.kill9()
        # bricks outlive the daemon, as glusterfsd outlives glusterd
        for pid in pids:
            os.kill(pid, 0)
        d.start()
        assert d.ok("volume", "info").out == info_before
        assert snapshot(d.workdir) == before
        rows = wait_for(lambda: (r := status_rows(d, "keep")) and all(x["online"] for x in r)
                        and r, what="bricks online after the restart")
        assert sorted(r["pid"] for r in rows) == pids  # adopted, not started again
        # a brick killed with -9 is started again by its supervisor
        os.kill(pids[0], signal.SIGKILL)
        rows = wait_for(lambda: (r := status_rows(d, "keep")) and all(x["online"] for x in r)
                        and pids[0] not in [x["pid"] for x in r] and r, timeout=30,
                        what="the killed brick restarted")
        with Volume("127.0.0.1", "keep", port=d.port) as vol:
            with vol.fopen("/after-restart", "w") as f:
                f.write(b"still here")
            assert vol.open("/after-restart").read() == b"still here"
        # kill -9 the daemon and every brick: a restart starts the bricks again
        d.kill9()
        for pid in d.brick_pids():
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        d.start()
        wait_for(lambda: all(x["online"] for x in status_rows(d, "keep")),
                 what="bricks started by the restarted daemon")
        assert d.ok("volume", "info", "idle", "--json").json()["volumes"][0]["status"] == \
            "Created"

