"""Rebalance and remove-brick through glusterpyd and the CLI, with real
processes: bricks, the rebalance process, gfapi clients writing all along.

* add-brick on a busy, mounted volume, `rebalance start --watch`, then
  `remove-brick start`/`commit` of a first brick: every file's checksum is
  the same before and after, every write the writers were acknowledged is
  there, fds opened before it all keep working, files sit on their hashed
  bricks and the removed brick holds no data;
* the rebalance process is supervised: killed with SIGKILL in the middle,
  it is started again and finishes the run, counting on; a daemon killed
  meanwhile leaves it running and its successor adopts it;
* bad input - remove-brick of a brick not in the volume, commit before the
  migration completed, rebalance of a stopped volume, add-brick of a brick
  in use, and the rest of what glusterd refuses - is refused with a clear
  message and leaves every state file as it was;
* progress: `--watch` draws a bar on a terminal (a pty here) and prints
  plain lines otherwise; the REST status and the OpenAPI document.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import random
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from glusterpy.gfapi import Volume
from test_distribute import hashed_brick, is_linkto
from test_glusterd_support import PYTHON, running_daemon, snapshot, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")


def bricks(tmp_path: Path, *names: str) -> list[str]:
    return [f"127.0.0.1:{tmp_path / n}" for n in names]


def populate(vol: Volume, rng: random.Random, count: int) -> dict[str, str]:
    """A tree of files of varied sizes (some renamed across directories, so
    linkto files exist); returns path -> sha256."""
    sums = {}
    for d in ("/a", "/a/b", "/c"):
        vol.makedirs(d, exist_ok=True)
    for i in range(count):
        path = ["/a", "/a/b", "/c", ""][i % 4] + f"/f{i}"
        size = rng.choice([0, 1, 4096, 70_000, 300_000]) if i % 25 else 2 << 20
        data = rng.randbytes(size)
        with vol.fopen(path, "w") as f:
            f.write(data)
        sums[path] = hashlib.sha256(data).hexdigest()
    for i in range(0, count, 9):
        old = ["/a", "/a/b", "/c", ""][i % 4] + f"/f{i}"
        new = f"/c/moved{i}"
        vol.rename(old, new)
        sums[new] = sums.pop(old)
    return sums


def checksums(vol: Volume, paths) -> dict[str, str]:
    return {p: hashlib.sha256(vol.open(p).read()).hexdigest() for p in paths}


class Writers:
    """Threads writing through one client while the volume changes under
    them: each owns some files, kept open the whole time, and writes
    regions or appends; what each write was acknowledged with is kept, so
    the files must end up exactly as `expected`."""

    def __init__(self, vol: Volume, count: int = 3, files_each: int = 2):
        self.vol = vol
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.acked = 0
        self.expected: dict[str, bytearray] = {}
        self.threads = []
        for k in range(count):
            names = [f"/w/t{k}-{j}" for j in range(files_each)]
            self.threads.append(threading.Thread(target=self._run, args=(k, names)))

    def __enter__(self):
        self.vol.makedirs("/w", exist_ok=True)
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _run(self, k: int, names: list[str]) -> None:
        rng = random.Random(k)
        try:
            files = []
            for name in names:
                f = self.vol.fopen(name, "w+")
                seed = rng.randbytes(256 << 10)
                f.write(seed)
                self.expected[name] = bytearray(seed)
                files.append((name, f))
            while not self.stop.is_set():
                name, f = rng.choice(files)
                model = self.expected[name]
                if rng.random() < 0.3:                        # append
                    data = rng.randbytes(rng.randint(1, 20_000))
                    f.pwrite(data, len(model))
                    model += data
                else:                                         # overwrite a region
                    offset = rng.randrange(0, len(model))
                    data = rng.randbytes(rng.randint(1, 30_000))
                    f.pwrite(data, offset)
                    end = offset + len(data)
                    if end > len(model):
                        model.extend(b"\0" * (end - len(model)))
                    model[offset:end] = data
                self.acked += 1
                time.sleep(0.002)
            for _, f in files:       # the fds opened before it all still work
                f.fsync()
                f.close()
        except BaseException as e:
            self.errors.append(e)


def data_files(brick: Path) -> list[Path]:
    return [p for p in brick.rglob("*") if p.is_file() and ".glusterfs" not in p.parts
            and not is_linkto(p)]


def data_brick(tmp_path: Path, path: str) -> str | None:
    """The brick directory holding a file's data."""
    for brick in ("b1", "b2", "b3"):
        p = tmp_path / brick / path.lstrip("/")
        if p.exists() and not is_linkto(p):
            return brick
    return None


def on_hashed_brick(brick_paths: list[Path], path: str) -> bool:
    rel = path.lstrip("/")
    d, _, name = rel.rpartition("/")
    h = hashed_brick(brick_paths, d, name)
    p = brick_paths[h] / rel
    return p.exists() and not is_linkto(p)


@pytest.mark.slow
def test_add_brick_rebalance_remove_brick_under_writers(tmp_path):
    b = bricks(tmp_path, "b1", "b2", "b3")
    rng = random.Random(5)
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "grow", *b[:2])
        d.ok("volume", "start", "grow")
        with Volume("127.0.0.1", "grow", port=d.port) as vol:
            before = populate(vol, rng, 160)
            # idle fds, opened before anything moves, used after their files moved
            held = {p: vol.open(p).read() for p in sorted(before)[:30] if
                    vol.stat(p).st_size}
            where = {p: data_brick(tmp_path, p) for p in held}
            fds = {p: vol.fopen(p, "r+") for p in held}
            with Writers(vol) as writers:
                # extend the mounted, busy volume, then rebalance it
                d.ok("volume", "add-brick", "grow", b[2])
                wait_for(lambda: len(vol._avol.graph.by_name["grow-dht"].children) == 3,
                         what="the client's switch to three bricks")
                r = d.ok("volume", "rebalance", "grow", "start", "--watch")
                assert "Rebalance on grow has been started successfully" in r.out
                lines = [x for x in r.out.splitlines() if x.startswith("rebalance grow:")]
                assert lines and "completed 100.0%" in lines[-1]     # plain lines, no bar
                assert "\r" not in r.out
                table = r.out.splitlines()
                header = next(i for i, x in enumerate(table) if "Rebalanced-files" in x)
                row = table[header + 2].split()
                assert row[0] == "127.0.0.1" and "completed" in row
                status = d.ok("volume", "rebalance", "grow", "status", "--json").json()
                agg = status["aggregate"]
                assert agg["status"] == "completed" and agg["files"] > 0
                assert agg["failures"] + agg["skipped"] < 6   # at most the files in writing
                assert "Task                 : Rebalance" in d.ok("volume", "status",
                                                                   "grow").out
                moved = [p for p in held if data_brick(tmp_path, p) != where[p]]
                assert moved, "none of the files held open moved"
                for p, f in fds.items():
                    assert f.pread(len(held[p]), 0) == held[p], p
                    f.pwrite(b"held", 0)
                    f.fsync()
                    held[p] = b"held" + held[p][4:]
                    before[p] = hashlib.sha256(held[p]).hexdigest()
                # then shrink it: the first brick's data moves off it
                r = d.ok("volume", "remove-brick", "grow", b[0], "start", "--watch")
                assert "volume remove-brick start: success" in r.out
                assert "completed" in r.out
                time.sleep(0.3)
            for f in fds.values():
                f.close()
            assert not writers.errors, writers.errors
            assert writers.acked > 50
            expected = {name: bytes(data) for name, data in writers.expected.items()}
        st = d.ok("volume", "remove-brick", "grow", b[0], "status", "--json").json()
        if st["status"]["aggregate"]["failures"] or st["status"]["aggregate"]["skipped"]:
            # files written to during their move failed with EBUSY: run it again
            d.ok("volume", "remove-brick", "grow", b[0], "stop")
            d.ok("volume", "remove-brick", "grow", b[0], "start", "--watch")
        d.ok("--yes", "volume", "remove-brick", "grow", b[0], "commit")
        info = d.ok("volume", "info", "grow", "--json").json()["volumes"][0]
        assert [x["name"] for x in info["bricks"]] == b[1:]
        assert data_files(tmp_path / "b1") == []
        with Volume("127.0.0.1", "grow", port=d.port) as vol:
            assert checksums(vol, before) == before
            for name, data in expected.items():
                assert vol.open(name).read() == data, name
            seen = {os.path.join(p, f) for p, _, fs in vol.walk("/") for f in fs}
            assert seen == set(before) | set(expected)
        remaining = [tmp_path / "b2", tmp_path / "b3"]
        assert all(on_hashed_brick(remaining, p) for p in before)


def test_a_killed_rebalance_process_is_restarted_and_finishes(tmp_path):
    b = bricks(tmp_path, "k1", "k2")
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "kv", b[0])
        d.ok("volume", "start", "kv")
        with Volume("127.0.0.1", "kv", port=d.port) as vol:
            sums = populate(vol, random.Random(9), 240)
        d.ok("volume", "add-brick", "kv", b[1])
        d.ok("volume", "set", "kv", "cluster.rebal-throttle", "lazy")
        d.ok("volume", "rebalance", "kv", "start")
        pidfile = d.workdir / "run" / "kv" / "rebalance.pid"
        status = d.workdir / "run" / "kv" / "rebalance.json"
        wait_for(lambda: pidfile.exists() and status.exists() and
                 json.loads(status.read_text()).get("files", 0) >= 3,
                 what="the first files moved")
        first = int(pidfile.read_text())
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() and
                 int(pidfile.read_text()) != first, what="a new rebalance process")
        second = int(pidfile.read_text())
        # the daemon dies too: the rebalance goes on, and the new daemon adopts it
        d.kill9()
        assert os.path.exists(f"/proc/{second}")
        d.start()
        assert int(pidfile.read_text()) == second
        r = d.ok("volume", "rebalance", "kv", "status", "--watch")
        assert "completed" in r.out
        doc = json.loads(status.read_text())
        assert doc["status"] == "completed" and doc["files"] >= 3
        assert "restarting" in (d.log.read_text())
        with Volume("127.0.0.1", "kv", port=d.port) as vol:
            assert checksums(vol, sums) == sums
        bp = [tmp_path / "k1", tmp_path / "k2"]
        assert all(on_hashed_brick(bp, p) for p in sums)


def test_refusals_leave_the_state_as_it_was(tmp_path):
    b = bricks(tmp_path, "g1", "g2", "g3", "g4")
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "good", *b[:2])
        d.ok("volume", "create", "idle", *bricks(tmp_path, "i1", "i2"))
        d.ok("volume", "create", "one", *bricks(tmp_path, "o1"))
        d.ok("volume", "start", "good")
        d.ok("volume", "start", "one")
        with Volume("127.0.0.1", "good", port=d.port) as vol:
            populate(vol, random.Random(3), 400)
        d.ok("volume", "add-brick", "good", b[2])
        before = snapshot(d.workdir)
        cases = [
            (["volume", "rebalance", "idle", "start"], "needs to be started"),
            (["volume", "rebalance", "one", "start"], "not a distribute volume"),
            (["volume", "rebalance", "nosuch", "start"], "does not exist"),
            (["volume", "rebalance", "good", "status"], "Rebalance not started"),
            (["volume", "rebalance", "good", "stop"], "Rebalance not started"),
            (["volume", "rebalance", "good", "sideways"], "Usage"),
            (["volume", "rebalance", "good", "fix-layout", "start", "force"], "Usage"),
            (["volume", "remove-brick", "good", *bricks(tmp_path, "nope"), "start"],
             "Incorrect brick"),
            (["volume", "remove-brick", "good", b[0], "status"], "No remove-brick task"),
            (["volume", "add-brick", "good", b[0]], "already part of"),
            (["volume", "add-brick", "good", bricks(tmp_path, "i1")[0]],
             "already part of a volume"),
        ]
        for argv, message in cases:
            r = d.cli(*argv)
            assert r.rc != 0, f"{argv} was accepted: {r.text}"
            assert message in r.text, f"{argv}: expected {message!r} in {r.text!r}"
            assert snapshot(d.workdir) == before, f"{argv} changed the state on disk"
        status, doc = d.api("POST", "/api/v1/volumes/good/rebalance",
                            json.dumps({"action": "sideways"}).encode())
        assert status == 400 and "start, fix-layout or stop" in doc["error"]
        status, doc = d.api("GET", "/api/v1/volumes/nosuch/rebalance")
        assert status == 404
        assert snapshot(d.workdir) == before

        # while a rebalance runs: what glusterd refuses then (one migration
        # at a time, given as GlusterFS also takes it: a number)
        d.ok("volume", "set", "good", "cluster.rebal-throttle", "1")
        assert "cluster.rebal-throttle: 1" in d.ok("volume", "info", "good").out
        d.ok("volume", "rebalance", "good", "start")
        before = snapshot(d.workdir)
        for argv, message in [
                (["volume", "rebalance", "good", "start"], "already started"),
                (["volume", "add-brick", "good", b[3]], "rebalance is in progress"),
                (["volume", "remove-brick", "good", b[0], "start"],
                 "Rebalance is in progress"),
                (["--yes", "volume", "stop", "good"], "rebalance session is in progress")]:
            r = d.cli(*argv)
            assert r.rc != 0 and message in r.text, (argv, r.text)
            assert snapshot(d.workdir) == before, f"{argv} changed the state on disk"
        # the progress bar, on a terminal
        out = cli_on_a_pty(d, "volume", "rebalance", "good", "status", "--watch")
        assert "\r[" in out and "%" in out and "files moved" in out
        r = d.ok("volume", "rebalance", "good", "stop")
        assert "rebalance process may be in the middle of a file migration" in r.out
        wait_for(lambda: d.ok("volume", "rebalance", "good", "status", "--json").json()
                 ["aggregate"]["status"] == "stopped", what="the rebalance stopped")

        # remove-brick: commit before the migration completed is refused
        r = d.ok("volume", "remove-brick", "good", b[1], "start")
        before = snapshot(d.workdir)
        r = d.cli("--yes", "volume", "remove-brick", "good", b[1], "commit")
        assert r.rc != 0 and "use 'force' option as migration is in progress" in r.err, r.text
        assert snapshot(d.workdir) == before
        for argv, message in [
                (["volume", "rebalance", "good", "start"], "not yet committed"),
                (["volume", "remove-brick", "good", b[0], "start"], "remove-brick task")]:
            r = d.cli(*argv)
            assert r.rc != 0 and message in r.text, (argv, r.text)
            assert snapshot(d.workdir) == before, f"{argv} changed the state on disk"
        d.ok("volume", "remove-brick", "good", b[1], "stop")
        info = d.ok("volume", "info", "good", "--json").json()["volumes"][0]
        assert len(info["bricks"]) == 3 and "remove-brick" not in info["tasks"]
        assert "decommissioned" not in (d.workdir / "vols/good/good.tcp-fuse.vol").read_text()


def cli_on_a_pty(d, *args: str, timeout: float = 120) -> str:
    """Run the CLI with its standard output on a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([PYTHON, "-m", "glusterpy.cli.main", args[0], "--remote-host",
                             d.remote, *args[1:]], stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
                if b"%" in b"".join(chunks) and len(chunks) > 2:
                    break
            elif proc.poll() is not None:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_rest_status_and_openapi(tmp_path):
    b = bricks(tmp_path, "r1", "r2")
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "api", b[0])
        d.ok("volume", "start", "api")
        with Volume("127.0.0.1", "api", port=d.port) as vol:
            populate(vol, random.Random(1), 40)
        d.ok("volume", "add-brick", "api", b[1])
        status, doc = d.api("POST", "/api/v1/volumes/api/rebalance",
                            json.dumps({"action": "fix-layout"}).encode())
        assert status == 200 and doc["task"]["cmd"] == "fix-layout"
        wait_for(lambda: d.api("GET", "/api/v1/volumes/api/rebalance")[1]["aggregate"]
                 ["status"] == "fix-layout completed", what="fix-layout")
        status, doc = d.api("GET", "/api/v1/volumes/api/rebalance")
        assert doc["kind"] == "rebalance" and len(doc["nodes"]) == 1
        row = doc["nodes"][0]
        assert row["status"] == "fix-layout completed" and row["files"] == 0
        assert row["dirs"] == 4
        text = d.ok("volume", "rebalance", "api", "status").out
        assert "fix-layout completed" in text and "run time in h:m:s" in text
        spec = d.api("GET", "/api/v1/openapi.json")[1]["paths"]
        assert set(spec["/api/v1/volumes/{name}/rebalance"]) == {"get", "post"}
        assert "/api/v1/volumes/{name}/remove-brick" in spec
        get = spec["/api/v1/volumes/{name}/rebalance"]["get"]
        schema = get["responses"]["200"]["content"]["application/json"]["schema"]
        assert "aggregate" in schema["properties"] and "nodes" in schema["properties"]
        post = spec["/api/v1/volumes/{name}/rebalance"]["post"]
        assert post["requestBody"]["content"]["application/json"]["schema"]["properties"][
            "action"]["enum"] == ["start", "fix-layout", "stop"]


def test_status_table_and_progress_line_formats():
    from glusterpy.cli.rebalance_cmd import format_table, human, progress_line
    doc = {"volume": "v", "kind": "remove-brick", "task": {"cmd": "start-force"},
           "nodes": [{"host": "node1", "status": "in progress", "files": 12,
                      "size": 3 << 20, "lookups": 40, "failures": 1, "skipped": 2,
                      "run-time": 3725},
                     {"host": "node2", "status": "not started"}],
           "aggregate": {"status": "in progress", "files": 12, "size": 3 << 20,
                         "lookups": 40, "failures": 1, "skipped": 2, "run-time": 3725,
                         "time-left": 90, "progress": 0.5}}
    lines = format_table(doc, remove_brick=True).splitlines()
    assert lines[0].split() == ["Node", "Rebalanced-files", "size", "scanned", "failures",
                                "skipped", "status", "run", "time", "in", "h:m:s"]
    # node2 took no part; remove-brick counts skipped files as failures
    assert lines[2].split() == ["node1", "12", "3.0MB", "40", "3", "0", "in", "progress",
                                "1:02:05"]
    assert len(lines) == 4 and "Estimated time left" in lines[3] and "0:01:30" in lines[3]
    assert format_table(doc).splitlines()[2].split()[4:6] == ["1", "2"]
    assert (human(0), human(1023), human(1536), human(5 << 30)) == \
        ("0Bytes", "1023Bytes", "1.5KB", "5.0GB")
    plain = progress_line(doc)
    assert plain.startswith("remove-brick v: in progress 50.0% - 12 files moved (3.0MB)")
    assert "about 0:01:30 left" in plain
    bar = progress_line(doc, width=100)
    assert bar.startswith("[") and " 50.0% " in bar and len(bar) < 100
    doc["aggregate"]["progress"] = None        # the totals are not counted yet
    assert "<=>" in progress_line(doc, width=100)
    fix = {"task": {"cmd": "fix-layout"}, "nodes": [
        {"host": "n1", "status": "fix-layout completed", "run-time": 61}], "aggregate": {}}
    assert format_table(fix).splitlines()[2].split() == ["n1", "fix-layout", "completed",
                                                          "0:01:01"]
