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
import tempfile
import time
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
    """A glusterpyd process (inside network namespace `netns` when given).
    Its bricks may be under `brick_roots` (glusterpyd --brick-root): by
    default the working directory's parent (a test's tmp_path) and the
    temporary directory.  `env` adds to the environment of the daemon (and
    so of its bricks and workers) and of the CLI run in its namespace."""

    def __init__(self, workdir: Path, *, port: int | None = None, address: str = "127.0.0.1",
                 netns: str | None = None, hostname: str | None = None,
                 brick_roots: list[str | Path] | None = None, env: dict | None = None):
        self.workdir = Path(workdir)
        self.env = {**os.environ, **env} if env else None
        if brick_roots is None:
            brick_roots = [self.workdir.parent, tempfile.gettempdir()]
        self.brick_roots = list(dict.fromkeys(str(Path(r).resolve()) for r in brick_roots))
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
        for root in self.brick_roots:
            cmd += ["--brick-root", root]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=self.env)
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
                                  text=True, timeout=300, stdin=subprocess.DEVNULL,
                                  env=self.env)
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
        """A raw REST call as the local administrator: over the daemon's
        unix socket (the TCP port wants a token: see `api_tcp`)."""
        return raw_http(method, path, body, headers, unix=str(self.socket))

    def api_tcp(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, *, tls: bool = True) -> tuple[int, dict]:
        """A raw REST call over TCP (TLS unless `tls` is false), as a remote
        caller: anonymous unless `headers` carry a token."""
        return raw_http(method, path, body, headers, host=self.address, port=self.port,
                        tls=tls)

    def uuid(self) -> str:
        return json.loads((self.workdir / "glusterd.info").read_text())["uuid"]

    @property
    def socket(self) -> Path:
        return self.workdir / "run" / "glusterpyd.socket"

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
        """The pids in the bricks' pidfiles, and every process whose command
        line names this workdir: a brick glusterpyd restarted just before the
        test ended may not have written its pidfile yet (one leaked that way)."""
        pids = set()
        for pidfile in (self.workdir / "run").rglob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.add(int(pidfile.read_text().strip()))
        mine = str(self.workdir).encode() + b"/"
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if mine in (proc / "cmdline").read_bytes():
                        pids.add(int(proc.name))
        return sorted(pids)

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


def raw_http(method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             *, unix: str | None = None, host: str = "127.0.0.1", port: int = 0,
             tls: bool = False, timeout: float = 60) -> tuple[int, dict]:
    """One HTTP request with nothing of the CLI's help: (status, JSON body)."""
    import http.client
    import ssl
    if unix is not None:
        class Conn(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(unix)
        conn = Conn("localhost", timeout=timeout)
    elif tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    ctype = resp.getheader("content-type") or ""
    if data and not ctype.startswith("application/json"):
        # the web console's files (glusterd/routes/console.py): the API answers JSON only
        return resp.status, {"content_type": ctype, "text": data.decode("utf-8", "replace")}
    return resp.status, json.loads(data or b"{}")


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
