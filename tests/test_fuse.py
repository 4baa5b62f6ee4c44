"""The FUSE mount: the kernel's view of a volume behaves like a local
filesystem.  Each test mounts a local graph in a separate process (as the
real mount runs) and compares os.* calls on the mount with the same calls
on a local directory."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from test_gfapi_model import FilesystemModel, LocalSide

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3")
                                is None, reason="needs /dev/fuse and fusermount3 (fuse3)")

VOLFILE = """
volume m-posix
    type storage/posix
    option directory {brick}
end-volume

volume m-io-cache
    type performance/io-cache
    subvolumes m-posix
end-volume
"""


class Mount:
    """A background mount process of a local volfile, and its clean-up."""

    def __init__(self, base: Path, options: str | None = None, volfile: str = VOLFILE):
        self.base = base
        self.brick = base / "brick"
        self.mnt = base / "mnt"
        self.brick.mkdir(parents=True, exist_ok=True)
        self.mnt.mkdir(exist_ok=True)
        self.volfile = base / "m.vol"
        self.volfile.write_text(volfile.format(brick=self.brick))
        self.log = base / "mount.log"
        args = [sys.executable, "-m", "glusterpy.fuse", "--volfile", str(self.volfile)]
        opts = f"log-file={self.log}" + (f",{options}" if options else "")
        self.result = subprocess.run(args + ["-o", opts, str(self.mnt)],
                                     capture_output=True, text=True, timeout=60)

    def ok(self) -> bool:
        return self.result.returncode == 0 and os.path.ismount(self.mnt)

    def unmount(self) -> None:
        if os.path.ismount(self.mnt):
            if subprocess.run(["fusermount3", "-u", str(self.mnt)],
                              capture_output=True).returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True)
        deadline = time.monotonic() + 10
        while os.path.ismount(self.mnt) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def mount(tmp_path):
    m = Mount(tmp_path)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    yield m
    m.unmount()


def errname(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return errno.errorcode[e.errno]
    return "ok"


# -- mounting -------------------------------------------------------------------------

def test_mount_and_unmount_leave_nothing_behind(tmp_path):
    m = Mount(tmp_path)
    assert m.ok()
    (m.mnt / "f").write_text("x")
    assert (m.brick / "f").read_text() == "x"
    assert subprocess.run([sys.executable, "-c",
                           f"from glusterpy.fuse.mount import unmount; "
                           f"raise SystemExit(unmount({str(m.mnt)!r}))"]).returncode == 0
    assert not os.path.ismount(m.mnt)
    assert os.listdir(m.mnt) == []


def test_sigterm_unmounts(tmp_path):
    """SIGTERM ends the mount process and takes the mount down with it (as
    GlusterFS's glusterfs does): no stale mount point left behind."""
    import signal
    m = Mount(tmp_path)
    assert m.ok()
    (m.mnt / "f").write_text("x")
    pid = _mount_pid(m)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not Path(f"/proc/{pid}").exists(), "the mount process outlived SIGTERM"
        assert not os.path.ismount(m.mnt)
        assert os.listdir(m.mnt) == []
    finally:
        # a stale mount (the failure) makes ismount raise ENOTCONN
        subprocess.run(["fusermount3", "-uz", str(m.mnt)], capture_output=True)


def test_bad_mounts_fail_cleanly(tmp_path):
    volfile = tmp_path / "v.vol"
    volfile.write_text(VOLFILE.format(brick=tmp_path))
    m = subprocess.run([sys.executable, "-m", "glusterpy.fuse", "--volfile", str(volfile),
                        str(tmp_path / "no-such-dir")], capture_output=True, text=True)
    assert m.returncode == 1 and "does not exist" in m.stderr
    bad_brick = Mount(tmp_path / "b", volfile="volume x\n type storage/posix\n"
                                              " option directory /nonexistent/brick\nend-volume\n")
    assert bad_brick.result.returncode == 1
    assert "/nonexistent/brick" in bad_brick.result.stderr
    assert not os.path.ismount(bad_brick.mnt)
    bad_option = Mount(tmp_path / "c", options="frobnicate=1")
    assert bad_option.result.returncode != 0 and "frobnicate" in bad_option.result.stderr
    assert not os.path.ismount(bad_option.mnt)


def test_read_only_mount(tmp_path):
    m = Mount(tmp_path, options="ro")
    try:
        assert m.ok()
        assert errname((m.mnt / "f").write_text, "x") == "EROFS"
        assert os.statvfs(m.mnt).f_flag & os.ST_RDONLY
    finally:
        m.unmount()


# -- POSIX behaviour, against a local directory --------------------------------------------

def same(mount_path: Path, local_path: Path, fn):
    """fn(path) on the mount and on local: the same outcome."""
    def run(base):
        try:
            return ("ok", fn(base))
        except OSError as e:
            return ("err", errno.errorcode[e.errno])
    a, b = run(mount_path), run(local_path)
    assert a == b, f"mount gave {a}, local gave {b}"
    return a


def test_errno_cases(mount, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    for base in (mount.mnt, local):
        (base / "d").mkdir()
        (base / "d" / "f").write_text("x")
        (base / "file").write_text("y")
        os.symlink("loop2", base / "loop1")
        os.symlink("loop1", base / "loop2")
    cases = [
        lambda b: os.stat(b / "missing"),                      # ENOENT
        lambda b: os.mkdir(b / "d"),                           # EEXIST
        lambda b: os.rmdir(b / "d"),                           # ENOTEMPTY
        lambda b: os.open(b / "d", os.O_WRONLY),               # EISDIR
        lambda b: os.stat(b / "file" / "x"),                   # ENOTDIR
        lambda b: os.stat(b / "loop1"),                        # ELOOP
        lambda b: os.stat(b / ("n" * 256)),                    # ENAMETOOLONG
        lambda b: os.unlink(b / "d"),                          # EISDIR
        lambda b: os.rename(b / "d", b / "d" / "sub"),         # EINVAL
        lambda b: os.link(b / "d", b / "dl"),                  # EPERM
        lambda b: os.rename(b / "file", b / "d"),              # EISDIR
        lambda b: os.rename(b / "d", b / "file"),              # ENOTDIR
    ]
    outcomes = [same(mount.mnt, local, case)[1] for case in cases]
    assert outcomes == ["ENOENT", "EEXIST", "ENOTEMPTY", "EISDIR", "ENOTDIR", "ELOOP",
                        "ENAMETOOLONG", "EISDIR", "EINVAL", "EPERM", "EISDIR", "ENOTDIR"]


def test_links_renames_and_open_unlinked_files(mount):
    m = mount.mnt
    (m / "a").write_bytes(b"data")
    os.link(m / "a", m / "b")
    assert os.stat(m / "a").st_nlink == 2
    (m / "c").write_bytes(b"over")
    os.rename(m / "c", m / "a")            # rename over an existing file
    assert (m / "a").read_bytes() == b"over" and os.stat(m / "b").st_nlink == 1
    (m / "d1").mkdir()
    (m / "d2").mkdir()
    os.rename(m / "d1", m / "d2")          # over an empty directory
    assert not (m / "d1").exists() and (m / "d2").is_dir()
    fd = os.open(m / "b", os.O_RDONLY)
    os.unlink(m / "b")
    assert os.pread(fd, 10, 0) == b"data"  # the data stays readable through the fd
    os.close(fd)
    os.symlink("some/where", m / "s")
    assert os.readlink(m / "s") == "some/where"


def test_append_from_two_descriptors_and_truncate(mount):
    p = mount.mnt / "log"
    p.write_bytes(b"")
    a = os.open(p, os.O_WRONLY | os.O_APPEND)
    b = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(a, b"1")
    os.write(b, b"22")
    os.write(a, b"333")
    os.close(a)
    os.close(b)
    assert p.read_bytes() == b"122333"
    os.truncate(p, 100)
    assert p.stat().st_size == 100 and p.read_bytes()[6:] == bytes(94)
    os.truncate(p, 3)
    assert p.read_bytes() == b"122"


def test_times_modes_and_owners(mount):
    p = mount.mnt / "t"
    p.write_bytes(b"x")
    before = p.stat()
    time.sleep(0.05)
    with open(p, "ab") as f:
        f.write(b"more")
    after = p.stat()
    assert after.st_mtime_ns > before.st_mtime_ns and after.st_ctime_ns > before.st_ctime_ns
    os.utime(p, ns=(1_000_000_007, 2_000_000_009))
    s = p.stat()
    assert (s.st_atime_ns, s.st_mtime_ns) == (1_000_000_007, 2_000_000_009)
    os.chmod(p, 0o4751)
    assert stat.S_IMODE(p.stat().st_mode) == 0o4751
    os.chown(p, 4321, 8765)
    assert (p.stat().st_uid, p.stat().st_gid) == (4321, 8765)
    os.setxattr(p, "user.k", b"v")
    assert os.getxattr(p, "user.k") == b"v" and "user.k" in os.listxattr(p)
    os.removexattr(p, "user.k")
    assert errname(os.getxattr, p, "user.k") == "ENODATA"
    sv = os.statvfs(mount.mnt)
    assert sv.f_blocks > 0


def test_big_file_round_trip(mount):
    data = os.urandom(5 << 20)
    (mount.mnt / "big").write_bytes(data)
    assert (mount.mnt / "big").read_bytes() == data
    assert (mount.brick / "big").read_bytes() == data


# -- the model, through the kernel ----------------------------------------------------------

class MountModel(FilesystemModel):
    """FilesystemModel's rules, with os.* on the mount as the side under test."""

    _mounts: dict = {}

    def __init__(self):
        RuleBasedInit = super(FilesystemModel, self).__init__
        RuleBasedInit()
        if "m" not in self._mounts:
            base = Path(tempfile.mkdtemp(prefix="fuse-model-"))
            m = Mount(base, options="attribute-timeout=0,entry-timeout=0")
            assert m.ok(), m.result.stderr
            self._mounts["m"] = [m, 0]
        m, n = self._mounts["m"]
        self._mounts["m"][1] = n + 1
        name = f"run{n}"
        (m.mnt / name).mkdir()
        local = m.base / f"local-{name}"
        local.mkdir()
        self.brick = str(m.brick / name)
        self.local = LocalSide(str(local))
        self.remote = LocalSide(str(m.mnt / name))
        self.next_handle = 0

    def teardown(self):
        try:
            self.local.close_all()
            self.remote.close_all()
        finally:
            shutil.rmtree(self.local.root, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _unmount_model():
    yield
    for m, _ in MountModel._mounts.values():
        m.unmount()
        shutil.rmtree(m.base, ignore_errors=True)
    MountModel._mounts.clear()


TestMountAgainstLocal = MountModel.TestCase
TestMountAgainstLocal.settings = settings(max_examples=80, stateful_step_count=40,
                                          deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])


# -- glusterpy mount over the network ---------------------------------------------------------

def test_glusterpy_mount_of_our_brick_copies_a_tree(tmp_path):
    """`glusterpy mount 127.0.0.1:PORT:/VOL`: GETSPEC from our volfile server,
    protocol/client to our brick process; cp -a in, diff -r clean."""
    from test_interop_server import make_tree, served_volume
    src = tmp_path / "src"
    make_tree(src)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with served_volume(tmp_path / "srv", "fusepy") as sv:
        glusterpy = [sys.executable, "-m", "glusterpy.cli.main"]
        done = subprocess.run([*glusterpy, "mount", "-o", f"log-file={tmp_path / 'mount.log'}",
                               f"127.0.0.1:{sv.volfile_port}:/{sv.vol}", str(mnt)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        try:
            assert os.path.ismount(mnt)
            subprocess.run(["cp", "-a", str(src), str(mnt / "copy")], check=True, timeout=120)
            diff = subprocess.run(["diff", "-r", "--no-dereference", str(src),
                                   str(mnt / "copy")], capture_output=True, text=True, timeout=120)
            assert diff.returncode == 0, diff.stdout + diff.stderr
            assert os.getxattr(mnt / "copy" / "d1" / "small", "user.note") == b"kept"
            assert (sv.brick / "copy" / "d1" / "d2" / "big").read_bytes() == \
                (src / "d1" / "d2" / "big").read_bytes()
        finally:
            assert subprocess.run([*glusterpy, "umount", str(mnt)]).returncode == 0
        assert not os.path.ismount(mnt)
        # an unknown volume fails cleanly, leaving no mount behind
        bad = subprocess.run([*glusterpy, "mount", f"127.0.0.1:{sv.volfile_port}:/nosuchvol",
                              str(mnt)], capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and "nosuchvol" in bad.stderr
        assert not os.path.ismount(mnt)


def test_fstat_of_an_open_unlinked_file(mount):
    """Regression (found by the mount model): fstat after unlink gave ENOENT,
    as pyfuse3's getattr has no file handle and the gfid lookup fails."""
    p = mount.mnt / "gone"
    p.write_bytes(b"12345")
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        assert os.fstat(fd).st_size == 5
        os.write(fd, b"678")            # at offset 0: "12345" -> "67845"
        os.write(fd, b"90")             # then "67890"
        assert os.fstat(fd).st_size == 5
        assert os.pread(fd, 8, 0) == b"67890"
    finally:
        os.close(fd)


# -- lru-limit: the kernel's entries and the inode table stay bounded --------------------


def _cmdline(proc: Path) -> list[bytes]:
    """A process's arguments; none for one that exited while /proc was read."""
    try:
        return (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _mount_pid(m: Mount) -> int:
    [pid] = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
             and str(m.mnt).encode() in _cmdline(p)]
    return pid


def _statedump(m: Mount) -> dict:
    import json
    import signal
    from glusterpy.fuse.mount import statedump_path
    pid = _mount_pid(m)
    path = Path(statedump_path(pid))
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, "no statedump written"
        time.sleep(0.05)
    state = json.loads(path.read_text())
    path.unlink()
    return state


@pytest.mark.parametrize("limit", [100, None])
def test_lru_limit_bounds_what_the_mount_keeps(tmp_path, limit):
    """Past lru-limit the bridge asks the kernel to drop entries; the
    kernel's forgets shrink its node map, and the graph's inode table keeps
    no more than the limit.  Without a small limit both grow with the walk."""
    m = Mount(tmp_path, f"lru-limit={limit}" if limit else None)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    try:
        files = 600
        for d in range(6):
            (m.mnt / f"d{d}").mkdir()
            for f in range(files // 6):
                (m.mnt / f"d{d}" / f"f{f}").write_bytes(b"x")
        for d in range(6):
            for entry in os.scandir(m.mnt / f"d{d}"):
                entry.stat(follow_symlinks=False)
        state = _statedump(m)
        if limit is None:
            assert state["bridge"]["nodes"] > files
            assert state["bridge"]["inode_table"]["inodes"] > files
            return
        # the forgets come when the kernel gets to them
        deadline = time.monotonic() + 15
        while state["bridge"]["nodes"] > limit + 20 and time.monotonic() < deadline:
            time.sleep(0.2)
            state = _statedump(m)
        assert state["bridge"]["nodes"] <= limit + 20, state["bridge"]
        assert state["bridge"]["inode_table"]["inodes"] <= limit, state["bridge"]
        assert "m-io-cache" in state["translators"]
        # and nothing is lost: every file still reads back through the mount
        assert all((m.mnt / f"d{d}" / f"f{f}").read_bytes() == b"x"
                   for d in range(6) for f in range(files // 6))
    finally:
        m.unmount()


STATS_VOLFILE = VOLFILE + """
volume m-stats
    type debug/io-stats
    option count-fop-hits on
    subvolumes m-io-cache
end-volume
"""


@pytest.mark.parametrize("writeback", [True, False])
def test_kernel_writeback_cache_gathers_small_writes(tmp_path, writeback):
    """kernel-writeback-cache=yes: 256 writes of 4 KiB reach the graph as
    far fewer, larger writes (up to 1 MiB, FUSE's max_write here); without
    it each write(2) is one WRITE.  The data is the same either way."""
    m = Mount(tmp_path, "kernel-writeback-cache=yes" if writeback else None, STATS_VOLFILE)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    try:
        data = os.urandom(256 * 4096)
        with open(m.mnt / "f", "wb") as f:
            for i in range(256):
                f.write(data[i * 4096:(i + 1) * 4096])
        stats = _statedump(m)["translators"]["m-stats"]["cumulative"]
        writes = stats["fops"]["WRITE"]["hits"]
        assert stats["data_written"] == len(data)
        assert writes <= 16 if writeback else writes == 256, stats["block_write"]
        assert (m.mnt / "f").read_bytes() == data
        assert (m.brick / "f").read_bytes() == data
    finally:
        m.unmount()


def test_kernel_writeback_cache_option_is_checked():
    from glusterpy.fuse.mount import MountError, MountOptions
    assert MountOptions.parse("kernel-writeback-cache=yes").kernel_writeback_cache
    assert not MountOptions.parse("kernel-writeback-cache=no").kernel_writeback_cache
    with pytest.raises(MountError, match="yes or no"):
        MountOptions.parse("kernel-writeback-cache=sometimes")


@pytest.mark.parametrize("acl", [False, True])
def test_posix_acl_xattrs_need_the_acl_option(tmp_path, acl):
    """Without `-o acl` the mount answers the POSIX ACL xattrs itself with
    EOPNOTSUPP, as fuse-bridge does (`ls -l` asks for every file's access
    ACL: no round trip to the bricks for it); with it they reach the volume."""
    m = Mount(tmp_path, "acl" if acl else None, STATS_VOLFILE)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    try:
        (m.mnt / "f").write_bytes(b"x")
        with pytest.raises(OSError) as e:
            os.getxattr(m.mnt / "f", "system.posix_acl_access")
        assert e.value.errno == (errno.ENODATA if acl else errno.EOPNOTSUPP)
        if not acl:
            with pytest.raises(OSError) as e:
                os.setxattr(m.mnt / "f", "system.posix_acl_access", b"\x02\x00\x00\x00")
            assert e.value.errno == errno.EOPNOTSUPP
        fops_seen = _statedump(m)["translators"]["m-stats"]["cumulative"]["fops"]
        assert ("GETXATTR" in fops_seen) == acl, fops_seen
        os.setxattr(m.mnt / "f", "user.kept", b"v")          # other xattrs unaffected
        assert os.getxattr(m.mnt / "f", "user.kept") == b"v"
    finally:
        m.unmount()


# -- large IO: requests in flight together, workers kept ------------------------------

DELAYED_VOLFILE = """
volume m-posix
    type storage/posix
    option directory {brick}
end-volume

volume m-delay
    type debug/delay-gen
    option enable readv,writev
    option delay-percentage 100%
    option delay-duration 400000
    subvolumes m-posix
end-volume
"""


def test_direct_reads_and_writes_of_several_files_are_in_flight_together(tmp_path):
    """fio's jobs (one file each, O_DIRECT, 128 KiB) wait for each other
    only if the mount serves one request at a time: with every readv and
    writev held 0.4 s below the mount, four at once take ~0.4 s, not 1.6.
    The statedump then shows the session loop's workers kept between
    rounds, not ended and started anew for each burst of requests."""
    import mmap
    import threading
    from glusterpy.fuse.mount import FUSE_WORKERS

    m = Mount(tmp_path, volfile=DELAYED_VOLFILE)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    jobs, size = 4, 128 * 1024
    fds = [os.open(m.mnt / f"job{i}", os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
           for i in range(jobs)]
    try:
        def together(io) -> float:
            buffers = [mmap.mmap(-1, size) for _ in range(jobs)]  # page-aligned for O_DIRECT
            for i, b in enumerate(buffers):
                b.write(bytes([i + 1]) * size) if io is os.pwritev else None
            done, barrier = [], threading.Barrier(jobs + 1)

            def job(i):
                barrier.wait()
                done.append(io(fds[i], [buffers[i]], 0))
            threads = [threading.Thread(target=job, args=(i,)) for i in range(jobs)]
            for t in threads:
                t.start()
            barrier.wait()
            start = time.monotonic()
            for t in threads:
                t.join()
            took = time.monotonic() - start
            assert done == [size] * jobs
            if io is os.preadv:
                assert [b[:size] for b in buffers] == [bytes([i + 1]) * size
                                                       for i in range(jobs)]
            return took

        took_write = together(os.pwritev)
        took_read = together(os.preadv)
        # one at a time would be >= 1.6 s; together ~0.4 s plus the machine's noise
        assert took_write < 1.2, f"{jobs} direct writes took {took_write:.2f}s"
        assert took_read < 1.2, f"{jobs} direct reads took {took_read:.2f}s"
        for _ in range(5):
            together(os.preadv)
        workers = _statedump(m)["fuse_workers"]
        # "newest" counts every worker task started: kept workers mean none
        # was started beyond those alive
        assert workers["alive"] <= FUSE_WORKERS + 1, workers
        assert workers["newest"] <= workers["alive"] + 1, workers
    finally:
        for fd in fds:
            os.close(fd)
        m.unmount()


def test_queued_requests_are_read_in_one_wake_up_and_served_without_a_task(mount):
    """The session loop (glusterpy/fuse/session_loop.py) reads /dev/fuse
    until it is empty before it waits for it again, and runs a request the
    bridge answers at once in the reading task.  Requests queued while the
    mount process is stopped (getxattr of security.capability through open
    fds: the bridge answers ENODATA with no graph call, and no lookup goes
    first) are all read after one wake-up, none starting a task or passing
    the reading on.  pyfuse3's loop took a lock and waited for /dev/fuse to
    be readable before each request (and counts none of it)."""
    import signal
    import threading

    jobs = 8
    fds = [os.open(mount.mnt / f"f{i}", os.O_RDWR | os.O_CREAT, 0o644) for i in range(jobs)]
    try:
        before = _statedump(mount)["fuse_workers"]
        pid = _mount_pid(mount)
        answers: list = []

        def ask(fd):
            answers.append(errname(os.getxattr, fd, "security.capability"))

        threads = [threading.Thread(target=ask, args=(fd,)) for fd in fds]
        os.kill(pid, signal.SIGSTOP)
        try:
            for t in threads:
                t.start()
            time.sleep(1)  # every thread's request queued in the kernel
        finally:
            os.kill(pid, signal.SIGCONT)
        for t in threads:
            t.join(30)
        assert answers == ["ENODATA"] * jobs
        after = _statedump(mount)["fuse_workers"]
        delta = {k: after[k] - before[k] for k in
                 ("requests", "readable_waits", "inline", "handoffs", "tasks_started")}
        assert delta["requests"] == jobs, delta
        assert delta["inline"] == jobs, delta
        # the wait that ended on SIGCONT was counted before; after the
        # batch, one wait for the next request
        assert delta["readable_waits"] <= 2, delta
        assert delta["handoffs"] == 0 and delta["tasks_started"] == 0, delta
    finally:
        for fd in fds:
            os.close(fd)
