"""`glusterpy brick` and `glusterpy volfile-server` as real processes: the
brick listens on --port, writes and removes its pid file, logs per
translator, signs in to the portmap (and again after the portmap comes
back), and on SIGTERM signs out, disconnects its clients releasing their
fds, and exits 0; wrong volfiles, busy ports and taken pid files are
refused with exit status 1 and a clear message."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from glusterpy.fops import GFID, ROOT_GFID, Loc
from glusterpy.glusterd.volfile_server import VolfileServer
from glusterpy.rpc import PortByBrickRequest
from glusterpy.rpc.programs import PORTMAP

from brickclient import brick_volfile, raw_client, wait_until

GLUSTERPY = [sys.executable, "-m", "glusterpy.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process(*args, **kwargs):
    """A subprocess killed (by pid) if the test did not end it."""
    proc = subprocess.Popen([*GLUSTERPY, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


async def wait_exit(proc, timeout=15) -> int:
    with trio.fail_after(timeout):
        while proc.poll() is None:
            await trio.sleep(0.05)
    return proc.returncode


def write_brick_volfile(tmp_path: Path, brick: Path) -> Path:
    vol = tmp_path / "brick.vol"
    vol.write_text(brick_volfile(brick, locks=True))
    return vol


async def test_brick_signs_in_serves_and_shuts_down_cleanly(tmp_path, brick, nursery):
    portmap = VolfileServer(tmp_path)
    pm_port = await nursery.start(portmap.serve, "127.0.0.1", 0)
    port = free_port()
    pidfile, logfile = tmp_path / "brick.pid", tmp_path / "brick.log"
    vol = write_brick_volfile(tmp_path, brick)
    sub = "test-locks"
    with process("brick", "--volfile", str(vol), "--port", str(port), "--pidfile", str(pidfile),
                 "--log-file", str(logfile), "--log-level", "DEBUG", "--volfile-server",
                 f"127.0.0.1:{pm_port}", "--brick-name", "/bricks/b1") as proc:
        await wait_until(lambda: portmap.portmap.ports() == {sub: port, "/bricks/b1": port},
                         timeout=15)
        assert pidfile.read_text() == f"{proc.pid}\n"
        async with raw_client(pm_port) as c:
            reply = await c.call(PORTMAP.by_name("PORTBYBRICK"), PortByBrickRequest(sub))
            assert reply.port == port
        async with raw_client(port) as c:
            assert (await c.setvolume(sub)).op_ret == 0
            f = await c.ok("create", loc=Loc(pargfid=ROOT_GFID, name="kept"), flags=os.O_RDWR,
                           mode=0o644, umask=0, xdata={"gfid-req": GFID.random()})
            await c.ok("writev", fd=f.fd._replace(gfid=f.iatt.gfid), data=b"durable",
                       offset=0, flags=0)
            # SIGTERM with the client still connected and its fd open
            proc.send_signal(signal.SIGTERM)
            assert await wait_exit(proc) == 0
        assert not pidfile.exists()
        assert portmap.portmap.ports() == {}  # signed out
        assert (brick / "kept").read_bytes() == b"durable"
        log = logfile.read_text()
        for line in ("I [test-server] listening on 127.0.0.1:", "accepted client from",
                     "disconnecting client", "signed in test-", "signed out /bricks/b1",
                     "received signal 15", "brick stopped"):
            assert line in log, line


async def test_brick_signs_in_again_when_the_portmap_comes_back(tmp_path, brick):
    pm_port = free_port()
    port = free_port()
    vol = write_brick_volfile(tmp_path, brick)
    with process("brick", "--volfile", str(vol), "--port", str(port), "--log-file",
                 str(tmp_path / "b.log"), "--volfile-server", f"127.0.0.1:{pm_port}") as proc:
        for _ in range(2):  # nothing listens yet; then a portmap restart
            portmap = VolfileServer(tmp_path)
            async with trio.open_nursery() as nursery:
                await nursery.start(portmap.serve, "127.0.0.1", pm_port)
                await wait_until(lambda: port in portmap.portmap.ports().values(), timeout=15)
                nursery.cancel_scope.cancel()
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc) == 0  # the sign-out gives up quietly


@pytest.mark.parametrize("volfile,message", [
    ("volume a\n type storage/posix\n", "'end-volume' missing"),
    ("volume a\n type storage/posix\n option directory /nonexistent\nend-volume\n",
     "is storage/posix, not protocol/server"),
    ("volume a\n type storage/posix\n option directory /\nend-volume\nvolume s\n"
     " type protocol/server\n option listen-port 5\n subvolumes a\nend-volume\n",
     "unknown option 'listen-port'"),
])
def test_brick_refuses_bad_volfiles(tmp_path, volfile, message):
    vol = tmp_path / "bad.vol"
    vol.write_text(volfile)
    with process("brick", "--volfile", str(vol)) as proc:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and message in err and str(vol) in err


def test_brick_refuses_a_busy_port_and_a_taken_pidfile(tmp_path, brick):
    vol = write_brick_volfile(tmp_path, brick)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with process("brick", "--volfile", str(vol), "--port",
                     str(busy.getsockname()[1])) as proc:
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "cannot listen on 127.0.0.1:" in err
    pidfile = tmp_path / "b.pid"
    port = free_port()
    with process("brick", "--volfile", str(vol), "--port", str(port),
                 "--pidfile", str(pidfile)) as first:
        deadline = time.monotonic() + 15
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with process("brick", "--volfile", str(vol), "--port", str(free_port()),
                     "--pidfile", str(pidfile)) as second:
            _, err = second.communicate(timeout=30)
        assert second.returncode == 1 and "is locked by a running process" in err
        assert pidfile.read_text() == f"{first.pid}\n"
        first.send_signal(signal.SIGINT)
        assert first.wait(15) == 0
    assert not pidfile.exists()


def test_brick_arguments_are_checked(tmp_path):
    with process("brick", "--volfile", "x", "--volfile-server", "host:notaport") as proc:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "expected HOST:PORT" in err
    with process("brick", "--volfile", str(tmp_path / "none.vol")) as proc:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "No such file" in err


def test_volfile_server_process_serves_and_stops(tmp_path):
    (tmp_path / "v.vol").write_text("volume v\n type protocol/client\nend-volume\n")
    port = free_port()
    pidfile = tmp_path / "vs.pid"

    async def fetch():
        async with raw_client(port) as c:
            from glusterpy.rpc import GetSpecRequest
            from glusterpy.rpc.programs import HANDSHAKE
            return await c.call(HANDSHAKE.by_name("GETSPEC"), GetSpecRequest(key="v"))
    with process("volfile-server", "--dir", str(tmp_path), "--port", str(port),
                 "--address", "127.0.0.1", "--pidfile", str(pidfile)) as proc:
        deadline = time.monotonic() + 15
        while True:
            try:
                reply = trio.run(fetch)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert reply.spec.startswith("volume v") and pidfile.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert not pidfile.exists()
