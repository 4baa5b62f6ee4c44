"""Model-based test: random sequences of file operations through gfapi on
(a) storage/posix and (b) performance/io-cache over storage/posix, and the
same operations on a plain local directory (the oracle).  Every result and
every errno must agree.

Paths come from a small namespace so that operations collide often: most
sequences create, rename, link and remove the same few names and hit
ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY and EINVAL along the way.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile

import pytest
from hypothesis import HealthCheck, settings, strategies as s
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from glusterpy.gfapi import Volume

POSIX_ONLY = """
volume model-posix
    type storage/posix
    option directory {brick}
end-volume
"""

WITH_IO_CACHE = POSIX_ONLY + """
volume model-io-cache
    type performance/io-cache
    option cache-timeout 0
    subvolumes model-posix
end-volume
"""

names = s.sampled_from(["a", "b", "c"])
paths = s.lists(names, min_size=1, max_size=3).map("/".join)
# No ".." in targets: at the top of the local oracle directory ".." leaves it,
# while at the volume's root ".." stays there (as POSIX says for "/").  The
# unit tests cover "..".
link_targets = s.one_of(paths, s.just("."), s.just("nowhere"))
data = s.binary(max_size=300)
offsets = s.integers(min_value=0, max_value=400)
modes = s.sampled_from([0o600, 0o644, 0o755, 0o700, 0o4755, 0o1777])
open_flags = s.sampled_from([
    os.O_RDONLY, os.O_WRONLY | os.O_CREAT, os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    os.O_RDWR | os.O_APPEND, os.O_WRONLY | os.O_CREAT | os.O_EXCL, os.O_RDWR,
    os.O_RDONLY | os.O_NOFOLLOW, os.O_RDONLY | os.O_DIRECTORY,
])
xattr_names = s.sampled_from(["user.x", "user.y"])
times = s.tuples(s.integers(0, 2**31), s.integers(0, 2**31))


def outcome(fn, *args):
    """('ok', value) or ('err', errno): what the model compares."""
    try:
        return ("ok", fn(*args))
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, e.errno))


def stat_view(st_):
    """The parts of a stat both sides must agree on."""
    return (stat.S_IFMT(st_.st_mode), stat.S_IMODE(st_.st_mode), st_.st_nlink,
            st_.st_size if not stat.S_ISDIR(st_.st_mode) else None)


class LocalSide:
    """The oracle: the same operations with os.* on a local directory."""

    def __init__(self, root):
        self.root = root
        self.handles = {}

    def p(self, path):
        return os.path.join(self.root, path)

    def mkdir(self, path, mode):
        os.mkdir(self.p(path), mode)

    def rmdir(self, path):
        os.rmdir(self.p(path))

    def unlink(self, path):
        os.unlink(self.p(path))

    def rename(self, a, b):
        os.rename(self.p(a), self.p(b))

    def link(self, a, b):
        os.link(self.p(a), self.p(b), follow_symlinks=False)

    def symlink(self, target, path):
        os.symlink(target, self.p(path))

    def readlink(self, path):
        return os.readlink(self.p(path))

    def lstat(self, path):
        return stat_view(os.lstat(self.p(path)))

    def stat(self, path):
        return stat_view(os.stat(self.p(path)))

    def mtime(self, path):
        return os.stat(self.p(path)).st_mtime_ns

    def listdir(self, path):
        return sorted(os.listdir(self.p(path)))

    def truncate(self, path, size):
        os.truncate(self.p(path), size)

    def chmod(self, path, mode):
        os.chmod(self.p(path), mode)

    def utime(self, path, t):
        os.utime(self.p(path), ns=(t[0] * 10**9, t[1] * 10**9))

    def setxattr(self, path, key, value, flags):
        os.setxattr(self.p(path), key, value, flags)

    def getxattr(self, path, key):
        return os.getxattr(self.p(path), key)

    def listxattr(self, path):
        return sorted(k for k in os.listxattr(self.p(path)) if k.startswith("user."))

    def removexattr(self, path, key):
        os.removexattr(self.p(path), key)

    def write_file(self, path, content):
        with open(self.p(path), "wb") as f:
            f.write(content)

    def read_file(self, path):
        with open(self.p(path), "rb") as f:
            return f.read()

    def open(self, n, path, flags):
        self.handles[n] = os.open(self.p(path), flags, 0o644)

    def pwrite(self, n, content, offset):
        # on Linux pwrite on an O_APPEND descriptor appends, as on a brick
        return os.pwrite(self.handles[n], content, offset)

    def pread(self, n, size, offset):
        return os.pread(self.handles[n], size, offset)

    def fstat(self, n):
        return stat_view(os.fstat(self.handles[n]))

    def ftruncate(self, n, size):
        os.ftruncate(self.handles[n], size)

    def close(self, n):
        os.close(self.handles.pop(n))

    def close_all(self):
        for n in list(self.handles):
            self.close(n)


class VolumeSide:
    """The same operations through glusterpy.gfapi."""

    def __init__(self, vol: Volume):
        self.vol = vol
        self.handles = {}

    def mkdir(self, path, mode):
        self.vol.mkdir(path, mode)

    def rmdir(self, path):
        self.vol.rmdir(path)

    def unlink(self, path):
        self.vol.unlink(path)

    def rename(self, a, b):
        self.vol.rename(a, b)

    def link(self, a, b):
        self.vol.link(a, b)

    def symlink(self, target, path):
        self.vol.symlink(target, path)

    def readlink(self, path):
        return self.vol.readlink(path)

    def lstat(self, path):
        return stat_view(self.vol.lstat(path))

    def stat(self, path):
        return stat_view(self.vol.stat(path))

    def mtime(self, path):
        return self.vol.stat(path).st_mtime_ns

    def listdir(self, path):
        return sorted(self.vol.listdir(path))

    def truncate(self, path, size):
        self.vol.truncate(path, size)

    def chmod(self, path, mode):
        self.vol.chmod(path, mode)

    def utime(self, path, t):
        self.vol.utime(path, ns=(t[0] * 10**9, t[1] * 10**9))

    def setxattr(self, path, key, value, flags):
        self.vol.setxattr(path, key, value, flags)

    def getxattr(self, path, key):
        return self.vol.getxattr(path, key)

    def listxattr(self, path):
        return sorted(k for k in self.vol.listxattr(path) if k.startswith("user."))

    def removexattr(self, path, key):
        self.vol.removexattr(path, key)

    def write_file(self, path, content):
        with self.vol.fopen(path, "wb") as f:
            f.write(content)

    def read_file(self, path):
        with self.vol.fopen(path, "rb") as f:
            return f.read()

    def open(self, n, path, flags):
        self.handles[n] = self.vol.open(path, flags, 0o644)

    def pwrite(self, n, content, offset):
        return self.handles[n].pwrite(content, offset)

    def pread(self, n, size, offset):
        return self.handles[n].pread(size, offset)

    def fstat(self, n):
        return stat_view(self.handles[n].fstat())

    def ftruncate(self, n, size):
        self.handles[n].ftruncate(size)

    def close(self, n):
        self.handles.pop(n).close()

    def close_all(self):
        for n in list(self.handles):
            self.close(n)


class FilesystemModel(RuleBasedStateMachine):
    VOLFILE = POSIX_ONLY

    _shared: dict = {}

    @classmethod
    def _volume(cls):
        """One mounted volume per model class, shared by all examples: each
        example works in a fresh directory of its own (mounting per example
        made shrinking take minutes)."""
        if cls.VOLFILE not in cls._shared:
            tmp = tempfile.mkdtemp(prefix="gfapi-model-")
            brick = os.path.join(tmp, "brick")
            os.mkdir(brick)
            volfile = os.path.join(tmp, "model.vol")
            with open(volfile, "w") as f:
                f.write(cls.VOLFILE.format(brick=brick))
            cls._shared[cls.VOLFILE] = (Volume.from_volfile(volfile), tmp, brick, [0])
        return cls._shared[cls.VOLFILE]

    def __init__(self):
        super().__init__()
        self.vol, tmp, brick, counter = self._volume()
        counter[0] += 1
        name = f"run{counter[0]}"
        local_root = os.path.join(tmp, "local-" + name)
        os.mkdir(local_root)
        self.vol.chdir("/")
        self.vol.mkdir(name)
        self.vol.chdir(name)
        self.brick = os.path.join(brick, name)
        self.local = LocalSide(local_root)
        self.remote = VolumeSide(self.vol)
        self.next_handle = 0

    def teardown(self):
        try:
            self.local.close_all()
            self.remote.close_all()
        finally:
            shutil.rmtree(self.local.root, ignore_errors=True)

    def both(self, name, *args):
        expected = outcome(getattr(self.local, name), *args)
        actual = outcome(getattr(self.remote, name), *args)
        assert actual == expected, f"{name}{args}: volume gave {actual}, local gave {expected}"
        return expected

    # -- namespace ------------------------------------------------------------

    @rule(path=paths, mode=s.sampled_from([0o755, 0o700, 0o777]))
    def mkdir(self, path, mode):
        self.both("mkdir", path, mode)

    @rule(path=paths)
    def rmdir(self, path):
        self.both("rmdir", path)

    @rule(path=paths)
    def unlink(self, path):
        self.both("unlink", path)

    @rule(a=paths, b=paths)
    def rename(self, a, b):
        self.both("rename", a, b)

    @rule(a=paths, b=paths)
    def link(self, a, b):
        self.both("link", a, b)

    @rule(link_to=link_targets, path=paths)
    def symlink(self, link_to, path):
        self.both("symlink", link_to, path)

    @rule(path=paths)
    def readlink(self, path):
        self.both("readlink", path)

    @rule(path=paths, content=data)
    def write_file(self, path, content):
        self.both("write_file", path, content)

    @rule(path=paths)
    def read_file(self, path):
        self.both("read_file", path)

    @rule(path=paths, size=offsets)
    def truncate(self, path, size):
        self.both("truncate", path, size)

    @rule(path=paths, mode=modes)
    def chmod(self, path, mode):
        self.both("chmod", path, mode)

    @rule(path=paths, t=times)
    def utime(self, path, t):
        if self.both("utime", path, t)[0] == "ok":
            self.both("mtime", path)

    @rule(path=paths, key=xattr_names, value=s.binary(max_size=40),
          flags=s.sampled_from([0, os.XATTR_CREATE, os.XATTR_REPLACE]))
    def setxattr(self, path, key, value, flags):
        self.both("setxattr", path, key, value, flags)

    @rule(path=paths, key=xattr_names)
    def getxattr(self, path, key):
        self.both("getxattr", path, key)

    @rule(path=paths, key=xattr_names)
    def removexattr(self, path, key):
        self.both("removexattr", path, key)

    @rule(path=paths)
    def listxattr(self, path):
        self.both("listxattr", path)

    @rule(path=s.one_of(paths, s.just(".")))
    def listdir(self, path):
        self.both("listdir", path)

    @rule(path=paths)
    def stat_both_ways(self, path):
        self.both("lstat", path)
        self.both("stat", path)

    # -- open files -----------------------------------------------------------

    @rule(path=paths, flags=open_flags)
    def open(self, path, flags):
        n = self.next_handle
        result = self.both("open", n, path, flags)
        if result[0] == "ok":
            self.next_handle += 1

    def _handles(self):
        return sorted(self.local.handles)

    @precondition(lambda self: self.local.handles)
    @rule(pick=s.integers(0, 100), content=data, offset=offsets)
    def pwrite(self, pick, content, offset):
        h = self._handles()[pick % len(self._handles())]
        self.both("pwrite", h, content, offset)

    @precondition(lambda self: self.local.handles)
    @rule(pick=s.integers(0, 100), size=s.integers(0, 500), offset=offsets)
    def pread(self, pick, size, offset):
        h = self._handles()[pick % len(self._handles())]
        self.both("pread", h, size, offset)

    @precondition(lambda self: self.local.handles)
    @rule(pick=s.integers(0, 100), size=offsets)
    def ftruncate(self, pick, size):
        h = self._handles()[pick % len(self._handles())]
        self.both("ftruncate", h, size)

    @precondition(lambda self: self.local.handles)
    @rule(pick=s.integers(0, 100))
    def fstat(self, pick):
        h = self._handles()[pick % len(self._handles())]
        self.both("fstat", h)

    @precondition(lambda self: self.local.handles)
    @rule(pick=s.integers(0, 100))
    def close(self, pick):
        h = self._handles()[pick % len(self._handles())]
        self.both("close", h)

    @invariant()
    def same_tree(self):
        local = _tree(self.local.root)
        remote = _tree(self.brick, skip_glusterfs=True)
        assert remote == local


@pytest.fixture(scope="module", autouse=True)
def _unmount_shared_volumes():
    yield
    for vol, tmp, _, _ in FilesystemModel._shared.values():
        vol.umount()
        shutil.rmtree(tmp, ignore_errors=True)
    FilesystemModel._shared.clear()


def _tree(root, skip_glusterfs=False):
    """Every name under root with its type, mode, size and content: what
    the brick must hold besides its .glusterfs directory."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip_glusterfs and dirpath == root and ".glusterfs" in dirnames:
            dirnames.remove(".glusterfs")
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st_ = os.lstat(full)
            content = None
            if stat.S_ISREG(st_.st_mode):
                with open(full, "rb") as f:
                    content = f.read()
            elif stat.S_ISLNK(st_.st_mode):
                content = os.readlink(full)
            out[os.path.normpath(os.path.join(rel, name))] = (
                stat.S_IFMT(st_.st_mode), stat.S_IMODE(st_.st_mode), content)
    return out


class FilesystemModelWithCache(FilesystemModel):
    VOLFILE = WITH_IO_CACHE


MODEL_SETTINGS = settings(max_examples=250, stateful_step_count=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])

TestPosixAgainstLocal = FilesystemModel.TestCase
TestPosixAgainstLocal.settings = MODEL_SETTINGS
TestIoCacheAgainstLocal = FilesystemModelWithCache.TestCase
TestIoCacheAgainstLocal.settings = MODEL_SETTINGS
