"""The fop catalogue: every file operation GlusterFS's 4.x protocol carries.

This module is the one list of fops in glusterpy.  The translator base class
derives its pass-through defaults from `CATALOGUE` (as GlusterFS generates
`defaults.c` from `generator.py`), and the RPC codecs, the FUSE bridge and
io-stats index their per-fop tables by the same names.  Nothing else may keep
a second list of fops.

Besides the catalogue it defines the values that travel with fops:

* `GFID` - the 16-byte identity of an inode; the root is `ROOT_GFID`.
* `Loc` - where an operation aims: a gfid, or a parent gfid and a basename.
* `Fd` - an open file or directory; each translator keeps its own state in
  `fd.ctx[translator]`, as GlusterFS keeps `fd_ctx`.
* `Iatt`, `Statvfs`, `Flock`, `Dirent` - GlusterFS's iatt, statfs, flock and
  gf_dirent_t.
* xdata - a plain `dict` of str keys (`GfDict`); values are int, `UInt`, float, str,
  bytes, `Iatt` or `GFID` (the typed values of GlusterFS's dict; the wire
  codecs add `rpc.MdataIatt`, `rpc.StrOld` and `rpc.RawStr` where a peer's
  exact type must survive a round trip).
* The reply types each fop returns, and `FopError(errno)` for failures.

Every fop is `async def name(self, <args>, xdata=None) -> <Reply>`; the
arguments keep GlusterFS's order without `frame` and `this`.  Who calls
(uid, gid, groups, pid, lock owner, client) is not an argument: it rides in
the `caller` context variable, as GlusterFS carries it in `frame->root`.
"""

from __future__ import annotations

import contextvars
import enum
import errno as _errno
import os
import stat as _stat
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: the type of xdata and xattr maps (GlusterFS's dict_t): str keys, values
#: as the module docstring lists
GfDict = dict[str, Any]

# --------------------------------------------------------------------------
# Identity


class GFID(bytes):
    """A GlusterFS inode identity: 16 raw bytes, printed as a UUID."""

    __slots__ = ()

    def __new__(cls, value: bytes | str | uuid.UUID) -> "GFID":
        if isinstance(value, GFID):
            return value
        if isinstance(value, uuid.UUID):
            value = value.bytes
        elif isinstance(value, str):
            value = uuid.UUID(value).bytes
        if len(value) != 16:
            raise ValueError(f"a gfid is 16 bytes, not {len(value)}")
        return super().__new__(cls, value)

    @classmethod
    def random(cls) -> "GFID":
        return cls(uuid.uuid4().bytes)

    def __str__(self) -> str:
        return str(uuid.UUID(bytes=bytes(self)))

    def __repr__(self) -> str:
        return f"GFID('{self}')"

    @property
    def is_null(self) -> bool:
        return self == NULL_GFID


NULL_GFID = GFID(bytes(16))
ROOT_GFID = GFID(bytes(15) + b"\x01")


def ia_makedev(dev: int) -> int:
    """A dev_t as an iatt's rdev: GlusterFS's ia_makedev(major, minor) =
    major << 32 | minor, the encoding on the wire (mknod's own argument
    stays a dev_t)."""
    return (os.major(dev) << 32) | os.minor(dev)


def dev_from_ia(rdev: int) -> int:
    """An iatt's rdev back as a dev_t (makedev(ia_major, ia_minor))."""
    return os.makedev(rdev >> 32, rdev & 0xFFFFFFFF)


def gfid_to_ino(gfid: bytes) -> int:
    """GlusterFS's inode number for a gfid: its last 8 bytes, big-endian."""
    return int.from_bytes(gfid[8:16], "big")


class UInt(int):
    """An xdata integer that GlusterFS's dict types as unsigned."""

    __slots__ = ()


# --------------------------------------------------------------------------
# Who is calling


class ClientPid(enum.IntEnum):
    """GlusterFS's special pids (glusterfs.h, gf_special_pid_t): the caller
    pid an internal client sends, by which bricks and translators tell its
    fops from an application's (root squash, heal, quorum, sync times,
    what the changelog journals)."""

    GSYNCD = -1
    HADOOP = -2
    DEFRAG = -3
    NO_ROOT_SQUASH = -4
    QUOTA_MOUNT = -5
    SELF_HEALD = -6
    GLFS_HEAL = -7
    BITD = -8
    SCRUB = -9
    TIER_DEFRAG = -10
    SERVER_TRASH = -11
    ADD_REPLICA_MOUNT = -12
    SET_UTIME = -13


@dataclass(slots=True, unsafe_hash=True)
class Caller:
    """The identity a fop runs under (GlusterFS's `frame->root`).

    Treat it as immutable: make another (`dataclasses.replace`) instead of
    changing one, which may be shared (the context variable's default, a
    translator's saved caller).  It is not a frozen dataclass because a
    brick makes one per request and a frozen one's __init__ costs ~3x more
    (object.__setattr__ per field; bench/notes/qemu.md (11)); it stays
    hashable and comparable by value."""

    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    pid: int = 0
    lk_owner: bytes = b""
    client: Any = None  # the server's per-connection client, None locally
    #: the v3 auth header's flags: GlusterFS's MDATA_* bits (0x1 ctime,
    #: 0x2 mtime, 0x4 atime) say which times the fop moves, stamped by the
    #: client's features/utime for the ctime feature
    flags: int = 0
    #: the client's clock when it made the call (ns), None when unknown
    ctime_ns: int | None = None


caller: contextvars.ContextVar[Caller] = contextvars.ContextVar(
    "glusterpy_caller", default=Caller()
)


# --------------------------------------------------------------------------
# Errors


class FopError(Exception):
    """A fop failed with `errno`; travels unchanged up the translator tree.

    It becomes op_ret=-1/op_errno on the wire, a FUSEError at the FUSE edge
    and an OSError in gfapi.  `xdata` carries GlusterFS's reply dict, which
    some translators (replicate, distribute) read even on failure.
    """

    def __init__(self, err: int, message: str | None = None, xdata: GfDict | None = None):
        self.errno = err
        self.message = message or os.strerror(err)
        self.xdata = xdata
        super().__init__(err, self.message)

    def __str__(self) -> str:
        return f"[{_errno.errorcode.get(self.errno, self.errno)}] {self.message}"

    def to_oserror(self, filename: str | None = None) -> OSError:
        return OSError(self.errno, os.strerror(self.errno), filename)


# --------------------------------------------------------------------------
# Values that travel with fops


@dataclass(slots=True)
class Loc:
    """Where a fop aims.

    A resolved inode has `gfid`; a name not yet resolved (lookup, create,
    mkdir, the new side of rename and link) has `pargfid` and `name`.  Both
    may be set.  `path` is informational, for logs and for translators that
    hash on names.
    """

    path: str | None = None
    gfid: GFID | None = None
    pargfid: GFID | None = None
    name: str | None = None

    @classmethod
    def root(cls) -> "Loc":
        return cls(path="/", gfid=ROOT_GFID)

    @classmethod
    def child(cls, parent: "Loc", name: str, gfid: GFID | None = None) -> "Loc":
        base = parent.path or ""
        path = (base.rstrip("/") + "/" + name) if base else None
        return cls(path=path, gfid=gfid, pargfid=parent.gfid, name=name)

    def __str__(self) -> str:
        if self.path:
            return self.path
        if self.gfid is not None:
            return f"<gfid:{self.gfid}>"
        return f"<gfid:{self.pargfid}>/{self.name}"


class Fd:
    """An open file or directory.

    The caller creates it and passes it to open/create/opendir, as GlusterFS
    passes `fd_t`.  Each translator keeps its state in `ctx[translator]`
    (storage/posix its OS descriptor, protocol/client the remote fd number).
    """

    __slots__ = ("gfid", "flags", "is_dir", "ctx", "lk_owner", "__weakref__")

    def __init__(self, gfid: GFID | None = None, flags: int = 0, is_dir: bool = False):
        self.gfid = gfid
        self.flags = flags
        self.is_dir = is_dir
        self.ctx: dict[Any, Any] = {}
        self.lk_owner = b""

    def __repr__(self) -> str:
        kind = "dir" if self.is_dir else "file"
        return f"<Fd {kind} {self.gfid} flags={self.flags:#o}>"


@dataclass(slots=True)
class Iatt:
    """GlusterFS's iatt (`gfx_iattx` on the wire): stat plus the gfid.

    `mode` holds the file type and permission bits together, as st_mode does.
    """

    gfid: GFID = NULL_GFID
    ino: int = 0
    dev: int = 0
    rdev: int = 0
    size: int = 0
    blocks: int = 0
    mode: int = 0
    nlink: int = 0
    uid: int = 0
    gid: int = 0
    blksize: int = 0
    atime: int = 0
    atime_nsec: int = 0
    mtime: int = 0
    mtime_nsec: int = 0
    ctime: int = 0
    ctime_nsec: int = 0
    btime: int = 0
    btime_nsec: int = 0
    flags: int = 0
    attributes: int = 0
    attributes_mask: int = 0

    @classmethod
    def from_stat(cls, st: os.stat_result, gfid: GFID) -> "Iatt":
        a, m, c = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return cls(
            gfid=gfid, ino=gfid_to_ino(gfid), dev=st.st_dev, rdev=ia_makedev(st.st_rdev),
            size=st.st_size, blocks=st.st_blocks, mode=st.st_mode,
            nlink=st.st_nlink, uid=st.st_uid, gid=st.st_gid,
            blksize=st.st_blksize,
            atime=a // 1_000_000_000, atime_nsec=a % 1_000_000_000,
            mtime=m // 1_000_000_000, mtime_nsec=m % 1_000_000_000,
            ctime=c // 1_000_000_000, ctime_nsec=c % 1_000_000_000,
            flags=IATT_FLAGS_ALL,
        )

    def copy(self) -> "Iatt":
        """A shallow copy: positional, as dataclasses.replace and copy.copy
        cost six times as much and caches copy an iatt per reply served."""
        return Iatt(self.gfid, self.ino, self.dev, self.rdev, self.size, self.blocks, self.mode,
                    self.nlink, self.uid, self.gid, self.blksize, self.atime, self.atime_nsec,
                    self.mtime, self.mtime_nsec, self.ctime, self.ctime_nsec, self.btime,
                    self.btime_nsec, self.flags, self.attributes, self.attributes_mask)

    @property
    def type(self) -> int:
        return _stat.S_IFMT(self.mode)

    @property
    def is_dir(self) -> bool:
        return _stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return _stat.S_ISREG(self.mode)

    @property
    def is_link(self) -> bool:
        return _stat.S_ISLNK(self.mode)

    @property
    def mtime_ns(self) -> int:
        return self.mtime * 1_000_000_000 + self.mtime_nsec

    @property
    def ctime_ns(self) -> int:
        return self.ctime * 1_000_000_000 + self.ctime_nsec

    @property
    def atime_ns(self) -> int:
        return self.atime * 1_000_000_000 + self.atime_nsec


# ia_flags bits (GlusterFS iatt.h): which fields of an iattx are valid.
IATT_TYPE, IATT_MODE, IATT_NLINK, IATT_UID, IATT_GID = 0x1, 0x2, 0x4, 0x8, 0x10
IATT_SIZE, IATT_BLOCKS, IATT_ATIME, IATT_MTIME = 0x20, 0x40, 0x80, 0x100
IATT_CTIME, IATT_BTIME, IATT_INO = 0x200, 0x400, 0x800
IATT_FLAGS_ALL = 0xBFF  # everything but btime, which plain stat() lacks


# setattr `valid` bits (GlusterFS xlator.h GF_SET_ATTR_*)
SET_ATTR_MODE, SET_ATTR_UID, SET_ATTR_GID, SET_ATTR_SIZE = 0x1, 0x2, 0x4, 0x8
SET_ATTR_ATIME, SET_ATTR_MTIME, SET_ATTR_CTIME = 0x10, 0x20, 0x40
SET_ATTR_ATIME_NOW, SET_ATTR_MTIME_NOW = 0x80, 0x100


@dataclass(slots=True)
class Statvfs:
    """statfs reply (GlusterFS's gf_statfs)."""

    bsize: int = 0
    frsize: int = 0
    blocks: int = 0
    bfree: int = 0
    bavail: int = 0
    files: int = 0
    ffree: int = 0
    favail: int = 0
    fsid: int = 0
    flag: int = 0
    namemax: int = 255


class LockCmd(enum.IntEnum):
    """`lk`/`inodelk` commands (GlusterFS glusterfs-fops.h)."""

    GETLK = 0
    SETLK = 1
    SETLKW = 2
    RESLK_LCK = 3
    RESLK_LCKW = 4
    RESLK_UNLCK = 5
    GETLK_FD = 6


class LockType(enum.IntEnum):
    RDLCK = 0
    WRLCK = 1
    UNLCK = 2


class EntrylkCmd(enum.IntEnum):
    LOCK = 0
    UNLOCK = 1
    LOCK_NB = 2


class EntrylkType(enum.IntEnum):
    RDLCK = 0
    WRLCK = 1


class SeekWhat(enum.IntEnum):
    """seek's `what` (GlusterFS's gf_seek_what_t, not the host's SEEK_*)."""

    DATA = 0
    HOLE = 1


class XattropType(enum.IntEnum):
    """How xattrop combines the given values with the stored ones."""

    ADD_ARRAY = 0
    ADD_ARRAY64 = 1
    OR_ARRAY = 2
    AND_ARRAY = 3
    GET_AND_SET = 4
    ADD_ARRAY_WITH_DEFAULT = 5
    ADD_ARRAY64_WITH_DEFAULT = 6


@dataclass(slots=True)
class Flock:
    """A byte-range lock (GlusterFS's gf_flock)."""

    type: int = LockType.RDLCK
    whence: int = os.SEEK_SET
    start: int = 0
    len: int = 0  # 0 = to the end of the file
    pid: int = 0
    owner: bytes = b""


@dataclass(slots=True)
class Lease:
    cmd: int = 0
    type: int = 0
    lease_id: bytes = bytes(16)
    flags: int = 0


@dataclass(slots=True)
class ActiveLock:
    """One lock getactivelk reports (GlusterFS's lock_migration_info_t)."""

    flock: Flock
    client_uid: str = ""
    lk_flags: int = 0


@dataclass(slots=True)
class Dirent:
    """A directory entry; readdirp fills `iatt` (and may fill `xdata`)."""

    name: str
    ino: int = 0
    off: int = 0
    type: int = 0  # DT_* value
    iatt: Iatt | None = None
    xdata: GfDict | None = None


# --------------------------------------------------------------------------
# Replies: what each fop returns on success


@dataclass(slots=True)
class Reply:
    """A fop that returns nothing but xdata."""

    xdata: GfDict | None = field(default=None, kw_only=True)


@dataclass(slots=True)
class LookupReply(Reply):
    iatt: Iatt
    postparent: Iatt | None = None


@dataclass(slots=True)
class StatReply(Reply):
    iatt: Iatt


@dataclass(slots=True)
class EntryReply(Reply):
    """A new name: mknod, mkdir, symlink, link, put."""

    iatt: Iatt
    preparent: Iatt | None = None
    postparent: Iatt | None = None


@dataclass(slots=True)
class ParentReply(Reply):
    """A removed name: unlink, rmdir."""

    preparent: Iatt | None = None
    postparent: Iatt | None = None


@dataclass(slots=True)
class RenameReply(Reply):
    iatt: Iatt
    preoldparent: Iatt | None = None
    postoldparent: Iatt | None = None
    prenewparent: Iatt | None = None
    postnewparent: Iatt | None = None


@dataclass(slots=True)
class PrePostReply(Reply):
    """An inode changed: the attributes before and after."""

    prebuf: Iatt | None = None
    postbuf: Iatt | None = None


@dataclass(slots=True)
class WriteReply(PrePostReply):
    count: int = 0  # bytes written (GlusterFS's op_ret)


@dataclass(slots=True)
class ReadlinkReply(Reply):
    path: str
    iatt: Iatt | None = None


@dataclass(slots=True)
class OpenReply(Reply):
    fd: Fd


@dataclass(slots=True)
class CreateReply(Reply):
    fd: Fd
    iatt: Iatt
    preparent: Iatt | None = None
    postparent: Iatt | None = None


@dataclass(slots=True)
class ReadReply(Reply):
    """`data` is any bytes-like object; short at end of file, empty past it."""

    data: bytes | bytearray | memoryview
    iatt: Iatt | None = None


@dataclass(slots=True)
class DirReply(Reply):
    entries: list[Dirent]


@dataclass(slots=True)
class StatfsReply(Reply):
    statvfs: Statvfs


@dataclass(slots=True)
class DictReply(Reply):
    """getxattr, fgetxattr, xattrop, fxattrop: name -> value."""

    dict: GfDict


@dataclass(slots=True)
class LkReply(Reply):
    flock: Flock


@dataclass(slots=True)
class SeekReply(Reply):
    offset: int


@dataclass(slots=True)
class ChecksumReply(Reply):
    weak: int
    strong: bytes


@dataclass(slots=True)
class LeaseReply(Reply):
    lease: Lease


@dataclass(slots=True)
class LockListReply(Reply):
    locks: list[ActiveLock]


@dataclass(slots=True)
class CopyRangeReply(Reply):
    iatt: Iatt | None = None
    prebuf_dst: Iatt | None = None
    postbuf_dst: Iatt | None = None
    count: int = 0


# --------------------------------------------------------------------------
# The catalogue


class Arg(NamedTuple):
    name: str
    kind: str  # loc, fd, int, str, bytes, dict, iatt, flock, lease, data, list


class Fop(NamedTuple):
    """One fop: its name, GlusterFS's fop number (GF_FOP_*) and wire
    procedure number (GFS3_OP_*, shared by the 3.x and 4.x programs), its
    arguments in order (xdata always follows), and its reply type.

    `target` is the argument that names the inode the fop acts on (a loc or
    an fd); `modifies` is the set of things a successful call may change
    ('data', 'meta', 'entry', 'xattr'), which caches use to invalidate;
    `gf_name` is GlusterFS's upper-case name (gf_fop_list: READ for readv,
    WRITE for writev), which its RPC procedures, dumps and profiles show;
    `opens` names the fd argument that the fop opens (open, create,
    opendir): it has no remote number yet and is not sent; `iot` is its
    performance/io-threads class (IOT_CLASSES).
    """

    name: str
    gf_fop: int
    procnum: int
    args: tuple[Arg, ...]
    reply: type[Reply]
    target: str | None
    modifies: frozenset[str]
    gf_name: str
    opens: str | None
    iot: str | None

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args)


#: where GlusterFS's name is not the catalogue's in upper case
_GF_NAMES = {"readv": "READ", "writev": "WRITE"}

#: performance/io-threads' queue for each fop (iot_schedule): "high" for the
#: quick metadata reads, "normal" for entry and metadata changes and locks,
#: "low" for data; a fop in none of them (release, releasedir, ipc) is not
#: queued at all.  ("least" is where io-threads puts internal clients.)
IOT_CLASSES: dict[str, str] = {
    "high": "open stat fstat lookup access readlink opendir statfs readdir readdirp "
            "getactivelk setactivelk icreate namelink",
    "normal": "create flush lk inodelk finodelk entrylk fentrylk lease unlink setattr "
              "fsetattr mknod mkdir rmdir symlink rename link setxattr getxattr fgetxattr "
              "fsetxattr removexattr fremovexattr put",
    "low": "readv writev fsync truncate ftruncate fsyncdir xattrop fxattrop rchecksum "
           "fallocate discard zerofill seek copy_file_range",
}
_IOT_OF = {name: cls for cls, names in IOT_CLASSES.items() for name in names.split()}


def _fop(name: str, gf_fop: int, procnum: int, args: str, reply: type[Reply],
         modifies: str = "", *, opens: str | None = None) -> Fop:
    parsed = tuple(Arg(*a.split(":")) for a in args.split())
    target = next((a.name for a in parsed if a.kind in ("loc", "fd")), None)
    assert opens is None or any(a.name == opens and a.kind == "fd" for a in parsed)
    return Fop(name, gf_fop, procnum, parsed, reply, target, frozenset(modifies.split()),
               _GF_NAMES.get(name, name.upper()), opens, _IOT_OF.get(name))


CATALOGUE: tuple[Fop, ...] = (
    _fop("lookup", 27, 27, "loc:loc", LookupReply),
    _fop("stat", 1, 1, "loc:loc", StatReply),
    _fop("fstat", 25, 25, "fd:fd", StatReply),
    _fop("access", 22, 22, "loc:loc mask:int", Reply),
    _fop("readlink", 2, 2, "loc:loc size:int", ReadlinkReply),
    _fop("mknod", 3, 3, "loc:loc mode:int rdev:int umask:int", EntryReply, "entry"),
    _fop("mkdir", 4, 4, "loc:loc mode:int umask:int", EntryReply, "entry"),
    _fop("unlink", 5, 5, "loc:loc xflags:int", ParentReply, "entry meta"),
    _fop("rmdir", 6, 6, "loc:loc xflags:int", ParentReply, "entry"),
    _fop("symlink", 7, 7, "linkname:str loc:loc umask:int", EntryReply, "entry"),
    _fop("rename", 8, 8, "oldloc:loc newloc:loc", RenameReply, "entry meta"),
    _fop("link", 9, 9, "oldloc:loc newloc:loc", EntryReply, "entry meta"),
    _fop("truncate", 10, 10, "loc:loc offset:int", PrePostReply, "data meta"),
    _fop("ftruncate", 24, 24, "fd:fd offset:int", PrePostReply, "data meta"),
    _fop("open", 11, 11, "loc:loc flags:int fd:fd", OpenReply, opens="fd"),
    _fop("create", 23, 23, "loc:loc flags:int mode:int umask:int fd:fd", CreateReply, "entry",
         opens="fd"),
    _fop("readv", 12, 12, "fd:fd size:int offset:int flags:int", ReadReply),
    _fop("writev", 13, 13, "fd:fd data:data offset:int flags:int", WriteReply, "data meta"),
    _fop("flush", 15, 15, "fd:fd", Reply),
    _fop("fsync", 16, 16, "fd:fd datasync:int", PrePostReply),
    _fop("opendir", 20, 20, "loc:loc fd:fd", OpenReply, opens="fd"),
    _fop("readdir", 28, 28, "fd:fd size:int offset:int", DirReply),
    _fop("readdirp", 40, 40, "fd:fd size:int offset:int", DirReply),
    _fop("fsyncdir", 21, 21, "fd:fd datasync:int", Reply),
    _fop("release", 42, 41, "fd:fd", Reply),
    _fop("releasedir", 43, 42, "fd:fd", Reply),
    _fop("statfs", 14, 14, "loc:loc", StatfsReply),
    _fop("setxattr", 17, 17, "loc:loc xattrs:dict flags:int", Reply, "xattr meta"),
    _fop("getxattr", 18, 18, "loc:loc name:str", DictReply),
    _fop("fsetxattr", 36, 36, "fd:fd xattrs:dict flags:int", Reply, "xattr meta"),
    _fop("fgetxattr", 35, 35, "fd:fd name:str", DictReply),
    _fop("removexattr", 19, 19, "loc:loc name:str", Reply, "xattr meta"),
    _fop("fremovexattr", 45, 43, "fd:fd name:str", Reply, "xattr meta"),
    _fop("xattrop", 33, 33, "loc:loc optype:int xattrs:dict", DictReply, "xattr"),
    _fop("fxattrop", 34, 34, "fd:fd optype:int xattrs:dict", DictReply, "xattr"),
    _fop("inodelk", 29, 29, "volume:str loc:loc cmd:int flock:flock", Reply),
    _fop("finodelk", 30, 30, "volume:str fd:fd cmd:int flock:flock", Reply),
    _fop("entrylk", 31, 31, "volume:str loc:loc basename:str cmd:int type:int", Reply),
    _fop("fentrylk", 32, 32, "volume:str fd:fd basename:str cmd:int type:int", Reply),
    _fop("lk", 26, 26, "fd:fd cmd:int flock:flock", LkReply),
    _fop("setattr", 38, 38, "loc:loc stbuf:iatt valid:int", PrePostReply, "meta"),
    _fop("fsetattr", 39, 39, "fd:fd stbuf:iatt valid:int", PrePostReply, "meta"),
    _fop("fallocate", 46, 44, "fd:fd mode:int offset:int length:int", PrePostReply, "data meta"),
    _fop("discard", 47, 45, "fd:fd offset:int length:int", PrePostReply, "data meta"),
    _fop("zerofill", 48, 46, "fd:fd offset:int length:int", PrePostReply, "data meta"),
    _fop("ipc", 49, 47, "op:int", Reply),
    _fop("seek", 50, 48, "fd:fd offset:int what:int", SeekReply),
    _fop("rchecksum", 37, 37, "fd:fd offset:int length:int", ChecksumReply),
    _fop("lease", 51, 50, "loc:loc lease:lease", LeaseReply),
    _fop("getactivelk", 53, 51, "loc:loc", LockListReply),
    _fop("setactivelk", 54, 52, "loc:loc locks:list", Reply),
    _fop("icreate", 56, 53, "loc:loc mode:int", StatReply, "entry"),
    _fop("namelink", 57, 54, "loc:loc", PrePostReply, "entry"),
    _fop("put", 55, 55,
         "loc:loc mode:int umask:int flags:int data:data offset:int xattrs:dict",
         EntryReply, "entry data meta xattr"),
    _fop("copy_file_range", 58, 56,
         "fd_in:fd off_in:int fd_out:fd off_out:int length:int flags:int",
         CopyRangeReply, "data meta"),
)

BY_NAME: dict[str, Fop] = {f.name: f for f in CATALOGUE}
BY_PROCNUM: dict[int, Fop] = {f.procnum: f for f in CATALOGUE}
FOP_NAMES: tuple[str, ...] = tuple(f.name for f in CATALOGUE)
#: (fop, argument) of every fd a fop opens
OPENED_FDS: frozenset[tuple[str, str]] = frozenset(
    (f.name, f.opens) for f in CATALOGUE if f.opens is not None)
assert set(_IOT_OF) <= set(BY_NAME), set(_IOT_OF) - set(BY_NAME)


# --------------------------------------------------------------------------
# Names

NAME_MAX = 255


def check_name(name: str) -> None:
    """Refuse a basename that is not one path component (EINVAL/ENAMETOOLONG),
    as the kernel does before a name ever reaches a filesystem."""
    if not name or "/" in name or "\0" in name:
        raise FopError(_errno.EINVAL, f"invalid name {name!r}")
    if len(os.fsencode(name)) > NAME_MAX:
        raise FopError(_errno.ENAMETOOLONG)
