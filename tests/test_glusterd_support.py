"""Helpers for the glusterpyd tests (no tests here): a glusterpyd process
on a private working directory and port, the CLI against it, snapshots of
the state on disk, and clean-up of every process it started.

`Daemon.cli(...)` runs `glusterpy` in this process (fast) or, for a daemon
inside a network namespace, as `ip netns exec NS python -m glusterpy...`.
`snapshot(workdir)` is every state file's content - everything but logs,
pid files and the audit log, which records refusals too - for "the state
on disk is unchanged" checks.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self):
        return json.loads(self.out)


def snapshot(workdir: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(Path(workdir).rglob("*")):
        rel = path.relative_to(workdir).as_posix()
        if path.is_dir() or rel.startswith(("logs/", "run/")) or rel == "audit.log":
            continue
        out[rel] = path.read_bytes()
    return out


class Daemon:
    """A glusterpyd process (inside network namespace `netns` when given)."""

    def __init__(self, workdir: Path, *, port: int | None = None, address: str = "127.0.0.1",
                 netns: str | None = None, hostname: str | None = None):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.address = address
        self.netns = netns
        self.hostname = hostname
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir.parent / f"{self.workdir.name}-glusterpyd.log"

    @property
    def remote(self) -> str:
        return f"{self.address}:{self.port}"

    def _prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def start(self, timeout: float = 30) -> "Daemon":
        cmd = [*self._prefix(), PYTHON, "-m", "glusterpy.glusterd.main", "--workdir",
               str(self.workdir), "--port", str(self.port), "--address", self.address,
               "--log-file", str(self.log), "--log-level", "DEBUG"]
        if self.hostname:
            cmd += ["--hostname", self.hostname]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"glusterpyd exited {self.proc.returncode}; see {self.log}")
            if self.cli("volume", "list").rc == 0:
                return self
            time.sleep(0.2)
        raise AssertionError(f"glusterpyd did not answer within {timeout}s; see {self.log}")

    def cli(self, *args: str, stdin_tty: bool = False) -> Result:
        argv = ["--remote-host", self.remote, *args]
        if self.netns:
            done = subprocess.run([*self._prefix(), PYTHON, "-m", "glusterpy.cli.main",
                                   args[0], *argv[:2], *args[1:]], capture_output=True,
                                  text=True, timeout=300, stdin=subprocess.DEVNULL)
            return Result(done.returncode, done.stdout, done.stderr)
        from glusterpy.cli.main import main
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                _stdin_not_a_tty():
            try:
                rc = main([args[0], *argv[:2], *args[1:]])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
        return Result(rc, out.getvalue(), err.getvalue())

    def ok(self, *args: str) -> Result:
        r = self.cli(*args)
        assert r.rc == 0, f"glusterpy {' '.join(args)} failed ({r.rc}): {r.text}"
        return r

    def api(self, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(f"http://{self.remote}{path}", data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def brick_pids(self) -> list[int]:
        pids = []
        for pidfile in (self.workdir / "run").rglob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int(pidfile.read_text().strip()))
        return pids

    def cleanup(self) -> None:
        """Stop the daemon and end every brick it started, by pid."""
        self.stop()
        for pid in self.brick_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for pid in self.brick_pids():
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def _stdin_not_a_tty():
    saved = sys.stdin
    sys.stdin = io.StringIO("y\n")  # never read: the CLI must not read a non-tty
    try:
        yield
    finally:
        sys.stdin = saved


def wait_for(predicate, timeout: float = 30, what: str = "condition", interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def running_daemon(workdir: Path, **kwargs):
    d = Daemon(workdir, **kwargs)
    try:
        d.start()
        yield d
    finally:
        d.cleanup()
