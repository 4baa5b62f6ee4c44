"""libgfapi-python's `Volume`, `File`, `Dir` and `DirEntry` over glusterpy.gfapi.

Every public name, argument, default, return type and exception of
libgfapi-python 1.2's gluster/gfapi/gfapi.py is here; the work is done by
glusterpy's synchronous client (`glusterpy.gfapi.Volume`), which runs the
volume's graph on a loop thread of its own, so a `Volume` may be shared by
threads as libgfapi's glfs_t is.

The raw glfd.  libgfapi-python's `Volume.open()` returns libgfapi's glfd
pointer as an int that `File(fd, path, mode)` wraps, and `Dir(fd)` wraps
glfs_opendir's.  Here `open()`/`opendir()` return an int naming an entry
of a process-wide table of open handles; `File(fd)`/`Dir(fd)` look
it up, so an fd still works after the File that wrapped it is gone, and
stays open until close() (or the volume's umount), as a glfd does.

Where libgfapi-python's documentation and its code disagree, this module
follows the documentation:

* `File.read()` at end of file returns b"" (documented: "buffer of 'size'
  length"); the code returns None.
* `File.write(str)` writes the text as UTF-8 and returns the number of bytes
  written (documented: "The data to be written to file", and the README
  writes a str); the code hands the str to ctypes, which passes it as a
  wchar_t string, so the first len(str) bytes of its UTF-32 reached the
  file ("abc" became b"a\\0\\0").
* `getxattr()`/`fgetxattr()` return the whole value (documented: "Value of
  extended attribute"); the code cut it at the first NUL byte (ctypes'
  `.value`).  A value that is not UTF-8 comes back as bytes instead of
  raising UnicodeDecodeError.
* `copystat()`, `copy2()` and `copytree()` copy times to the nanosecond
  (documented: "last access time, last modification time"); the code went
  through `Stat.st_atime`, whole seconds.
* `copytree()` calls `ignore` for every directory it copies (documented:
  "the callable will be called once for each directory that is copied");
  the code did not pass it down, so it saw only the top directory.
* `walk()` differs from os.walk only in where symlinks to directories go
  (documented: "Slight difference in behaviour in comparison to
  os.walk()", naming only that), so names removed from `dirnames` top-down
  are not visited, as in os.walk; the code yielded a copy of the list.
* `set_logging()` on a mounted volume takes effect at once, as documented.
* `rename()` onto an existing directory is OSError (documented: "If dst is
  a directory, OSError will be raised"); the code let glfs_rename replace
  an empty one.
* `copyfile()` of a device, fifo or socket is Error (documented: "Special
  files ... cannot be copied with this function"); the code opened it.

Departures that come from not being libgfapi (none changes a documented
result): `proto` "rdma" is accepted by the constructor, as there, but
mount() refuses it with LibgfapiException (glusterpy speaks TCP, and "unix"
to reach the volfile server's socket); `log_file=None` leaves the log to
the application's logging set-up instead of a file under
/var/log/glusterfs; `setfsuid()`/`setfsgid()` set
the identity of the whole Volume rather than of the calling thread;
`get_volume_id()` asks the volfile server (GET_VOLUME_INFO, as libgfapi
does; glusterpyd answers it too) and, from a server without that procedure
(the standalone `glusterpy volfile-server`), takes the `volume-id` a
replicated volume's client graph carries, else OSError ENOTSUP.  As with libgfapi, the process umask is not applied to created
files and directories (fopen() creates 0666).
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import stat
import threading
import time
import uuid

from glusterpy.gfapi import Volume as _SyncVolume
from glusterpy.gfapi.aio import SEEK_DATA, SEEK_HOLE  # noqa: F401 (lseek's extra whence values)

from . import api
from .exceptions import Error, LibgfapiException, VolumeNotMounted
from .utils import validate_glfd, validate_mount

#: libgfapi-python's fopen() modes (POSIX fopen's), nothing else: 'x' and
#: 't' are ValueError there, so they are here
python_mode_to_os_flags = {}
for _modes, _flags in (
        (("r", "rb"), os.O_RDONLY),
        (("w", "wb"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (("a", "ab"), os.O_WRONLY | os.O_CREAT | os.O_APPEND),
        (("r+", "rb+", "r+b"), os.O_RDWR),
        (("w+", "wb+", "w+b"), os.O_RDWR | os.O_CREAT | os.O_TRUNC),
        (("a+", "ab+", "a+b"), os.O_RDWR | os.O_CREAT | os.O_APPEND)):
    for _mode in _modes:
        python_mode_to_os_flags[_mode] = _flags
del _modes, _flags, _mode

string_types = (str,)
PATH_MAX = 4096


def decode_to_bytes(text):
    """str as UTF-8 bytes; bytes as they are."""
    if isinstance(text, str):
        return text.encode("utf-8")
    if isinstance(text, bytes):
        return text
    raise ValueError(f"Cannot convert object with type {type(text)}")


def encode_to_string(text):
    """bytes as a UTF-8 str; str as it is."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8")
    raise ValueError(f"Cannot convert object with type {type(text)}")


def _path(path) -> str:
    """Paths may be str or bytes (libgfapi-python encodes both); anything
    else is a TypeError naming what was given."""
    if isinstance(path, bytes):
        return os.fsdecode(path)
    if isinstance(path, str):
        return path
    if isinstance(path, os.PathLike):
        return _path(os.fspath(path))
    raise TypeError(f"path must be str or bytes, not {type(path).__name__}")


def _xattr_str(value: bytes):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _ints(**named) -> None:
    """TypeError naming the argument that is not an int (libgfapi-python's
    ctypes call raised an ArgumentError there)."""
    for name, value in named.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, not {type(value).__name__}")


def _range(offset, length) -> None:
    """fallocate(2)'s EINVAL for a negative offset or a length <= 0."""
    _ints(offset=offset, length=length)
    if offset < 0 or length <= 0:
        raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: offset {offset}, "
                                    f"length {length}")


def _check_log_file(log_file, log_level) -> None:
    """glfs_set_logging fails on a file it cannot open; the handler behind
    it opens lazily, so try now and say so at the call."""
    if log_file is None:
        return
    try:
        with open(os.fspath(log_file), "a"):
            pass
    except (OSError, TypeError) as e:
        raise LibgfapiException(f"set_logging({log_file!r}, {log_level!r}) failed: "
                                f"{e}") from e


def _check_size(size) -> None:
    # ctypes.create_string_buffer(size) is where libgfapi-python stopped a
    # negative size: ValueError, before any call
    if not isinstance(size, int):
        raise TypeError(f"size must be an integer, not {type(size).__name__}")
    if size < 0:
        raise ValueError(f"size must not be negative: {size}")


def _to_stat(s: os.stat_result) -> api.Stat:
    out = api.Stat()
    out.st_dev, out.st_ino, out.st_nlink = s.st_dev, s.st_ino, s.st_nlink
    out.st_mode, out.st_uid, out.st_gid = s.st_mode, s.st_uid, s.st_gid
    out.st_rdev, out.st_size = s.st_rdev, s.st_size
    out.st_blksize, out.st_blocks = s.st_blksize, s.st_blocks
    for name in ("atime", "mtime", "ctime"):
        sec, nsec = divmod(getattr(s, f"st_{name}_ns"), 1_000_000_000)
        setattr(out, f"st_{name}", sec)
        setattr(out, f"st_{name}nsec", nsec)
    return out


def _ns(seconds) -> int:
    """Seconds (int or float) as nanoseconds; the fraction is taken apart
    from the whole seconds, where a double still has ns precision."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        raise TypeError(f"utime() times must be numbers, not {type(seconds).__name__}")
    whole = math.floor(seconds)
    return int(whole) * 1_000_000_000 + int(round((seconds - whole) * 1e9))


def _stat_ns(s: api.Stat, name: str) -> int:
    return getattr(s, f"st_{name}") * 1_000_000_000 + getattr(s, f"st_{name}nsec")


def _to_statvfs(s: os.statvfs_result) -> api.Statvfs:
    out = api.Statvfs()
    for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                 "f_ffree", "f_favail", "f_fsid", "f_flag", "f_namemax"):
        setattr(out, name, getattr(s, name) & 0xFFFFFFFFFFFFFFFF)
    return out


_DT = {stat.S_IFDIR: 4, stat.S_IFREG: 8, stat.S_IFLNK: 10, stat.S_IFCHR: 2,
       stat.S_IFBLK: 6, stat.S_IFIFO: 1, stat.S_IFSOCK: 12}


def _to_dirent(entry, lstat: api.Stat | None) -> api.Dirent:
    out = api.Dirent()
    name = os.fsencode(entry.name)
    out.d_name = name
    # libgfapi leaves d_reclen alone and libgfapi-python slices d_name with
    # it: the name's length makes `d_name[:d_reclen]` the name
    out.d_reclen = len(name)
    dtype = entry.type
    if not dtype and lstat is not None:
        dtype = _DT.get(stat.S_IFMT(lstat.st_mode), 0)
    out.d_type = bytes([dtype & 0xFF])
    if lstat is not None:
        out.d_ino = lstat.st_ino
    return out


_KINDS = {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
          stat.S_IFIFO: "named pipe", stat.S_IFSOCK: "socket"}


# -- the glfd table -----------------------------------------------------------------

class _Handles:
    """Open files and directories by the int that stands for a glfd."""

    def __init__(self):
        self._lock = threading.Lock()
        # start high so a handle is never 0 (closed) nor mistaken for a small
        # kernel fd a program might also hold
        self._next = itertools.count(0x10000)
        self._by_fd: dict[int, tuple[_SyncVolume, object]] = {}

    def add(self, vol: _SyncVolume, handle) -> int:
        with self._lock:
            fd = next(self._next)
            self._by_fd[fd] = (vol, handle)
            return fd

    def get(self, fd):
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise ValueError("I/O operation on invalid fd")
        with self._lock:
            found = self._by_fd.get(fd)
        if found is None:
            raise ValueError(f"I/O operation on invalid fd {fd}: not an open glfd")
        return found

    def drop(self, fd) -> None:
        with self._lock:
            self._by_fd.pop(fd, None)

    def drop_volume(self, vol: _SyncVolume) -> None:
        with self._lock:
            for fd in [fd for fd, (v, _) in self._by_fd.items() if v is vol]:
                del self._by_fd[fd]


_handles = _Handles()


def _lookup(fd):
    """(sync volume, glusterpy handle) of an open fd; EBADF once closed."""
    try:
        return _handles.get(fd)
    except ValueError:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from None


# -- File ---------------------------------------------------------------------------

class File:
    """An open file, made from the fd that Volume.open() returns
    (`File(vol.open(path, flags))`) or returned by Volume.fopen()."""

    def __init__(self, fd, path=None, mode=None):
        """
        :param fd: the glfd that Volume.open() returned
        :param path: the file's path (optional, for `name`)
        :param mode: the fopen() mode it was opened with (optional)
        """
        self.fd = fd
        self.originalpath = path
        self._mode = mode
        self._validate_init()

    def _validate_init(self):
        if self.fd is None or isinstance(self.fd, bool) or not isinstance(self.fd, int):
            raise ValueError("I/O operation on invalid fd")
        _handles.get(self.fd)

    def __enter__(self):
        self._validate_init()
        return self

    def __exit__(self, type, value, tb):
        if self.fd:
            self.close()

    def __repr__(self):
        state = "closed" if self.closed else f"fd={self.fd}"
        return f"<gluster.gfapi.File {self.originalpath!r} mode={self._mode!r} {state}>"

    @property
    def _h(self):
        return _lookup(self.fd)[1]

    @property
    def fileno(self):
        """The glfd this File wraps (an attribute, as in libgfapi-python)."""
        return self.fd

    @property
    def mode(self):
        """The fopen() mode, when the File came from Volume.fopen()."""
        return self._mode

    @property
    def name(self):
        """The path, when the File came from Volume.fopen()."""
        return self.originalpath

    @property
    def closed(self):
        return not self.fd

    @validate_glfd
    def close(self):
        """Close the file; a second close() is OSError EBADF."""
        handle = self._h
        fd, self.fd = self.fd, None
        _handles.drop(fd)
        handle.close()

    @validate_glfd
    def copy_file_range(self, dst, length, off_in=None, off_out=None, flags=0):
        """glfs_copy_file_range (libgfapi 6+; libgfapi-python has no wrapper):
        up to `length` bytes of this file into the File `dst`, copied by the
        bricks where the volume can.  An offset left None is that file's own
        and advances.  Returns the count, 0 at the end of the source."""
        if not isinstance(dst, File):
            raise TypeError(f"dst must be a File, not {type(dst).__name__}")
        _ints(length=length, flags=flags)
        for name, value in (("off_in", off_in), ("off_out", off_out)):
            if value is not None:
                _ints(**{name: value})
        if dst.closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return self._h.copy_file_range(dst._h, length, off_in, off_out, flags)

    @validate_glfd
    def discard(self, offset, length):
        """Punch a hole: release the blocks of [offset, offset+length)."""
        _range(offset, length)
        self._h.discard(offset, length)

    @validate_glfd
    def dup(self):
        """A new File on a duplicate glfd (glfs_dup): same open file, its own offset."""
        vol, handle = _lookup(self.fd)
        return File(_handles.add(vol, handle.dup()), self.originalpath, self._mode)

    @validate_glfd
    def fallocate(self, mode, offset, length):
        _ints(mode=mode)
        _range(offset, length)
        self._h.fallocate(mode, offset, length)

    @validate_glfd
    def fchmod(self, mode):
        _ints(mode=mode)
        self._h.fchmod(mode)

    @validate_glfd
    def fchown(self, uid, gid):
        _ints(uid=uid, gid=gid)
        self._h.fchown(uid, gid)

    @validate_glfd
    def fdatasync(self):
        self._h.fdatasync()

    @validate_glfd
    def fgetsize(self):
        return self.fstat().st_size

    @validate_glfd
    def fgetxattr(self, key, size=0):
        """The value of xattr `key` as str; size > 0 smaller than the value
        is OSError ERANGE, a negative size ValueError."""
        _check_size(size)
        return _xattr_str(self._h.fgetxattr(encode_to_string(key), size))

    @validate_glfd
    def flistxattr(self, size=0):
        """The sorted names of the file's xattrs; size as in fgetxattr()."""
        _check_size(size)
        return sorted(self._h.flistxattr(size))

    @validate_glfd
    def fsetxattr(self, key, value, flags=0):
        """flags 0: create or replace, 1: create only (EEXIST), 2: replace only (ENODATA)."""
        _ints(flags=flags)
        self._h.fsetxattr(encode_to_string(key), decode_to_bytes(value), flags)

    @validate_glfd
    def fremovexattr(self, key):
        self._h.fremovexattr(encode_to_string(key))

    @validate_glfd
    def fstat(self):
        """An api.Stat of the open file."""
        return _to_stat(self._h.fstat())

    @validate_glfd
    def fsync(self):
        self._h.fsync()

    @validate_glfd
    def ftruncate(self, length):
        _ints(length=length)
        self._h.ftruncate(length)

    @validate_glfd
    def lseek(self, pos, how):
        """Move the offset (os.SEEK_SET/CUR/END, SEEK_DATA/HOLE); returns it."""
        _ints(pos=pos, how=how)
        return self._h.lseek(pos, how)

    @validate_glfd
    def read(self, size=-1):
        """At most `size` bytes from the offset; size < 0 reads to the end
        of the file.  bytes, b"" at end of file."""
        if not isinstance(size, int):
            raise TypeError(f"size must be an integer, not {type(size).__name__}")
        return self._h.read(size)

    @validate_glfd
    def readinto(self, buf):
        """Read up to len(buf) bytes into the bytearray `buf`; returns how
        many (0 at end of file)."""
        if type(buf) is not bytearray:
            raise TypeError(f"readinto() needs a bytearray, not {type(buf).__name__}")
        return self._h.readinto(buf)

    @validate_glfd
    def write(self, data, flags=0):
        """Write bytes, a bytearray/memoryview, or a str (as UTF-8); returns
        the number of bytes written."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        elif not isinstance(data, bytes):
            raise TypeError(f"write() needs bytes, a bytearray or a str, "
                            f"not {type(data).__name__}")
        _ints(flags=flags)
        return self._h.write(data, flags)

    @validate_glfd
    def zerofill(self, offset, length):
        _range(offset, length)
        self._h.zerofill(offset, length)


# -- Dir ----------------------------------------------------------------------------

class Dir:
    """An open directory (from Volume.opendir()); iterating it yields an
    api.Dirent per entry, '.' and '..' included as readdir gives them, or
    (Dirent, Stat) pairs when opened with readdirplus."""

    def __init__(self, fd, readdirplus=False):
        self.fd = fd
        self.readdirplus = readdirplus
        self._handle = _handles.get(fd)[1]

    def __iter__(self):
        return self

    def __next__(self):
        if not self.fd:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        entry = next(self._handle)  # StopIteration at the end
        if not self.readdirplus:
            return _to_dirent(entry, None)
        st = _to_stat(_stat_of(entry.iatt)) if entry.iatt is not None else api.Stat()
        return _to_dirent(entry, st), st

    next = __next__

    def close(self):
        """Close the directory now rather than when it is garbage collected."""
        fd, self.fd = self.fd, None
        if fd:
            _handles.drop(fd)
            self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _stat_of(iatt):
    from glusterpy.gfapi.aio import stat_result
    return stat_result(iatt)


# -- DirEntry ----------------------------------------------------------------------

class DirEntry:
    """What scandir() yields: the entry's name, path and lstat (from
    readdirplus, no extra call).  Unlike os.DirEntry, follow_symlinks
    defaults to False: following costs a stat over the network."""

    __slots__ = ("_name", "_vol", "_lstat", "_stat", "_path")

    def __init__(self, vol, scandir_path, name, lstat):
        self._name = encode_to_string(name)
        self._vol = vol
        self._lstat = lstat
        self._stat = None
        self._path = os.path.join(scandir_path, self._name)

    @property
    def name(self):
        return self._name

    @property
    def path(self):
        return self._path

    def stat(self, follow_symlinks=False):
        if not follow_symlinks:
            return self._lstat
        if self._stat is None:
            self._stat = self._vol.stat(self._path) if self.is_symlink() else self._lstat
        return self._stat

    def _is(self, test, follow_symlinks):
        if follow_symlinks and self.is_symlink():
            try:
                return test(self.stat(follow_symlinks=True).st_mode)
            except OSError as err:
                if err.errno != errno.ENOENT:
                    raise
                return False
        return test(self._lstat.st_mode)

    def is_dir(self, follow_symlinks=False):
        return self._is(stat.S_ISDIR, follow_symlinks)

    def is_file(self, follow_symlinks=False):
        return self._is(stat.S_ISREG, follow_symlinks)

    def is_symlink(self):
        return stat.S_ISLNK(self._lstat.st_mode)

    def inode(self):
        return self._lstat.st_ino

    def __str__(self):
        return f"<{self.__class__.__name__}: {self.name!r}>"

    __repr__ = __str__


# -- Volume ----------------------------------------------------------------------------

class Volume:
    """A GlusterFS volume, reached through its volfile servers."""

    def __init__(self, hosts, volname, proto="tcp", port=24007, log_file="/dev/null",
                 log_level=7):
        """
        :param hosts: a host (str) or hosts (list of str) running glusterd
                      (GlusterFS) or glusterpyd, tried in turn
        :param volname: the volume to mount
        :param proto: "tcp", or "unix" with hosts the path of glusterd's
                      socket ("rdma" is refused at mount())
        :param port: the management daemon's port
        :param log_file: the client's log file; "/dev/null" (the default)
                         logs nothing, None leaves it to the application
        :param log_level: GlusterFS's level, 0 (none) .. 9 (trace)
        """
        self._mounted = False
        self.fs = None
        self._fsuid = self._fsgid = None
        self.log_file = log_file
        self.log_level = log_level
        if None in (volname, hosts):
            raise LibgfapiException("Host and Volume name should not be None.")
        if proto not in ("tcp", "rdma", "unix"):
            raise LibgfapiException("Invalid protocol specified.")
        if isinstance(port, bool) or not isinstance(port, int):
            raise LibgfapiException("Invalid port specified.")
        if type(hosts) is not list:
            hosts = [hosts]
        if len(hosts) < 1:
            raise LibgfapiException("At least one host must be specified")
        self.hosts = hosts
        self.volname = volname
        self.volid = None
        self.protocol = proto
        self.port = port

    def __repr__(self):
        state = "mounted" if self.mounted else "not mounted"
        return f"<gluster.gfapi.Volume {self.volname!r} on {self.hosts} ({state})>"

    @property
    def mounted(self):
        """True between mount() and umount()."""
        return bool(self._mounted and self.fs is not None and self.fs.mounted)

    def mount(self):
        """Fetch the volume's client volfile and connect to its bricks.

        :raises: LibgfapiException on failure
        """
        if self.fs is not None and self._mounted:
            return
        if self.protocol == "rdma":
            raise LibgfapiException(f"mounting {self.volname} over rdma: glusterpy's "
                                    f"client speaks tcp (and unix to the volfile server)")
        for host in self.hosts:
            if not isinstance(host, str) or not host.strip():
                raise LibgfapiException(f"Invalid host specified: {host!r}")
        try:
            fs = _SyncVolume(self.hosts, encode_to_string(self.volname), self.protocol,
                             self.port)
        except LibgfapiException:
            raise
        except (ValueError, TypeError) as e:
            raise LibgfapiException(f"Volume({self.hosts!r}, {self.volname!r}): {e}") from e
        _check_log_file(self.log_file, self.log_level)
        try:
            if self.log_file is not None:
                fs.set_logging(self.log_file, self.log_level)
        except (OSError, ValueError) as e:
            raise LibgfapiException(f"set_logging({self.log_file!r}, {self.log_level!r}) "
                                    f"failed: {e}") from e
        # libgfapi hands the creation mode to the bricks as given
        fs.umask = 0
        if self._fsuid is not None:
            fs.setfsuid(self._fsuid)
        if self._fsgid is not None:
            fs.setfsgid(self._fsgid)
        fs.mount()
        self.fs = fs
        self._mounted = True

    def umount(self):
        """Unmount: open files are closed and the connections end.

        :raises: LibgfapiException on failure
        """
        if self.fs is not None and self._mounted:
            fs = self.fs
            try:
                fs.umount()
            except Exception as e:
                raise LibgfapiException(f"umount of {self.volname} failed: {e}") from e
            _handles.drop_volume(fs)
            self._mounted = False
            self.fs = None

    def __enter__(self):
        self.mount()
        return self

    def __exit__(self, *exc):
        self.umount()

    def __del__(self):
        try:
            self.umount()
        except Exception:
            pass

    def set_logging(self, log_file, log_level):
        """Log to `log_file` at `log_level`, before mount() or at once on a
        mounted volume.  "/dev/null" logs nothing.

        :raises: LibgfapiException on failure
        """
        if self.fs is not None:
            _check_log_file(log_file, log_level)
            try:
                self.fs.set_logging(log_file, log_level)
            except (OSError, ValueError) as e:
                raise LibgfapiException(f"set_logging({log_file!r}, {log_level!r}) "
                                        f"failed: {e}") from e
        self.log_file = log_file
        self.log_level = log_level

    def disable_logging(self):
        self.set_logging("/dev/null", self.log_level)

    @validate_mount
    def get_volume_id(self):
        """The volume's id, a uuid.UUID (also kept in `volid`).

        :raises: OSError when no volfile server tells it
        """
        if self.volid is not None:
            return self.volid
        text = self._volume_id_text()
        self.volid = uuid.UUID(text)
        return self.volid

    def _volume_id_text(self) -> str:
        from glusterpy.gfapi.mgmt import VolfileFetchError, fetch_volume_id
        avol = self.fs._avol
        try:
            # on the volume's own loop thread, so it works from any caller
            return self.fs._loop.call(fetch_volume_id, avol.servers, avol.volname)
        except VolfileFetchError as e:
            why = e
        for xl in avol.graph.by_name.values():
            vid = getattr(xl.opts, "volume_id", None)
            if vid:
                return vid
        raise OSError(why.errno if why.errno != errno.ENOTCONN else errno.ENOTSUP,
                      f"the volume id of {self.volname} is unknown: {why}")

    # -- paths ---------------------------------------------------------------------

    @validate_mount
    def access(self, path, mode):
        """True when the caller may access `path` in `mode` (os.F_OK, R_OK, ...)."""
        try:
            return bool(self.fs.access(_path(path), mode))
        except OSError:
            return False

    @validate_mount
    def chdir(self, path):
        self.fs.chdir(_path(path))

    @validate_mount
    def chmod(self, path, mode):
        _ints(mode=mode)
        self.fs.chmod(_path(path), mode)

    @validate_mount
    def chown(self, path, uid, gid):
        _ints(uid=uid, gid=gid)
        self.fs.chown(_path(path), uid, gid)

    def exists(self, path):
        """True when `path` exists; False for broken symlinks and errors."""
        try:
            self.stat(path)
        except OSError:
            return False
        return True

    def getatime(self, path):
        return self.stat(path).st_atime

    def getctime(self, path):
        return self.stat(path).st_ctime

    @validate_mount
    def getcwd(self):
        return self.fs.getcwd()

    def getmtime(self, path):
        return self.stat(path).st_mtime

    def getsize(self, path):
        return self.stat(path).st_size

    @validate_mount
    def getxattr(self, path, key, size=0):
        """The value of xattr `key` of `path` as str (bytes when it is not
        UTF-8).  size 0 takes it whatever its length; a size smaller than
        the value is OSError ERANGE; a negative size ValueError."""
        _check_size(size)
        return _xattr_str(self.fs.getxattr(_path(path), encode_to_string(key), size))

    def isdir(self, path):
        try:
            return stat.S_ISDIR(self.stat(path).st_mode)
        except OSError:
            return False

    def isfile(self, path):
        try:
            return stat.S_ISREG(self.stat(path).st_mode)
        except OSError:
            return False

    def islink(self, path):
        try:
            return stat.S_ISLNK(self.lstat(path).st_mode)
        except OSError:
            return False

    @validate_mount
    def listdir(self, path):
        """The names in directory `path`, without '.' and '..'."""
        return self.fs.listdir(_path(path))

    @validate_mount
    def listdir_with_stat(self, path):
        """[(name, api.Stat)] of directory `path`, without '.' and '..'."""
        return [(name, _to_stat(s)) for name, s in self.fs.listdir_with_stat(_path(path))]

    def scandir(self, path):
        """DirEntry objects of directory `path`, without '.' and '..'; an
        iterator reading the directory as it goes."""
        path = _path(path)
        with self.opendir(path, readdirplus=True) as d:
            for entry, lstat in d:
                if entry.d_name not in (b".", b".."):
                    yield DirEntry(self, path, entry.d_name, lstat)

    @validate_mount
    def listxattr(self, path, size=0):
        """The sorted xattr names of `path`; size as in getxattr()."""
        _check_size(size)
        return sorted(self.fs.listxattr(_path(path), size))

    @validate_mount
    def lstat(self, path):
        """An api.Stat of `path`, of the link itself for a symlink."""
        return _to_stat(self.fs.lstat(_path(path)))

    def makedirs(self, path, mode=0o777):
        """mkdir with every missing parent; OSError EEXIST when the leaf
        exists (no exist_ok, as in libgfapi-python)."""
        path = _path(path)
        head, tail = os.path.split(path)
        if not tail:
            head, tail = os.path.split(head)
        if head and tail and not self.exists(head):
            try:
                self.makedirs(head, mode)
            except OSError as err:
                if err.errno != errno.EEXIST:
                    raise
            if tail == os.curdir:
                return
        self.mkdir(path, mode)

    @validate_mount
    def mkdir(self, path, mode=0o777):
        _ints(mode=mode)
        self.fs.mkdir(_path(path), mode)

    @validate_mount
    def fopen(self, path, mode="r"):
        """Open like Python's open(): 'r', 'w', 'a', with '+' and 'b'
        ('b' changes nothing: data is bytes).  Created files get mode 0666.

        :returns: a File
        :raises: OSError on failure, TypeError (mode not a str) or
                 ValueError (unknown mode)
        """
        if not isinstance(mode, str):
            raise TypeError("Mode must be a string")
        try:
            flags = python_mode_to_os_flags[mode]
        except KeyError:
            raise ValueError(f"Invalid mode {mode!r}") from None
        fd = self._open(path, flags, 0o666)
        return File(fd, path=path, mode=mode)

    @validate_mount
    def open(self, path, flags, mode=0o777):
        """Open like os.open(); with os.O_CREAT `mode` is the new file's.

        :returns: the raw glfd (an int) for File(fd)
        :raises: OSError on failure, TypeError if flags is not an int
        """
        if isinstance(flags, bool) or not isinstance(flags, int):
            raise TypeError("flags must evaluate to an integer")
        _ints(mode=mode)
        return self._open(path, flags, mode)

    def _open(self, path, flags, mode):
        handle = self.fs.open(_path(path), flags, mode)
        return _handles.add(self.fs, handle)

    @validate_mount
    def opendir(self, path, readdirplus=False):
        """A Dir over directory `path`."""
        handle = self.fs.opendir(_path(path), readdirplus)
        return Dir(_handles.add(self.fs, handle), readdirplus)

    @validate_mount
    def readlink(self, path):
        return self.fs.readlink(_path(path))

    def remove(self, path):
        return self.unlink(path)

    @validate_mount
    def removexattr(self, path, key):
        self.fs.removexattr(_path(path), encode_to_string(key))

    @validate_mount
    def rename(self, src, dst):
        """Rename src to dst; a file dst is replaced.  dst an existing
        directory is OSError (EISDIR for a file src, EEXIST for a
        directory), as documented - even an empty one."""
        src, dst = _path(src), _path(dst)
        try:
            target = self.fs.lstat(dst)
        except OSError:
            target = None
        if target is not None and stat.S_ISDIR(target.st_mode):
            source = self.fs.lstat(src)
            err = errno.EEXIST if stat.S_ISDIR(source.st_mode) else errno.EISDIR
            if not self.samefile(src, dst):
                raise OSError(err, os.strerror(err), src, None, dst)
        self.fs.rename(src, dst)

    @validate_mount
    def rmdir(self, path):
        self.fs.rmdir(_path(path))

    def rmtree(self, path, ignore_errors=False, onerror=None):
        """Remove a directory tree; a symlink `path` is OSError.  Errors go
        to onerror(func, path, exc) - exc the exception itself -, are
        ignored with ignore_errors, or are raised."""
        if ignore_errors:
            def onerror(*args):
                pass
        elif onerror is None:
            def onerror(func, path, exc):
                raise exc
        if self.islink(path):
            raise OSError("Cannot call rmtree on a symbolic link")
        try:
            for entry in self.scandir(path):
                fullname = os.path.join(path, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    self.rmtree(fullname, ignore_errors, onerror)
                else:
                    try:
                        self.unlink(fullname)
                    except OSError as e:
                        onerror(self.unlink, fullname, e)
        except OSError as e:
            onerror(self.scandir, path, e)
        try:
            self.rmdir(path)
        except OSError as e:
            onerror(self.rmdir, path, e)

    def setfsuid(self, uid):
        """Act as user `uid` in this Volume's later calls (kept across
        umount/mount, since libgfapi's is the thread's, not the mount's)."""
        if isinstance(uid, bool) or not isinstance(uid, int) or uid < 0:
            raise OSError(errno.EINVAL, f"setfsuid({uid!r}): not a user id")
        self._fsuid = uid
        if self.fs is not None:
            self.fs.setfsuid(uid)

    def setfsgid(self, gid):
        """Act as group `gid` in this Volume's later calls."""
        if isinstance(gid, bool) or not isinstance(gid, int) or gid < 0:
            raise OSError(errno.EINVAL, f"setfsgid({gid!r}): not a group id")
        self._fsgid = gid
        if self.fs is not None:
            self.fs.setfsgid(gid)

    @validate_mount
    def setxattr(self, path, key, value, flags=0):
        """flags 0: create or replace, 1: create only (EEXIST), 2: replace
        only (ENODATA); others EINVAL."""
        _ints(flags=flags)
        self.fs.setxattr(_path(path), encode_to_string(key), decode_to_bytes(value), flags)

    @validate_mount
    def stat(self, path):
        """An api.Stat of `path` (symlinks followed)."""
        return _to_stat(self.fs.stat(_path(path)))

    @validate_mount
    def statvfs(self, path):
        """An api.Statvfs of the volume holding `path`."""
        return _to_statvfs(self.fs.statvfs(_path(path)))

    @validate_mount
    def link(self, source, link_name):
        self.fs.link(_path(source), _path(link_name))

    @validate_mount
    def symlink(self, source, link_name):
        self.fs.symlink(_path(source), _path(link_name))

    @validate_mount
    def unlink(self, path):
        self.fs.unlink(_path(path))

    @validate_mount
    def utime(self, path, times):
        """Set (atime, mtime) of `path`; None sets both to now.

        :raises: OSError, TypeError when times is not None nor a 2-tuple
        """
        if times is None:
            now = time.time()
            times = (now, now)
        elif type(times) is not tuple or len(times) != 2:
            raise TypeError("utime() arg 2 must be a tuple (atime, mtime)")
        self.fs.utime(_path(path), ns=tuple(_ns(t) for t in times))

    def walk(self, top, topdown=True, onerror=None, followlinks=False):
        """os.walk over the volume: (dirpath, dirnames, filenames).  With
        followlinks False a symlink to a directory is listed in filenames
        (in os.walk it is in dirnames); onerror(OSError) sees errors."""
        dirs, nondirs = [], []
        try:
            for entry in self.scandir(top):
                if entry.is_dir(follow_symlinks=followlinks):
                    dirs.append(entry)
                else:
                    nondirs.append(entry.name)
        except OSError as err:
            if onerror is not None:
                onerror(err)
            return
        names = [d.name for d in dirs]
        if topdown:
            yield top, names, nondirs
            # dirnames pruned in place steer the walk, as in os.walk
            kept = set(names)
            dirs = [d for d in dirs if d.name in kept]
        for d in dirs:
            if followlinks or not d.is_symlink():
                yield from self.walk(os.path.join(top, d.name), topdown, onerror, followlinks)
        if not topdown:
            yield top, names, nondirs

    def samefile(self, path1, path2):
        s1, s2 = self.stat(path1), self.stat(path2)
        return s1.st_ino == s2.st_ino and s1.st_dev == s2.st_dev

    @classmethod
    def copyfileobj(cls, fsrc, fdst, length=128 * 1024):
        """Copy from fsrc's offset to its end into fdst (any objects with
        readinto()/write(), gluster Files or local files)."""
        buf = bytearray(length)
        view = memoryview(buf)
        while True:
            nread = fsrc.readinto(buf)
            if not nread or nread <= 0:
                break
            fdst.write(buf if nread == length else view[:nread])

    def copyfile(self, src, dst):
        """Copy src's data (no metadata) to dst.

        :raises: Error when src and dst are the same file, OSError
        """
        try:
            same = self.samefile(src, dst)
        except OSError:
            same = False
        if same:
            raise Error(f"`{src}` and `{dst}` are the same file")
        kind = stat.S_IFMT(self.stat(src).st_mode)
        if kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise Error(f"`{src}` is a special file ({_KINDS.get(kind, 'unknown type')}): "
                        f"copyfile copies regular files")
        with self.fopen(src, "rb") as fsrc:
            with self.fopen(dst, "wb") as fdst:
                self.copyfileobj(fsrc, fdst)

    def copymode(self, src, dst):
        self.chmod(dst, stat.S_IMODE(self.stat(src).st_mode))

    def copystat(self, src, dst):
        """Copy permission bits, atime and mtime (to the nanosecond)."""
        st = self.stat(src)
        self._utime_ns(dst, st)
        self.chmod(dst, stat.S_IMODE(st.st_mode))

    def _utime_ns(self, path, st):
        if not self.mounted:
            raise VolumeNotMounted(f'Volume "{self.volname}" not mounted.')
        self.fs.utime(_path(path), ns=(_stat_ns(st, "atime"), _stat_ns(st, "mtime")))

    def copy(self, src, dst):
        """cp src dst: data and permission bits; dst may be a directory."""
        if self.isdir(dst):
            dst = os.path.join(dst, os.path.basename(src))
        self.copyfile(src, dst)
        self.copymode(src, dst)

    def copy2(self, src, dst):
        """cp -p src dst: copy() and copystat()."""
        if self.isdir(dst):
            dst = os.path.join(dst, os.path.basename(src))
        self.copyfile(src, dst)
        self.copystat(src, dst)

    def copytree(self, src, dst, symlinks=False, ignore=None):
        """Copy a tree with copy2(); dst must not exist.  symlinks copies
        links as links (else what they point to); ignore(src, names)
        returns names to skip.

        :raises: Error with the list of (src, dst, why) that failed
        """
        names_with_stat = self.listdir_with_stat(src)
        ignored = ignore(src, [n for n, _ in names_with_stat]) if ignore is not None else set()
        self.makedirs(dst)
        errors = []
        for name, st in names_with_stat:
            if name in ignored:
                continue
            srcpath, dstpath = os.path.join(src, name), os.path.join(dst, name)
            try:
                if symlinks and stat.S_ISLNK(st.st_mode):
                    self.symlink(self.readlink(srcpath), dstpath)
                elif stat.S_ISDIR(st.st_mode) or (
                        not symlinks and stat.S_ISLNK(st.st_mode) and self.isdir(srcpath)):
                    # like shutil: a symlink to a directory is copied as a
                    # tree; `ignore` goes along (see the module docstring)
                    self.copytree(srcpath, dstpath, symlinks, ignore)
                else:
                    with self.fopen(srcpath, "rb") as fsrc:
                        with self.fopen(dstpath, "wb") as fdst:
                            self.copyfileobj(fsrc, fdst)
                    if stat.S_ISLNK(st.st_mode):
                        st = self.stat(srcpath)
                    self._utime_ns(dstpath, st)
                    self.chmod(dstpath, stat.S_IMODE(st.st_mode))
            except Error as why:
                errors.extend(why.args[0] if why.args and isinstance(why.args[0], list)
                              else [(srcpath, dstpath, str(why))])
            except OSError as why:
                errors.append((srcpath, dstpath, str(why)))
        try:
            self.copystat(src, dst)
        except OSError as why:
            errors.append((src, dst, str(why)))
        if errors:
            raise Error(errors)

    @validate_mount
    def mknod(self, path, mode, dev):
        """Create a file, device, fifo or socket (mknod(2))."""
        _ints(mode=mode, dev=dev)
        self.fs.mknod(_path(path), mode, dev)
