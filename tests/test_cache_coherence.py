"""Coherence across clients of a glusterpyd volume (issue 17): with
features.cache-invalidation and performance.cache-invalidation on and a
10-minute md-cache timeout, a change made through one client reaches the
others on the bricks' invalidation, not after the timeout; with the
invalidation off, md-cache keeps answering what it cached, as GlusterFS's
documented semantics allow."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time

import pytest

from glusterpy.gfapi import Volume
from test_glusterd_support import running_daemon, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)"),
    pytest.mark.skipif(shutil.which("fusermount3") is None or not os.path.exists("/dev/fuse"),
                       reason="needs /dev/fuse and fusermount3 (fuse3)"),
]

#: the kernel's own attribute cache on the mounts (attribute-timeout=1);
#: waiting past it leaves md-cache as the only cache that could be stale
KERNEL_TIMEOUT = 1.0


@contextlib.contextmanager
def mounted(port: int, vol: str, mnt, log):
    mnt.mkdir()
    subprocess.run([sys.executable, "-m", "glusterpy.cli.main", "mount", "-o",
                    f"log-file={log},attribute-timeout={KERNEL_TIMEOUT},"
                    f"entry-timeout={KERNEL_TIMEOUT}", f"127.0.0.1:{port}:/{vol}", str(mnt)],
                   check=True, timeout=60)
    try:
        yield mnt
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        wait_for(lambda: not os.path.ismount(mnt), what="unmount")


@pytest.mark.parametrize("invalidation", ["on", "off"])
def test_a_change_reaches_the_other_clients(tmp_path, invalidation):
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "coh", f"127.0.0.1:{tmp_path / 'b1'}")
        for key in ("features.cache-invalidation", "performance.cache-invalidation"):
            d.ok("volume", "set", "coh", key, invalidation)
        d.ok("volume", "set", "coh", "performance.md-cache-timeout", "600")
        d.ok("volume", "start", "coh")
        with mounted(d.port, "coh", tmp_path / "a", tmp_path / "a.log") as a, \
                mounted(d.port, "coh", tmp_path / "b", tmp_path / "b.log") as b, \
                Volume("127.0.0.1", "coh", port=d.port) as gfapi:
            (a / "f").write_bytes(b"1234")
            assert os.stat(b / "f").st_size == 4 and gfapi.stat("/f").st_size == 4
            with open(a / "f", "ab") as f:
                f.write(b"5678")
            time.sleep(KERNEL_TIMEOUT + 0.5)
            if invalidation == "on":
                wait_for(lambda: os.stat(b / "f").st_size == 8,
                         what="mount b seeing mount a's append", timeout=10)
                wait_for(lambda: gfapi.stat("/f").st_size == 8,
                         what="gfapi seeing mount a's append", timeout=10)
                assert (b / "f").read_bytes() == b"12345678"
            else:
                # md-cache answers from what it cached (its 600 s timeout)
                assert os.stat(b / "f").st_size == 4
                assert gfapi.stat("/f").st_size == 4
            # a change through this client is always seen by this client
            with open(b / "f", "ab") as f:
                f.write(b"9")
            assert os.stat(b / "f").st_size == 9
