"""fcntl locks on FUSE mounts reach the bricks' features/locks.

Two `glusterpy mount`s of one glusterpyd volume (one brick, and replica 3,
where cluster/replicate takes each lock on every brick) are two clients,
as two hosts mounting it would be: a lock one takes must be seen by the other
(GETLK reports it, SETLK gets EAGAIN, SETLKW waits for it), and it goes
when its holder unlocks, closes the file or dies.  A process waiting in
F_SETLKW can be interrupted by a signal.  Each locker is a process of its
own, as fcntl locks belong to processes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from test_fuse_robustness import NetworkMount
from test_glusterd_support import running_daemon, wait_for

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3 (fuse3)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)"),
]


def locker(path: Path, script: str) -> subprocess.Popen:
    """A process that opens `path` as f and runs `script`; it prints what
    the test waits for."""
    code = textwrap.dedent("""
        import errno, fcntl, os, signal, struct, sys, time
        f = os.open(sys.argv[1], os.O_RDWR)
    """) + textwrap.dedent(script)
    return subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def line_of(proc: subprocess.Popen, timeout: float = 30) -> str:
    """The next line a locker prints (fails the test if it says nothing)."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise AssertionError(f"the locker said nothing within {timeout}s")
    return proc.stdout.readline().strip()


def try_lock(path: Path, kind=fcntl.F_WRLCK, start=0, length=0) -> str:
    """F_SETLK from a process of its own: "locked" or the errno's name."""
    p = locker(path, f"""
        try:
            fcntl.fcntl(f, fcntl.F_SETLK, struct.pack("hhqqi4x", {kind}, 0, {start}, {length}, 0))
            print("locked")
        except OSError as e:
            print(errno.errorcode[e.errno])
    """)
    out, _ = p.communicate(timeout=60)
    return out.strip()


def get_lock(path: Path, start=0, length=0) -> tuple[int, int, int, int]:
    """F_GETLK for a write lock from a process of its own: (type, start, len, pid)."""
    p = locker(path, f"""
        got = fcntl.fcntl(f, fcntl.F_GETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, {start},
                                                        {length}, 0))
        t, _, s, l, pid = struct.unpack("hhqqi4x", got)
        print(t, s, l, pid)
    """)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    t, s, ln, pid = map(int, out.split())
    return t, s, ln, pid


@pytest.fixture(scope="module", params=["one brick", "replica 3"])
def two_mounts(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("fuselocks")
    with running_daemon(base / "wd") as d:
        if request.param == "replica 3":
            d.ok("volume", "create", "lk", "replica", "3",
                 *[f"127.0.0.1:{base / f'brick{i}'}" for i in range(3)])
        else:
            d.ok("volume", "create", "lk", f"127.0.0.1:{base / 'brick'}")
        d.ok("volume", "start", "lk")
        (base / "a").mkdir()
        (base / "b").mkdir()
        with NetworkMount(base / "a", f"127.0.0.1:{d.port}:/lk") as a, \
                NetworkMount(base / "b", f"127.0.0.1:{d.port}:/lk") as b:
            yield a.mnt, b.mnt


def fresh_file(mounts, name: str) -> tuple[Path, Path]:
    a, b = mounts
    (a / name).write_bytes(b"x" * 4096)
    wait_for(lambda: (b / name).exists(), 10, "the file on the second mount")
    return a / name, b / name


def holder(path: Path, start=0, length=0) -> subprocess.Popen:
    """A process holding a write lock on [start, start+length) until told
    (a line on stdin) to close the file."""
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, struct, sys
        f = os.open(sys.argv[1], os.O_RDWR)
        fcntl.fcntl(f, fcntl.F_SETLKW, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, {start},
                                                   {length}, 0))
        print("locked", flush=True)
        sys.stdin.readline()
        os.close(f)
        print("closed", flush=True)
        sys.stdin.readline()
    """), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert line_of(p) == "locked"
    return p


def finish(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.communicate(timeout=30)


def test_a_lock_on_one_mount_is_seen_on_the_other(two_mounts):
    a, b = fresh_file(two_mounts, "seen")
    h = holder(a, 100, 50)
    try:
        assert try_lock(b, start=120, length=10) == "EAGAIN"
        assert try_lock(b, kind=fcntl.F_RDLCK, start=0, length=100) == "locked"
        assert try_lock(b, start=150, length=0) == "locked"
        t, s, ln, pid = get_lock(b, 0, 0)
        assert (t, s, ln, pid) == (fcntl.F_WRLCK, 100, 50, h.pid)
        assert get_lock(b, 0, 100)[0] == fcntl.F_UNLCK
        # the holder's own mount sees it too: another process there conflicts
        assert try_lock(a, start=100, length=1) == "EAGAIN"
    finally:
        finish(h)


def test_close_and_death_release_the_lock(two_mounts):
    a, b = fresh_file(two_mounts, "release")
    h = holder(a)
    try:
        assert try_lock(b) == "EAGAIN"
        h.stdin.write("\n")
        h.stdin.flush()
        assert line_of(h) == "closed"
        assert try_lock(b) == "locked"       # close(2) let it go, the holder still runs
    finally:
        finish(h)
    h = holder(a)
    try:
        assert try_lock(b) == "EAGAIN"
        h.kill()
        h.wait(10)
        wait_for(lambda: try_lock(b) == "locked", 10, "the killed holder's lock to go")
    finally:
        finish(h)


def test_a_child_closing_inherited_fds_leaves_the_parents_lock(two_mounts):
    """Every fork and exec closes the fds the child inherited; each close
    is a FLUSH with the child's lock owner, which must not release the
    parent's locks."""
    a, b = fresh_file(two_mounts, "forked")
    p = locker(a, """
        import subprocess
        fcntl.fcntl(f, fcntl.F_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
        subprocess.run([sys.executable, "-c", "pass"], check=True)   # close_fds
        if os.fork() == 0:
            os._exit(0)                                             # exit closes f
        os.wait()
        print("locked", flush=True)
        sys.stdin.readline()
    """)
    try:
        assert line_of(p) == "locked"
        assert try_lock(b) == "EAGAIN"
    finally:
        finish(p)


def test_setlkw_waits_for_the_other_mount(two_mounts):
    a, b = fresh_file(two_mounts, "wait")
    h = holder(a)
    w = locker(b, """
        print("waiting", flush=True)
        fcntl.fcntl(f, fcntl.F_SETLKW, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
        print("locked", time.monotonic(), flush=True)
    """)
    try:
        assert line_of(w) == "waiting"
        time.sleep(1)
        assert w.poll() is None, "F_SETLKW returned while the lock was held"
        released = time.monotonic()
        h.stdin.write("\n")
        h.stdin.flush()
        word, when = line_of(w).split()
        assert word == "locked" and float(when) >= released
    finally:
        finish(h)
        finish(w)


def test_a_waiter_is_interrupted_by_a_signal(two_mounts):
    a, b = fresh_file(two_mounts, "interrupt")
    h = holder(a)
    w = locker(b, """
        class Alarm(Exception):
            pass
        def ring(*_):
            raise Alarm
        signal.signal(signal.SIGALRM, ring)
        signal.alarm(2)
        start = time.monotonic()
        try:
            fcntl.fcntl(f, fcntl.F_SETLKW, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
            print("locked", flush=True)
        except Alarm:
            print("interrupted", round(time.monotonic() - start), flush=True)
    """)
    try:
        word, seconds = line_of(w, 60).split()
        assert word == "interrupted" and int(seconds) < 10
        w.wait(30)
        h.stdin.write("\n")
        h.stdin.flush()
        assert line_of(h) == "closed"
        # the interrupted waiter holds nothing: the file is free
        wait_for(lambda: try_lock(b) == "locked", 10, "the file to be free")
    finally:
        finish(h)
        finish(w)


def test_the_lock_is_on_the_brick(two_mounts, tmp_path):
    """Not kept by one kernel: a gfapi client (a third client, no FUSE)
    sees the lock a mount took."""
    from glusterpy.fops import Flock, LockCmd, LockType
    from glusterpy.gfapi import Volume
    a, _ = fresh_file(two_mounts, "brick")
    h = holder(a, 0, 10)
    try:
        spec = Path("/proc/self/mounts").read_text()
        line = next(ln for ln in spec.splitlines() if f" {two_mounts[0]} " in ln)
        host_port = line.split()[0].rsplit(":/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        with Volume(host, "lk", port=int(port)) as vol:
            with vol.fopen("/brick", "r+") as f:
                got = f.lock(LockCmd.GETLK, Flock(type=LockType.WRLCK, start=0, len=0))
                assert got.type == LockType.WRLCK and (got.start, got.len) == (0, 10)
    finally:
        finish(h)
