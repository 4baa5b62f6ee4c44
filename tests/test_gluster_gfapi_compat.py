"""`from gluster import gfapi`: libgfapi-python 1.x's API, checked from its
documentation and signatures (gluster/libgfapi-python: doc/index.rst, the
docstrings of gluster/gfapi/gfapi.py that doc/api-reference.rst renders,
exceptions.py, api.py), against a glusterpy volume (glusterpyd, replica 3)
and a GlusterFS 10 volume (its glusterd on 24007, one brick).

Without a server: the names, signatures and defaults, the constructor's
refusals, calls on an unmounted volume, `gluster` as a namespace package
shared with another distribution's `gluster.*`.  With each server: mount,
volume id, logging, raw fds and File, fopen's modes, read/write types,
xattrs, the namespace calls, Dir/DirEntry/scandir, walk, rmtree and the
copy family - each with its documented errors.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import os
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from gluster import gfapi
from gluster.gfapi import Dir, DirEntry, File, Volume, api
from gluster.gfapi.api import Stat, Statvfs
from gluster.gfapi.exceptions import Error, LibgfapiException, VolumeNotMounted
from gfapi_compat_servers import glusterfs_volume, glusterpy_volume

ROOT = os.geteuid() == 0

# -- libgfapi-python 1.2's signatures, from its API reference -------------------------

VOLUME_SIGNATURES = {
    "__init__": "(self, hosts, volname, proto='tcp', port=24007, log_file='/dev/null', "
                "log_level=7)",
    "mount": "(self)", "umount": "(self)",
    "set_logging": "(self, log_file, log_level)", "disable_logging": "(self)",
    "get_volume_id": "(self)",
    "access": "(self, path, mode)", "chdir": "(self, path)", "chmod": "(self, path, mode)",
    "chown": "(self, path, uid, gid)", "exists": "(self, path)",
    "getatime": "(self, path)", "getctime": "(self, path)", "getcwd": "(self)",
    "getmtime": "(self, path)", "getsize": "(self, path)",
    "getxattr": "(self, path, key, size=0)", "isdir": "(self, path)",
    "isfile": "(self, path)", "islink": "(self, path)", "listdir": "(self, path)",
    "listdir_with_stat": "(self, path)", "scandir": "(self, path)",
    "listxattr": "(self, path, size=0)", "lstat": "(self, path)",
    "makedirs": "(self, path, mode=511)", "mkdir": "(self, path, mode=511)",
    "fopen": "(self, path, mode='r')", "open": "(self, path, flags, mode=511)",
    "opendir": "(self, path, readdirplus=False)", "readlink": "(self, path)",
    "remove": "(self, path)", "removexattr": "(self, path, key)",
    "rename": "(self, src, dst)", "rmdir": "(self, path)",
    "rmtree": "(self, path, ignore_errors=False, onerror=None)",
    "setfsuid": "(self, uid)", "setfsgid": "(self, gid)",
    "setxattr": "(self, path, key, value, flags=0)", "stat": "(self, path)",
    "statvfs": "(self, path)", "link": "(self, source, link_name)",
    "symlink": "(self, source, link_name)", "unlink": "(self, path)",
    "utime": "(self, path, times)",
    "walk": "(self, top, topdown=True, onerror=None, followlinks=False)",
    "samefile": "(self, path1, path2)",
    "copyfileobj": "(fsrc, fdst, length=131072)",  # a classmethod
    "copyfile": "(self, src, dst)", "copymode": "(self, src, dst)",
    "copystat": "(self, src, dst)", "copy": "(self, src, dst)", "copy2": "(self, src, dst)",
    "copytree": "(self, src, dst, symlinks=False, ignore=None)",
    "mknod": "(self, path, mode, dev)",
}

FILE_SIGNATURES = {
    "__init__": "(self, fd, path=None, mode=None)", "close": "(self)",
    "discard": "(self, offset, length)", "dup": "(self)",
    "fallocate": "(self, mode, offset, length)", "fchmod": "(self, mode)",
    "fchown": "(self, uid, gid)", "fdatasync": "(self)", "fgetsize": "(self)",
    "fgetxattr": "(self, key, size=0)", "flistxattr": "(self, size=0)",
    "fsetxattr": "(self, key, value, flags=0)", "fremovexattr": "(self, key)",
    "fstat": "(self)", "fsync": "(self)", "ftruncate": "(self, length)",
    "lseek": "(self, pos, how)", "read": "(self, size=-1)", "readinto": "(self, buf)",
    "write": "(self, data, flags=0)", "zerofill": "(self, offset, length)",
}

DIRENTRY_SIGNATURES = {
    "__init__": "(self, vol, scandir_path, name, lstat)",
    "stat": "(self, follow_symlinks=False)", "is_dir": "(self, follow_symlinks=False)",
    "is_file": "(self, follow_symlinks=False)", "is_symlink": "(self)", "inode": "(self)",
}


@pytest.mark.parametrize("cls, table", [(Volume, VOLUME_SIGNATURES), (File, FILE_SIGNATURES),
                                        (DirEntry, DIRENTRY_SIGNATURES)])
def test_signatures_are_libgfapi_pythons(cls, table):
    for name, expected in table.items():
        assert hasattr(cls, name), f"{cls.__name__}.{name} is missing"
        assert str(inspect.signature(getattr(cls, name))) == expected, name
    assert str(inspect.signature(Dir)) == "(fd, readdirplus=False)"


def test_public_names():
    assert gfapi.__all__ == ["File", "Dir", "DirEntry", "Volume"]
    for name in ("fileno", "mode", "name", "closed"):
        assert isinstance(inspect.getattr_static(File, name), property), name
    assert isinstance(inspect.getattr_static(Volume, "mounted"), property)
    assert isinstance(inspect.getattr_static(Volume, "copyfileobj"), classmethod)
    assert issubclass(VolumeNotMounted, LibgfapiException)
    assert issubclass(Error, EnvironmentError)
    from gluster.gfapi.utils import validate_glfd, validate_mount  # noqa: F401
    for struct, fields in ((Stat, {"st_size", "st_mode", "st_atimensec", "st_nlink"}),
                           (Statvfs, {"f_bsize", "f_namemax", "f_fsid"}),
                           (api.Dirent, {"d_name", "d_type", "d_reclen", "d_ino"}),
                           (api.Timespec, {"tv_sec", "tv_nsec"})):
        assert fields <= {f for f, _ in struct._fields_}
    with pytest.raises(AttributeError, match="no libgfapi C library"):
        api.glfs_init


def test_constructor_attributes_and_refusals():
    vol = Volume("server1", "myvol")
    assert (vol.hosts, vol.volname, vol.protocol, vol.port) == (["server1"], "myvol", "tcp",
                                                                 24007)
    assert (vol.log_file, vol.log_level, vol.volid, vol.fs) == ("/dev/null", 7, None, None)
    assert not vol.mounted
    assert Volume(["a", "b"], "v").hosts == ["a", "b"]
    for args, kwargs, match in (((None, "v"), {}, "should not be None"),
                                (("h", None), {}, "should not be None"),
                                (("h", "v"), {"proto": "udp"}, "Invalid protocol"),
                                (("h", "v"), {"port": "24007"}, "Invalid port"),
                                (([], "v"), {}, "At least one host")):
        with pytest.raises(LibgfapiException, match=match):
            Volume(*args, **kwargs)
    # accepted as by libgfapi-python, refused when mounting: glusterpy speaks tcp
    v = Volume("h", "v", proto="rdma")
    with pytest.raises(LibgfapiException, match="over rdma"):
        v.mount()
    assert not v.mounted
    v = Volume("/nonexistent/glusterd.socket", "v", proto="unix")
    with pytest.raises(LibgfapiException, match="unix:/nonexistent/glusterd.socket"):
        v.mount()
    assert not v.mounted


def test_unmounted_volume_raises_volume_not_mounted():
    vol = Volume("127.0.0.1", "v")
    for call in (lambda: vol.stat("/"), lambda: vol.listdir("/"), lambda: vol.fopen("/x", "w"),
                 lambda: vol.open("/x", os.O_RDONLY), lambda: vol.mkdir("/d"),
                 lambda: vol.getcwd(), lambda: vol.get_volume_id(),
                 lambda: vol.getxattr("/", "user.x")):
        with pytest.raises(VolumeNotMounted, match='Volume "v" not mounted'):
            call()
    # exists/isdir/... are False on every failure but this one is not an OSError
    with pytest.raises(VolumeNotMounted):
        vol.exists("/")
    vol.umount()  # nothing to do, no error


def test_unreachable_server_fails_mount():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    vol = Volume("127.0.0.1", "nothing", port=port)
    with pytest.raises(LibgfapiException, match="no volfile server answered"):
        vol.mount()
    assert not vol.mounted and vol.fs is None


def test_file_refuses_what_is_not_an_fd():
    for bad in (None, "3", 1.5):
        with pytest.raises(ValueError, match="invalid fd"):
            File(bad)
    with pytest.raises(ValueError, match="not an open glfd"):
        File(12345678)


def test_gluster_is_a_namespace_shared_with_other_packages(tmp_path):
    """Another distribution's gluster.* next to ours: both import."""
    other = tmp_path / "site" / "gluster" / "otherpkg"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("VALUE = 42\n")
    code = ("import gluster, gluster.otherpkg, gluster.gfapi; "
            "assert not hasattr(gluster, '__file__') or gluster.__file__ is None; "
            "print(gluster.otherpkg.VALUE, gluster.gfapi.Volume.__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["42", "gluster.gfapi.gfapi"]


# -- against the two servers ---------------------------------------------------------


@pytest.fixture(scope="module", params=["glusterpy", pytest.param("glusterfs10",
                                                                  marks=pytest.mark.interop)])
def served(request, tmp_path_factory):
    if not ROOT:
        pytest.skip("bricks need trusted.* xattrs (root)")
    base = tmp_path_factory.mktemp(request.param)
    if request.param == "glusterpy":
        with glusterpy_volume(base) as s:
            yield s
    else:
        yield glusterfs_volume(request.getfixturevalue("glusterd"), base)


@pytest.fixture(scope="module")
def shared_vol(served):
    vol = Volume(served.host, served.volname, port=served.port)
    vol.mount()
    yield vol
    vol.umount()


@pytest.fixture
def vol(shared_vol, request):
    """The mounted volume, in a fresh directory of this test's own."""
    top = "/" + request.node.name.replace("[", "-").replace("]", "")
    shared_vol.mkdir(top)
    shared_vol.chdir(top)
    try:
        yield shared_vol
    finally:
        shared_vol.chdir("/")
        shared_vol.rmtree(top, ignore_errors=True)


def test_mount_umount_and_hosts(served):
    vol = Volume(["127.0.0.2.invalid", served.host], served.volname, port=served.port)
    assert not vol.mounted
    vol.mount()
    try:
        assert vol.mounted
        vol.mount()  # a second mount is a no-op
        assert vol.mounted and vol.listdir("/") is not None
    finally:
        vol.umount()
    assert not vol.mounted
    vol.umount()
    with pytest.raises(VolumeNotMounted):
        vol.listdir("/")
    with Volume(served.host, served.volname, port=served.port) as again:
        assert again.mounted and again.getcwd() == "/"
    assert not again.mounted


def test_mount_through_the_management_unix_socket(served):
    """proto="unix": the volfile from glusterd's (glusterpyd's) socket, data over tcp."""
    with Volume(str(served.socket), served.volname, proto="unix", port=0) as vol:
        assert vol.mounted
        with vol.fopen("/over-unix", "w") as f:
            f.write("via the socket")
        assert vol.fopen("/over-unix").read() == b"via the socket"
        vol.unlink("/over-unix")


def test_unknown_volume_fails_mount(served):
    vol = Volume(served.host, served.volname + "-nosuch", port=served.port)
    with pytest.raises(LibgfapiException, match="does not exist"):
        vol.mount()
    assert not vol.mounted


def test_get_volume_id(served):
    with Volume(served.host, served.volname, port=served.port) as vol:
        assert vol.volid is None
        volid = vol.get_volume_id()
        assert isinstance(volid, uuid.UUID)
        assert volid == served.volume_id == vol.volid


@pytest.mark.skipif(not ROOT, reason="bricks need trusted.* xattrs (root)")
def test_glusterpyd_answers_get_volume_info(tmp_path):
    """A one-brick volume's client graph carries no volume-id: the id comes
    from glusterpyd's GET_VOLUME_INFO, as from glusterd's.  Asking for an
    unknown volume, or for something else than the id, is EINVAL there."""
    import trio
    from glusterpy.gfapi.mgmt import VolfileFetchError, VolfileServer, fetch_volume_id
    with glusterpy_volume(tmp_path, "plain", replica=None) as s:
        with Volume(s.host, s.volname, port=s.port) as vol:
            assert vol.get_volume_id() == s.volume_id == vol.volid
        server = [VolfileServer(s.host, s.port)]
        with pytest.raises(VolfileFetchError) as e:
            trio.run(fetch_volume_id, server, "nosuch")
        assert e.value.errno == errno.EINVAL and "nosuch does not exist" in str(e.value)
        with pytest.raises(VolfileFetchError):
            trio.run(fetch_volume_id, server, "../plain")
        # an old dict's values arrive as strings, with C's terminator
        from glusterpy.glusterd.volfile_server import VolfileServer as Served
        reply = Served.volume_info(None, {"flags": b"0\0", "volname": b"plain\0"})
        assert reply.op_ret == -1 and reply.op_errno == errno.EINVAL


def test_set_logging(served, tmp_path):
    import logging
    probe = logging.getLogger("glusterpy.gfapi.compat-test")
    log1, log2 = tmp_path / "one.log", tmp_path / "two.log"
    vol = Volume(served.host, served.volname, port=served.port, log_file=str(log1))
    vol.mount()
    try:
        assert (vol.log_file, vol.log_level) == (str(log1), 7)
        assert log1.exists() and log1.stat().st_size > 0  # the mount's connections
        with pytest.raises(LibgfapiException, match="set_logging"):
            vol.set_logging(str(log2), 42)
        with pytest.raises(LibgfapiException, match="No such file or directory"):
            vol.set_logging(str(tmp_path / "no" / "such" / "dir.log"), 7)
        assert vol.log_file == str(log1)
        # on a mounted volume the change is at once: the client's next
        # records (here one of our own, in glusterpy's logger) go to the new file
        vol.set_logging(str(log2), 9)
        assert (vol.log_file, vol.log_level) == (str(log2), 9)
        probe.debug("first probe")
        assert "first probe" in log2.read_text()
        assert "first probe" not in log1.read_text()
        vol.disable_logging()
        assert vol.log_file == "/dev/null"
        probe.warning("second probe")
        assert "second probe" not in log2.read_text() + log1.read_text()
    finally:
        vol.umount()
    probe.warning("after umount")
    assert "after umount" not in log2.read_text()
    # mounted without a log file, then given one: it takes over at once too
    log3 = tmp_path / "three.log"
    vol = Volume(served.host, served.volname, port=served.port, log_file=None)
    vol.mount()
    try:
        vol.set_logging(str(log3), 7)
        probe.info("third probe")
    finally:
        vol.umount()
    assert "I [glusterpy.gfapi.compat-test] third probe" in log3.read_text()
    bad = Volume(served.host, served.volname, port=served.port,
                 log_file=str(tmp_path / "no" / "such.log"))
    with pytest.raises(LibgfapiException, match="set_logging"):
        bad.mount()
    assert not bad.mounted


# -- files ---------------------------------------------------------------------------


def test_open_returns_raw_fd_that_file_wraps(vol):
    fd = vol.open("f.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    assert isinstance(fd, int) and fd
    with File(fd, path="f.txt") as f:
        assert f.fileno == fd and f.fd == fd and f.name == "f.txt" and f.mode is None
        assert f.originalpath == "f.txt"
        assert f.write("Winter is coming.") == len("Winter is coming.")
    assert f.closed and f.fd is None
    assert stat.S_IMODE(vol.stat("f.txt").st_mode) == 0o644
    with File(vol.open("f.txt", os.O_RDONLY)) as f:
        assert f.read() == b"Winter is coming."
    with pytest.raises(TypeError):
        vol.open("f.txt", "w")
    with pytest.raises(OSError) as e:
        vol.open("missing", os.O_RDONLY)
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        vol.open("f.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(OSError) as e:
        vol.open("/", os.O_WRONLY)
    assert e.value.errno == errno.EISDIR


def test_double_close_and_io_on_closed_file_are_ebadf(vol):
    f = vol.fopen("x", "w")
    f.close()
    for call in (f.close, lambda: f.write("Valar Morghulis"), f.read, f.fstat, f.fsync,
                 lambda: f.lseek(0, os.SEEK_SET), f.dup, lambda: f.fgetxattr("user.a")):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EBADF
    with pytest.raises(ValueError, match="invalid fd"):
        f.__enter__()


def test_fopen_modes(vol):
    data = b"A boy has no name."
    with pytest.raises(TypeError, match="Mode must be a string"):
        vol.fopen("f", os.O_WRONLY)
    for bad in ("x+", "x", "rw", "", "r+t", "wbb"):
        with pytest.raises(ValueError, match="Invalid mode"):
            vol.fopen("f", bad)
    with pytest.raises(OSError) as e:
        vol.fopen("missing", "r")
    assert e.value.errno == errno.ENOENT
    with vol.fopen("f", "w") as f:
        assert f.mode == "w" and f.name == "f"
        f.write(data)
        with pytest.raises(OSError) as e:
            f.read()
        assert e.value.errno == errno.EBADF
    # fopen creates 0666 (glfs_creat's mode, the process umask not applied)
    assert stat.S_IMODE(vol.stat("f").st_mode) == 0o666
    with vol.fopen("f", "r") as f:
        assert f.mode == "r" and f.lseek(0, os.SEEK_CUR) == 0
        assert f.read() == data
        with pytest.raises(OSError) as e:
            f.write(b"no")
        assert e.value.errno == errno.EBADF
    with vol.fopen("f", "r+") as f:
        assert f.mode == "r+" and f.lseek(0, os.SEEK_CUR) == 0
        f.write(b"a")
        f.lseek(0, os.SEEK_SET)
        assert f.read() == b"a" + data[1:]
    with vol.fopen("f", "wb") as f:
        assert vol.getsize("f") == 0
        f.write(data)
    with vol.fopen("f", "w+") as f:
        assert vol.getsize("f") == 0
        f.write(data)
        f.lseek(0, os.SEEK_SET)
        assert f.read() == data
    with vol.fopen("f", "a") as f:
        f.lseek(0, os.SEEK_SET)
        f.write(b"hello")
    with vol.fopen("f", "a+b") as f:
        f.write(b" world")
        f.lseek(0, os.SEEK_SET)
        assert f.read() == data + b"hello world"
    for mode in ("rb", "r+b", "rb+", "wb+", "w+b", "ab", "ab+", "a+"):
        with vol.fopen("f", mode) as f:
            assert f.mode == mode


def test_read_and_write_types(vol):
    with vol.fopen("t", "w+") as f:
        assert f.write("héllo ") == 7  # bytes written, UTF-8
        assert f.write(b"bytes ") == 6
        assert f.write(bytearray(b"array ")) == 6
        assert f.write(memoryview(b"view")) == 4
        for bad in (42, None, ["x"]):
            with pytest.raises(TypeError):
                f.write(bad)
        f.lseek(0, os.SEEK_SET)
        assert f.read(7) == "héllo ".encode()
        rest = f.read()
        assert isinstance(rest, bytes) and rest == b"bytes array view"
        assert f.read() == b"" and f.read(10) == b""  # EOF: b"", not None
        f.lseek(0, os.SEEK_SET)
        buf = bytearray(4)
        assert f.readinto(buf) == 4 and buf == b"h\xc3\xa9l"
        for bad in ("buf", b"buf", memoryview(bytearray(3))):
            with pytest.raises(TypeError):
                f.readinto(bad)
        assert f.lseek(-4, os.SEEK_END) == 19
        assert f.readinto(bytearray(10)) == 4
        assert f.readinto(bytearray(10)) == 0
        with pytest.raises(OSError) as e:
            f.lseek(0, 17)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            f.lseek(-100, os.SEEK_SET)
        assert e.value.errno == errno.EINVAL


def test_dup_lseek_read(vol):
    with vol.fopen("dup", "w+") as f:
        f.write(b"I must not fear. Fear is the mind-killer.")
        fdup = f.dup()
        assert isinstance(fdup, File) and fdup.fd != f.fd
        assert fdup.lseek(0, os.SEEK_SET) == 0
        assert fdup.read(15) == b"I must not fear"
        assert fdup.lseek(29, os.SEEK_SET) == 29
        assert fdup.read(11) == b"mind-killer"
        fdup.close()
        # the original is still open, at its own offset
        assert f.lseek(0, os.SEEK_CUR) == 41
        f.lseek(0, os.SEEK_SET)
        assert f.read(1) == b"I"


def test_fstat_truncate_allocate_discard_zerofill(vol):
    with vol.fopen("s", "w+") as f:
        f.write(b"123456789")
        st = f.fstat()
        assert isinstance(st, Stat) and st.st_size == 9 and stat.S_ISREG(st.st_mode)
        f.ftruncate(5)
        assert f.fgetsize() == 5
        f.lseek(0, os.SEEK_SET)
        assert f.read() == b"12345"
        f.fsync()
        f.fdatasync()
    with vol.fopen("alloc", "w+") as f:
        f.fallocate(0, 0, 10)
        assert f.fstat().st_size == 10
        f.discard(4, 2)  # punched, size unchanged
        assert f.fstat().st_size == 10
    with vol.fopen("zero", "w+") as f:
        f.write(b"0123456789")
        f.zerofill(3, 6)
        f.lseek(0, os.SEEK_SET)
        assert f.read() == b"012\x00\x00\x00\x00\x00\x009"
    with vol.fopen("mode", "w") as f:
        f.fchmod(0o600)
        assert stat.S_IMODE(f.fstat().st_mode) == 0o600
        f.fchown(1234, 4321)
        assert (f.fstat().st_uid, f.fstat().st_gid) == (1234, 4321)


def test_file_from_another_thread(vol):
    cwd = vol.getcwd()
    errors = []

    def worker(i):
        try:
            with vol.fopen(f"{cwd}/thread{i}", "w") as f:
                f.write("hello world")
        except Exception as e:  # reported to the test below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(vol.listdir(".")) == [f"thread{i}" for i in range(4)]


def test_bad_arguments_are_clear_errors(vol):
    with vol.fopen("f", "w+") as f:
        f.write(b"0123456789")
        for call, kind, match in (
                (lambda: vol.stat(123), TypeError, "path must be str or bytes"),
                (lambda: vol.listdir(None), TypeError, "path must be str or bytes"),
                (lambda: vol.mkdir("d", "0755"), TypeError, "mode must be an integer"),
                (lambda: vol.chmod("f", "644"), TypeError, "mode must be an integer"),
                (lambda: vol.chown("f", "root", 0), TypeError, "uid must be an integer"),
                (lambda: vol.open("g", os.O_CREAT | os.O_WRONLY, "x"), TypeError,
                 "mode must be an integer"),
                (lambda: vol.mknod("n", 0o644, "x"), TypeError, "dev must be an integer"),
                (lambda: vol.setxattr("f", 5, "v"), ValueError, "Cannot convert"),
                (lambda: vol.setxattr("f", "user.a", "v", "1"), TypeError, "flags must be"),
                (lambda: vol.utime("f", ("a", "b")), TypeError, "must be numbers"),
                (lambda: f.read("a"), TypeError, "size must be an integer"),
                (lambda: f.lseek("0", os.SEEK_SET), TypeError, "pos must be an integer"),
                (lambda: f.ftruncate("1"), TypeError, "length must be an integer"),
                (lambda: f.fchmod("x"), TypeError, "mode must be an integer"),
                (lambda: f.write(b"x", "y"), TypeError, "flags must be an integer"),
                (lambda: f.zerofill("a", 1), TypeError, "offset must be an integer"),
                (lambda: Dir(None), ValueError, "invalid fd")):
            with pytest.raises(kind, match=match):
                call()
        for call in (lambda: f.fallocate(0, -1, 10), lambda: f.discard(0, 0),
                     lambda: f.zerofill(-5, 1), lambda: f.ftruncate(-1),
                     lambda: f.lseek(0, 99), lambda: vol.setxattr("f", "user.a", "v", 7)):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.EINVAL
        for call in (lambda: vol.mkdir(""), lambda: vol.opendir(""), lambda: vol.stat("")):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.ENOENT
        f.lseek(0, os.SEEK_SET)
        assert f.read() == b"0123456789"  # nothing above changed the file


# -- xattrs ----------------------------------------------------------------------------


def test_path_xattrs(vol):
    with vol.fopen("x", "w"):
        pass
    vol.setxattr("x", "user.gluster", "awesome")
    vol.setxattr("x", b"user.gluster2", b"awesome2")
    assert vol.getxattr("x", "user.gluster") == "awesome"
    assert vol.getxattr("x", "user.gluster", size=7) == "awesome"
    assert vol.getxattr("x", "user.gluster", size=20) == "awesome"
    assert {"user.gluster", "user.gluster2"} <= set(vol.listxattr("x"))
    names = vol.listxattr("x")
    assert names == sorted(names) and all(isinstance(n, str) for n in names)
    for call, err in ((lambda: vol.getxattr("x", "user.gluster", size=1), errno.ERANGE),
                      (lambda: vol.listxattr("x", size=1), errno.ERANGE),
                      (lambda: vol.getxattr("x", "user.none"), errno.ENODATA),
                      (lambda: vol.setxattr("x", "user.gluster", "v", 1), errno.EEXIST),
                      (lambda: vol.setxattr("x", "user.new", "v", 2), errno.ENODATA),
                      (lambda: vol.setxattr("x", "user.new", "v", 3), errno.EINVAL),
                      (lambda: vol.getxattr("missing", "user.gluster"), errno.ENOENT)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == err
    for call in (lambda: vol.getxattr("x", "user.gluster", size=-1),
                 lambda: vol.listxattr("x", size=-1)):
        with pytest.raises(ValueError):
            call()
    vol.setxattr("x", "user.gluster", "more awesome", 2)
    assert vol.getxattr("x", "user.gluster") == "more awesome"
    # the whole value, NULs included; not UTF-8 comes back as bytes
    vol.setxattr("x", "user.bin", b"a\x00b\xff")
    assert vol.getxattr("x", "user.bin") == b"a\x00b\xff"
    vol.setxattr("x", "user.nul", b"a\x00b")
    assert vol.getxattr("x", "user.nul") == "a\x00b"
    vol.removexattr("x", "user.gluster")
    with pytest.raises(OSError) as e:
        vol.getxattr("x", "user.gluster")
    assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        vol.removexattr("x", "user.gluster")
    assert e.value.errno == errno.ENODATA


def test_fd_xattrs(vol):
    with vol.fopen("fx", "w") as f:
        f.fsetxattr("user.gluster", "awesome")
        assert f.fgetxattr("user.gluster") == "awesome"
        assert f.fgetxattr("user.gluster", 7) == "awesome"
        assert f.fgetxattr("user.gluster", 70) == "awesome"
        with pytest.raises(OSError) as e:
            f.fsetxattr("user.gluster", "again", 1)
        assert e.value.errno == errno.EEXIST
        with pytest.raises(OSError) as e:
            f.fsetxattr("user.whatever", "x", 2)
        assert e.value.errno == errno.ENODATA
        f.fsetxattr("user.gluster2", "awesome2")
        assert {"user.gluster", "user.gluster2"} <= set(f.flistxattr())
        with pytest.raises(OSError) as e:
            f.flistxattr(size=1)
        assert e.value.errno == errno.ERANGE
        with pytest.raises(OSError) as e:
            f.fgetxattr("user.gluster", 1)
        assert e.value.errno == errno.ERANGE
        for call in (lambda: f.flistxattr(size=-1), lambda: f.fgetxattr("user.gluster", -1)):
            with pytest.raises(ValueError):
                call()
        f.fremovexattr("user.gluster")
        with pytest.raises(OSError) as e:
            f.fgetxattr("user.gluster")
        assert e.value.errno == errno.ENODATA
        with pytest.raises(OSError) as e:
            f.fremovexattr("user.gluster")
        assert e.value.errno == errno.ENODATA


# -- the namespace ---------------------------------------------------------------------


def test_stat_family(vol):
    with vol.fopen("f", "w") as f:
        f.write(b"12345")
    for s in (vol.stat("f"), vol.lstat("f")):
        assert isinstance(s, Stat) and s.st_size == 5 and s.st_nlink == 1
    assert vol.getsize("f") == 5
    for t in (vol.getatime("f"), vol.getmtime("f"), vol.getctime("f")):
        assert abs(t - time.time()) < 300
    assert vol.exists("f") and not vol.exists("nothing")
    assert vol.isfile("f") and not vol.isdir("f") and not vol.islink("f")
    assert vol.isdir(".") and not vol.isfile(".")
    assert not vol.isfile("nothing") and not vol.isdir("nothing") and not vol.islink("nothing")
    for call in (vol.stat, vol.lstat):
        with pytest.raises(OSError) as e:
            call("nothing")
        assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        vol.stat("f/below")
    assert e.value.errno == errno.ENOTDIR
    sv = vol.statvfs("/")
    assert isinstance(sv, Statvfs) and sv.f_bsize > 0 and sv.f_blocks > 0
    assert sv.f_namemax >= 255
    with pytest.raises(OSError) as e:
        vol.statvfs("nothing")
    assert e.value.errno == errno.ENOENT


def test_mkdir_makedirs_listdir(vol):
    vol.mkdir("d", 0o755)
    assert stat.S_IMODE(vol.stat("d").st_mode) == 0o755
    with pytest.raises(OSError) as e:
        vol.mkdir("d")
    assert e.value.errno == errno.EEXIST
    vol.makedirs("a/b/c")
    assert vol.isdir("a/b/c")
    vol.makedirs("a/b/c2", 0o700)
    assert stat.S_IMODE(vol.stat("a/b/c2").st_mode) == 0o700
    with pytest.raises(OSError) as e:  # no exist_ok: the leaf must not exist
        vol.makedirs("a/b/c")
    assert e.value.errno == errno.EEXIST
    with vol.fopen("a/file", "w") as f:
        f.write(b"xyz")
    vol.symlink("file", "a/link")
    assert sorted(vol.listdir("a")) == ["b", "file", "link"]
    with_stat = dict(vol.listdir_with_stat("a"))
    assert set(with_stat) == {"b", "file", "link"}
    assert all(isinstance(s, Stat) for s in with_stat.values())
    assert stat.S_ISDIR(with_stat["b"].st_mode) and stat.S_ISLNK(with_stat["link"].st_mode)
    assert with_stat["file"].st_size == 3
    for call in (vol.listdir, vol.listdir_with_stat):
        with pytest.raises(OSError) as e:
            call("nothing")
        assert e.value.errno == errno.ENOENT
        with pytest.raises(OSError) as e:
            call("a/file")
        assert e.value.errno == errno.ENOTDIR
    vol.rmdir("a/b/c")
    with pytest.raises(OSError) as e:
        vol.rmdir("a")
    assert e.value.errno == errno.ENOTEMPTY


def test_opendir_dir_and_scandir(vol):
    vol.mkdir("d")
    with vol.fopen("d/file", "w") as f:
        f.write(b"data")
    vol.mkdir("d/sub")
    vol.symlink("sub", "d/dirlink")
    vol.symlink("nowhere", "d/broken")
    d = vol.opendir("d")
    assert isinstance(d, Dir)
    entries = list(d)
    assert all(isinstance(e, api.Dirent) for e in entries)
    names = {e.d_name[:e.d_reclen] for e in entries}
    assert names == {b".", b"..", b"file", b"sub", b"dirlink", b"broken"}
    types = {e.d_name: e.d_type for e in entries}
    assert types[b"sub"] == b"\x04" and types[b"file"] == b"\x08" and types[b"broken"] == b"\n"
    plus = list(vol.opendir("d", readdirplus=True))
    assert all(isinstance(e, api.Dirent) and isinstance(s, Stat) for e, s in plus)
    assert {e.d_name: s.st_size for e, s in plus}[b"file"] == 4
    with pytest.raises(OSError) as e:
        vol.opendir("d/file")
    assert e.value.errno == errno.ENOTDIR
    with pytest.raises(OSError) as e:
        vol.opendir("nothing")
    assert e.value.errno == errno.ENOENT

    found = {e.name: e for e in vol.scandir("d")}
    assert set(found) == {"file", "sub", "dirlink", "broken"}
    assert all(isinstance(e, DirEntry) for e in found.values())
    f, sub, link, broken = found["file"], found["sub"], found["dirlink"], found["broken"]
    assert f.path == "d/file" and f.is_file() and not f.is_dir() and f.stat().st_size == 4
    assert isinstance(f.stat(), Stat) and f.inode() == vol.stat("d/file").st_ino
    assert sub.is_dir() and not sub.is_symlink()
    # follow_symlinks is False by default (unlike os.DirEntry)
    assert link.is_symlink() and not link.is_dir() and link.is_dir(follow_symlinks=True)
    assert stat.S_ISLNK(link.stat().st_mode)
    assert stat.S_ISDIR(link.stat(follow_symlinks=True).st_mode)
    assert not broken.is_dir(follow_symlinks=True) and not broken.is_file(follow_symlinks=True)
    assert str(f) == repr(f) == "<DirEntry: 'file'>"
    with pytest.raises(OSError) as e:
        list(vol.scandir("nothing"))
    assert e.value.errno == errno.ENOENT


def test_links_rename_unlink(vol):
    with vol.fopen("one", "w") as f:
        f.write(b"1")
    vol.link("one", "two")
    assert vol.samefile("one", "two")
    assert vol.stat("one").st_nlink == vol.stat("two").st_nlink == 2
    for args, err in ((("nonexistent", "link"), errno.ENOENT), (("one", "two"), errno.EEXIST)):
        with pytest.raises(OSError) as e:
            vol.link(*args)
        assert e.value.errno == err
    vol.symlink("one", "sym")
    assert vol.islink("sym") and vol.readlink("sym") == "one"
    with pytest.raises(OSError) as e:
        vol.readlink("one")
    assert e.value.errno == errno.EINVAL
    vol.symlink("nowhere", "broken")
    assert vol.islink("broken") and not vol.exists("broken")
    vol.rename("one", "three")
    assert not vol.exists("one") and vol.samefile("two", "three")
    with pytest.raises(OSError) as e:
        vol.rename("one", "four")
    assert e.value.errno == errno.ENOENT
    vol.mkdir("dir")
    with pytest.raises(OSError) as e:
        vol.rename("three", "dir")
    assert e.value.errno == errno.EISDIR
    # "If dst is a directory, OSError will be raised": an empty one too
    vol.mkdir("dir2")
    with pytest.raises(OSError) as e:
        vol.rename("dir2", "dir")
    assert e.value.errno == errno.EEXIST and vol.isdir("dir2")
    vol.rename("dir2", "dir3")
    assert vol.isdir("dir3") and not vol.exists("dir2")
    vol.unlink("two")
    vol.remove("three")
    assert not vol.exists("two") and not vol.exists("three")
    with pytest.raises(OSError) as e:
        vol.unlink("three")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        vol.remove("dir")
    assert e.value.errno == errno.EISDIR
    with pytest.raises(OSError) as e:
        vol.samefile("dir", "nothing")
    assert e.value.errno == errno.ENOENT


def test_access_chdir_chmod_chown_utime_mknod_fifo(vol):
    with vol.fopen("f", "w") as f:
        f.write("I'm whatever Gotham needs me to be")
    assert vol.access("f", os.F_OK) is True
    assert vol.access("nonexistentfile", os.F_OK) is False
    assert vol.access("f", os.R_OK | os.W_OK)
    cwd = vol.getcwd()
    vol.makedirs("x/y")
    vol.chdir("x/y")
    assert vol.getcwd() == cwd + "/x/y"
    vol.chdir("..")
    assert vol.getcwd() == cwd + "/x"
    for bad, err in (("nothing", errno.ENOENT), ("../f", errno.ENOTDIR)):
        with pytest.raises(OSError) as e:
            vol.chdir(bad)
        assert e.value.errno == err
    vol.chdir(cwd)
    vol.chmod("f", 0o600)
    assert oct(stat.S_IMODE(vol.stat("f").st_mode)) == "0o600"
    vol.chown("f", 1000, 1001)
    assert (vol.stat("f").st_uid, vol.stat("f").st_gid) == (1000, 1001)
    with pytest.raises(OSError) as e:
        vol.chmod("nothing", 0o600)
    assert e.value.errno == errno.ENOENT
    atime, mtime = 1400000000.5, 1500000000.25
    vol.utime("f", (atime, mtime))
    st = vol.stat("f")
    assert (st.st_atime, st.st_mtime) == (1400000000, 1500000000)
    assert (st.st_atimensec, st.st_mtimensec) == (500000000, 250000000)
    vol.utime("f", (10, 20))
    assert (vol.stat("f").st_atime, vol.stat("f").st_mtime) == (10, 20)
    vol.utime("f", None)
    assert vol.stat("f").st_mtime > time.time() - 300
    for junk in ([1, 2], (1,), (1, 2, 3), "ab"):
        with pytest.raises(TypeError):
            vol.utime("f", junk)
    with pytest.raises(OSError) as e:
        vol.utime("non-existent-file", None)
    assert e.value.errno == errno.ENOENT
    vol.mknod("fifo", 0o600 | stat.S_IFIFO, 0)
    assert stat.S_ISFIFO(vol.stat("fifo").st_mode)
    with pytest.raises(OSError) as e:
        vol.mknod("fifo", 0o600 | stat.S_IFIFO, 0)
    assert e.value.errno == errno.EEXIST


def test_mknod_device_numbers(vol, served):
    """An iatt's rdev is GlusterFS's ia_makedev (major << 32 | minor) on the
    wire, from either brick; st_rdev is the dev_t again."""
    vol.mknod("null", 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    st = vol.stat("null")
    assert stat.S_ISCHR(st.st_mode)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)


# -- walk, rmtree and the copy family ---------------------------------------------------------


def make_tree(vol):
    vol.makedirs("t/a/aa")
    vol.mkdir("t/b")
    for path, data in (("t/top", b"top"), ("t/a/one", b"1" * 1000), ("t/a/aa/deep", b"deep"),
                       ("t/b/two", b"")):
        with vol.fopen(path, "w") as f:
            f.write(data)
    vol.symlink("a", "t/link-to-dir")


def test_walk(vol):
    make_tree(vol)
    down = list(vol.walk("t"))
    assert [d for d, _, _ in down][0] == "t"
    tree = {d: (sorted(ds), sorted(fs)) for d, ds, fs in down}
    # a symlink to a directory is a file name unless followlinks (documented)
    assert tree == {"t": (["a", "b"], ["link-to-dir", "top"]), "t/a": (["aa"], ["one"]),
                    "t/a/aa": ([], ["deep"]), "t/b": ([], ["two"])}
    up = [d for d, _, _ in vol.walk("t", topdown=False)]
    assert up[-1] == "t" and up.index("t/a/aa") < up.index("t/a")
    followed = {d: sorted(ds) for d, ds, _ in vol.walk("t", followlinks=True)}
    assert followed["t"] == ["a", "b", "link-to-dir"] and "t/link-to-dir/aa" in followed
    errors = []
    assert list(vol.walk("nothing", onerror=errors.append)) == []
    assert len(errors) == 1 and errors[0].errno == errno.ENOENT
    assert list(vol.walk("nothing")) == []
    # pruning dirnames in place, topdown, steers the walk as os.walk's does
    seen = []
    for d, ds, _ in vol.walk("t"):
        seen.append(d)
        ds[:] = [x for x in ds if x != "a"]
    assert sorted(seen) == ["t", "t/b"]


def test_rmtree(vol):
    make_tree(vol)
    with pytest.raises(OSError, match="symbolic link"):
        vol.rmtree("t/link-to-dir")
    assert vol.isdir("t/a")  # the link's target untouched
    vol.rmtree("t")
    assert not vol.exists("t")
    calls = []
    vol.rmtree("nothing", onerror=lambda *a: calls.append(a))
    assert [c[0].__name__ for c in calls] == ["scandir", "rmdir"]
    assert all(c[1] == "nothing" for c in calls)
    assert all(isinstance(c[2], OSError) and c[2].errno == errno.ENOENT for c in calls)
    vol.rmtree("nothing", ignore_errors=True)
    with pytest.raises(OSError) as e:
        vol.rmtree("nothing")
    assert e.value.errno == errno.ENOENT


def checksum(vol, path):
    h = hashlib.sha256()
    with vol.fopen(path, "rb") as f:
        while True:
            chunk = f.read(32 * 1024)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def test_copyfileobj_copyfile_copymode_copystat(vol):
    with vol.fopen("src", "wb") as f:
        for _ in range(3):
            f.write(os.urandom(128 * 1024))
        f.write(os.urandom(25 * 1024))
    vol.chmod("src", 0o640)
    vol.utime("src", (1300000000.125, 1400000000.75))
    with vol.fopen("src", "rb") as fsrc, vol.fopen("dst", "wb") as fdst:
        Volume.copyfileobj(fsrc, fdst)  # a classmethod
    assert checksum(vol, "src") == checksum(vol, "dst")
    # only from fsrc's offset on
    with vol.fopen("src", "rb") as fsrc, vol.fopen("tail", "wb") as fdst:
        fsrc.lseek(400 * 1024, os.SEEK_SET)
        vol.copyfileobj(fsrc, fdst, 1000)
    assert vol.getsize("tail") == 9 * 1024
    vol.copyfile("src", "copied")
    assert checksum(vol, "copied") == checksum(vol, "src")
    assert vol.stat("copied").st_mtime != vol.stat("src").st_mtime
    for same in ("src", "./src"):
        with pytest.raises(Error, match="same file"):
            vol.copyfile("src", same)
    vol.link("src", "hard")
    with pytest.raises(Error):
        vol.copyfile("src", "hard")
    with pytest.raises(OSError) as e:
        vol.copyfile("nothing", "x")
    assert e.value.errno == errno.ENOENT
    vol.mknod("fifo", 0o600 | stat.S_IFIFO, 0)
    with pytest.raises(Error, match="special file .named pipe"):
        vol.copyfile("fifo", "x")
    assert not vol.exists("x")
    vol.copymode("src", "copied")
    assert stat.S_IMODE(vol.stat("copied").st_mode) == 0o640
    vol.copystat("src", "dst")
    s, d = vol.stat("src"), vol.stat("dst")
    assert (s.st_mode, s.st_atime, s.st_mtime) == (d.st_mode, d.st_atime, d.st_mtime)
    assert (s.st_atimensec, s.st_mtimensec) == (d.st_atimensec, d.st_mtimensec) == \
        (125000000, 750000000)


def test_copy_and_copy2(vol):
    with vol.fopen("src", "w") as f:
        f.write(os.urandom(153 * 1024))
    vol.chmod("src", 0o604)
    vol.utime("src", (1000000000, 1100000000))
    vol.mkdir("into")
    vol.copy("src", "into")
    assert checksum(vol, "into/src") == checksum(vol, "src")
    assert vol.stat("into/src").st_mode == vol.stat("src").st_mode
    assert vol.stat("into/src").st_mtime != 1100000000
    vol.copy2("src", "two")
    assert checksum(vol, "two") == checksum(vol, "src")
    st = vol.stat("two")
    assert (st.st_mode, st.st_mtime) == (vol.stat("src").st_mode, 1100000000)


def test_copytree(vol):
    make_tree(vol)
    vol.utime("t/a/one", (1234567890, 1234567890))
    vol.copytree("t", "c")
    tree = {d: (sorted(ds), sorted(fs)) for d, ds, fs in vol.walk("c")}
    # symlinks=False: the link's target directory is copied as a directory
    assert tree["c"] == (["a", "b", "link-to-dir"], ["top"])
    assert not vol.islink("c/link-to-dir") and vol.isdir("c/link-to-dir/aa")
    assert checksum(vol, "c/a/one") == checksum(vol, "t/a/one")
    assert vol.stat("c/a/one").st_mtime == 1234567890
    vol.copytree("t", "s", symlinks=True)
    assert vol.islink("s/link-to-dir") and vol.readlink("s/link-to-dir") == "a"
    # ignore is called for every directory copied (the documented behaviour)
    seen = []

    def ignore(src, names):
        seen.append(src)
        return {"deep", "two"}
    vol.copytree("t", "i", ignore=ignore)
    assert not vol.exists("i/a/aa/deep") and not vol.exists("i/b/two")
    assert vol.exists("i/a/one") and "t/a/aa" in seen
    with pytest.raises(OSError) as e:  # the destination must not exist
        vol.copytree("t", "c")
    assert e.value.errno == errno.EEXIST
    vol.symlink("nowhere", "t/broken")
    with pytest.raises(Error) as e:
        vol.copytree("t", "e")
    failures = e.value.args[0]
    assert isinstance(failures, list) and [f[0] for f in failures] == ["t/broken"]
    assert vol.exists("e/a/one")  # the rest was copied


def test_gluster_files_copy_from_and_to_local_files(vol, tmp_path):
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(300 * 1024 + 7))
    with open(local, "rb") as fsrc, vol.fopen("up", "wb") as fdst:
        vol.copyfileobj(fsrc, fdst)
    with vol.fopen("up", "rb") as fsrc, open(tmp_path / "back.bin", "wb") as fdst:
        vol.copyfileobj(fsrc, fdst)
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()


def test_setfsuid_makes_later_calls_as_that_user(vol):
    vol.mkdir("private", 0o700)
    vol.setfsuid(4242)
    vol.setfsgid(4242)
    try:
        with pytest.raises(OSError) as e:
            vol.fopen("private/x", "w")
        assert e.value.errno == errno.EACCES
        assert vol.access("private", os.W_OK) is False
    finally:
        vol.setfsuid(0)
        vol.setfsgid(0)
    vol.fopen("private/x", "w").close()
    with pytest.raises(OSError) as e:
        vol.setfsuid(-1)
    assert e.value.errno == errno.EINVAL


# -- a program written for libgfapi-python ------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gfapi_tree_checksum.py"


def make_local_tree(root: Path) -> dict[str, str]:
    """A tree with the shapes a real one has; returns path -> sha256 of its files."""
    sums = {}
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    files = {"README": b"top level\n", "empty": b"", "docs/one.txt": b"1" * 5000,
             "docs/deep/big.bin": os.urandom(700 * 1024 + 13),
             "docs/deep/deeper/ünïcode名前.txt": "text ✓\n".encode(),
             "docs/deep/exact.bin": os.urandom(128 * 1024)}
    for rel, data in files.items():
        (root / rel).write_bytes(data)
        sums[rel] = hashlib.sha256(data).hexdigest()
    os.chmod(root / "README", 0o600)
    os.symlink("one.txt", root / "docs" / "link-to-file")
    os.symlink("deep", root / "docs" / "link-to-dir")
    return sums


def run_example(served, *args, cwd):
    return subprocess.run([sys.executable, str(EXAMPLE), served.host, *args,
                           "--port", str(served.port)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def test_example_program_runs_unchanged(served, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sums = make_local_tree(src)
    # run from elsewhere than the checkout: the installed gluster.gfapi
    r = run_example(served, served.volname, str(src), "--manifest", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    manifest = dict(reversed(line.split("  ", 1)) for line in r.stdout.splitlines()
                    if "  " in line)
    assert manifest == sums
    total = sum(f.stat().st_size for f in src.rglob("*") if f.is_file() and not f.is_symlink())
    assert r.stdout.splitlines()[-1].startswith(
        f"6 files ({total} bytes), 4 directories, 2 symlinks: copy ")
    assert r.stdout.rstrip().endswith(": OK")
    # it cleans up after itself
    with Volume(served.host, served.volname, port=served.port) as vol:
        assert not [n for n in vol.listdir("/") if n.startswith("tree-checksum-")]
    # --keep leaves the copy, and a second run into it is refused
    r = run_example(served, served.volname, str(src), "--dest", "/kept", "--keep",
                    cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_example(served, served.volname, str(src), "--dest", "/kept", cwd=tmp_path)
    assert r.returncode == 2 and "already exists" in r.stderr
    with Volume(served.host, served.volname, port=served.port) as vol:
        assert vol.readlink("/kept/docs/link-to-dir") == "deep"
        assert vol.getsize("/kept/docs/deep/big.bin") == 700 * 1024 + 13
        assert stat.S_IMODE(vol.stat("/kept/README").st_mode) == 0o600
        vol.rmtree("/kept")


def test_example_program_reports_an_unusable_volume(served, tmp_path):
    r = run_example(served, served.volname + "-nosuch", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "cannot mount" in r.stderr


def test_example_program_is_plain_libgfapi_python():
    """Nothing of glusterpy's own: only the standard library and gluster.gfapi."""
    import ast
    tree = ast.parse(EXAMPLE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names} == \
        {"gluster", "gluster.gfapi.exceptions"}
