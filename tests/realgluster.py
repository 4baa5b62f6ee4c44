"""A private GlusterFS 10 glusterd for interoperability tests.

Debian's glusterd always listens on 24007, so one runs at a time on a
machine: the `glusterd` fixture (tests/conftest.py) takes a lock file,
refuses to start if something else holds the port, and undoes every volume,
mount and process it made, even when a test fails.  Tests use the GlusterFS
CLI through `GlusterD.cli()` with the private socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

GLUSTERD = shutil.which("glusterd") or "/usr/sbin/glusterd"
GLUSTER = shutil.which("gluster") or "/usr/sbin/gluster"
GLUSTERD_LOCK = "/run/lock/glusterpy-glusterd-24007.lock"


class GlusterD:
    """A glusterd of our own: its working directory, socket and log under
    `base`; it remembers every volume and mount it made, to undo them."""

    def __init__(self, base: Path):
        self.base = base
        self.host = socket.gethostname()
        self.sock = base / "glusterd.socket"
        self.proc: subprocess.Popen | None = None
        self.volumes: list[str] = []
        self.mounts: list[Path] = []
        self.prefix = f"gpy{os.getpid()}x{uuid.uuid4().hex[:6]}"

    def start(self) -> None:
        work = self.base / "wd"
        work.mkdir(parents=True)
        vol = self.base / "glusterd.vol"
        vol.write_text(
            "volume management\n    type mgmt/glusterd\n"
            f"    option working-directory {work}\n"
            f"    option glusterd-sockfile {self.sock}\n"
            "    option transport-type socket\n"
            "    option transport.socket.listen-port 24007\n"
            "    option ping-timeout 0\n    option event-threads 1\nend-volume\n")
        self.proc = subprocess.Popen(
            [GLUSTERD, "-N", "-f", str(vol), "-p", str(self.base / "glusterd.pid"),
             "-l", str(self.base / "glusterd.log"), "--log-level", "INFO"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"glusterd exited ({self.proc.returncode}); see "
                                   f"{self.base / 'glusterd.log'}")
            if self.sock.exists() and self.cli("volume", "list", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("glusterd did not come up in 30 s")

    def cli(self, *args, check=True) -> subprocess.CompletedProcess:
        r = subprocess.run([GLUSTER, "--mode=script", f"--glusterd-sock={self.sock}",
                            f"--log-file={self.base / 'cli.log'}", *args],
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"gluster {' '.join(args)}: {r.stdout}{r.stderr}")
        return r

    def create_volume(self, brick: Path) -> str:
        name = f"{self.prefix}v{len(self.volumes)}"
        self.cli("volume", "create", name, f"{self.host}:{brick}", "force")
        self.volumes.append(name)
        self.cli("volume", "start", name)
        return name

    def volume_id(self, name: str) -> uuid.UUID:
        for line in self.cli("volume", "info", name).stdout.splitlines():
            if line.startswith("Volume ID:"):
                return uuid.UUID(line.split(":", 1)[1].strip())
        raise RuntimeError(f"no volume id for {name}")

    def mount(self, name: str, where: Path) -> None:
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "glusterfs", "-o",
                        f"log-file={self.base / (name + '-client.log')}",
                        f"{self.host}:/{name}", str(where)],
                       check=True, timeout=60, capture_output=True)
        self.mounts.append(where)

    def umount(self, where: Path) -> None:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        if where in self.mounts:
            self.mounts.remove(where)

    def stop_volume(self, name: str) -> None:
        self.cli("volume", "stop", name, "force", check=False)
        if self.cli("volume", "delete", name, check=False).returncode == 0 and \
                name in self.volumes:
            self.volumes.remove(name)
        self._end_processes(name)
        shutil.rmtree(f"/var/run/gluster/vols/{name}", ignore_errors=True)

    def _end_processes(self, name: str) -> None:
        """End brick and client processes started for our volume `name`
        (recognised by their command line), by pid."""
        for pidfile in glob.glob(f"/var/run/gluster/vols/{name}/*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(Path(pidfile).read_text().strip()), signal.SIGKILL)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                if cmdline and os.path.basename(cmdline[0]).startswith(b"gluster") and \
                        any(name.encode() in arg for arg in cmdline):
                    os.kill(int(proc.name), signal.SIGKILL)

    def stop(self) -> None:
        """Undo everything, each step even if an earlier one failed."""
        for where in list(self.mounts):
            with contextlib.suppress(Exception):
                self.umount(where)
        for name in list(self.volumes):
            with contextlib.suppress(Exception):
                self.stop_volume(name)
            self._end_processes(name)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def private_glusterd(base: Path):
    """Start a GlusterD under `base` for the duration of the block."""
    if not os.path.exists(GLUSTERD):
        pytest.skip("Debian's glusterfs-server (glusterd) is not installed")
    if os.geteuid() != 0:
        pytest.skip("glusterd and FUSE mounts need root")
    os.makedirs(os.path.dirname(GLUSTERD_LOCK), exist_ok=True)
    with open(GLUSTERD_LOCK, "w") as lock:
        deadline = time.monotonic() + 300
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test run holds {GLUSTERD_LOCK} (glusterd on 24007)")
                time.sleep(0.5)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", 24007)) == 0:
                pytest.fail("port 24007 is taken by a glusterd this test did not start")
        gd = GlusterD(base)
        try:
            gd.start()
            yield gd
        finally:
            gd.stop()
