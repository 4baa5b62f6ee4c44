"""gfapi's `Volume(hosts, volname, port)` against glusterpy's own processes:
`glusterpy volfile-server` (GETSPEC and the portmap, on a port that is not
24007) and `glusterpy brick` (signed in to it), each a subprocess.

The volume is reached as a real client reaches it: GETSPEC, the volfile
server filling in the brick's `remote-port`, DUMP/SETVOLUME to the brick.
A volfile that does not load and an unknown volume fail the mount with a
clear LibgfapiException; a brick killed under an open file gives ENOTCONN at
once, and once a new brick process is up the same file works again.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glusterpy.gfapi import LibgfapiException, Volume

GLUSTERPY = [sys.executable, "-m", "glusterpy.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


class Processes:
    """The subprocesses a test started; all of them end with the test."""

    def __init__(self, base: Path):
        self.base = base
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, log: str) -> subprocess.Popen:
        proc = subprocess.Popen([*GLUSTERPY, *args, "--log-file", str(self.base / log)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


BRICK_VOLFILE = """volume vol-posix
    type storage/posix
    option directory {brick}
end-volume

volume vol-server
    type protocol/server
    option transport.socket.bind-address 127.0.0.1
    option auth.addr.vol-posix.allow *
    subvolumes vol-posix
end-volume
"""

CLIENT_VOLFILE = """volume vol-client-0
    type protocol/client
    option remote-host 127.0.0.1
    option remote-subvolume vol-posix
    option ping-timeout 5
end-volume
"""


@pytest.fixture
def ours(tmp_path):
    """volfile-server on a free port serving DIR/vol.vol, and a brick signed
    in to it; yields (volfile server port, start_brick, brick dir)."""
    brick = tmp_path / "brick"
    brick.mkdir()
    vols = tmp_path / "vols"
    vols.mkdir()
    (vols / "vol.vol").write_text(CLIENT_VOLFILE)
    (vols / "broken.vol").write_text(CLIENT_VOLFILE + "\nvolume x\n    type nowhere/nothing\n"
                                     "    subvolumes vol-client-0\nend-volume\n")
    brick_vol = tmp_path / "brick.vol"
    brick_vol.write_text(BRICK_VOLFILE.format(brick=brick))
    procs = Processes(tmp_path)
    vport, bport = free_port(), free_port()
    try:
        server = procs.start("volfile-server", "--dir", str(vols), "--port", str(vport),
                             "--address", "127.0.0.1", log="volfile-server.log")
        wait_listening(vport, server)

        def start_brick(port: int = bport):
            log = tmp_path / "brick.log"
            signed = log.read_text().count("signed in") if log.exists() else 0
            proc = procs.start("brick", "--volfile", str(brick_vol), "--port", str(port),
                               "--volfile-server", f"127.0.0.1:{vport}", log="brick.log")
            wait_listening(port, proc)
            # listening is not signed in: a client asking the portmap for
            # the brick before its sign-in is told it has none (CHILD_DOWN)
            deadline = time.monotonic() + 30
            while log.read_text().count("signed in") == signed:
                assert proc.poll() is None and time.monotonic() < deadline, "no sign-in"
                time.sleep(0.05)
            return proc
        yield vport, start_brick, brick
    finally:
        procs.stop()


def test_volume_from_our_volfile_server_and_brick(ours):
    vport, start_brick, brick = ours
    start_brick()
    with Volume("127.0.0.1", "vol", port=vport) as vol:
        vol.makedirs("/a/b")
        with vol.fopen("/a/b/f", "w") as f:
            f.write(b"through our own brick")
        assert vol.listdir("/a/b") == ["f"]
        assert vol.fopen("/a/b/f").read() == b"through our own brick"
        vol.setxattr("/a/b/f", "user.k", b"v")
        assert vol.getxattr("/a/b/f", "user.k") == b"v"
    assert (brick / "a/b/f").read_bytes() == b"through our own brick"


def test_mount_errors(ours):
    vport, start_brick, _ = ours
    with pytest.raises(LibgfapiException, match=r"'broken' .* does not load: .*:9: unknown "
                                                r"translator type 'nowhere/nothing'"):
        Volume("127.0.0.1", "broken", port=vport).mount()
    with pytest.raises(LibgfapiException, match="'nothere' does not exist"):
        Volume("127.0.0.1", "nothere", port=vport).mount()
    # no brick signed in: its volfile has no port, and the portmap knows none
    with pytest.raises(LibgfapiException, match="bricks are not reachable"):
        Volume("127.0.0.1", "vol", port=vport).mount()


@pytest.mark.parametrize("new_port", [False, True], ids=["same-port", "new-port"])
def test_killed_brick_and_a_new_one(ours, new_port):
    """With a new port, the volfile server sends FETCHSPEC when the new
    brick signs in; gfapi fetches the volfile again and the client's new
    remote-port takes it to the brick."""
    vport, start_brick, brick = ours
    proc = start_brick()
    with Volume("127.0.0.1", "vol", port=vport) as vol:
        f = vol.fopen("/f", "w+")
        f.write(b"one ")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        start = time.monotonic()
        while True:
            try:
                vol.stat("/f")
            except OSError as e:
                assert e.errno == errno.ENOTCONN
                break
            assert time.monotonic() - start < 5, "still connected to a killed brick"
            time.sleep(0.05)
        with pytest.raises(OSError) as e:
            f.write(b"lost")
        assert e.value.errno == errno.ENOTCONN

        start_brick(free_port()) if new_port else start_brick()
        deadline = time.monotonic() + 15
        while True:
            try:
                vol.stat("/f")
                break
            except OSError as e:
                assert e.errno == errno.ENOTCONN
                assert time.monotonic() < deadline, "no reconnect to the new brick"
                time.sleep(0.1)
        f.write(b"two")
        f.lseek(0)
        assert f.read() == b"one two"
        f.close()
    assert (brick / "f").read_bytes() == b"one two"
