"""Geo-replication (issue 19): the CLI grammar, the session operations, and
a primary and a secondary cluster with a session between them.

The units check `volume geo-replication`'s grammar, the secondary's
[USER@]HOST[:PORT]::VOL syntax, the status table, and the operation's
validation (glusterd/georep.py) on volume documents.  The live tests run
two glusterpyd clusters on this machine (a replica 3 primary, a distribute
secondary) and check that what is done on the primary - files created,
written, appended, truncated, renamed (also over an existing name),
hard-linked, deleted, chmod'ed, chown'ed, touched, xattrs set - arrives on
the secondary with the same content, mode, owner, mtime and gfid once a
checkpoint completes; that a worker killed with kill -9 is restarted and
resumes from its sync time; that pause holds changes back and resume lets
them through; and that bad input changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat as st
import textwrap
import time
from pathlib import Path

import pytest

from glusterpy.cli.georep_cmd import GeorepUsage, format_status, parse
from glusterpy.glusterd import georep
from glusterpy.glusterd.model import Brick, Volume
from glusterpy.glusterd.ops import Cluster
from glusterpy.georep.worker import LOCK_DIR
from test_glusterd_support import Daemon, snapshot, wait_for


# -- the grammar --------------------------------------------------------------


def test_cli_grammar():
    assert parse(["pv", "h::sv", "create", "push-pem", "force"]) == {
        "primary": "pv", "secondary": "h::sv", "action": "create", "force": True,
        "push_pem": True}
    assert parse(["pv", "geo@h::sv", "start"])["secondary"] == "geo@h::sv"
    assert parse(["pv", "h::sv", "stop", "force"])["force"] is True
    assert parse(["pv", "h::sv", "delete", "reset-sync-time"])["reset_sync_time"] is True
    assert parse(["pv", "h::sv", "delete", "reset-sync-time", "force"])["force"] is True
    assert parse(["pv", "h::sv", "delete"])["force"] is False
    assert parse(["status"]) == {"action": "status", "detail": False}
    assert parse(["pv", "status", "detail"]) == {"primary": "pv", "action": "status",
                                                  "detail": True}
    assert parse(["pv", "h::sv", "status"])["secondary"] == "h::sv"
    assert parse(["pv", "h::sv", "config"]) == {"primary": "pv", "secondary": "h::sv",
                                                 "action": "config"}
    assert parse(["pv", "h::sv", "config", "sync-xattrs"])["key"] == "sync-xattrs"
    assert parse(["pv", "h::sv", "config", "checkpoint", "now"])["value"] == "now"
    assert parse(["pv", "h::sv", "config", "!ignore-deletes"])["reset"] is True
    for bad in ([], ["pv"], ["pv", "h::sv"], ["pv", "h::sv", "create", "push"],
                ["pv", "h::sv", "start", "force", "force"], ["pv", "h::sv", "pause", "force"],
                ["pv", "h::sv", "delete", "force", "force"],
                ["pv", "h::sv", "frobnicate"], ["h::sv", "status"], ["pv", "start"],
                ["pv", "status", "details"], ["pv", "h::sv", "config", "a", "b", "c"]):
        with pytest.raises(GeorepUsage):
            parse(bad)


def test_secondary_syntax():
    assert georep.parse_secondary("h1::sv") == ("root", "h1", 24007, "sv")
    assert georep.parse_secondary("geo@10.0.0.2:24100::sv") == ("geo", "10.0.0.2", 24100, "sv")
    for bad in ("h1:sv", "h1::", "::sv", "h1::sv::x", "h1:99999::sv", "h1:x::sv",
                "Bad User@h1::sv", "h/1::sv", "h1::s/v", "h1::all", None, 7, "..::sv"):
        with pytest.raises(ValueError):
            georep.parse_secondary(bad)
    assert georep.session_key("h1", 24007, "sv") == "h1::sv"
    assert georep.session_key("h1", 24100, "sv") == "h1:24100::sv"


def test_status_table():
    row = {"primary_node": "n1", "primary_volume": "pv", "primary_brick": "/b1",
           "secondary_user": "root", "secondary": "h::sv", "secondary_node": "h",
           "status": "Active", "crawl_status": "Hybrid Crawl", "last_synced": 0,
           "entry": 3, "data": 2, "meta": 1, "failures": 0, "checkpoint_time": None}
    faulty = dict(row, primary_brick="/b2", status="Faulty", crawl_status="N/A",
                  faulty_reason="cannot reach h")
    text = format_status([row, faulty], detail=False).splitlines()
    assert text[0].split("    ")[0].strip() == "PRIMARY NODE"
    for col in ("PRIMARY VOL", "PRIMARY BRICK", "SECONDARY USER", "SECONDARY NODE",
                "STATUS", "CRAWL STATUS", "LAST_SYNCED"):
        assert col in text[0]
    assert "ENTRY" not in text[0]
    assert set(text[1]) == {"-"}
    assert "Active" in text[2] and "Hybrid Crawl" in text[2]
    assert text[-1] == "Faulty: n1:/b2: cannot reach h"
    detail = format_status([row], detail=True).splitlines()
    for col in ("ENTRY", "DATA", "META", "FAILURES", "CHECKPOINT TIME",
                "CHECKPOINT COMPLETED", "CHECKPOINT COMPLETION TIME"):
        assert col in detail[0]
    assert format_status([], False) == "No active geo-replication sessions"


# -- the operation's validation ---------------------------------------------------


def _cluster(tmp_path, status="Started") -> Cluster:
    vol = Volume(name="pv", id="6d3b0e84-8d1c-4bb8-9a2c-1f1c1c1c1c1c", status=status,
                 replica=3, bricks=[Brick("n1", f"/b{i}", "u1", 49152 + i) for i in range(3)])
    return Cluster("u1", ["n1"], {}, {"pv": vol}, tmp_path)


def _apply(cluster, **args):
    vol = georep.prepare_georep(cluster, {"name": "pv", "secondary": "h::sv", **args})
    cluster.volumes["pv"] = vol
    return vol


def test_session_operations(tmp_path):
    c = _cluster(tmp_path)
    before = c.volumes["pv"].to_json()
    for args, message in (({"name": "nope", "action": "create"}, "Volume nope does not exist"),
                          ({"secondary": "h:sv", "action": "create"}, "invalid secondary"),
                          ({"action": "start"}, "does not exist"),
                          ({"action": "launch"}, "must be one of")):
        with pytest.raises(ValueError, match=message):
            georep.prepare_georep(c, {"name": "pv", "secondary": "h::sv", **args})
    assert c.volumes["pv"].to_json() == before
    vol = _apply(c, action="create", secondary_hosts=["h", "h2"])
    s = vol.georep["h::sv"]
    assert (s.status, s.secondary_hosts, s.secondary_user) == ("Created", ["h", "h2"], "root")
    assert Volume.from_json(vol.to_json()).to_json() == vol.to_json()
    with pytest.raises(ValueError, match="already created"):
        georep.prepare_georep(c, {"name": "pv", "secondary": "h::sv", "action": "create"})
    for action, message in (("stop", "is not running"), ("pause", "not running"),
                            ("resume", "not paused")):
        with pytest.raises(ValueError, match=message):
            georep.prepare_georep(c, {"name": "pv", "secondary": "h::sv", "action": action})
    assert _apply(c, action="start").georep["h::sv"].status == "Started"
    with pytest.raises(ValueError, match="already started"):
        georep.prepare_georep(c, {"name": "pv", "secondary": "h::sv", "action": "start"})
    with pytest.raises(ValueError, match="still active"):
        georep.prepare_georep(c, {"name": "pv", "secondary": "h::sv", "action": "delete"})
    assert _apply(c, action="pause").georep["h::sv"].status == "Paused"
    assert _apply(c, action="resume").georep["h::sv"].status == "Started"
    for key, value, message in (("change-interval", "0", "from 1 to 3600"),
                                ("sync-xattrs", "maybe", "true or false"),
                                ("no-such-key", "1", "Invalid option name"),
                                ("checkpoint", "yesterday", "checkpoint takes 'now'")):
        with pytest.raises(ValueError, match=message):
            georep.prepare_georep(c, {"name": "pv", "secondary": "h::sv", "action": "config",
                                      "key": key, "value": value})
    assert _apply(c, action="config", key="sync-xattrs", value="off") \
        .georep["h::sv"].config == {"sync-xattrs": "false"}
    assert _apply(c, action="config", key="checkpoint", value="now") \
        .georep["h::sv"].checkpoint > time.time() - 60
    from glusterpy.glusterd.ops import prepare_delete, prepare_stop
    with pytest.raises(ValueError, match="geo-replication sessions are active"):
        prepare_stop(c, {"name": "pv"})
    assert prepare_stop(c, {"name": "pv", "force": True}).status == "Stopped"
    stopped = _cluster(tmp_path, status="Stopped")
    stopped.volumes["pv"].georep = c.volumes["pv"].georep
    with pytest.raises(ValueError, match="1 active geo-replication sessions"):
        prepare_delete(stopped, {"name": "pv"})
    assert _apply(c, action="stop").georep["h::sv"].status == "Stopped"
    assert prepare_stop(c, {"name": "pv"}).status == "Stopped"
    assert "h::sv" not in _apply(c, action="delete").georep
    assert "georep" not in c.volumes["pv"].to_json()  # an old document's shape again
    c2 = _cluster(tmp_path, status="Stopped")
    _apply(c2, action="create")
    with pytest.raises(ValueError, match="needs to be started"):
        georep.prepare_georep(c2, {"name": "pv", "secondary": "h::sv", "action": "start"})


# -- two clusters --------------------------------------------------------------

def _tree(vol, top="/") -> dict:
    """Every entry: type, mode, owner, mtime, size, gfid, content or
    target, user xattrs (directories' mtimes included)."""
    out = {}
    stack = [top]
    while stack:
        d = stack.pop()
        for name in sorted(vol.listdir(d)):
            if d == "/" and name in (".trashcan", LOCK_DIR):
                continue
            p = f"{d.rstrip('/')}/{name}"
            s = vol.lstat(p)
            info = {"fmt": st.S_IFMT(s.st_mode), "mode": st.S_IMODE(s.st_mode),
                    "owner": (s.st_uid, s.st_gid), "mtime": s.st_mtime_ns,
                    "gfid": vol.getxattr(p, "glusterfs.gfid.string", follow_symlinks=False)}
            if st.S_ISLNK(s.st_mode):
                info["target"] = vol.readlink(p)
                del info["mode"], info["mtime"]
            else:
                info["xattrs"] = {k: vol.getxattr(p, k) for k in vol.listxattr(p)
                                  if k.startswith("user.")}
            if st.S_ISREG(s.st_mode):
                with vol.fopen(p, "rb") as f:
                    info["data"] = f.read()
            if st.S_ISDIR(s.st_mode):
                stack.append(p)
            out[p] = info
    return out


class Pair:
    """A primary cluster (replica 3) and a secondary one (distribute 2),
    one glusterpyd each on this machine, and a session between them."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.p = Daemon(tmp_path / "primary")
        self.s = Daemon(tmp_path / "secondary")
        self.secondary = ""
        self.pvol = self.svol = None

    def start(self):
        from glusterpy.gfapi import Volume as GVolume
        self.p.start()
        self.s.start()
        self.p.ok("volume", "create", "pv", "replica", "3",
                  *[f"127.0.0.1:{self.tmp}/pb{i}" for i in range(3)], "force")
        self.p.ok("volume", "start", "pv")
        # the journal rolled over every second, not every 15 (GlusterFS's
        # default), so the tests see the timer's rollovers too (a changelog
        # per second); the worker does not need it - it asks for a rollover
        # when it finds none to replay (test_georep_changelog's
        # test_no_waiting_for_the_rollover runs at 15 s)
        self.p.ok("volume", "set", "pv", "changelog.rollover-time", "1")
        self.s.ok("volume", "create", "sv", *[f"127.0.0.1:{self.tmp}/sb{i}" for i in range(2)])
        self.s.ok("volume", "start", "sv")
        self.secondary = f"127.0.0.1:{self.s.port}::sv"
        self.pvol = GVolume("127.0.0.1", "pv", port=self.p.port)
        self.pvol.mount()
        self.svol = GVolume("127.0.0.1", "sv", port=self.s.port)
        self.svol.mount()

    def geo(self, *words):
        return self.p.cli("volume", "geo-replication", "pv", self.secondary, *words)

    def rows(self):
        return self.p.ok("volume", "geo-replication", "pv", self.secondary, "status",
                         "--json").json()["rows"]

    def checkpoint(self, timeout=90):
        """`config checkpoint now`, then wait until the Active worker says
        it completed; the secondary is then the primary as of that time."""
        time.sleep(0.05)
        self.geo("config", "checkpoint", "now")
        try:
            wait_for(lambda: any(r["status"] == "Active" and r["checkpoint_completed"]
                                 for r in self.rows()), timeout, "the checkpoint")
        except AssertionError:
            raise AssertionError(self.p.ok("volume", "geo-replication", "pv", self.secondary,
                                           "status", "detail").out + self._logs()) from None

    def _logs(self) -> str:
        return "".join(f"\n== {p}\n" + p.read_text()[-3000:]
                       for p in (self.p.workdir / "logs").rglob("geo-replication/*/*.log"))

    def assert_mirrored(self):
        primary, secondary = _tree(self.pvol), _tree(self.svol)
        assert primary.keys() == secondary.keys(), self._logs()
        for path in primary:
            assert primary[path] == secondary[path], (path, self._logs())

    def cleanup(self):
        for v in (self.pvol, self.svol):
            if v is not None:
                try:
                    v.umount()
                except Exception:  # noqa: BLE001 - cleaning up after a failure
                    pass
        self.p.cleanup()
        self.s.cleanup()


@pytest.fixture
def pair(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown on the bricks needs root")
    pr = Pair(tmp_path)
    try:
        pr.start()
        yield pr
    finally:
        pr.cleanup()


@pytest.mark.slow
def test_bad_input_changes_nothing(pair):
    p = pair.p
    before = snapshot(p.workdir)
    for words, message in (
            (["nope", pair.secondary, "create"], "Volume nope does not exist"),
            (["pv", f"127.0.0.1:{pair.s.port}::nosuchvol", "create"], "does not exist"),
            (["pv", "127.0.0.1:1::sv", "create"], "cannot be used"),
            (["pv", "127.0.0.1:sv", "create"], "Usage"),
            (["pv", "127.0.0.1::s/v", "create"], "invalid secondary"),
            (["pv", pair.secondary, "start"], "does not exist"),
            (["pv", pair.secondary, "config", "nope", "1"], "does not exist")):
        r = p.cli("volume", "geo-replication", *words)
        assert r.rc != 0 and message in r.text, (words, r.text)
    assert snapshot(p.workdir) == before
    assert pair.geo("create").rc == 0
    before = snapshot(p.workdir)
    r = pair.geo("create")
    assert r.rc == 1 and "already created" in r.err
    r = pair.geo("config", "change-interval", "soon")
    assert r.rc == 1 and "from 1 to 3600" in r.err
    r = pair.geo("resume")
    assert r.rc == 1 and "not paused" in r.err
    assert snapshot(p.workdir) == before
    log = p.ok("volume", "log", "pv", "--json").json()
    assert any(e["op"] == "geo-replication" and e["result"].startswith("failed")
               for e in log["entries"])
    # config: list, one key, set, reset
    listing = pair.geo("config").out.splitlines()
    assert "change-interval:5" in listing and "sync-xattrs:true" in listing, listing
    assert pair.geo("config", "change-interval", "3").rc == 0
    assert pair.geo("config", "change-interval").out.strip() == "3"
    assert pair.geo("config", "!change-interval").rc == 0
    assert pair.geo("config", "change-interval").out.strip() == "5"
    # nothing was started for a session that is only created
    assert pair.rows()[0]["status"] == "Created"
    assert pair.geo("delete").rc == 0
    assert "No active geo-replication sessions" in \
        p.ok("volume", "geo-replication", "status").out


@pytest.mark.slow
def test_session_mirrors_the_primary(pair):
    v = pair.pvol
    v.makedirs("/d1/d2")
    with v.fopen("/d1/f", "wb") as f:
        f.write(b"hello " * 1000)
    with v.fopen("/keep", "wb") as f:
        f.write(b"kept")
    with v.fopen("/over", "wb") as f:
        f.write(b"the target of a rename over it")
    v.symlink("f", "/d1/l")
    v.link("/d1/f", "/d1/hard")
    v.mknod("/fifo", 0o640 | st.S_IFIFO)
    v.setxattr("/d1/f", "user.colour", b"blue")
    v.chmod("/d1/d2", 0o750)
    v.chown("/keep", 1234, 4321)
    v.utime("/keep", (1_000_000_000, 1_000_000_000))
    assert pair.geo("create").rc == 0
    pair.geo("config", "change-interval", "1")
    r = pair.geo("start")
    assert r.out.strip() == (f"Starting geo-replication session between pv & "
                             f"{pair.secondary} has been successful"), r.text
    pair.checkpoint()
    pair.assert_mirrored()
    rows = pair.rows()
    assert sorted(r["status"] for r in rows) == ["Active", "Passive", "Passive"]
    active = next(r for r in rows if r["status"] == "Active")
    assert active["crawl_status"] in ("Hybrid Crawl", "History Crawl", "Changelog Crawl")
    assert active["secondary_node"] == "127.0.0.1" and active["last_synced"]
    table = pair.p.ok("volume", "geo-replication", "pv", pair.secondary, "status",
                      "detail").out
    assert "CHECKPOINT COMPLETED" in table and "Yes" in table

    # the second round: changes of every kind while the session runs
    with v.fopen("/d1/f", "ab") as f:
        f.write(b"appended")
    v.truncate("/keep", 2)
    v.rename("/d1/hard", "/over")  # over an existing name
    v.rename("/d1/d2", "/d3")  # a directory moves
    v.unlink("/fifo")
    v.removexattr("/d1/f", "user.colour")
    v.setxattr("/d3", "user.tag", b"x")
    v.chmod("/d1/f", 0o600)
    with v.fopen("/d3/new", "wb") as f:
        f.write(os.urandom(3 << 20))
    pair.checkpoint()
    pair.assert_mirrored()
    assert not pair.svol.exists("/fifo")
    assert pair.svol.getxattr("/over", "glusterfs.gfid.string") == \
        v.getxattr("/d1/f", "glusterfs.gfid.string")  # still a hard link of /d1/f

    # one byte changed in a 3 MiB file: one block crosses the wire, not the file
    def sent():
        return next(r for r in pair.rows() if r["status"] == "Active")["bytes_synced_total"]
    before = sent()
    with v.fopen("/d3/new", "r+b") as f:
        f.lseek(1 << 20, os.SEEK_SET)
        f.write(b"!")
    pair.checkpoint()
    pair.assert_mirrored()
    assert 0 < sent() - before <= 128 << 10, sent() - before

    # kill -9 the Active worker: a Passive one takes the replica set's lock
    # (the bricks drop the dead worker's lock with its connection) and syncs
    # what was written after; glusterpyd is held (SIGSTOP) meanwhile, so the
    # takeover is the Passive worker's, not a restarted one's
    rows = pair.rows()
    active = next(r for r in rows if r["status"] == "Active")
    passive = {r["worker_pid"] for r in rows if r["status"] == "Passive"}
    assert len(passive) == 2 and None not in passive
    synced = active["last_synced"]
    pair.p.proc.send_signal(signal.SIGSTOP)
    try:
        os.kill(active["worker_pid"], signal.SIGKILL)
        t0 = time.monotonic()
        v.unlink("/d1/l")
        with v.fopen("/while-dead", "wb") as f:
            f.write(b"written while the worker was dead")

        def worker_statuses():  # glusterpyd is stopped: the workers' own files
            return _worker_statuses(pair)

        def taken_over():
            docs = worker_statuses()
            return [pid for pid in passive if docs.get(pid, {}).get("status") == "Active"]
        new = wait_for(taken_over, 30, "a Passive worker to become Active")
        assert len(new) == 1, worker_statuses()
        took = time.monotonic() - t0
        assert took < 15, took  # within seconds (the election tries every 2 s)
        assert worker_statuses()[new[0]]["last_synced"] >= synced  # the set's stime

        def arrived():
            try:
                with pair.svol.fopen("/while-dead", "rb") as f:
                    return f.read() == b"written while the worker was dead" and \
                        not pair.svol.exists("/d1/l")
            except OSError:
                return False
        wait_for(arrived, 30, "the writes after the kill on the secondary")
    finally:
        pair.p.proc.send_signal(signal.SIGCONT)
    # the killed worker is restarted and stays Passive: no flapping back
    killed = active["primary_brick"]

    def settled():
        rows = pair.rows()
        mine = next(r for r in rows if r["primary_brick"] == killed)
        return mine["worker_pid"] not in (None, active["worker_pid"]) and \
            mine["status"] == "Passive" and \
            [r["worker_pid"] for r in rows if r["status"] == "Active"] == new
    assert wait_for(settled, 60), pair.rows()
    pair.checkpoint()
    pair.assert_mirrored()

    # pause holds changes back; resume lets them through
    assert pair.geo("pause").rc == 0
    assert wait_for(lambda: all(r["status"] == "Paused" for r in pair.rows()), 30)
    with v.fopen("/after-pause", "wb") as f:
        f.write(b"x")
    time.sleep(3)
    assert not pair.svol.exists("/after-pause")
    assert pair.geo("resume").rc == 0
    pair.checkpoint()
    pair.assert_mirrored()

    # glusterpyd restarted everywhere (kill -9): the primary's adopts the
    # running workers, the secondary's its bricks
    pids = sorted(r["worker_pid"] for r in pair.rows())
    pair.p.kill9()
    pair.s.kill9()
    pair.s.start()
    pair.p.start()
    # (the workers are adopted once the restarted daemon reconciles)
    assert wait_for(lambda: sorted(r["worker_pid"] or 0 for r in pair.rows()) == pids, 30), \
        (pids, pair.rows())
    with v.fopen("/after-restart", "wb") as f:
        f.write(b"y")
    pair.checkpoint()
    pair.assert_mirrored()

    # the secondary volume stopped: Faulty, with the reason; started: Active again
    pair.s.ok("volume", "stop", "sv", "--mode=script")
    wait_for(lambda: any(r["status"] == "Faulty" and r["faulty_reason"]
                         for r in pair.rows()), 60, "Faulty")
    table = pair.p.ok("volume", "geo-replication", "pv", pair.secondary, "status").out
    assert "Faulty: 127.0.0.1:" in table, table
    pair.s.ok("volume", "start", "sv")
    with v.fopen("/after-fault", "wb") as f:
        f.write(b"z")
    pair.checkpoint(timeout=150)

    def reconnected():  # the test's own client reconnects every 3 s
        # both bricks answer it: it lists every name the bricks hold at the
        # top (with one brick still down distribute lists the other's alone,
        # and a checkpoint may complete before this client's next retry)
        on_bricks = {n for b in ("sb0", "sb1") for n in os.listdir(pair.tmp / b)
                     if not n.startswith(".")}
        try:
            return set(pair.svol.listdir("/")) >= on_bricks
        except OSError:
            return False
    wait_for(reconnected, 30, "the test's client of the secondary")
    pair.assert_mirrored()

    synced = max(r["last_synced"] or 0 for r in pair.rows())
    assert pair.geo("stop").rc == 0
    assert all(r["status"] == "Stopped" and r["worker_pid"] is None for r in pair.rows())
    for f in (pair.p.workdir / "run" / "geo-replication").rglob("*.pid"):
        stat = Path(f"/proc/{int(f.read_text())}/stat")
        # gone, or a zombie whose parent (the glusterpyd killed above) cannot reap it
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    # the sync time is on the secondary's root; delete reset-sync-time removes it
    from glusterpy.georep.worker import stime_key, unpack_time
    session = pair.geo("status", "--json").json()["sessions"][pair.secondary]
    volume_id = json.loads((pair.p.workdir / "vols" / "pv" / "info.json").read_text())["id"]
    key = stime_key(volume_id, session["secondary_id"], 0)
    assert session["secondary_id"]
    # (read on the bricks: the test's client caches the root's xattrs)
    for b in ("sb0", "sb1"):
        assert synced <= unpack_time(os.getxattr(pair.tmp / b, key)) <= time.time()
    assert pair.geo("delete", "reset-sync-time").rc == 0
    assert not list((pair.p.workdir / "geo-replication").iterdir())
    for b in ("sb0", "sb1"):
        assert key not in os.listxattr(pair.tmp / b)


def _worker_statuses(pair) -> dict[int, dict]:
    """pid -> the status file of every worker (read without glusterpyd)."""
    out = {}
    for f in (pair.p.workdir / "geo-replication").rglob("*.status.json"):
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(f.read_text())
            out[doc["pid"]] = doc
    return out


@pytest.mark.slow
def test_active_workers_brick_killed(pair):
    """The Active worker's brick killed (kill -9, glusterpyd held so that it
    does not restart it): that worker goes Faulty with the reason and lets
    the lock go, a Passive one becomes Active, and what is written
    meanwhile arrives."""
    v = pair.pvol
    with v.fopen("/first", "wb") as f:
        f.write(b"1" * 1000)
    assert pair.geo("create").rc == 0
    pair.geo("config", "change-interval", "1")
    assert pair.geo("start").rc == 0
    pair.checkpoint()
    rows = pair.rows()
    active = next(r for r in rows if r["status"] == "Active")
    passive = {r["worker_pid"] for r in rows if r["status"] == "Passive"}
    bricks = pair.p.ok("volume", "status", "pv", "--json").json()["volumes"][0]["bricks"]
    brick_pid = next(b["pid"] for b in bricks if b["path"] == active["primary_brick"])
    pair.p.proc.send_signal(signal.SIGSTOP)
    try:
        os.kill(brick_pid, signal.SIGKILL)
        with v.fopen("/second", "wb") as f:
            f.write(b"2" * 1000)
        new = wait_for(lambda: [pid for pid in passive if _worker_statuses(pair).get(
            pid, {}).get("status") == "Active"], 30, "a Passive worker to become Active")
        assert len(new) == 1
        old = _worker_statuses(pair)[active["worker_pid"]]
        assert old["status"] == "Faulty" and "is not running" in old["faulty_reason"], old

        def arrived():
            try:
                with pair.svol.fopen("/second", "rb") as f:
                    return f.read() == b"2" * 1000
            except OSError:
                return False
        wait_for(arrived, 30, "/second on the secondary")
    finally:
        pair.p.proc.send_signal(signal.SIGCONT)
    pair.checkpoint()
    pair.assert_mirrored()

    # glusterpyd restarts the brick (waited for: a brick still starting when
    # the test ends would write its pid file after the cleanup read them)
    def brick_back():
        bricks = pair.p.ok("volume", "status", "pv", "--json").json()["volumes"][0]["bricks"]
        return all(b["online"] and b["pid"] for b in bricks) and \
            brick_pid not in [b["pid"] for b in bricks]
    wait_for(brick_back, 60, "the killed brick to be restarted")


@pytest.mark.slow
def test_sparse_files_arrive_sparse(pair):
    """A 64 MiB file with four small extents arrives with its holes (only
    the data extents cross the wire), and a hole punched later on the
    primary is punched on the secondary too."""
    v = pair.pvol
    extents = [(0, b"head" * 1024), (10 << 20, os.urandom(64 << 10)),
               (33 << 20, os.urandom(200 << 10)), ((64 << 20) - 4096, b"t" * 4096)]
    with v.fopen("/sparse", "wb") as f:
        for offset, data in extents:
            f.lseek(offset, os.SEEK_SET)
            f.write(data)
    size = 64 << 20
    assert v.stat("/sparse").st_size == size
    sent_data = sum(len(d) for _, d in extents)
    assert pair.geo("create").rc == 0
    pair.geo("config", "change-interval", "1")
    assert pair.geo("start").rc == 0
    pair.checkpoint()
    pair.assert_mirrored()

    def on_secondary_brick() -> os.stat_result:
        found = [os.stat(pair.tmp / b / "sparse") for b in ("sb0", "sb1")
                 if (pair.tmp / b / "sparse").exists() and
                 (pair.tmp / b / "sparse").stat().st_size]
        assert len(found) == 1, found
        return found[0]
    sst = on_secondary_brick()
    assert sst.st_size == size
    # allocated: the extents (rounded to the brick's blocks), not 64 MiB
    assert sst.st_blocks * 512 < 2 * sent_data + (1 << 20), sst.st_blocks
    active = next(r for r in pair.rows() if r["status"] == "Active")
    assert active["bytes_synced_total"] < 2 * sent_data, active

    # a hole punched on the primary (FALLOC_FL_PUNCH_HOLE | KEEP_SIZE)
    before = sst.st_blocks
    with v.fopen("/sparse", "r+b") as f:
        f.fallocate(0x02 | 0x01, 33 << 20, 200 << 10)
    pair.checkpoint()
    pair.assert_mirrored()
    after = on_secondary_brick()
    assert after.st_size == size
    assert after.st_blocks * 512 <= before * 512 - (150 << 10), (before, after.st_blocks)


# -- a secondary of two nodes, the named one down ------------------------------------

NS_PORT = 24419


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_workers_use_another_secondary_host_when_the_named_one_is_down(tmp_path):
    """GlusterFS issue #3956: every worker Faulty while the one secondary
    host named at create time is down.  Here the primary is one node, the
    secondary two (each in a network namespace); the session names node 2;
    with node 2's glusterpyd stopped (its brick still serving, as a brick
    outlives its glusterd) a restarted worker gets the secondary's volfile
    from node 3 and goes on syncing."""
    from test_glusterd_cluster import SUBNET, in_netns, switched_namespaces
    with switched_namespaces(3) as namespaces:
        nodes = [Daemon(tmp_path / f"node{i}", port=NS_PORT, address=f"{SUBNET}.{i}",
                        netns=ns) for i, ns in enumerate(namespaces, 1)]
        n1, n2, n3 = nodes
        h1, h2, h3 = (f"{SUBNET}.{i}" for i in (1, 2, 3))
        try:
            for d in nodes:
                d.start()
            n1.ok("volume", "create", "pv", *[f"{h1}:{tmp_path}/pb{i}" for i in range(2)])
            n1.ok("volume", "start", "pv")
            n1.ok("volume", "set", "pv", "changelog.rollover-time", "1")  # (Pair.start)
            n2.ok("peer", "probe", f"{h3}:{NS_PORT}")
            n2.ok("volume", "create", "sv", f"{h2}:{tmp_path}/sb2", f"{h3}:{tmp_path}/sb3")
            n2.ok("volume", "start", "sv")
            secondary = f"{h2}:{NS_PORT}::sv"

            def geo(*words):
                return n1.ok("volume", "geo-replication", "pv", secondary, *words)

            def rows():
                return geo("status", "--json").json()["rows"]

            def write(names):
                in_netns(n1.netns, f"""
                    from glusterpy.gfapi import Volume
                    with Volume("{h1}", "pv", port={NS_PORT}) as vol:
                        for name in {names!r}:
                            with vol.fopen("/" + name, "wb") as f:
                                f.write(name.encode() * 100)
                """)

            def on_secondary(name) -> bytes | None:
                for b in ("sb2", "sb3"):
                    p = tmp_path / b / name
                    if p.exists() and p.stat().st_size:
                        return p.read_bytes()
                return None

            def checkpoint():
                geo("config", "checkpoint", "now")
                wait_for(lambda: [r for r in rows() if r["status"] == "Active"] and all(
                    r["checkpoint_completed"] for r in rows() if r["status"] == "Active"),
                    90, "the checkpoint")

            r = geo("create")
            assert "has been successful" in r.out
            session = geo("status", "--json").json()["sessions"][f"{h2}:{NS_PORT}::sv"]
            assert session["secondary_hosts"] == [h2, h3]
            geo("config", "change-interval", "1")
            geo("start")
            names = [f"f{i}" for i in range(8)]
            write(names)
            checkpoint()
            assert all(on_secondary(n) == n.encode() * 100 for n in names)
            assert {r["secondary_node"] for r in rows() if r["status"] == "Active"} == {h2}

            n2.stop()  # its glusterd only: the brick on node 2 keeps serving
            for r in rows():
                if r["worker_pid"]:
                    os.kill(r["worker_pid"], signal.SIGKILL)
            more = [f"g{i}" for i in range(8)]
            write(more)
            checkpoint()
            assert all(on_secondary(n) == n.encode() * 100 for n in more)
            assert {r["secondary_node"] for r in rows() if r["status"] == "Active"} == {h3}
        finally:
            for d in nodes:
                d.cleanup()


PARTITION_PORT = 24421
#: the issue's "partition the network for a minute"
PARTITION_SECONDS = 60


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_network_partition(tmp_path):
    """The secondary's node cut off for a minute (its link down) while
    files are written on the primary - longer than network.ping-timeout
    (42 s), so the worker's client of the secondary takes it for dead and
    has to connect anew: once the link is back the session is Active
    again and every file, the ones written during the cut too, arrives -
    none lost, none left over."""
    from test_glusterd_cluster import SUBNET, in_netns, ip, switched_namespaces
    with switched_namespaces(2) as namespaces:
        nodes = [Daemon(tmp_path / f"node{i}", port=PARTITION_PORT, address=f"{SUBNET}.{i}",
                        netns=ns) for i, ns in enumerate(namespaces, 1)]
        n1, n2 = nodes
        h1, h2 = f"{SUBNET}.1", f"{SUBNET}.2"
        try:
            for d in nodes:
                d.start()
            n1.ok("volume", "create", "pv", f"{h1}:{tmp_path}/pb1")
            n1.ok("volume", "start", "pv")
            n1.ok("volume", "set", "pv", "changelog.rollover-time", "1")  # (Pair.start)
            n2.ok("volume", "create", "sv", f"{h2}:{tmp_path}/sb2")
            n2.ok("volume", "start", "sv")
            secondary = f"{h2}:{PARTITION_PORT}::sv"

            def geo(*words):
                return n1.ok("volume", "geo-replication", "pv", secondary, *words)

            def rows():
                return geo("status", "--json").json()["rows"]

            def write(names):
                in_netns(n1.netns, f"""
                    from glusterpy.gfapi import Volume
                    with Volume("{h1}", "pv", port={PARTITION_PORT}) as vol:
                        for name in {names!r}:
                            with vol.fopen("/" + name, "wb") as f:
                                f.write(name.encode() * 1000)
                """)

            def checkpoint(timeout):
                geo("config", "checkpoint", "now")
                wait_for(lambda: any(r["status"] == "Active" and r["checkpoint_completed"]
                                     for r in rows()), timeout, "the checkpoint")

            def secondary_names() -> set[str]:
                return {p.name for p in (tmp_path / "sb2").iterdir()
                        if p.name != ".glusterfs"}

            geo("create")
            geo("config", "change-interval", "1")
            geo("start")
            before = [f"a{i}" for i in range(10)]
            write(before)
            checkpoint(90)
            assert secondary_names() == set(before)

            ip("-n", n2.netns, "link", "set", "eth0", "down")
            try:
                during = [f"b{i}" for i in range(10)]
                write(during)
                time.sleep(PARTITION_SECONDS)
                assert not secondary_names() & set(during)  # the cut holds
            finally:
                ip("-n", n2.netns, "link", "set", "eth0", "up")
            after = [f"c{i}" for i in range(10)]
            write(after)
            checkpoint(180)
            assert [r["status"] for r in rows()] == ["Active"]
            assert secondary_names() == set(before + during + after)
            for name in before + during + after:
                assert (tmp_path / "sb2" / name).read_bytes() == name.encode() * 1000
        finally:
            for d in nodes:
                d.cleanup()


REPLICA_PORT = 24423


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and chown need root")
def test_replica3_primary_across_nodes(tmp_path):
    """The issue's set-up: two clusters of glusterpyd nodes in network
    namespaces - a primary replica 3 with one brick on each of three nodes,
    a secondary distribute over two more.  Changes of every kind arrive
    with their gfids; one worker per node, one of them Active; the Active
    worker killed (its node's glusterpyd held so it cannot restart it), a
    Passive one on another node takes over and what was written meanwhile
    arrives; the trees are equal again after the next checkpoint."""
    from test_glusterd_cluster import SUBNET, in_netns, switched_namespaces
    with switched_namespaces(5) as namespaces:
        nodes = [Daemon(tmp_path / f"node{i}", port=REPLICA_PORT, address=f"{SUBNET}.{i}",
                        netns=ns) for i, ns in enumerate(namespaces, 1)]
        hosts = [f"{SUBNET}.{i}" for i in range(1, 6)]
        n1, n4 = nodes[0], nodes[3]
        secondary = f"{hosts[3]}:{REPLICA_PORT}::sv"
        tests_dir = str(Path(__file__).parent)

        def geo(*words):
            return n1.ok("volume", "geo-replication", "pv", secondary, *words)

        def rows():
            return geo("status", "--json").json()["rows"]

        def on_primary(node: int, body: str) -> str:
            """body, with `v` a gfapi client of the primary through node's
            glusterpyd, run in that node's namespace."""
            return in_netns(nodes[node].netns, f"""
                import os, stat as st
                from glusterpy.gfapi import Volume
                with Volume("{hosts[node]}", "pv", port={REPLICA_PORT}) as v:
                """ + textwrap.indent(textwrap.dedent(body), " " * 20))

        def mismatches() -> list[str]:
            """The paths whose entry (type, mode, owner, mtime, gfid, data,
            user xattrs) differs between the primary and the secondary."""
            out = in_netns(n1.netns, f"""
                import json, sys
                sys.path.insert(0, {tests_dir!r})
                from test_georep import _tree
                from glusterpy.gfapi import Volume
                with Volume("{hosts[0]}", "pv", port={REPLICA_PORT}) as p, \\
                        Volume("{hosts[3]}", "sv", port={REPLICA_PORT}) as s:
                    a, b = _tree(p), _tree(s)
                print(json.dumps(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))))
            """)
            return json.loads(out.strip().splitlines()[-1])

        def checkpoint():
            geo("config", "checkpoint", "now")
            wait_for(lambda: any(r["status"] == "Active" and r["checkpoint_completed"]
                                 for r in rows()), 120, "the checkpoint")

        def on_secondary_bricks(name: str) -> bytes | None:
            for b in ("sb4", "sb5"):
                p = tmp_path / b / name
                if p.exists() and p.stat().st_size:
                    return p.read_bytes()
            return None

        try:
            for d in nodes:
                d.start()
            for h in hosts[1:3]:
                n1.ok("peer", "probe", f"{h}:{REPLICA_PORT}")
            n4.ok("peer", "probe", f"{hosts[4]}:{REPLICA_PORT}")
            n1.ok("volume", "create", "pv", "replica", "3",
                  *[f"{h}:{tmp_path}/pb{i}" for i, h in enumerate(hosts[:3], 1)])
            n1.ok("volume", "start", "pv")
            n1.ok("volume", "set", "pv", "changelog.rollover-time", "1")  # (Pair.start)
            n4.ok("volume", "create", "sv", f"{hosts[3]}:{tmp_path}/sb4",
                  f"{hosts[4]}:{tmp_path}/sb5")
            n4.ok("volume", "start", "sv")
            on_primary(0, """
                v.makedirs("/d1/d2")
                for name, data in (("/d1/f", b"hello " * 1000), ("/keep", b"kept"),
                                   ("/over", b"the target of a rename over it")):
                    with v.fopen(name, "wb") as f:
                        f.write(data)
                v.symlink("f", "/d1/l")
                v.link("/d1/f", "/d1/hard")
                v.setxattr("/d1/f", "user.colour", b"blue")
                v.chmod("/d1/d2", 0o750)
                v.chown("/keep", 1234, 4321)
            """)
            assert "has been successful" in geo("create").out
            geo("config", "change-interval", "1")
            geo("start")
            checkpoint()
            assert mismatches() == []
            # one worker per node, one Active for the replica set
            first = rows()
            assert sorted(r["status"] for r in first) == ["Active", "Passive", "Passive"], first
            assert sorted(r["primary_node"] for r in first) == hosts[:3]

            on_primary(1, """
                with v.fopen("/d1/f", "ab") as f:
                    f.write(b"appended")
                v.truncate("/keep", 2)
                v.rename("/d1/hard", "/over")  # over an existing name
                v.rename("/d1/d2", "/d3")
                v.unlink("/d1/l")
                v.removexattr("/d1/f", "user.colour")
                v.setxattr("/d3", "user.tag", b"x")
                with v.fopen("/d3/new", "wb") as f:
                    f.write(os.urandom(1 << 20))
            """)
            checkpoint()
            assert mismatches() == []

            # kill -9 the Active worker, its node's glusterpyd held meanwhile
            active = next(r for r in rows() if r["status"] == "Active")
            held = nodes[hosts.index(active["primary_node"])]
            others = [d for d in nodes[:3] if d is not held]

            def active_elsewhere():
                for d in others:
                    for f in (d.workdir / "geo-replication").rglob("*.status.json"):
                        with contextlib.suppress(OSError, ValueError):
                            if json.loads(f.read_text()).get("status") == "Active":
                                return d
                return None
            held.proc.send_signal(signal.SIGSTOP)
            try:
                os.kill(active["worker_pid"], signal.SIGKILL)
                t0 = time.monotonic()
                writer = nodes.index(others[0])
                on_primary(writer, """
                    with v.fopen("/while-dead", "wb") as f:
                        f.write(b"written while the worker was dead")
                """)
                took_over = wait_for(active_elsewhere, 30, "a Passive worker on another node")
                assert time.monotonic() - t0 < 20
                assert took_over in others
                wait_for(lambda: on_secondary_bricks("while-dead") ==
                         b"written while the worker was dead", 60,
                         "the write after the kill on the secondary")
            finally:
                held.proc.send_signal(signal.SIGCONT)
            checkpoint()
            assert mismatches() == []
            assert [r["status"] for r in rows()].count("Active") == 1
        finally:
            for d in nodes:
                d.cleanup()


# -- a GlusterFS 10 volume as the secondary -----------------------------------------------


@pytest.mark.interop
@pytest.mark.slow
def test_glusterfs10_secondary(glusterd, tmp_path):
    """The worker writes through a client of the secondary, so a GlusterFS
    10 volume serves as one: the session is created against its glusterd
    (GETSPEC and GET_VOLUME_INFO), the worker falls back from VOL.noperf,
    which glusterd does not know, to the plain volfile, and the tree
    arrives with the primary's gfids, contents, modes, owners and mtimes,
    also when a second crawl finds what the first one made there."""
    from glusterpy.gfapi import Volume as GVolume
    brick = tmp_path / "gfbrick"
    brick.mkdir()
    name = glusterd.create_volume(brick)
    p = Daemon(tmp_path / "primary")
    pvol = svol = None
    try:
        p.start()
        p.ok("volume", "create", "pv", f"127.0.0.1:{tmp_path}/pb0")
        p.ok("volume", "start", "pv")
        p.ok("volume", "set", "pv", "changelog.rollover-time", "1")  # (Pair.start)
        pvol = GVolume("127.0.0.1", "pv", port=p.port)
        pvol.mount()
        pvol.makedirs("/a/b")
        with pvol.fopen("/a/f", "wb") as f:
            f.write(b"to GlusterFS " * 500)
        pvol.symlink("f", "/a/l")
        pvol.chown("/a/f", 1000, 1000)
        pvol.chmod("/a/b", 0o700)
        pvol.setxattr("/a/f", "user.k", b"v")
        secondary = f"127.0.0.1::{name}"

        def geo(*words):
            return p.ok("volume", "geo-replication", "pv", secondary, *words)
        geo("create")
        session = geo("status", "--json").json()["sessions"][secondary]
        assert session["secondary_id"] == str(glusterd.volume_id(name))
        geo("config", "change-interval", "1")
        geo("start")

        def checkpoint():
            time.sleep(0.05)
            geo("config", "checkpoint", "now")
            wait_for(lambda: any(r["checkpoint_completed"] for r in
                                 geo("status", "--json").json()["rows"]), 90, "the checkpoint")

        def compare():
            primary, second = _tree(pvol), _tree(svol)
            assert primary.keys() == second.keys()
            for path in primary:
                assert primary[path] == second[path], path
        checkpoint()
        svol = GVolume("127.0.0.1", name)
        svol.mount()
        compare()
        # a second crawl, over what the first one made there
        with pvol.fopen("/a/f", "ab") as f:
            f.write(b"appended")
        pvol.rename("/a/b", "/a/c")
        pvol.unlink("/a/l")
        pvol.setxattr("/a/c", "user.k2", b"w")
        checkpoint()
        compare()
        geo("stop")
        geo("delete")
    finally:
        for v in (pvol, svol):
            if v is not None:
                v.umount()
        p.cleanup()
        glusterd.stop_volume(name)
