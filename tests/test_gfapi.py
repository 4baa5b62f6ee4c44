"""glusterpy.gfapi on a local posix graph: libgfapi-python's API shape, POSIX
path semantics, bad input, threads and the trio-native API."""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest
import trio

from glusterpy.gfapi import (AsyncVolume, LibgfapiException, Volume, VolumeNotMounted,
                             mode_to_flags)

VOLFILE = """
volume t-posix
    type storage/posix
    option directory {brick}
end-volume

volume t-io-cache
    type performance/io-cache
    subvolumes t-posix
end-volume
"""


@pytest.fixture
def volfile(tmp_path):
    brick = tmp_path / "brick"
    brick.mkdir()
    path = tmp_path / "t.vol"
    path.write_text(VOLFILE.format(brick=brick))
    return path


@pytest.fixture
def vol(volfile):
    v = Volume.from_volfile(volfile)
    yield v
    v.umount()


def err(excinfo) -> str:
    return errno.errorcode[excinfo.value.errno]


# -- mounting -----------------------------------------------------------------

def test_mount_umount_and_use_after_umount(volfile):
    v = Volume.from_volfile(volfile)
    assert v.mounted
    v.mkdir("/d")
    v.umount()
    v.umount()  # twice is harmless
    assert not v.mounted
    with pytest.raises(VolumeNotMounted):
        v.listdir("/")
    v.mount()
    assert v.listdir("/") == ["d"]
    v.umount()


def test_context_manager(volfile):
    with Volume.from_volfile(volfile, mount=False) as v:
        assert v.mounted
        assert v.volname == "t-io-cache"
    assert not v.mounted


def test_bad_volfile_fails_to_build(tmp_path):
    bad = tmp_path / "bad.vol"
    bad.write_text("volume x\n type storage/nonesuch\nend-volume\n")
    from glusterpy.volfile import VolfileError
    with pytest.raises(VolfileError, match=r"bad.vol:2: unknown translator type"):
        Volume.from_volfile(bad)


def test_missing_brick_fails_to_mount(tmp_path):
    path = tmp_path / "t.vol"
    path.write_text(VOLFILE.format(brick=tmp_path / "absent"))
    with pytest.raises((LibgfapiException, OSError)):
        Volume.from_volfile(path)


# -- files --------------------------------------------------------------------

def test_fopen_modes(vol):
    with pytest.raises(FileNotFoundError):
        vol.fopen("/f", "r")
    with vol.fopen("/f", "w") as f:
        assert f.write(b"hello") == 5
    with vol.fopen("/f", "a") as f:
        f.write(b" world")
    with vol.fopen("/f", "rb") as f:
        assert f.read() == b"hello world"
    with vol.fopen("/f", "r+") as f:
        f.write(b"J")
        f.lseek(0, os.SEEK_SET)
        assert f.read(5) == b"Jello"
    with vol.fopen("/f", "w+") as f:  # truncates
        assert f.read() == b""
    with pytest.raises(FileExistsError):
        vol.fopen("/f", "x")
    with pytest.raises(ValueError):
        vol.fopen("/f", "rw")
    with pytest.raises(TypeError):
        vol.fopen("/f", 1)


@pytest.mark.parametrize("mode,flags", [
    ("r", os.O_RDONLY), ("rb", os.O_RDONLY), ("w", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ("a+", os.O_RDWR | os.O_CREAT | os.O_APPEND), ("xb", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
])
def test_mode_to_flags(mode, flags):
    assert mode_to_flags(mode) == flags


def test_read_write_seek_dup(vol):
    f = vol.open("/data", os.O_CREAT | os.O_RDWR, 0o644)
    assert f.write(b"0123456789") == 10
    assert f.tell() == 10
    assert f.lseek(-4, os.SEEK_END) == 6
    assert f.read(2) == b"67"
    assert f.lseek(1, os.SEEK_CUR) == 9
    twin = f.dup()
    assert twin.tell() == 9
    twin.lseek(0)
    assert twin.read() == b"0123456789"
    assert f.tell() == 9  # offsets are per handle
    buf = bytearray(4)
    f.lseek(2)
    assert f.readinto(buf) == 4 and bytes(buf) == b"2345"
    assert f.pread(3, 7) == b"789"
    assert f.pwrite(b"AB", 20) == 2
    assert f.fgetsize() == 22
    assert f.pread(100, 8) == b"89" + bytes(10) + b"AB"
    with pytest.raises(OSError) as e:
        f.lseek(-1, os.SEEK_SET)
    assert err(e) == "EINVAL"
    twin.close()
    f.close()
    with pytest.raises(ValueError):
        f.read()


def test_read_only_and_write_only_handles(vol):
    vol.fopen("/f", "w").close()
    with vol.fopen("/f", "r") as f:
        with pytest.raises(OSError) as e:
            f.write(b"x")
        assert err(e) == "EBADF"
    with vol.fopen("/f", "w") as f:
        with pytest.raises(OSError) as e:
            f.read()
        assert err(e) == "EBADF"


def test_append_mode_moves_to_end(vol):
    with vol.fopen("/log", "w") as f:
        f.write(b"abc")
    a = vol.open("/log", os.O_WRONLY | os.O_APPEND)
    b = vol.open("/log", os.O_WRONLY | os.O_APPEND)
    a.write(b"1")
    b.write(b"22")
    a.write(b"333")
    assert a.tell() == 9
    a.close()
    b.close()
    with vol.fopen("/log") as f:
        assert f.read() == b"abc122333"


def test_fallocate_discard_zerofill_truncate(vol):
    with vol.fopen("/img", "w+") as f:
        f.write(b"\xff" * 65536)
        f.zerofill(0, 4096)
        f.discard(8192, 8192)
        f.fallocate(0, 0, 131072)
        assert f.fstat().st_size == 131072
        data = f.pread(65536, 0)
        assert data[:4096] == bytes(4096)
        assert data[4096:8192] == b"\xff" * 4096
        assert data[8192:16384] == bytes(8192)
        f.ftruncate(10)
        assert f.fstat().st_size == 10
    vol.truncate("/img", 3)
    assert vol.getsize("/img") == 3
    with pytest.raises(OSError) as e:
        vol.truncate("/img", -1)
    assert err(e) == "EINVAL"


def test_unlinked_open_file_stays_readable(vol):
    with vol.fopen("/gone", "w") as f:
        f.write(b"still here")
    f = vol.fopen("/gone", "r")
    vol.unlink("/gone")
    assert not vol.exists("/gone")
    assert f.read() == b"still here"
    f.close()


# -- namespace ------------------------------------------------------------------

def test_directories_and_listing(vol):
    vol.makedirs("/a/b/c")
    vol.makedirs("/a/b/c", exist_ok=True)
    with pytest.raises(FileExistsError):
        vol.makedirs("/a/b/c")
    vol.fopen("/a/f", "w").close()
    vol.symlink("b", "/a/l")
    assert sorted(vol.listdir("/a")) == ["b", "f", "l"]
    names = {n: stat.S_IFMT(s.st_mode) for n, s in vol.listdir_with_stat("/a")}
    assert names == {"b": stat.S_IFDIR, "f": stat.S_IFREG, "l": stat.S_IFLNK}
    entries = {e.name: e for e in vol.scandir("/a")}
    assert entries["b"].is_dir() and entries["f"].is_file() and entries["l"].is_symlink()
    assert entries["l"].is_dir(follow_symlinks=True)
    assert stat.S_ISDIR(entries["l"].stat(follow_symlinks=True).st_mode)
    walked = {top: (sorted(d), sorted(f)) for top, d, f in vol.walk("/a")}
    assert walked == {"/a": (["b"], ["f", "l"]), "/a/b": (["c"], []), "/a/b/c": ([], [])}
    with pytest.raises(OSError) as e:
        vol.rmdir("/a")
    assert err(e) == "ENOTEMPTY"
    vol.rmtree("/a")
    assert vol.listdir("/") == []


def test_rename_link_symlink_readlink(vol):
    vol.fopen("/x", "w").close()
    vol.link("/x", "/y")
    assert vol.stat("/x").st_nlink == 2
    assert vol.samefile("/x", "/y")
    vol.rename("/y", "/z")
    assert sorted(vol.listdir("/")) == ["x", "z"]
    vol.symlink("x", "/s")
    assert vol.readlink("/s") == "x"
    assert vol.islink("/s") and vol.isfile("/s") and not vol.isdir("/s")
    with pytest.raises(OSError) as e:
        vol.readlink("/x")
    assert err(e) == "EINVAL"
    with pytest.raises(OSError) as e:
        vol.link("/", "/rootlink")
    assert err(e) == "EPERM"


def test_symlink_resolution(vol):
    vol.makedirs("/d1/d2")
    vol.fopen("/d1/d2/f", "w").close()
    vol.symlink("d1/d2", "/rel")
    vol.symlink("/d1", "/abs")   # absolute targets resolve from the volume root
    vol.symlink("loop2", "/loop1")
    vol.symlink("loop1", "/loop2")
    vol.symlink("d1/d2/f", "/tofile")
    assert vol.isfile("/rel/f")
    assert vol.isfile("/abs/d2/f")
    assert vol.isdir("/rel/..")          # ".." of d2 is d1 (physical parent)
    assert vol.listdir("/rel/..") == ["d2"]
    for path, code in [("/loop1", "ELOOP"), ("/loop1/x", "ELOOP"), ("/tofile/x", "ENOTDIR"),
                       ("/d1/d2/f/", "ENOTDIR"), ("/nowhere/x", "ENOENT")]:
        with pytest.raises(OSError) as e:
            vol.stat(path)
        assert err(e) == code, path
    assert stat.S_ISLNK(vol.lstat("/loop1").st_mode)
    with pytest.raises(OSError) as e:
        vol.open("/tofile", os.O_RDONLY | os.O_NOFOLLOW)
    assert err(e) == "ELOOP"


def test_chdir_and_relative_paths(vol):
    vol.makedirs("/w/x")
    vol.chdir("/w")
    assert vol.getcwd() == "/w"
    vol.fopen("rel.txt", "w").close()
    assert vol.exists("/w/rel.txt")
    vol.chdir("x")
    assert vol.getcwd() == "/w/x"
    assert vol.exists("../rel.txt")
    with pytest.raises(OSError) as e:
        vol.chdir("/w/rel.txt")
    assert err(e) == "ENOTDIR"


def test_copies(vol):
    vol.makedirs("/src/sub")
    with vol.fopen("/src/sub/f", "w") as f:
        f.write(b"payload" * 1000)
    vol.chmod("/src/sub/f", 0o640)
    vol.symlink("sub/f", "/src/link")
    vol.copyfile("/src/sub/f", "/copy")
    assert vol.fopen("/copy").read() == b"payload" * 1000
    vol.copytree("/src", "/dst", symlinks=True)
    assert vol.readlink("/dst/link") == "sub/f"
    assert stat.S_IMODE(vol.stat("/dst/sub/f").st_mode) == 0o640
    assert vol.getmtime("/dst/sub/f") == vol.getmtime("/src/sub/f")
    src, dst = vol.fopen("/src/sub/f"), vol.fopen("/third", "w")
    vol.copyfileobj(src, dst, 100)
    src.close()
    dst.close()
    assert vol.getsize("/third") == 7000


def test_attributes(vol):
    vol.fopen("/f", "w").close()
    vol.chmod("/f", 0o4751)
    assert stat.S_IMODE(vol.stat("/f").st_mode) == 0o4751
    vol.chown("/f", 1234, 5678)
    s = vol.stat("/f")
    assert (s.st_uid, s.st_gid) == (1234, 5678)
    vol.chown("/f", -1, 42)
    assert (vol.stat("/f").st_uid, vol.stat("/f").st_gid) == (1234, 42)
    vol.utime("/f", (1000.5, 2000.25))
    s = vol.stat("/f")
    assert s.st_mtime == 2000.25 and s.st_atime == 1000.5
    vol.utime("/f", ns=(1, 3_000_000_007))
    assert vol.stat("/f").st_mtime_ns == 3_000_000_007
    with pytest.raises(TypeError):
        vol.utime("/f", 5)
    with vol.fopen("/f", "r+") as f:
        f.fchmod(0o600)
        f.fchown(1, 2)
        s = f.fstat()
        assert stat.S_IMODE(s.st_mode) == 0o600 and (s.st_uid, s.st_gid) == (1, 2)
    assert vol.access("/f", os.R_OK)
    assert not vol.access("/nope", os.R_OK)
    sv = vol.statvfs("/")
    assert sv.f_blocks > 0 and sv.f_namemax >= 255


def test_xattrs(vol):
    vol.fopen("/f", "w").close()
    vol.setxattr("/f", "user.k", b"value")
    assert vol.getxattr("/f", "user.k") == b"value"
    assert vol.getxattr("/f", "user.k", size=5) == b"value"
    with pytest.raises(OSError) as e:
        vol.getxattr("/f", "user.k", size=2)
    assert err(e) == "ERANGE"
    with pytest.raises(OSError) as e:
        vol.setxattr("/f", "user.k", b"v2", os.XATTR_CREATE)
    assert err(e) == "EEXIST"
    with pytest.raises(OSError) as e:
        vol.setxattr("/f", "user.new", b"v2", os.XATTR_REPLACE)
    assert err(e) == "ENODATA"
    assert "user.k" in vol.listxattr("/f")
    with pytest.raises(OSError) as e:
        vol.listxattr("/f", size=1)
    assert err(e) == "ERANGE"
    vol.removexattr("/f", "user.k")
    with pytest.raises(OSError) as e:
        vol.getxattr("/f", "user.k")
    assert err(e) == "ENODATA"
    with pytest.raises(OSError) as e:
        vol.removexattr("/f", "user.k")
    assert err(e) == "ENODATA"
    with vol.fopen("/f", "r+") as f:
        f.fsetxattr("user.f", b"1")
        assert f.fgetxattr("user.f") == b"1"
        assert "user.f" in f.flistxattr()
        f.fremovexattr("user.f")
        assert "user.f" not in f.flistxattr()
    with pytest.raises(OSError) as e:
        vol.setxattr("/f", "user.x", b"1", 7)
    assert err(e) == "EINVAL"


# -- bad input: the volume answers as a local filesystem would -----------------

@pytest.mark.parametrize("path,code", [
    ("", "ENOENT"), ("/a\0b", "EINVAL"), ("/" + "n" * 256, "ENAMETOOLONG"),
    ("/missing/x", "ENOENT"),
])
def test_bad_paths(vol, path, code):
    with pytest.raises(OSError) as e:
        vol.mkdir(path)
    assert err(e) == code


def test_dotdot_cannot_leave_the_volume(vol, volfile):
    vol.mkdir("/inside")
    assert sorted(vol.listdir("/../../..")) == ["inside"]
    vol.fopen("/../../escape.txt", "w").close()
    brick = volfile.parent / "brick"
    assert (brick / "escape.txt").exists()
    assert not (volfile.parent.parent / "escape.txt").exists()


FLAG_CASES = [
    os.O_RDONLY | os.O_CREAT | os.O_EXCL, os.O_WRONLY | os.O_DIRECTORY,
    os.O_RDONLY | os.O_DIRECTORY, os.O_WRONLY | os.O_TRUNC, os.O_RDWR | os.O_NOFOLLOW,
    os.O_CREAT | os.O_DIRECTORY,
]


@pytest.mark.parametrize("flags", FLAG_CASES)
@pytest.mark.parametrize("target", ["file", "dir", "link", "missing"])
def test_open_flags_match_the_local_filesystem(vol, tmp_path, flags, target):
    local = tmp_path / "local"
    local.mkdir()
    (local / "file").write_bytes(b"x")
    (local / "dir").mkdir()
    (local / "link").symlink_to("file")
    vol.fopen("/file", "w").write(b"x")
    vol.mkdir("/dir")
    vol.symlink("file", "/link")

    def local_open():
        fd = os.open(local / target, flags, 0o644)
        os.close(fd)

    def volume_open():
        vol.open("/" + target, flags, 0o644).close()

    def outcome(fn):
        try:
            fn()
            return "ok"
        except OSError as e:
            return errno.errorcode[e.errno]
    assert outcome(volume_open) == outcome(local_open)


def test_open_rejects_bad_access_mode(vol):
    with pytest.raises(OSError) as e:
        vol.open("/f", os.O_WRONLY | os.O_RDWR | os.O_CREAT)
    assert err(e) == "EINVAL"
    with pytest.raises(TypeError):
        vol.open("/f", "w")


# -- concurrency and the async API ----------------------------------------------

@pytest.mark.parametrize("inline", [True, False], ids=["inline", "loop-thread"])
def test_many_threads_at_once(volfile, inline):
    vol = Volume.from_volfile(volfile, inline_fops=inline)
    assert vol.runs_inline is inline
    errors = []

    def worker(n):
        try:
            for i in range(20):
                path = f"/t{n}-{i}"
                with vol.fopen(path, "w") as f:
                    f.write(bytes([n]) * (1000 + i))
                with vol.fopen(path) as f:
                    assert f.read() == bytes([n]) * (1000 + i)
        except Exception as e:  # collected and asserted below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(vol.listdir("/")) == 160
    vol.umount()


def test_posix_and_io_cache_graphs_run_inline(vol):
    # both declare FOPS_NEVER_SUSPEND: no hand-off to the loop thread
    assert vol.runs_inline


def test_blocking_call_from_the_loop_thread_is_refused(vol):
    loop = vol._loop

    async def inner():
        return loop.call(vol._avol.listdir, "/")
    with pytest.raises(RuntimeError, match="deadlock"):
        loop.call(inner)


async def test_async_api(volfile):
    async with AsyncVolume.from_volfile(volfile) as vol:
        await vol.makedirs("/p/q")
        async with await vol.fopen("/p/q/f", "w") as f:
            await f.write(b"async")
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(vol.mkdir, f"/p/n{i}")
        assert sorted(await vol.listdir("/p")) == ["n0", "n1", "n2", "n3", "n4", "q"]
        async with await vol.fopen("/p/q/f") as f:
            assert await f.read() == b"async"
        with pytest.raises(FileNotFoundError):
            await vol.stat("/p/none")
        walked = [top async for top, _, _ in vol.walk("/p")]
        assert walked[0] == "/p" and len(walked) == 7
    assert not vol.mounted


async def test_copy_file_that_fails_leaves_no_destination(volfile):
    """copy_file fills a file it just created: a failure part-way (here
    the progress callback raising) removes it again, and an existing
    destination is never touched."""
    async with AsyncVolume.from_volfile(volfile) as vol:
        async with await vol.fopen("/src", "w") as f:
            await f.write(b"x" * 300_000)

        def fail(done, total):
            raise RuntimeError("stop here")
        with pytest.raises(RuntimeError, match="stop here"):
            await vol.copy_file("/src", "/dst", progress=fail, chunk=100_000)
        assert not await vol.exists("/dst")

        async with await vol.fopen("/dst3", "w") as f:
            await f.write(b"kept")
        with pytest.raises(FileExistsError):
            await vol.copy_file("/src", "/dst3")
        async with await vol.fopen("/dst3") as f:
            assert await f.read() == b"kept"
        assert await vol.copy_file("/src", "/dst4", chunk=100_000) == 300_000
        async with await vol.fopen("/dst4") as f:
            assert await f.read() == b"x" * 300_000
