"""Replica 3 over brick *processes*, with bricks killed by SIGKILL.

Each brick is a ``glusterpy brick`` process (protocol/server -> features/index
-> features/locks -> [debug/delay-gen ->] storage/posix on a directory of its
own); this test process is the client: protocol/client to each brick under
cluster/replicate.  A brick is killed with ``kill -9`` - no goodbye, its
connections just drop - and started again on the same port; protocol/client
reconnects and replicate heals, the way the self-heal daemon would (an index
crawl of every brick until nothing is pending).  Then every file must be
byte-identical on the three bricks and hold every write that was
acknowledged.

To land a kill in the middle of a rename, a mkdir or a truncate, brick 1
runs debug/delay-gen holding those fops for a moment before they reach
storage/posix: the fop is on its way when the process dies.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from glusterpy.fops import FopError, Loc
from glusterpy.graph import Graph

from replicate_support import (brick_stack, create_file, free_port, gfid_req,
                               network_client_volfile, pending, root_loc, tree_of, wait_for)
from test_replicate_heal import assert_clean, heal_until_clean, read_all

pytestmark = pytest.mark.slow

GLUSTERPY = [sys.executable, "-m", "glusterpy.cli.main"]


@pytest.fixture(autouse=True)
def quick_reconnect(monkeypatch):
    """protocol/client retries a lost brick every 3 s; here every 0.2 s."""
    monkeypatch.setattr("xlators.protocol.client.RECONNECT_INTERVAL", 0.2)


class BrickProcesses:
    """Three bricks as processes; `kill(i)` is kill -9, `start(i)` starts
    brick i again on its port."""

    def __init__(self, base: Path, n: int = 3, vol: str = "rep", delay: dict | None = None):
        self.base, self.vol = base, vol
        self.bricks = []
        self.ports = [free_port() for _ in range(n)]
        self.procs: list[subprocess.Popen | None] = [None] * n
        for i in range(n):
            b = base / f"b{i}"
            b.mkdir()
            self.bricks.append(b)
            (base / f"brick{i}.vol").write_text(self._volfile(i, b, (delay or {}).get(i)))

    def _volfile(self, i: int, directory: Path, delay: str | None) -> str:
        text, top = brick_stack(self.vol, i, directory, top_name=f"{self.vol}-index-{i}")
        if delay:
            # debug/delay-gen between locks and posix on this brick
            text = text.replace(f"    subvolumes {self.vol}-posix-{i}\n",
                                f"    subvolumes {self.vol}-delay-{i}\n", 1)
            text = text.replace(
                f"volume {self.vol}-locks-{i}\n",
                f"volume {self.vol}-delay-{i}\n    type debug/delay-gen\n"
                f"    option enable {delay}\n    option delay-percentage 100%\n"
                f"    option delay-duration 400000\n"
                f"    subvolumes {self.vol}-posix-{i}\nend-volume\n"
                f"volume {self.vol}-locks-{i}\n", 1)
        return text + (f"volume {self.vol}-server-{i}\n    type protocol/server\n"
                       f"    option transport.socket.bind-address 127.0.0.1\n"
                       f"    option auth.addr.{top}.allow *\n"
                       f"    subvolumes {top}\nend-volume\n")

    def start(self, i: int) -> None:
        log = open(self.base / f"brick{i}.out", "a")
        self.procs[i] = subprocess.Popen(
            [*GLUSTERPY, "brick", "--volfile", str(self.base / f"brick{i}.vol"), "--port",
             str(self.ports[i]), "--log-file", str(self.base / f"brick{i}.log")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.procs[i].poll() is not None:
                raise AssertionError(f"brick {i} exited {self.procs[i].returncode}; "
                                     f"see {self.base}/brick{i}.out")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.ports[i])) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"brick {i} did not listen within 30 s")

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.procs[i] = None

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if proc is None:
                continue
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.asynccontextmanager
async def replica_over_processes(tmp_path, delay=None, options=None):
    procs = BrickProcesses(tmp_path, delay=delay)
    try:
        for i in range(3):
            procs.start(i)
        graph = Graph.from_text(network_client_volfile(procs.vol, procs.ports, options))
        async with graph.running():
            afr = graph.by_name[f"{procs.vol}-replicate-0"]
            await wait_for(lambda: all(afr.child_up), timeout=30)
            await graph.top.lookup(Loc.root(), None)
            yield procs, graph, afr
    finally:
        procs.stop_all()


def key(i, vol="rep"):
    return f"trusted.afr.{vol}-client-{i}"


async def restart_and_heal(procs, afr, i):
    procs.start(i)
    await wait_for(lambda: afr.child_up[i], timeout=30)
    await heal_until_clean(afr, rounds=8)


def assert_bricks_identical(procs):
    trees = [tree_of(b) for b in procs.bricks]
    for t in trees[1:]:
        assert t == trees[0]
    assert_clean(procs.bricks)


async def test_kill_9_under_concurrent_writers(tmp_path):
    async with replica_over_processes(tmp_path, options={"granular-entry-heal": "on"}) as (
            procs, graph, afr):
        top = graph.top
        acked: dict[str, bytearray] = {}
        stop = trio.Event()

        async def writer(n):
            name = f"w{n}"
            fd, gfid = await create_file(top, name)
            acked[name] = bytearray()
            k = 0
            while not stop.is_set():
                record = f"{name}:{k:06d};".encode() * 97
                try:
                    await top.writev(fd, record, len(acked[name]), 0, None)
                except FopError as e:
                    # not acknowledged: written again at the same offset
                    assert e.errno in (errno.ENOTCONN, errno.EIO), e
                    await trio.sleep(0.01)
                    continue
                acked[name].extend(record)
                k += 1
            await top.flush(fd, None)
            await top.release(fd, None)

        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(writer, n)
            await trio.sleep(0.7)
            procs.kill(1)
            await wait_for(lambda: not afr.child_up[1])
            await trio.sleep(0.7)
            stop.set()
        assert all(len(v) > 0 for v in acked.values())
        assert any(pending(procs.bricks[0] / name, key(1))[0] > 0 for name in acked)
        await restart_and_heal(procs, afr, 1)
        assert_bricks_identical(procs)
        for name, data in acked.items():
            for b in procs.bricks:
                assert (b / name).read_bytes() == bytes(data)
            reply = await top.lookup(root_loc(name), None)
            assert await read_all(top, reply.iatt.gfid) == bytes(data)


@pytest.mark.parametrize("operation", ["rename", "mkdir", "truncate"])
async def test_kill_9_in_the_middle_of(tmp_path, operation):
    """The operation reaches brick 1 and is held there (delay-gen) when
    the brick dies: it is acknowledged by the other two, recorded against
    brick 1, and healed once brick 1 is back."""
    delay = {"rename": "RENAME", "mkdir": "MKDIR", "truncate": "TRUNCATE,FTRUNCATE"}[operation]
    async with replica_over_processes(tmp_path, delay={1: delay}) as (procs, graph, afr):
        top = graph.top
        d = await top.mkdir(root_loc("d"), 0o755, 0, gfid_req()) if operation != "mkdir" \
            else None
        fd, gfid = await create_file(top, "f", b"0123456789" * 1000)
        await top.flush(fd, None)
        result = {}

        async def do():
            if operation == "rename":
                await top.rename(Loc(path="/f", pargfid=root_loc("f").pargfid, name="f",
                                     gfid=gfid),
                                 Loc(path="/d/g", pargfid=d.iatt.gfid, name="g"), None)
            elif operation == "mkdir":
                result["dir"] = await top.mkdir(root_loc("newdir"), 0o750, 0, gfid_req())
            else:
                await top.ftruncate(fd, 1234, None)
            result["done"] = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(do)
            await trio.sleep(0.15)          # on its way, held at brick 1
            procs.kill(1)
        assert result.get("done"), "the operation was not acknowledged"
        await top.flush(fd, None)
        await top.release(fd, None)
        b0, b1 = procs.bricks[0], procs.bricks[1]
        # brick 1 died with the operation held: it never did it, and the
        # others say so in their changelogs
        if operation == "rename":
            assert (b1 / "f").exists() and not (b1 / "d" / "g").exists()
            assert pending(b0 / "d", key(1))[2] > 0 and pending(b0, key(1))[2] > 0
        elif operation == "mkdir":
            assert not (b1 / "newdir").exists() and pending(b0, key(1))[2] > 0
        else:
            assert (b1 / "f").stat().st_size == 10000 and pending(b0 / "f", key(1))[0] > 0
        await restart_and_heal(procs, afr, 1)
        assert_bricks_identical(procs)
        b1 = procs.bricks[1]
        if operation == "rename":
            assert (b1 / "d" / "g").read_bytes() == b"0123456789" * 1000
            assert not (b1 / "f").exists()
        elif operation == "mkdir":
            assert (b1 / "newdir").is_dir() and (b1 / "newdir").stat().st_mode & 0o777 == 0o750
        else:
            assert (b1 / "f").read_bytes() == (b"0123456789" * 1000)[:1234]
