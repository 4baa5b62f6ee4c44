"""Acceptance: real GlusterFS 10 clients on a volume made with the glusterpy CLI.

glusterpyd runs on a free port (not 24007), the volume is created and
started with `glusterpy volume ...`, and the clients fetch its volfile from
glusterpyd with GETSPEC: QEMU's gluster driver (qemu-img, qemu-io with
gluster://127.0.0.1:PORT/VOL/IMAGE) and the glusterfs FUSE client
(--volfile-server-port).  Then `volume set VOL performance.io-cache off` on
the mounted volume: glusterpyd sends FETCHSPEC, the FUSE client fetches the
new volfile and switches graphs (its log's last "Final graph" has no
io-cache, "switched to graph N" follows on the next request and the open fd
is migrated), and the mount keeps working.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from test_glusterd_support import running_daemon, wait_for

pytestmark = pytest.mark.interop


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make test installs it)")
    if os.geteuid() != 0:
        pytest.skip("FUSE mounts and bricks need root")


def run(*cmd: str, timeout: float = 120) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stdout}{done.stderr}"
    return done.stdout


def final_graphs(log: Path) -> list[str]:
    """The "Final graph" blocks a GlusterFS client logs for each graph."""
    text = log.read_text(errors="replace")
    return [block.split("+---")[1] for block in text.split("Final graph:")[1:]]


def test_real_clients_on_a_cli_made_volume(tmp_path):
    need("glusterfs", "qemu-img", "qemu-io", "umount")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    client_log = tmp_path / "glusterfs.log"
    pidfile = tmp_path / "glusterfs.pid"
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "acc", f"127.0.0.1:{tmp_path / 'b1'}",
             f"127.0.0.1:{tmp_path / 'b2'}")
        d.ok("volume", "start", "acc")
        url = f"gluster://127.0.0.1:{d.port}/acc/disk.qcow2"
        run("qemu-img", "create", "-f", "qcow2", url, "16M")
        io = run("qemu-io", "-f", "qcow2", "-c", "write -P 0x6b 0 1M", "-c",
                 "read -P 0x6b 0 1M", url)
        assert "wrote 1048576/1048576" in io and "Pattern verification failed" not in io
        info = run("qemu-img", "info", "--output=json", url)
        meta = json.loads(info[info.index("{"):])
        assert meta["format"] == "qcow2" and meta["virtual-size"] == 16 << 20
        assert (tmp_path / "b1" / "disk.qcow2").exists() or \
            (tmp_path / "b2" / "disk.qcow2").exists()

        mounted = False
        try:
            run("glusterfs", "--volfile-server=127.0.0.1", f"--volfile-server-port={d.port}",
                "--volfile-id=acc", f"--log-file={client_log}", f"--pid-file={pidfile}",
                str(mnt), timeout=60)
            wait_for(lambda: os.path.ismount(mnt), what="the glusterfs FUSE mount")
            mounted = True
            payload = os.urandom(3 << 20)
            (mnt / "before.bin").write_bytes(payload)
            assert "performance/io-cache" in final_graphs(client_log)[-1]
            with open(mnt / "open-across.txt", "w") as held:
                held.write("one|")
                held.flush()
                d.ok("volume", "set", "acc", "performance.io-cache", "off")
                # FETCHSPEC: the client fetches the volfile and builds the new graph ...
                wait_for(lambda: len(final_graphs(client_log)) >= 2,
                         what="the FUSE client's new graph")
                held.write("two")
                held.flush()
            # ... and switches to it on the next request, moving the open fd
            switched = [line for line in client_log.read_text(errors="replace").splitlines()
                        if "switched to graph" in line]
            assert switched and not switched[-1].endswith("switched to graph 0"), switched
            assert "migrated basefd" in client_log.read_text(errors="replace")
            graphs = final_graphs(client_log)
            assert len(graphs) >= 2 and "performance/io-cache" not in graphs[-1]
            assert (mnt / "open-across.txt").read_text() == "one|two"
            assert hashlib.sha256((mnt / "before.bin").read_bytes()).digest() == \
                hashlib.sha256(payload).digest()
            (mnt / "after.txt").write_text("after the switch")
            assert sorted(p.name for p in mnt.iterdir()) == \
                ["after.txt", "before.bin", "disk.qcow2", "open-across.txt"]
        finally:
            if mounted or os.path.ismount(mnt):
                if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
                    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            _end_pid_file(pidfile)
        assert not os.path.ismount(mnt)


def _end_pid_file(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
