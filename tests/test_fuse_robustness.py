"""A FUSE mount of a glusterpyd volume when the processes around it fail.

* glusterpyd killed (-9) and started again: the mount keeps serving from
  the bricks meanwhile (they outlive the daemon), reconnects to the new
  daemon (every 3 s, as GlusterFS's mgmt connection does) and a later
  `volume set` still reaches it.
* a brick stopped with SIGSTOP (alive, silent - the case only the ping
  timer catches): IO on the mount fails with ENOTCONN within
  network.ping-timeout and a few seconds, never hangs; once the brick is
  continued the mount reconnects and IO works again.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_glusterd_support import running_daemon, wait_for

GLUSTERPY = [sys.executable, "-m", "glusterpy.cli.main"]

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3 (fuse3)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)"),
]


class NetworkMount:
    """`glusterpy mount` of a glusterpyd volume, unmounted however the test ends."""

    def __init__(self, base: Path, spec: str, options: str = ""):
        self.mnt = base / "mnt"
        self.mnt.mkdir()
        self.log = base / "mount.log"
        opts = f"log-file={self.log}" + (f",{options}" if options else "")
        done = subprocess.run([*GLUSTERPY, "mount", "-o", opts, spec, str(self.mnt)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if os.path.ismount(self.mnt):
            if subprocess.run(["umount", str(self.mnt)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)


def io_round(mnt: Path, tag: str) -> None:
    """Create, write, read back, list and remove through the mount."""
    d = mnt / f"dir-{tag}"
    d.mkdir()
    (d / "f").write_bytes(tag.encode() * 1000)
    assert (d / "f").read_bytes() == tag.encode() * 1000
    assert os.listdir(d) == ["f"]
    (d / "f").unlink()
    d.rmdir()


def test_mount_keeps_serving_across_a_glusterpyd_restart(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "rs", f"127.0.0.1:{tmp_path / 'b1'}")
        d.ok("volume", "start", "rs")
        with NetworkMount(tmp_path, f"127.0.0.1:{d.port}:/rs") as m:
            held = open(m.mnt / "held", "w+b")
            held.write(b"before|")
            held.flush()
            d.kill9()
            io_round(m.mnt, "daemon-down")          # served by the bricks alone
            held.write(b"while-down|")
            held.flush()
            d.start()
            io_round(m.mnt, "daemon-back")
            # the mount's mgmt connection finds the new daemon, which sends
            # it FETCHSPEC on a change: a new shape makes it switch graphs
            d.ok("volume", "set", "rs", "performance.io-cache", "off")
            wait_for(lambda: "switched to the new graph" in m.log.read_text(), timeout=30,
                     what="the mount to follow volume set after the daemon came back")
            held.write(b"after")
            held.flush()
            held.seek(0)
            assert held.read() == b"before|while-down|after"
            held.close()
            io_round(m.mnt, "switched")
            assert (tmp_path / "b1" / "held").read_bytes() == b"before|while-down|after"


def test_stopped_brick_gives_enotconn_within_ping_timeout(tmp_path):
    ping_timeout = 3
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "pt", f"127.0.0.1:{tmp_path / 'b1'}")
        d.ok("volume", "set", "pt", "network.ping-timeout", str(ping_timeout))
        d.ok("volume", "start", "pt")
        [brick] = d.brick_pids()
        with NetworkMount(tmp_path, f"127.0.0.1:{d.port}:/pt",
                          "attribute-timeout=0,entry-timeout=0") as m:
            (m.mnt / "f").write_bytes(b"data")
            fd = os.open(m.mnt / "f", os.O_RDWR)
            os.kill(brick, signal.SIGSTOP)
            try:
                # a separate process, so a hang fails the test instead of wedging it
                probe = ("import os, sys, time\n"
                         "t = time.monotonic()\n"
                         "try:\n"
                         "    open(sys.argv[1], 'w').close(); r = 'ok'\n"
                         "except OSError as e:\n"
                         "    r = __import__('errno').errorcode[e.errno]\n"
                         "print(r, time.monotonic() - t)\n")
                start = time.monotonic()
                done = subprocess.run([sys.executable, "-c", probe, str(m.mnt / "new")],
                                      capture_output=True, text=True,
                                      timeout=ping_timeout + 30)
                outcome, took = done.stdout.split()
                assert outcome == "ENOTCONN", done
                assert float(took) < ping_timeout + 10, took
                assert "has not responded in the last" in m.log.read_text()
                # disconnected now: calls fail at once, not after another timeout
                t = time.monotonic()
                with pytest.raises(OSError) as e:
                    os.pwrite(fd, b"x", 0)
                assert e.value.errno == errno.ENOTCONN and time.monotonic() - t < 2
                with pytest.raises(OSError) as e:
                    os.stat(m.mnt / "f")
                assert e.value.errno == errno.ENOTCONN
                # close(2) returns the FLUSH fop's error, as fuse-bridge does
                with pytest.raises(OSError) as e:
                    os.close(fd)
                assert e.value.errno == errno.ENOTCONN
                assert time.monotonic() - start < ping_timeout + 20
            finally:
                os.kill(brick, signal.SIGCONT)
            # the client reconnects on its own (every 3 s) and IO works again
            wait_for(lambda: _works(m.mnt), timeout=30, what="IO after the brick came back")
            assert (m.mnt / "f").read_bytes() == b"data"
            io_round(m.mnt, "back")


def _works(mnt: Path) -> bool:
    try:
        os.stat(mnt / "f")
        return True
    except OSError:
        return False
