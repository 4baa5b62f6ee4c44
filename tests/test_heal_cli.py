"""Self-heal through glusterpyd: glustershd, `volume heal` and quorum, with
real processes.

Each test starts glusterpyd (tests/test_glusterd_support.py), makes a
replica 3 volume with the CLI, and reaches it through gfapi at the daemon's
port, as an application would.  Bricks are killed with kill -9; glusterpyd
starts them again (its supervision, or `volume start NAME force`), and the
node's glustershd - not the test, not a client - heals them.  What the
bricks hold afterwards is compared byte for byte.

glusterpyd restarts a killed brick within a second or two, so a brick
cannot be kept down the way GlusterFS's tests keep it down; the split-brain
test therefore writes to each brick alone through client graphs that reach
only that brick (the volume's own client volfile with the other bricks'
ports pointing nowhere) - which leaves on the bricks exactly the changelogs
that killing bricks alternately leaves.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from glusterpy.gfapi import Volume
from glusterpy.glusterd.shd import socket_path
from test_glusterd_support import Daemon, _alive, free_port, running_daemon, snapshot, \
    wait_for
from replicate_support import tree_of
from test_replicate_heal import assert_clean

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")


# -- helpers -------------------------------------------------------------------


def bricks(base: Path, *names: str) -> list[str]:
    return [f"127.0.0.1:{base / n}" for n in names]


def make_replica3(d: Daemon, base: Path, name: str, *extra: str, options=()) -> list[Path]:
    d.ok("volume", "create", name, "replica", "3", *extra,
         *bricks(base, f"{name}0", f"{name}1", f"{name}2"))
    for key, value in options:
        d.ok("volume", "set", name, key, value)
    d.ok("volume", "start", name)
    return [base / f"{name}{i}" for i in range(3)]


def brick_rows(d: Daemon, name: str) -> list[dict]:
    return d.ok("volume", "status", name, "--json").json()["volumes"][0]["bricks"]


def kill9_brick(d: Daemon, name: str, i: int) -> int:
    pid = brick_rows(d, name)[i]["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def all_online(d: Daemon, name: str) -> bool:
    return all(r["online"] for r in brick_rows(d, name))


def info_counts(d: Daemon, name: str, *words: str) -> list[int | None]:
    """Per brick, the count `heal NAME info [...]` prints (None for "-")."""
    out = d.ok("volume", "heal", name, "info", *words).out
    counts = []
    for line in out.splitlines():
        if line.startswith("Number of entries"):
            value = line.rsplit(":", 1)[1].strip()
            counts.append(None if value == "-" else int(value))
    return counts


def healed(d: Daemon, name: str) -> bool:
    return info_counts(d, name) == [0, 0, 0]


def shd_status(d: Daemon) -> dict:
    """glustershd's own answer on its control socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(socket_path(d.workdir.resolve())))
        s.sendall(b'{"op": "status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            data += s.recv(65536)
    return json.loads(data)


def shd_pid(d: Daemon) -> int | None:
    try:
        pid = int((d.workdir / "run" / "glustershd.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


class Writers:
    """Threads appending records to files of their own through one gfapi
    volume; a record counts once pwrite returned (acknowledged), a failed
    one is written again at the same offset."""

    def __init__(self, vol: Volume, names: list[str]):
        self.vol = vol
        self.acked = {n: bytearray() for n in names}
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in names]

    def _run(self, name: str) -> None:
        try:
            with self.vol.fopen(f"/{name}", "w+") as f:
                k = 0
                while not self.stop.is_set():
                    record = f"{name}:{k:06d};".encode() * 91
                    try:
                        f.pwrite(record, len(self.acked[name]))
                    except OSError as e:
                        assert e.errno in (errno.ENOTCONN, errno.EIO, errno.EROFS), e
                        time.sleep(0.02)
                        continue
                    self.acked[name].extend(record)
                    k += 1
        except BaseException as e:
            self.errors.append(e)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not self.errors, self.errors


def assert_replicas(base: list[Path], expected: dict[str, bytes], arbiter: bool = False):
    """Every file byte-identical on the data bricks and equal to what was
    acknowledged; the arbiter keeps the name and no data; no pending
    changelog or index entry anywhere."""
    data = base[:2] if arbiter else base
    for name, content in expected.items():
        for b in data:
            assert (b / name).read_bytes() == content, f"{b / name} differs"
        if arbiter:
            assert (base[2] / name).stat().st_size == 0
    trees = [tree_of(b) for b in data]
    assert all(t == trees[0] for t in trees[1:])
    assert_clean(base)


# -- the headline: kill -9 under writers, the shd heals --------------------------


@pytest.mark.slow
def test_shd_heals_a_killed_brick_and_heal_info_shows_it(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        base = make_replica3(d, tmp_path, "rep", options=[("cluster.heal-timeout", "5")])
        assert healed(d, "rep")
        assert d.ok("volume", "heal", "rep").out.startswith(
            "Launching heal operation to perform index self heal on volume rep has been "
            "successful \nUse heal info commands to check status.")
        # 1. the shd on: a brick dies under four writers and comes back
        with Volume("127.0.0.1", "rep", port=d.port) as vol:
            with Writers(vol, [f"w{i}" for i in range(4)]) as writers:
                time.sleep(0.8)
                killed = kill9_brick(d, "rep", 1)
                time.sleep(1.5)
            acked = {n: bytes(v) for n, v in writers.acked.items()}
        assert all(len(v) > 0 for v in acked.values())
        assert not _alive(killed)
        d.ok("volume", "start", "rep", "force")
        wait_for(lambda: all_online(d, "rep"), 30, "brick 1 back")
        # no client is connected now: glustershd alone heals, woken by
        # brick 1's return (or the 5 s heal-timeout)
        wait_for(lambda: healed(d, "rep"), 60, "heal info to show 0 entries")
        assert_replicas(base, acked)
        stats = d.ok("volume", "heal", "rep", "statistics").out
        assert stats.startswith("Gathering crawl statistics on volume rep has been successful")
        assert "Type of crawl: INDEX" in stats and "Crawl statistics for brick no 2" in stats
        doc = d.ok("volume", "heal", "rep", "statistics", "--json").json()
        assert sum(e["healed"] for b in doc["bricks"] for e in b["events"]) >= 1
        counts = d.ok("volume", "heal", "rep", "statistics", "heal-count").out
        assert counts.count("Number of entries: 0") == 3

        # 2. the shd off: what is pending stays listed, then heals once on
        r = d.ok("volume", "heal", "rep", "disable")
        assert r.out.strip() == "Disable heal on volume rep has been successful"
        wait_for(lambda: shd_pid(d) is None, 30, "glustershd to stop (its only volume)")
        with Volume("127.0.0.1", "rep", port=d.port) as vol:
            with Writers(vol, ["p0", "p1"]) as writers:
                time.sleep(0.5)
                kill9_brick(d, "rep", 2)
                vol.mkdir("/made-while-down")
                time.sleep(1.0)
            acked.update({n: bytes(v) for n, v in writers.acked.items()})
        wait_for(lambda: all_online(d, "rep"), 30, "brick 2 back")
        time.sleep(1)
        counts = info_counts(d, "rep")
        # bricks 0 and 1 hold what brick 2 missed (brick 2's own index may
        # list what was in flight when it died)
        assert counts[0] >= 3 and counts[1] >= 3 and counts[2] is not None, counts
        out = d.ok("volume", "heal", "rep", "info").out
        brick0 = out.split("\n\n")[0].splitlines()
        assert brick0[0] == f"Brick 127.0.0.1:{base[0]}"
        assert {"/p0 ", "/p1 ", "/made-while-down "} <= set(brick0)
        assert "Status: Connected" in brick0
        assert info_counts(d, "rep", "split-brain") == [0, 0, 0]
        summary = d.ok("volume", "heal", "rep", "info", "summary").out
        assert summary.count("Number of entries in split-brain: 0") == 3
        assert f"Total Number of entries: {counts[0]}" in summary
        for argv in (["rep"], ["rep", "full"], ["rep", "statistics"]):
            r = d.cli("volume", "heal", *argv)
            assert r.rc == 1 and "Self-heal-daemon is disabled. Heal will not be triggered " \
                                  "on volume rep" in r.err, r.text
        d.ok("volume", "heal", "rep", "enable")
        wait_for(lambda: healed(d, "rep"), 60, "heal after enable")
        assert_replicas(base, acked)
        assert (base[2] / "made-while-down").is_dir()
        # a full crawl on request
        r = d.ok("volume", "heal", "rep", "full")
        assert "to perform full self heal on volume rep has been successful" in r.out
        wait_for(lambda: "Type of crawl: FULL" in
                 d.ok("volume", "heal", "rep", "statistics").out, 30, "a full crawl")


# -- split-brain ------------------------------------------------------------------


def one_brick_client(d: Daemon, name: str, only: int) -> Volume:
    """The volume's client graph reaching brick `only` alone (no quorum)."""
    dead = free_port()
    opts = [f"{name}-client-{i}.remote-port={dead}" for i in range(3) if i != only]
    opts.append(f"{name}-replicate-0.quorum-type=none")
    return Volume.from_volfile(d.workdir / "vols" / name / f"{name}.noperf.vol",
                               xlator_options=opts)


@pytest.mark.slow
def test_split_brain_listed_read_eio_and_resolved_by_each_policy(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        base = make_replica3(d, tmp_path, "sb")
        names = [f"sb{i}" for i in range(5)]
        with Volume("127.0.0.1", "sb", port=d.port) as vol:
            for n in names + ["fine"]:
                with vol.fopen(f"/{n}", "w") as f:
                    f.write(b"base" * 10)
            vol.mkdir("/dir")
        # as GlusterFS's tests do: no self-heal daemon while the sides diverge
        d.ok("volume", "heal", "sb", "disable")
        # replica 3 counts a brick accused by only one other as a source
        # (afr's post-op failure accounting), so each brick gets a write the
        # two others miss: every copy is accused by both others
        for only, data in ((0, b"A" * 100), (1, b"B" * 60), (2, b"C" * 80)):
            v = one_brick_client(d, "sb", only)
            try:
                for n in names:
                    with v.fopen(f"/{n}", "r+") as f:
                        f.pwrite(data, 0)
            finally:
                v.umount()
            time.sleep(0.05)  # later bricks' copies are the later ones
        d.ok("volume", "heal", "sb", "enable")
        # listed by info split-brain (on the bricks whose index holds them)
        out = d.ok("volume", "heal", "sb", "info", "split-brain").out
        assert info_counts(d, "sb", "split-brain") == [5, 5, 5], out
        assert f"Brick 127.0.0.1:{base[0]}\n" in out and "/sb3\n" in out
        assert "Number of entries in split-brain: 5" in out
        assert "/sb0 - Is in split-brain" in d.ok("volume", "heal", "sb", "info").out
        # the daemon does not pick a side
        time.sleep(1)
        assert (base[0] / "sb0").read_bytes()[:100] == b"A" * 100
        assert (base[1] / "sb0").read_bytes()[:60] == b"B" * 60
        assert (base[2] / "sb0").read_bytes()[:80] == b"C" * 80
        with Volume("127.0.0.1", "sb", port=d.port) as vol:
            for n in names:
                with pytest.raises(OSError) as e:
                    vol.open(f"/{n}", os.O_RDONLY).read()
                assert e.value.errno == errno.EIO
            assert vol.open("/fine", os.O_RDONLY).read() == b"base" * 10
        # each policy heals its file; a file not in split-brain is refused
        r = d.ok("volume", "heal", "sb", "split-brain", "bigger-file", "/sb0")
        assert r.out.strip() == "Healed /sb0."
        r = d.ok("volume", "heal", "sb", "split-brain", "latest-mtime", "/sb1")
        assert r.out.strip() == "Healed /sb1."
        r = d.ok("volume", "heal", "sb", "split-brain", "source-brick",
                 f"127.0.0.1:{base[1]}", "/sb2")
        assert r.out.strip() == "Healed /sb2."
        r = d.cli("volume", "heal", "sb", "split-brain", "bigger-file", "/sb0")
        assert r.rc == 1 and "Healing /sb0 failed: File not in split-brain." in r.err
        # source-brick without a file: every split-brain entry of that brick
        r = d.ok("volume", "heal", "sb", "split-brain", "source-brick", f"127.0.0.1:{base[0]}")
        assert r.out.count("Healed gfid:") == 2, r.out
        assert "Status: Connected\nNumber of healed entries: 2" in r.out
        expected = {"sb0": b"A" * 100, "sb1": b"C" * 80, "sb2": b"B" * 60,
                    "sb3": b"A" * 100, "sb4": b"A" * 100, "fine": b"base" * 10}
        wait_for(lambda: healed(d, "sb"), 60, "nothing left to heal")
        assert info_counts(d, "sb", "split-brain") == [0, 0, 0]
        assert_replicas(base, expected)
        with Volume("127.0.0.1", "sb", port=d.port) as vol:
            for n, content in expected.items():
                assert vol.open(f"/{n}", os.O_RDONLY).read() == content
        log = d.ok("volume", "log", "sb", "--json").json()["entries"]
        assert any(e["op"] == "heal split-brain" and e["result"].startswith("success")
                   for e in log)


# -- quorum and the arbiter -----------------------------------------------------------


@pytest.mark.slow
def test_quorum_type_set_with_the_cli_refuses_writes_below_quorum(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        make_replica3(d, tmp_path, "q")
        for key, value, message in [("cluster.quorum-type", "sometimes", "auto"),
                                    ("cluster.quorum-count", "0", "below the minimum")]:
            r = d.cli("volume", "set", "q", key, value)
            assert r.rc == 1 and message in r.err, r.text
        d.ok("volume", "set", "q", "cluster.quorum-type", "fixed", "cluster.quorum-count", "3")
        with Volume("127.0.0.1", "q", port=d.port) as vol:
            afr = lambda: vol._avol.graph.by_name["q-replicate-0"]  # noqa: E731
            wait_for(lambda: afr().opts.quorum_type == "fixed" and afr().quorum_count == 3,
                     30, "the client to take the new quorum")
            with vol.fopen("/f", "w") as f:
                f.write(b"three up")
            kill9_brick(d, "q", 2)
            wait_for(lambda: not afr().child_up[2], 10, "the client to see brick 2 go")
            with pytest.raises(OSError) as e:
                with vol.fopen("/f", "r+") as f:
                    f.pwrite(b"two up", 0)
            assert e.value.errno in (errno.EROFS, errno.ENOTCONN)
            with pytest.raises(OSError):
                vol.fopen("/g", "w")
            wait_for(lambda: all(afr().child_up), 30, "brick 2 back")
            with vol.fopen("/f", "r+") as f:
                f.pwrite(b"THREE", 0)
            assert vol.open("/f", os.O_RDONLY).read() == b"THREE up"


@pytest.mark.slow
def test_arbiter_volume_heals(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        base = make_replica3(d, tmp_path, "arb", "arbiter", "1",
                             options=[("cluster.heal-timeout", "5")])
        with Volume("127.0.0.1", "arb", port=d.port) as vol:
            with Writers(vol, ["a0", "a1"]) as writers:
                time.sleep(0.5)
                kill9_brick(d, "arb", 0)  # a data brick
                time.sleep(1.2)
            acked = {n: bytes(v) for n, v in writers.acked.items()}
        wait_for(lambda: all_online(d, "arb"), 30, "brick 0 back")
        wait_for(lambda: healed(d, "arb"), 60, "the arbiter volume to heal")
        assert_replicas(base, acked, arbiter=True)


# -- glustershd's life ---------------------------------------------------------------------


def test_glustershd_follows_volumes_and_survives_the_daemon(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "plain", *bricks(tmp_path, "p0"))
        d.ok("volume", "start", "plain")
        assert shd_pid(d) is None  # nothing replicated: no self-heal daemon
        make_replica3(d, tmp_path, "life")
        pid = shd_pid(d)
        assert pid is not None
        shd_vol = (d.workdir / "vols" / "life" / "life-shd.vol").read_text()
        assert "option iam-self-heal-daemon yes" in shd_vol
        assert (d.workdir / "run" / "glustershd.vols").read_text().strip().endswith(
            "life-shd.vol")
        # kill -9: glusterpyd starts another
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: shd_pid(d) not in (None, pid), 30, "a new glustershd")
        wait_for(lambda: d.cli("volume", "heal", "life").rc == 0, 30, "it to serve")
        # the daemon dies: glustershd keeps running and is adopted
        pid = shd_pid(d)
        d.kill9()
        assert _alive(pid)
        d.start()
        assert shd_pid(d) == pid
        d.ok("volume", "heal", "life")
        # a heal-timeout reaches the running process; stopping the volume stops it
        d.ok("volume", "set", "life", "cluster.heal-timeout", "30")
        wait_for(lambda: "option heal-timeout 30" in
                 (d.workdir / "vols" / "life" / "life-shd.vol").read_text(), 10, "volgen")
        assert shd_pid(d) == pid
        # parallel heals: the new shd-max-threads reaches the running process's
        # replicate (no restart); a value out of range is refused by name
        d.ok("volume", "set", "life", "cluster.shd-max-threads", "4")
        wait_for(lambda: [s["max_threads"] for s in shd_status(d)["volumes"]["life"]["sets"]]
                 == [4], 20, "shd-max-threads to reach glustershd")
        assert shd_pid(d) == pid
        r = d.cli("volume", "set", "life", "cluster.shd-max-threads", "65")
        assert r.rc != 0 and "shd-max-threads" in r.err + r.out
        r = d.cli("volume", "set", "life", "cluster.shd-wait-qlength", "0")
        assert r.rc != 0 and "shd-wait-qlength" in r.err + r.out
        # the full sweep's position is kept in WORKDIR/glustershd
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert f"*-replicate-*.shd-state-dir={d.workdir / 'glustershd'}".encode() in cmdline
        d.ok("--yes", "volume", "stop", "life")
        wait_for(lambda: not _alive(pid), 30, "glustershd to stop with the volume")
        r = d.cli("volume", "heal", "life")
        assert r.rc == 1 and "Volume life is not started." in r.err


# -- bad input --------------------------------------------------------------------------


def test_heal_bad_input_is_refused_in_gluster_words(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "dist", *bricks(tmp_path, "d0", "d1"))
        d.ok("volume", "start", "dist")
        d.ok("volume", "create", "idle", "replica", "3", *bricks(tmp_path, "i0", "i1", "i2"))
        base = make_replica3(d, tmp_path, "good")
        with Volume("127.0.0.1", "good", port=d.port) as vol:
            with vol.fopen("/ok", "w") as f:
                f.write(b"fine")
            vol.mkdir("/adir")
        before = snapshot(d.workdir)
        b0 = f"127.0.0.1:{base[0]}"
        cases = [
            (["volume", "heal"], "Usage"),
            (["volume", "heal", "good", "sideways"], "Usage"),
            (["volume", "heal", "good", "info", "everything"], "Usage"),
            (["volume", "heal", "good", "statistics", "heal-count", "replica"], "Usage"),
            (["volume", "heal", "good", "split-brain", "bigger-file"], "Usage"),
            (["volume", "heal", "good", "split-brain", "coin-toss", "/ok"], "Usage"),
            (["volume", "heal", "good", "split-brain", "source-brick", "nocolon"], "Usage"),
            (["volume", "heal", "nosuch"], "Volume nosuch does not exist"),
            (["volume", "heal", "nosuch", "info"], "Volume nosuch does not exist"),
            (["volume", "heal", "nosuch", "disable"],
             "Disable heal on volume nosuch has been unsuccessful:\n"
             "Volume nosuch does not exist"),
            (["volume", "heal", "bad/name", "info"], "should not contain"),
            (["volume", "heal", "dist"], "Launching heal operation to perform index self "
             "heal on volume dist has been unsuccessful:\nVolume dist is not of type "
             "replicate or disperse"),
            (["volume", "heal", "dist", "full"], "is not of type replicate or disperse"),
            (["volume", "heal", "dist", "info"], "This command is supported for only volumes "
             "of replicate/disperse type. Volume dist is not of type replicate/disperse"),
            (["volume", "heal", "dist", "info", "split-brain"],
             "Volume dist is not of type replicate\nVolume heal failed."),
            (["volume", "heal", "dist", "statistics"], "This command is supported for only "
             "volume of replicated type. Volume dist is not of type replicate"),
            (["volume", "heal", "idle"], "Volume idle is not started."),
            (["volume", "heal", "idle", "info"], "Volume idle is not started (Or) All the "
             "bricks are not running."),
            (["volume", "heal", "good", "split-brain", "source-brick",
              f"127.0.0.1:{tmp_path / 'elsewhere'}"],
             f"\"127.0.0.1:{tmp_path / 'elsewhere'}\"- No such brick available in the volume."),
            (["volume", "heal", "good", "split-brain", "source-brick", "no-such-host.invalid:/x"],
             "No such brick available in the volume."),
            (["volume", "heal", "good", "split-brain", "bigger-file", "relative/path"],
             "<FILE> must be absolute path w.r.t. the volume, starting with '/'"),
            (["volume", "heal", "good", "split-brain", "bigger-file", "/no-such-file"],
             "Lookup failed on /no-such-file:No such file or directory."),
            (["volume", "heal", "good", "split-brain", "bigger-file", "/none/deeper"],
             "Lookup failed on /none:No such file or directory"),
            (["volume", "heal", "good", "split-brain", "latest-mtime", "/ok"],
             "Healing /ok failed: File not in split-brain."),
            (["volume", "heal", "good", "split-brain", "bigger-file", "/adir"],
             "'bigger-file' not a valid option for directories."),
            (["volume", "heal", "good", "split-brain", "source-brick", b0, "gfid:not-a-uuid"],
             "Lookup failed on gfid:not-a-uuid:Invalid argument."),
        ]
        for argv, message in cases:
            r = d.cli(*argv)
            assert r.rc != 0, f"{argv} was accepted: {r.text}"
            assert message in r.text, f"{argv}: expected {message!r} in {r.text!r}"
            assert snapshot(d.workdir) == before, f"{argv} changed the state on disk"
        # the REST side of the same
        api = "/api/v1/volumes/good/heal"
        for method, path, body, status, message in [
            ("POST", api, b'{"op": "sideways"}', 400, "index or full"),
            ("POST", api, b"[1]", 400, "JSON object"),
            ("POST", f"{api}/split-brain", b"{}", 400, "unknown split-brain policy"),
            ("POST", f"{api}/split-brain", b'{"policy": "bigger-file"}', 400, "needs the FILE"),
            ("POST", f"{api}/split-brain", b'{"policy": "bigger-file", "file": 7}', 400,
             "file must be a string"),
            ("POST", f"{api}/split-brain",
             b'{"policy": "latest-mtime", "file": "/ok", "brick": "h:/b"}', 400,
             "takes no brick"),
            ("POST", f"{api}/split-brain", b'{"policy": "source-brick"}', 400,
             "needs the brick"),
            ("GET", "/api/v1/volumes/nosuch/heal/info", None, 404, "does not exist"),
            ("DELETE", f"{api}/info", None, 405, "not allowed"),
            ("POST", "/api/v1/local/heal/good", b'{"op": "index"}', 403,
             "members of this node's pool"),
        ]:
            code, doc = d.api(method, path, body)
            assert code == status and message in doc["error"], (path, body, code, doc)
        assert snapshot(d.workdir) == before
        status, spec = d.api("GET", "/api/v1/openapi.json")
        for path in ("/api/v1/volumes/{name}/heal", "/api/v1/volumes/{name}/heal/info",
                     "/api/v1/volumes/{name}/heal/split-brain",
                     "/api/v1/volumes/{name}/heal/statistics"):
            assert path in spec["paths"], path
        assert "requestBody" in spec["paths"]["/api/v1/volumes/{name}/heal/split-brain"]["post"]
        # and the good volume still heals and reports
        assert info_counts(d, "good") == [0, 0, 0]
        doc = d.ok("volume", "heal", "good", "info", "--json").json()
        assert [b["status"] for b in doc["bricks"]] == ["Connected"] * 3
