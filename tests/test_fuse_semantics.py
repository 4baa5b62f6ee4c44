"""What the mount options and the bridge's choices do, as a program on the
mount sees it: direct-io-mode, attribute-timeout and entry-timeout (the
brick changed behind the mount's back shows what the kernel cached),
O_DIRECT, readdirplus, st_ino, statfs, xattr flags, O_APPEND from two
mounts, write errors (at once, and deferred through the page cache),
locks between the processes of one mount (fcntl locks through the bricks,
see tests/test_fuse_locks.py; flock locks in the kernel of one mount),
the cache of callers' groups (gid-timeout), and security.capability kept
on the client as fuse-bridge keeps it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import mmap
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_fuse import Mount

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")

POSIX_ONLY = """
volume s-posix
    type storage/posix
    option directory {brick}
end-volume
"""


def mounted(base: Path, options: str = "") -> Mount:
    # posix alone: io-cache would cache too, and the tests look at the kernel's cache
    m = Mount(base, options=options, volfile=POSIX_ONLY)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    return m


@pytest.fixture
def cleanup():
    mounts: list[Mount] = []
    yield mounts.append
    for m in mounts:
        m.unmount()


def test_page_cache_and_direct_io_mode(tmp_path, cleanup):
    """The kernel keeps what an open file read; direct-io-mode=enable makes
    it send every read, so a change on the brick is seen at once."""
    seen = {}
    for mode in ("disable", "enable"):
        m = mounted(tmp_path / mode, f"direct-io-mode={mode},attribute-timeout=60")
        cleanup(m)
        (m.mnt / "f").write_bytes(b"A" * 8192)
        fd = os.open(m.mnt / "f", os.O_RDONLY)
        try:
            assert os.pread(fd, 4, 0) == b"AAAA"
            with open(m.brick / "f", "r+b") as behind:
                behind.write(b"BBBB")
            seen[mode] = os.pread(fd, 4, 0)
        finally:
            os.close(fd)
    assert seen == {"disable": b"AAAA", "enable": b"BBBB"}


def test_o_direct_reads_and_writes(tmp_path, cleanup):
    m = mounted(tmp_path, "attribute-timeout=60")
    cleanup(m)
    fd = os.open(m.mnt / "d", os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    try:
        out = mmap.mmap(-1, 64 << 10)  # page-aligned, as O_DIRECT wants
        out[:] = os.urandom(64 << 10)
        assert os.pwritev(fd, [out], 4096) == 64 << 10
        back = mmap.mmap(-1, 64 << 10)
        assert os.preadv(fd, [back], 4096) == 64 << 10
        assert back[:] == out[:]
        # O_DIRECT bypasses the page cache: a change on the brick is read
        with open(m.brick / "d", "r+b") as behind:
            behind.seek(4096)
            behind.write(b"Z" * 4096)
        assert os.preadv(fd, [back], 4096) == 64 << 10 and back[:4096] == b"Z" * 4096
    finally:
        os.close(fd)
    assert (m.brick / "d").read_bytes()[8192:] == out[4096:]


def test_attribute_timeout(tmp_path, cleanup):
    modes = {}
    for timeout in ("0", "60"):
        m = mounted(tmp_path / timeout, f"attribute-timeout={timeout}")
        cleanup(m)
        (m.mnt / "f").write_bytes(b"x")
        os.chmod(m.mnt / "f", 0o644)
        os.stat(m.mnt / "f")
        os.chmod(m.brick / "f", 0o600)  # behind the mount's back
        modes[timeout] = oct(os.stat(m.mnt / "f").st_mode & 0o777)
    assert modes == {"0": "0o600", "60": "0o644"}


def test_entry_timeout(tmp_path, cleanup):
    found = {}
    for timeout in ("0", "60"):
        m = mounted(tmp_path / timeout, f"entry-timeout={timeout},attribute-timeout=60")
        cleanup(m)
        (m.mnt / "f").write_bytes(b"x")
        os.stat(m.mnt / "f")
        os.rename(m.brick / "f", m.brick / "g")  # behind the mount's back
        found[timeout] = os.path.exists(m.mnt / "f")
    assert found == {"0": False, "60": True}


def test_readdirplus_gives_attributes_and_gfid_inode_numbers(tmp_path, cleanup):
    m = mounted(tmp_path, "attribute-timeout=60,entry-timeout=60")
    cleanup(m)
    names = {f"n{i:04d}" for i in range(1500)}  # several readdirp batches
    (m.mnt / "d").mkdir()
    for n in names:
        (m.mnt / "d" / n).write_bytes(b"")
    m.unmount()
    m = mounted(tmp_path, "attribute-timeout=60,entry-timeout=60")  # nothing cached
    cleanup(m)
    entries = {e.name: e.inode() for e in os.scandir(m.mnt / "d")}
    assert set(entries) == names
    # the listing brought each entry's attributes (readdirplus): a change
    # on the brick afterwards is not seen, as no LOOKUP followed
    os.chmod(m.brick / "d" / "n0007", 0o600)
    assert os.stat(m.mnt / "d" / "n0007").st_mode & 0o777 == 0o644
    # st_ino is GlusterFS's: the gfid's last 8 bytes, the same on every client
    for n in ("n0000", "n0007", "n1499"):
        gfid = os.getxattr(m.brick / "d" / n, "trusted.gfid")
        assert entries[n] == os.stat(m.mnt / "d" / n).st_ino == \
            int.from_bytes(gfid[8:], "big")
    assert os.stat(m.mnt).st_ino == 1


POSIX_COUNTED = POSIX_ONLY + """
volume s-stats
    type debug/io-stats
    option count-fop-hits on
    subvolumes s-posix
end-volume
"""


def _counted_mount_with_directory(tmp_path, cleanup, names) -> Mount:
    """A mount of POSIX_COUNTED whose directory d holds empty files `names`."""
    m = Mount(tmp_path, volfile=POSIX_COUNTED)
    assert m.ok(), m.result.stderr
    cleanup(m)
    (m.mnt / "d").mkdir()
    for n in names:
        (m.mnt / "d" / n).write_bytes(b"")
    return m


def test_a_listing_reads_the_directory_once(tmp_path, cleanup):
    """The kernel asks for a page of entries at a time; a readdirp from the
    graph brings far more.  What did not fit is kept for the kernel's next
    request: listing a directory costs about (its size / one readdirp's
    budget) readdirps, not one per page of the kernel's."""
    names = {f"entry-with-a-longer-name-{i:05d}" for i in range(3000)}
    m = _counted_mount_with_directory(tmp_path, cleanup, names)
    before = _fop_hits(m, "READDIRP")
    listed = set(os.listdir(m.mnt / "d"))
    assert listed == names
    readdirps = _fop_hits(m, "READDIRP") - before
    # here the kernel took ~160 entries per request and a readdirp brought
    # ~430: 8 readdirps with the rest kept, 19 when every request fetched
    # afresh (and each of those brought the whole rest of the directory)
    assert 0 < readdirps <= 12, readdirps
    # a second listing from the start (rewinddir) still sees everything,
    # including what changed meanwhile
    (m.mnt / "d" / "entry-with-a-longer-name-00000").unlink()
    (m.mnt / "d" / "late").write_bytes(b"")
    names = (names - {"entry-with-a-longer-name-00000"}) | {"late"}
    assert set(os.listdir(m.mnt / "d")) == names


def test_a_small_directory_is_listed_with_two_readdirps(tmp_path, cleanup):
    """One readdirp brings the entries, one finds the end: at most one batch
    per kernel request, as fuse-bridge winds one readdirp per request.  The
    bridge used to fetch again once a batch was used up, to fill the
    kernel's page - at the end of a directory that readdirp came back
    empty and the kernel's next request asked it again (3 per directory)."""
    names = {f"f{i:03d}" for i in range(100)}
    m = _counted_mount_with_directory(tmp_path, cleanup, names)
    for _ in range(2):  # the second time with the dentries the first left
        before = _fop_hits(m, "READDIRP")
        assert set(os.listdir(m.mnt / "d")) == names
        assert _fop_hits(m, "READDIRP") - before == 2
    (m.mnt / "e").mkdir()  # an empty directory: . and .. give the kernel nothing
    before = _fop_hits(m, "READDIRP")
    assert os.listdir(m.mnt / "e") == []
    assert _fop_hits(m, "READDIRP") - before <= 2


def _fop_hits(m: Mount, fop: str) -> int:
    report = json.loads(os.getxattr(m.mnt, "trusted.glusterpy.io-stats.cumulative.peek"))
    return report["cumulative"]["fops"].get(fop, {}).get("hits", 0)


def test_statfs_is_the_bricks(tmp_path, cleanup):
    m = mounted(tmp_path)
    cleanup(m)
    a, b = os.statvfs(m.mnt), os.statvfs(m.brick)
    assert (a.f_bsize, a.f_blocks, a.f_files, a.f_namemax) == \
        (b.f_bsize, b.f_blocks, b.f_files, b.f_namemax)
    assert abs(a.f_bavail - b.f_bavail) < b.f_blocks // 100 + 256


def test_xattr_flags_sizes_and_listing(tmp_path, cleanup):
    m = mounted(tmp_path)
    cleanup(m)
    p = m.mnt / "x"
    p.write_bytes(b"")
    os.setxattr(p, "user.a", b"1", os.XATTR_CREATE)
    with pytest.raises(OSError) as e:
        os.setxattr(p, "user.a", b"2", os.XATTR_CREATE)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(OSError) as e:
        os.setxattr(p, "user.missing", b"2", os.XATTR_REPLACE)
    assert e.value.errno == errno.ENODATA
    os.setxattr(p, "user.a", b"3", os.XATTR_REPLACE)
    big = os.urandom(1024)  # the brick (ext4) keeps one block of xattrs per inode
    os.setxattr(p, "user.big", big)
    for i in range(20):
        os.setxattr(p, f"user.k{i}", b"v%d" % i)
    assert os.getxattr(p, "user.a") == b"3" and os.getxattr(p, "user.big") == big
    assert {"user.a", "user.big"} | {f"user.k{i}" for i in range(20)} <= set(os.listxattr(p))
    assert os.getxattr(m.brick / "x", "user.big") == big  # stored on the brick as it is
    os.removexattr(p, "user.big")
    assert "user.big" not in os.listxattr(p)


def test_o_append_from_two_mounts(tmp_path, cleanup):
    """Two clients appending to one file: every record lands whole, none
    overwritten (the brick opens the file O_APPEND, as GlusterFS's posix)."""
    a = mounted(tmp_path / "a")
    cleanup(a)
    b = Mount(tmp_path / "b", volfile=POSIX_ONLY.replace("{brick}", str(a.brick)))
    cleanup(b)
    assert b.ok(), b.result.stderr
    (a.mnt / "log").write_bytes(b"")
    writer = ("import os, sys\n"
              "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)\n"
              "for i in range(300):\n"
              "    os.write(fd, b'%s%04d\\n' % (sys.argv[2].encode(), i))\n")
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(mnt / "log"), tag])
             for mnt, tag in ((a.mnt, "A"), (b.mnt, "B"))]
    for p in procs:
        assert p.wait(120) == 0
    lines = (a.brick / "log").read_bytes().splitlines()
    assert sorted(lines) == sorted([b"A%04d" % i for i in range(300)] +
                                   [b"B%04d" % i for i in range(300)])


@pytest.fixture
def small_brick(tmp_path):
    """A 1 MiB tmpfs as the brick, to run out of space."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    brick = tmp_path / "tiny"
    brick.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(brick)], check=True)
    yield brick
    subprocess.run(["umount", "-l", str(brick)], check=True)


def test_write_errors_at_once_and_deferred(tmp_path, small_brick, cleanup):
    m = Mount(tmp_path, volfile=POSIX_ONLY.replace("{brick}", str(small_brick)))
    cleanup(m)
    assert m.ok(), m.result.stderr
    # write(2) is written through: its own error comes back at once
    fd = os.open(m.mnt / "w", os.O_WRONLY | os.O_CREAT, 0o644)
    with pytest.raises(OSError) as e:
        for _ in range(64):
            os.write(fd, b"w" * 65536)
    assert e.value.errno == errno.ENOSPC
    os.close(fd)
    os.unlink(m.mnt / "w")
    # a shared mmap's dirty pages are written later, by the kernel: the
    # error of that deferred write is what fsync(2) reports
    fd = os.open(m.mnt / "mapped", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 4 << 20)
        with mmap.mmap(fd, 4 << 20) as mapped:
            mapped[:] = b"z" * (4 << 20)
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


LOCKER = """
import fcntl, sys
f = open(sys.argv[1], "r+")
out = []
for name, lock in (("posix", lambda: fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)),
                   ("flock", lambda: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB))):
    try:
        lock()
        out.append(name + "=got")
    except OSError as e:
        out.append(name + "=" + ("busy" if e.errno in (11, 13) else str(e.errno)))
print(" ".join(out))
"""


WITH_LOCKS = POSIX_ONLY + """
volume s-locks
    type features/locks
    subvolumes s-posix
end-volume
"""


def test_locks_between_processes_of_one_mount(tmp_path, cleanup):
    """fcntl and flock locks contend between two processes on one mount
    (fcntl's held by features/locks, flock's by the kernel)."""
    m = Mount(tmp_path, volfile=WITH_LOCKS)
    assert m.ok(), m.result.stderr
    cleanup(m)
    p = m.mnt / "lk"
    p.write_text("x")

    def other() -> str:
        return subprocess.run([sys.executable, "-c", LOCKER, str(p)], capture_output=True,
                              text=True, timeout=60, check=True).stdout.strip()
    with open(p, "r+") as f:
        assert other() == "posix=got flock=got"
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert other() == "posix=busy flock=got"
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert other() == "posix=busy flock=busy"
        fcntl.lockf(f, fcntl.LOCK_UN)
        assert other() == "posix=got flock=busy"
    assert other() == "posix=got flock=got"  # close released them all


def test_fcntl_locks_without_features_locks_are_enosys(tmp_path, cleanup):
    """A graph without features/locks has nobody to keep fcntl locks:
    storage/posix answers lk with ENOSYS, as GlusterFS's does."""
    m = mounted(tmp_path)
    cleanup(m)
    (m.mnt / "lk").write_text("x")
    with open(m.mnt / "lk", "r+") as f:
        with pytest.raises(OSError) as e:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert e.value.errno == errno.ENOSYS
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # flock stays with the kernel


GID_CACHE_PROBE = """
import os, types
from glusterpy.fuse.bridge import FuseBridge
ctx = types.SimpleNamespace(pid=os.getpid(), uid=os.getuid(), gid=os.getgid())
cached, uncached = FuseBridge(None, gid_timeout=300), FuseBridge(None, gid_timeout=0)
os.setgroups([4001])
assert cached._groups(ctx) == uncached._groups(ctx) == (4001,)
# the Caller a request runs as is kept with the groups, and as long
first = cached._who(ctx)
assert first.groups == (4001,) and cached._who(ctx) is first
assert uncached._who(ctx).groups == (4001,)
os.setgroups([4002, 4003])
assert cached._who(ctx) is first and uncached._who(ctx).groups == (4002, 4003)
print(cached._groups(ctx), uncached._groups(ctx))
"""


def test_supplementary_groups_are_cached_for_gid_timeout():
    """fuse-bridge's gid cache: a caller's groups are read from /proc once
    per gid-timeout (0: every request)."""
    if os.geteuid() != 0:
        pytest.skip("setgroups needs root")
    out = subprocess.run([sys.executable, "-c", GID_CACHE_PROBE], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert out.strip() == "(4001,) (4002, 4003)"


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_ls_l_asks_for_selinux_labels_once_per_mount(tmp_path, cleanup):
    """Without -o selinux the mount cannot hold a label (setting one is
    refused), so getting one says EOPNOTSUPP, and coreutils' `ls -l`,
    which asks for the label of every file it lists, stops asking after
    the first: 40 files listed, one request for a label.  (fuse-bridge
    answers ENODATA, and ls asks for all 40.)  -o selinux lets labels
    through to the volume."""
    m = mounted(tmp_path / "default")
    cleanup(m)
    (m.mnt / "d").mkdir()
    for i in range(40):
        (m.mnt / "d" / f"f{i}").write_bytes(b"x")
    with pytest.raises(OSError) as e:
        os.getxattr(m.mnt / "d" / "f0", "security.selinux")
    assert e.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as e:
        os.setxattr(m.mnt / "d" / "f0", "security.selinux", b"system_u:object_r:tmp_t:s0")
    assert e.value.errno == errno.EOPNOTSUPP
    trace = tmp_path / "ls.trace"
    listing = subprocess.run(["strace", "-qq", "-e", "trace=lgetxattr,getxattr", "-o", str(trace),
                              "ls", "-l", str(m.mnt / "d")], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    assert listing.count(" f") == 40, listing
    asked = [line for line in trace.read_text().splitlines() if "security.selinux" in line]
    assert len(asked) == 1, asked
    m2 = mounted(tmp_path / "selinux", "selinux")
    cleanup(m2)
    (m2.mnt / "g").write_bytes(b"x")
    os.setxattr(m2.mnt / "g", "security.selinux", b"system_u:object_r:tmp_t:s0\0")
    assert os.getxattr(m2.brick / "g", "security.selinux") == b"system_u:object_r:tmp_t:s0\0"


def test_security_capability_stays_on_the_client_unless_asked(tmp_path, cleanup):
    """As fuse-bridge without its `capability` option: security.capability
    (which the kernel asks for before every write) is answered ENODATA by
    the mount, and setting it is refused; -o capability lets it through."""
    import struct
    caps = struct.pack("<5I", 0x02000000, 1 << 13, 0, 0, 0)  # cap_net_raw+p, revision 2
    m = mounted(tmp_path / "default")
    cleanup(m)
    (m.mnt / "f").write_bytes(b"x")
    os.setxattr(m.brick / "f", "security.capability", caps)  # present on the brick ...
    with pytest.raises(OSError) as e:
        os.getxattr(m.mnt / "f", "security.capability")       # ... not asked for
    assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        os.setxattr(m.mnt / "f", "security.capability", caps)
    assert e.value.errno == errno.EOPNOTSUPP
    with open(m.mnt / "f", "ab") as f:
        f.write(b"y")
    # the write still drops the file's capabilities: the brick's own
    # filesystem does it (killpriv), as it would for a local write
    assert "security.capability" not in os.listxattr(m.brick / "f")
    m2 = mounted(tmp_path / "capability", "capability")
    cleanup(m2)
    (m2.mnt / "g").write_bytes(b"x")
    os.setxattr(m2.mnt / "g", "security.capability", caps)
    assert os.getxattr(m2.mnt / "g", "security.capability") == caps
    assert os.getxattr(m2.brick / "g", "security.capability") == caps
