"""The servers a benchmark compares: glusterpy's brick and volfile server as
processes, and GlusterFS 10's own glusterd with a one-brick volume.

Both want port 24007 when the client is fio's gfapi engine (it cannot be
told another port), so a suite runs them one after the other, never
together, and refuses to start if something else holds 24007.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

GLUSTERPY = [sys.executable, "-m", "glusterpy.cli.main"]
GLUSTERFS_PORT = 24007
#: the lock the interop tests take before using 24007 (tests/realgluster.py)
PORT_24007_LOCK = "/run/lock/glusterpy-glusterd-24007.lock"


@contextlib.contextmanager
def port_24007(timeout: float = 600):
    """Hold 24007 against the test suite's private glusterds while we use it."""
    import fcntl
    os.makedirs(os.path.dirname(PORT_24007_LOCK), exist_ok=True)
    with open(PORT_24007_LOCK, "w") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{PORT_24007_LOCK} stayed locked for {timeout:g}s")
                time.sleep(0.5)
        if not port_free(GLUSTERFS_PORT):
            raise RuntimeError("port 24007 is busy: stop the glusterd that holds it first")
        yield


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not happen within {timeout:g}s")


def _options(options: dict[str, str] | None) -> str:
    return "".join(f"    option {k} {v}\n" for k, v in (options or {}).items())


def client_volfile(vol: str, subvolume: str, *, io_cache: bool = False,
                   options: dict[str, str] | None = None) -> str:
    """A one-brick client graph; the volfile server adds the brick's port.
    `options` go on its protocol/client (e.g. TLS)."""
    text = (f"volume {vol}-client-0\n    type protocol/client\n"
            f"    option remote-host 127.0.0.1\n    option remote-subvolume {subvolume}\n"
            f"    option transport-type tcp\n{_options(options)}end-volume\n")
    if io_cache:
        text += (f"\nvolume {vol}-io-cache\n    type performance/io-cache\n"
                 f"    subvolumes {vol}-client-0\nend-volume\n")
    return text


def brick_volfile(vol: str, directory: Path, options: dict[str, str] | None = None) -> str:
    return (f"volume {vol}-posix\n    type storage/posix\n    option directory {directory}\n"
            f"end-volume\n\nvolume {vol}-locks\n    type features/locks\n"
            f"    subvolumes {vol}-posix\nend-volume\n\n"
            f"volume {vol}-server\n    type protocol/server\n"
            "    option transport.socket.bind-address 127.0.0.1\n"
            f"    option auth.addr.{vol}-locks.allow 127.0.0.1\n{_options(options)}"
            f"    subvolumes {vol}-locks\nend-volume\n")


@contextlib.contextmanager
def glusterpy_volume(base: Path, vol: str, *, volfile_port: int,
                     client_options: dict[str, str] | None = None,
                     server_options: dict[str, str] | None = None):
    """Our volfile server on `volfile_port` and one brick process serving `vol`
    (extra options for the served protocol/client and the brick's server)."""
    brick, vols = base / "brick", base / "vols"
    brick.mkdir(parents=True)
    vols.mkdir()
    subvolume = f"{vol}-locks"
    (vols / f"{vol}.vol").write_text(client_volfile(vol, subvolume, options=client_options))
    (base / "brick.vol").write_text(brick_volfile(vol, brick, server_options))
    brick_port = free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [*GLUSTERPY, "volfile-server", "--dir", str(vols), "--port", str(volfile_port),
             "--address", "127.0.0.1", "--log-file", str(base / "volfile-server.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            [*GLUSTERPY, "brick", "--volfile", str(base / "brick.vol"), "--port",
             str(brick_port), "--log-file", str(base / "brick.log"), "--log-level", "WARNING",
             "--pidfile", str(base / "brick.pid"), "--volfile-server",
             f"127.0.0.1:{volfile_port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for(lambda: not port_free(brick_port) and not port_free(volfile_port),
                  "glusterpy's brick and volfile server listening")
        time.sleep(0.5)  # the brick signs in to the volfile server's portmap
        yield brick
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@contextlib.contextmanager
def glusterfs_volume(base: Path, vol: str, options: dict[str, str] | None = None):
    """A private GlusterFS 10 glusterd on 24007 and a started one-brick volume
    on a plain directory (force), with `volume set` `options`, all removed
    afterwards."""
    glusterd = shutil.which("glusterd") or "/usr/sbin/glusterd"
    gluster = shutil.which("gluster") or "/usr/sbin/gluster"
    if not os.path.exists(glusterd):
        raise RuntimeError("Debian's glusterfs-server is not installed")
    if not port_free(GLUSTERFS_PORT):
        raise RuntimeError("port 24007 is busy: stop the glusterd that holds it first")
    work, brick, sock = base / "wd", base / "brick", base / "glusterd.socket"
    work.mkdir(parents=True)
    brick.mkdir()
    (base / "glusterd.vol").write_text(
        "volume management\n    type mgmt/glusterd\n"
        f"    option working-directory {work}\n    option glusterd-sockfile {sock}\n"
        "    option transport-type socket\n    option transport.socket.listen-port 24007\n"
        "    option ping-timeout 0\n    option event-threads 1\nend-volume\n")
    proc = subprocess.Popen([glusterd, "-N", "-f", str(base / "glusterd.vol"),
                             "-p", str(base / "glusterd.pid"), "-l", str(base / "glusterd.log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def cli(*args, check=True):
        done = subprocess.run([gluster, "--mode=script", f"--glusterd-sock={sock}",
                               f"--log-file={base / 'cli.log'}", *args],
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            raise RuntimeError(f"gluster {' '.join(args)}: {done.stdout}{done.stderr}")
        return done
    created = False
    try:
        _wait_for(lambda: sock.exists() and cli("volume", "list", check=False).returncode == 0,
                  "glusterd answering")
        cli("volume", "create", vol, f"{socket.gethostname()}:{brick}", "force")
        created = True
        for key, value in (options or {}).items():
            cli("volume", "set", vol, key, value)
        cli("volume", "start", vol)
        yield brick
    finally:
        if created:
            cli("volume", "stop", vol, "force", check=False)
            cli("volume", "delete", vol, check=False)
        _kill_gluster_processes(vol)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(f"/var/run/gluster/vols/{vol}", ignore_errors=True)


def _kill_gluster_processes(vol: str) -> None:
    """The brick process glusterd started for `vol`, found by command line."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().split(b"\0")
            if args and os.path.basename(args[0]).startswith(b"gluster") and \
                    any(vol.encode() in a for a in args):
                os.kill(int(proc.name), signal.SIGKILL)


def unique_volume_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"
