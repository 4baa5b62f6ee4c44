"""Model-based test of cluster/distribute: random sequences of namespace
operations (create, rename across directories, link, unlink, mkdir,
rmdir, readdir) through gfapi on a three-brick distribute volume and on a
local directory (the oracle).  Every result and errno must agree, and after
every step the bricks must hold a sound distribute volume: each directory
everywhere with layouts covering the hash space once, each file on its
hashed brick or behind a linkto file there, and the namespace the bricks
add up to equal to the local tree.

A small namespace (three names, three levels) makes operations collide
often, so renames and links cross bricks and directories all the time.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings, strategies as s
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from glusterpy.gfapi import Volume

from test_distribute import check_volume, distribute_volfile, is_linkto

_NAMES = ("a", "b", "c")
_SHALLOW = [a for a in _NAMES] + [f"{a}/{b}" for a in _NAMES for b in _NAMES]
_DEEP = [f"{a}/{b}/{c}" for a in _NAMES for b in _NAMES for c in _NAMES]
# mostly one or two levels, so that operations find what they act on
paths = s.one_of(s.sampled_from(_NAMES), s.sampled_from(_SHALLOW), s.sampled_from(_SHALLOW),
                 s.sampled_from(_DEEP))
contents = s.binary(max_size=64)


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, e.errno))


class LocalSide:
    """The oracle: os.* on a local directory."""

    def __init__(self, root):
        self.root = root

    def p(self, path):
        return os.path.join(self.root, path)

    def mkdir(self, path):
        os.mkdir(self.p(path), 0o755)

    def rmdir(self, path):
        os.rmdir(self.p(path))

    def unlink(self, path):
        os.unlink(self.p(path))

    def rename(self, a, b):
        os.rename(self.p(a), self.p(b))

    def link(self, a, b):
        os.link(self.p(a), self.p(b), follow_symlinks=False)

    def create(self, path, data):
        with open(self.p(path), "xb") as f:
            f.write(data)

    def read(self, path):
        with open(self.p(path), "rb") as f:
            return f.read()

    def listdir(self, path):
        return sorted(os.listdir(self.p(path)))

    def nlink(self, path):
        st = os.lstat(self.p(path))
        return stat.S_IFMT(st.st_mode), st.st_nlink if not stat.S_ISDIR(st.st_mode) else None


class VolumeSide:
    """The same through glusterpy.gfapi."""

    def __init__(self, vol: Volume):
        self.vol = vol

    def mkdir(self, path):
        self.vol.mkdir(path, 0o755)

    def rmdir(self, path):
        self.vol.rmdir(path)

    def unlink(self, path):
        self.vol.unlink(path)

    def rename(self, a, b):
        self.vol.rename(a, b)

    def link(self, a, b):
        self.vol.link(a, b)

    def create(self, path, data):
        with self.vol.fopen(path, "xb") as f:
            f.write(data)

    def read(self, path):
        with self.vol.fopen(path, "rb") as f:
            return f.read()

    def listdir(self, path):
        return sorted(self.vol.listdir(path))

    def nlink(self, path):
        st = self.vol.lstat(path)
        return stat.S_IFMT(st.st_mode), st.st_nlink if not stat.S_ISDIR(st.st_mode) else None


class DistributeModel(RuleBasedStateMachine):
    _shared: dict = {}

    @classmethod
    def _volume(cls):
        """One mounted volume for all examples (each works in a directory of
        its own): mounting per example would dominate the run."""
        if "vol" not in cls._shared:
            tmp = tempfile.mkdtemp(prefix="dht-model-")
            bricks = []
            for i in range(3):
                brick = os.path.join(tmp, f"brick{i}")
                os.mkdir(brick)
                bricks.append(brick)
            volfile = os.path.join(tmp, "dht.vol")
            with open(volfile, "w") as f:
                f.write(distribute_volfile(bricks, name="model"))
            cls._shared.update(vol=Volume.from_volfile(volfile), tmp=tmp, bricks=bricks,
                               counter=0)
        return cls._shared

    def __init__(self):
        super().__init__()
        shared = self._volume()
        shared["counter"] += 1
        name = f"run{shared['counter']}"
        self.vol = shared["vol"]
        self.bricks = [os.path.join(b, name) for b in shared["bricks"]]
        self.rel = name
        local_root = os.path.join(shared["tmp"], "local-" + name)
        os.mkdir(local_root)
        self.vol.chdir("/")
        self.vol.mkdir(name)
        self.vol.chdir(name)
        self.local = LocalSide(local_root)
        self.remote = VolumeSide(self.vol)

    def teardown(self):
        shutil.rmtree(self.local.root, ignore_errors=True)

    def both(self, op, *args):
        expected = outcome(getattr(self.local, op), *args)
        actual = outcome(getattr(self.remote, op), *args)
        assert actual == expected, f"{op}{args}: volume gave {actual}, local gave {expected}"
        return expected

    # -- operations on what exists, so that most of them succeed -----------

    def _existing(self, want=None) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.local.root):
            rel = os.path.relpath(dirpath, self.local.root)
            for name in dirnames if want == "dir" else filenames if want == "file" \
                    else dirnames + filenames:
                out.append(os.path.normpath(os.path.join(rel, name)))
        return sorted(out)

    def _new_path(self, data) -> str:
        parent = data.draw(s.sampled_from(["."] + self._existing("dir")))
        return os.path.normpath(os.path.join(parent, data.draw(s.sampled_from(_NAMES))))

    @rule(data=s.data(), content=contents)
    def create_in_a_directory(self, data, content):
        self.both("create", self._new_path(data), content)

    @rule(data=s.data())
    def mkdir_in_a_directory(self, data):
        self.both("mkdir", self._new_path(data))

    @precondition(lambda self: self._existing())
    @rule(data=s.data())
    def rename_something(self, data):
        src = data.draw(s.sampled_from(self._existing()))
        dst = data.draw(s.one_of(s.builds(lambda: self._new_path(data)),
                                 s.sampled_from(self._existing())))
        self.both("rename", src, dst)

    @precondition(lambda self: self._existing("file"))
    @rule(data=s.data())
    def link_a_file(self, data):
        self.both("link", data.draw(s.sampled_from(self._existing("file"))),
                  self._new_path(data))

    @precondition(lambda self: self._existing("file"))
    @rule(data=s.data())
    def unlink_a_file(self, data):
        self.both("unlink", data.draw(s.sampled_from(self._existing("file"))))

    @precondition(lambda self: self._existing("dir"))
    @rule(data=s.data())
    def rmdir_a_directory(self, data):
        self.both("rmdir", data.draw(s.sampled_from(self._existing("dir"))))

    @precondition(lambda self: self._existing())
    @rule(data=s.data())
    def look_at_something(self, data):
        path = data.draw(s.sampled_from(self._existing()))
        self.both("nlink", path)
        if os.path.isdir(self.local.p(path)):
            self.both("listdir", path)
        else:
            self.both("read", path)

    # -- any path: errors must agree too -----------------------------------

    @rule(path=paths, data=contents)
    def create(self, path, data):
        self.both("create", path, data)

    @rule(path=paths)
    def mkdir(self, path):
        self.both("mkdir", path)

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

    @rule(path=s.one_of(paths, s.just(".")))
    def readdir(self, path):
        self.both("listdir", path)

    @rule(path=paths)
    def read_back(self, path):
        self.both("read", path)
        self.both("nlink", path)

    @invariant()
    def bricks_hold_a_sound_volume(self):
        check_volume([Path(b).parent for b in self.bricks], self.rel)
        assert _volume_tree(self.bricks) == _local_tree(self.local.root)


def _local_tree(root) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames:
            out[os.path.normpath(os.path.join(rel, name))] = "dir"
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                out[os.path.normpath(os.path.join(rel, name))] = f.read()
    return out


def _volume_tree(bricks) -> dict:
    """The namespace the bricks add up to: directories from any brick,
    files from the brick with the data (linkto files skipped)."""
    out = {}
    for brick in bricks:
        for dirpath, dirnames, filenames in os.walk(brick):
            rel = os.path.relpath(dirpath, brick)
            for name in dirnames:
                out[os.path.normpath(os.path.join(rel, name))] = "dir"
            for name in filenames:
                full = os.path.join(dirpath, name)
                if is_linkto(full):
                    continue
                key = os.path.normpath(os.path.join(rel, name))
                assert key not in out, f"{key} has data on two bricks"
                with open(full, "rb") as f:
                    out[key] = f.read()
    return out


@pytest.fixture(scope="module", autouse=True)
def _unmount_shared_volume():
    yield
    shared = DistributeModel._shared
    if "vol" in shared:
        shared["vol"].umount()
        shutil.rmtree(shared["tmp"], ignore_errors=True)
    shared.clear()


TestDistributeAgainstLocal = DistributeModel.TestCase
TestDistributeAgainstLocal.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
