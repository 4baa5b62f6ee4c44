"""The brick's change journal in GlusterFS 10's format: records, the two
encodings, and the htime index - no IO in the core.

features/changelog (xlators/features/changelog.py) writes it on every brick
where `changelog.changelog` is on; geo-replication reads it.  The files are
byte-for-byte GlusterFS 10's (xlators/features/changelog/src/changelog-*.c
writes them, libgfchangelog reads them), so GlusterFS's tools can read a
glusterpy brick's journal and this module reads a GlusterFS brick's.

Layout under the changelog directory (`changelog-dir`, by default
``<brick>/.glusterfs/changelogs``; GlusterFS makes its directories 0600)::

    CHANGELOG                       the journal being written
    YYYY/MM/DD/CHANGELOG.<ts>       rolled over every `rollover-time` seconds,
                                    <ts> the rollover's UNIX time (UTC date)
    htime/HTIME.<ts>                the index: one NUL-terminated record per
                                    rollover, the changelog's full path; an
                                    empty changelog is deleted and recorded as
                                    ``.../changelog.<ts>`` (lower case);
                                    xattr trusted.glusterfs.htime = "<last
                                    ts>:<records>"; a new HTIME file each time
                                    the journal is switched on
    htime (the directory)           xattr trusted.glusterfs.current_htime =
                                    the HTIME file being appended to
    csnap/                          snapshot journals (made, never written here)

A changelog file is one header line, then records with no line breaks::

    GlusterFS Changelog | version: v1.2 | encoding : 2\\n

The encoding is 2 for ascii (the default), 1 for binary.  A record is a
type letter and the gfid of the inode it is about, then `\\0`-separated
fields, then a `\\0`:

    D<gfid>\\0                                  data changed
    M<gfid>\\0<fop>\\0                          metadata changed (SETATTR,
                                                SETXATTR, REMOVEXATTR, ...)
    E<gfid>\\0<fop>\\0<mode>\\0<uid>\\0<gid>\\0<pargfid>/<name>\\0
                                                CREATE, MKDIR, MKNOD
    E<gfid>\\0<fop>\\0<pargfid>/<name>\\0          LINK, SYMLINK
    E<gfid>\\0<fop>\\0<pargfid>/<old>\\0<pargfid>/<new>\\0
                                                RENAME
    E<gfid>\\0<fop>\\0<pargfid>/<name>\\0<path>\\0 UNLINK, RMDIR (v1.2); <path>,
                                                the deleted entry's path from
                                                the brick root, is "\\0" (so
                                                three NULs in a row) unless
                                                capture-del-path is on

In ascii the gfids are canonical text and the numbers decimal; in binary
the gfids are their 16 bytes and the numbers 32-bit little-endian (GlusterFS
writes them in host order; every platform it builds for is little-endian).
Numbers: `fop` is GlusterFS's glusterfs_fop_t (fops.CATALOGUE's gf_fop).

A D or M record is written once per inode and type per changelog
(GlusterFS's slice versions); E records always.  Version 1.1 journals (no
path field for UNLINK/RMDIR) parse too.

The names geo-replication imports: `Record`, `encode`, `parse`,
`changelogs_between` and `HtimeReader` (the index read as it grows) - with
`history`, what here reads the disk.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import time
from dataclasses import dataclass

from .fops import BY_NAME, CATALOGUE, GFID

# --------------------------------------------------------------------------
# GlusterFS's names and numbers (changelog-misc.h)

CHANGELOG_FILE_NAME = "CHANGELOG"
HTIME_FILE_NAME = "HTIME"
HTIME_DIR = "htime"
CSNAP_DIR = "csnap"
#: xattr on each HTIME file: "<ts of the last rollover>:<records>"
HTIME_KEY = "trusted.glusterfs.htime"
#: xattr on the htime directory: the HTIME file being appended to
HTIME_CURRENT = "trusted.glusterfs.current_htime"
HTIME_INITIAL_VALUE = "0:0"
VERSION = (1, 2)
#: changelog_encoder_t
ENCODING_BINARY, ENCODING_ASCII = 1, 2
ENCODINGS = {"binary": ENCODING_BINARY, "ascii": ENCODING_ASCII}
#: the directory under a brick where glusterd points changelog-dir
DEFAULT_DIR = os.path.join(".glusterfs", "changelogs")
#: libgfchangelog's TIMESTAMP_LENGTH: a changelog name ends in 10 digits
TIMESTAMP_LENGTH = 10

_HEADER = "GlusterFS Changelog | version: v{}.{} | encoding : {}\n"
_HEADER_RE = re.compile(rb"GlusterFS Changelog \| version: v(\d+)\.(\d+) \| encoding : (\d+)\n")

DATA, METADATA, ENTRY = "D", "M", "E"

#: glusterfs_fop_t numbers of the entry fops a journal holds
_GF = {f.name: f.gf_fop for f in CATALOGUE}
FOP_MKNOD, FOP_MKDIR, FOP_UNLINK, FOP_RMDIR = _GF["mknod"], _GF["mkdir"], _GF["unlink"], _GF["rmdir"]
FOP_SYMLINK, FOP_RENAME, FOP_LINK, FOP_CREATE = (_GF["symlink"], _GF["rename"], _GF["link"],
                                                 _GF["create"])
#: E records whose fields are mode, uid, gid then one entry
CREATE_FOPS = frozenset({FOP_CREATE, FOP_MKDIR, FOP_MKNOD})
DELETE_FOPS = frozenset({FOP_UNLINK, FOP_RMDIR})
ENTRY_FOPS = CREATE_FOPS | DELETE_FOPS | {FOP_SYMLINK, FOP_RENAME, FOP_LINK}
#: gf_fop_list: GlusterFS's name of each fop number
FOP_NAMES: dict[int, str] = {f.gf_fop: f.gf_name for f in CATALOGUE}
FOP_NUMBERS: dict[str, int] = {name: num for num, name in FOP_NAMES.items()}

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


class ChangelogError(ValueError):
    """A journal or htime file that is not in GlusterFS's format."""


# --------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class Record:
    """One change.

    `type` is "E" (entry: a name made, removed or moved), "D" (data) or
    "M" (metadata: owner, mode, times, xattrs).  `gfid` is the inode the
    change is about - for E records the inode created, removed, linked or
    renamed.  `fop` is GlusterFS's fop number (E and M; 0 for D).
    E records name the entry: `pargfid`/`basename`; a RENAME also the new
    one, `new_pargfid`/`new_basename`; CREATE, MKDIR and MKNOD give the new
    inode's `mode` (with its S_IF* type bits, as the client sent it), `uid`
    and `gid`; UNLINK and RMDIR a `path` - the removed entry's path from
    the brick root when capture-del-path was on, "" otherwise (None in a
    v1.1 journal).  Names are str (os.fsdecode of the on-disk bytes).
    """

    type: str
    gfid: GFID
    fop: int = 0
    pargfid: GFID | None = None
    basename: str | None = None
    new_pargfid: GFID | None = None
    new_basename: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    path: str | None = None

    @property
    def fop_name(self) -> str:
        """GlusterFS's name of `fop` (gf_fop_list): CREATE, SETATTR ...;
        "" for a D record."""
        return FOP_NAMES.get(self.fop, str(self.fop)) if self.fop else ""

    @property
    def is_dir(self) -> bool:
        """An E record of a directory being made (MKDIR's mode says so)."""
        return self.mode is not None and stat.S_ISDIR(self.mode)

    # -- builders --------------------------------------------------------

    @classmethod
    def data(cls, gfid: GFID) -> "Record":
        return cls(DATA, GFID(gfid))

    @classmethod
    def meta(cls, gfid: GFID, fop: int | str) -> "Record":
        return cls(METADATA, GFID(gfid), _fop_number(fop))

    @classmethod
    def entry(cls, gfid: GFID, fop: int | str, pargfid: GFID, basename: str, *,
              mode: int | None = None, uid: int | None = None, gid: int | None = None,
              new_pargfid: GFID | None = None, new_basename: str | None = None,
              path: str | None = None) -> "Record":
        fop = _fop_number(fop)
        if fop in DELETE_FOPS and path is None:
            path = ""
        rec = cls(ENTRY, GFID(gfid), fop, GFID(pargfid), basename,
                  GFID(new_pargfid) if new_pargfid is not None else None, new_basename,
                  mode, uid, gid, path)
        rec.check()
        return rec

    def check(self) -> None:
        """Raise ChangelogError unless the record can be written."""
        if self.type not in (DATA, METADATA, ENTRY):
            raise ChangelogError(f"record type {self.type!r} is not E, D or M")
        if len(self.gfid) != 16:
            raise ChangelogError("a gfid is 16 bytes")
        if self.type == DATA:
            return
        if self.fop not in FOP_NAMES:
            raise ChangelogError(f"{self.fop} is not a GlusterFS fop number")
        if self.type == METADATA:
            return
        if self.fop not in ENTRY_FOPS:
            raise ChangelogError(f"{self.fop_name} is not an entry fop")
        names = [(self.pargfid, self.basename)]
        if self.fop == FOP_RENAME:
            names.append((self.new_pargfid, self.new_basename))
        for pargfid, name in names:
            if pargfid is None or name is None:
                raise ChangelogError(f"{self.fop_name} needs a parent gfid and a name")
            raw = os.fsencode(name)
            if not raw or b"/" in raw or b"\0" in raw:
                raise ChangelogError(f"{name!r} is not one path component")
        if self.fop in CREATE_FOPS:
            for field in ("mode", "uid", "gid"):
                value = getattr(self, field)
                if value is None or not 0 <= value < 1 << 32:
                    raise ChangelogError(f"{self.fop_name} needs a 32-bit {field}")
        if self.path is not None and "\0" in self.path:
            raise ChangelogError("a path has no NUL")


def _fop_number(fop: int | str) -> int:
    if isinstance(fop, str):
        if fop in FOP_NUMBERS:
            return FOP_NUMBERS[fop]
        if fop in BY_NAME:
            return BY_NAME[fop].gf_fop
        raise ChangelogError(f"unknown fop {fop!r}")
    return int(fop)


# --------------------------------------------------------------------------
# Encoding


def header(binary: bool = False, version: tuple[int, int] = VERSION) -> bytes:
    """The first line of every changelog GlusterFS writes (CHANGELOG_HEADER)."""
    return _HEADER.format(version[0], version[1],
                          ENCODING_BINARY if binary else ENCODING_ASCII).encode()


def encode_record(rec: Record, binary: bool = False) -> bytes:
    """One record as changelog_encode_ascii / _binary write it."""
    if binary:
        gfid = bytes(rec.gfid)
        out = [rec.type.encode(), gfid]
        if rec.type != DATA:
            out += [b"\0", _I32.pack(rec.fop)]
    else:
        out = [rec.type.encode(), str(rec.gfid).encode()]
        if rec.type != DATA:
            out += [b"\0", str(rec.fop).encode()]
    if rec.type == ENTRY:
        if rec.fop in CREATE_FOPS:
            for value in (rec.mode, rec.uid, rec.gid):
                out += [b"\0", _U32.pack(value) if binary else str(value).encode()]
        out += [b"\0", _entry(rec.pargfid, rec.basename, binary)]
        if rec.fop == FOP_RENAME:
            out += [b"\0", _entry(rec.new_pargfid, rec.new_basename, binary)]
        elif rec.fop in DELETE_FOPS and rec.path is not None:
            # del_entry_fn: NUL, then the path or a lone NUL for none
            out += [b"\0", os.fsencode(rec.path) if rec.path else b"\0"]
    out.append(b"\0")
    return b"".join(out)


def _entry(pargfid, name, binary: bool) -> bytes:
    return (bytes(pargfid) if binary else str(pargfid).encode()) + b"/" + os.fsencode(name)


def encode(records, binary: bool = False) -> bytes:
    """A whole changelog file: the header, then each record."""
    out = [header(binary)]
    for rec in records:
        rec.check()
        out.append(encode_record(rec, binary))
    return b"".join(out)


# --------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True, slots=True)
class Header:
    major: int
    minor: int
    encoding: int
    #: bytes of the header line, newline included
    length: int

    @property
    def binary(self) -> bool:
        return self.encoding == ENCODING_BINARY


def parse_header(data: bytes) -> Header:
    """The header line of a changelog (CHANGELOG_GET_HEADER_INFO)."""
    m = _HEADER_RE.match(data)
    if m is None:
        raise ChangelogError(f"not a GlusterFS changelog: {bytes(data[:60])!r}")
    major, minor, enc = (int(g) for g in m.groups())
    if enc not in (ENCODING_ASCII, ENCODING_BINARY):
        raise ChangelogError(f"unknown changelog encoding {enc}")
    if (major, minor) not in ((1, 1), (1, 2)):
        raise ChangelogError(f"changelog version v{major}.{minor} is not v1.1 or v1.2")
    return Header(major, minor, enc, m.end())


def parse(data: bytes) -> list[Record]:
    """Every record of a changelog file (its header included), ascii or
    binary, v1.1 or v1.2.  ChangelogError, naming the offset, for anything
    else - a truncated record too."""
    head = parse_header(data)
    return list(_Parser(bytes(data), head).records())


class _Parser:
    def __init__(self, data: bytes, head: Header):
        self.data = data
        self.pos = head.length
        self.binary = head.binary
        self.v11 = (head.major, head.minor) == (1, 1)

    def fail(self, what: str) -> ChangelogError:
        return ChangelogError(f"changelog offset {self.pos}: {what}")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("truncated record")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def nul(self) -> None:
        if self.take(1) != b"\0":
            self.pos -= 1
            raise self.fail("expected a NUL separator")

    def field(self) -> bytes:
        """Bytes up to the next NUL, which is consumed."""
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.fail("truncated record")
        out = self.data[self.pos:end]
        self.pos = end + 1
        return out

    def gfid(self) -> GFID:
        if self.binary:
            return GFID(self.take(16))
        text = self.take(36)
        try:
            return GFID(text.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            self.pos -= 36
            raise self.fail(f"{text!r} is not a gfid") from None

    def number(self, signed: bool = False) -> int:
        if self.binary:
            return (_I32 if signed else _U32).unpack(self.take(4))[0]
        text = self.field()
        if not re.fullmatch(rb"-?\d+", text):
            raise self.fail(f"{text!r} is not a number")
        self.pos -= 1                      # the separator stays for the caller
        return int(text)

    def entry(self) -> tuple[GFID, str]:
        pargfid = self.gfid()
        if self.take(1) != b"/":
            self.pos -= 1
            raise self.fail("expected '/' after the parent gfid")
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.fail("truncated record")
        name = self.data[self.pos:end]
        if not name:
            raise self.fail("empty basename")
        self.pos = end                     # the separator stays for the caller
        return pargfid, os.fsdecode(name)

    def records(self):
        while self.pos < len(self.data):
            start = self.pos
            kind = self.take(1).decode("latin-1")
            if kind not in (DATA, METADATA, ENTRY):
                self.pos = start
                raise self.fail(f"record type {kind!r} is not E, D or M")
            gfid = self.gfid()
            if kind == DATA:
                self.nul()
                yield Record(DATA, gfid)
                continue
            self.nul()
            fop = self.number(signed=True)
            if fop not in FOP_NAMES:
                raise self.fail(f"{fop} is not a GlusterFS fop number")
            if kind == METADATA:
                self.nul()
                yield Record(METADATA, gfid, fop)
                continue
            if fop not in ENTRY_FOPS:
                raise self.fail(f"{FOP_NAMES[fop]} in an E record")
            mode = uid = gid = None
            if fop in CREATE_FOPS:
                self.nul()
                mode = self.number()
                self.nul()
                uid = self.number()
                self.nul()
                gid = self.number()
            self.nul()
            pargfid, name = self.entry()
            new_pargfid = new_name = path = None
            if fop == FOP_RENAME:
                self.nul()
                new_pargfid, new_name = self.entry()
            elif fop in DELETE_FOPS and not self.v11:
                self.nul()
                raw = self.field()
                if not raw:
                    # no path: its placeholder NUL was the field just read
                    path = ""
                else:
                    path = os.fsdecode(raw)
                    self.pos -= 1          # that NUL ends the record
            self.nul()
            yield Record(ENTRY, gfid, fop, pargfid, name, new_pargfid, new_name,
                         mode, uid, gid, path)


# --------------------------------------------------------------------------
# Names and the htime index


def rolled_name(changelog_dir: str, ts: int, empty: bool = False) -> str:
    """Where the journal rolled over at `ts` goes: <dir>/YYYY/MM/DD/CHANGELOG.<ts>
    (the date in UTC); `empty` gives the lower-case name the htime index
    records for a journal that had no records (and was deleted)."""
    day = time.strftime("%Y/%m/%d", time.gmtime(ts))
    name = ("changelog" if empty else CHANGELOG_FILE_NAME) + f".{ts}"
    return os.path.join(changelog_dir, day, name)


def htime_name(ts: int) -> str:
    return f"{HTIME_FILE_NAME}.{ts}"


def htime_record(path: str) -> bytes:
    """One record of an HTIME file (htime_update)."""
    return os.fsencode(path) + b"\0"


def parse_htime(data: bytes) -> list[str]:
    """The changelog paths an HTIME file lists, in order."""
    if not data:
        return []
    if not data.endswith(b"\0"):
        # a record cut short by a crash mid-write: GlusterFS's history scan
        # reads fixed-size records and would skip it too
        data = data[:data.rfind(b"\0") + 1]
    return [os.fsdecode(p) for p in data.split(b"\0")[:-1]]


def changelog_ts(path: str) -> int:
    """The rollover time a changelog's name ends in."""
    base = os.path.basename(path)
    prefix, _, ts = base.rpartition(".")
    if prefix.lower() != "changelog" or not ts.isdigit():
        raise ChangelogError(f"{path!r} is not a rolled-over changelog name")
    return int(ts)


def is_usable(path: str) -> bool:
    """False for the lower-case names htime gives empty changelogs
    (gf_is_changelog_usable)."""
    return os.path.basename(path).startswith(CHANGELOG_FILE_NAME + ".")


def _rebase(path: str, changelog_dir: str) -> str:
    """A path the htime index recorded, under `changelog_dir`: the index
    holds absolute paths of the directory it was written in, and a brick
    may have moved since (or be read through a copy)."""
    parts = path.split("/")
    tail = parts[-4:] if len(parts) >= 4 and all(p.isdigit() for p in parts[-4:-1]) \
        else parts[-1:]
    return os.path.join(changelog_dir, *tail)


def htime_files(changelog_dir: str) -> list[str]:
    """The HTIME files of a changelog directory, oldest first."""
    hdir = os.path.join(changelog_dir, HTIME_DIR)
    try:
        names = os.listdir(hdir)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        prefix, _, ts = name.partition(".")
        if prefix == HTIME_FILE_NAME and ts.isdigit():
            found.append((int(ts), os.path.join(hdir, name)))
    return [p for _, p in sorted(found)]


def history(changelog_dir: str) -> list[tuple[int, str, bool]]:
    """Every rollover the htime index records, oldest first: (ts, path of
    the changelog under `changelog_dir`, usable - False for an empty one)."""
    out = []
    for hfile in htime_files(changelog_dir):
        with open(hfile, "rb") as f:
            for path in parse_htime(f.read()):
                try:
                    ts = changelog_ts(path)
                except ChangelogError:
                    raise ChangelogError(f"{hfile}: {path!r} is not a changelog") from None
                out.append((ts, _rebase(path, changelog_dir), is_usable(path)))
    out.sort(key=lambda t: t[0])
    return out


class HtimeReader:
    """The rollovers of a changelog directory's current HTIME file, read as
    the index grows: each `read` reads only what was appended since the
    last one (the index gains a line per rollover, forever; read whole at
    every crawl it costs more each time).  A record cut short (a rollover
    being written) is left for the next read.  A new HTIME file (the
    journal switched off and on, or a brick whose index was replaced) -
    another name, another inode, or a file shorter than what was read -
    starts over from its beginning."""

    def __init__(self, changelog_dir: str):
        self.dir = changelog_dir
        self.file: str | None = None
        self._ino = -1
        self.offset = 0
        #: bytes read from the index by this reader so far
        self.bytes_read = 0
        self._rolls: list[tuple[int, str, bool]] = []
        #: rollovers before this one were dropped by `read`'s keep_from
        self._floor: int | None = None

    def _start_over(self, path: str | None, ino: int = -1) -> None:
        self.file, self._ino, self.offset = path, ino, 0
        self._rolls, self._floor = [], None

    def read(self, keep_from: int | None = None) -> list[tuple[int, str, bool]]:
        """(ts, path, usable) of every rollover the current HTIME file
        records, oldest first, as history() gives them; with `keep_from`,
        the ones before the last rollover before it are forgotten (a
        later call with an earlier keep_from reads the file again)."""
        files = htime_files(self.dir)
        if not files:
            self._start_over(None)
            return []
        path = files[-1]
        with open(path, "rb") as f:
            st_ = os.fstat(f.fileno())
            if path != self.file or st_.st_ino != self._ino or st_.st_size < self.offset or (
                    keep_from is not None and self._floor is not None and
                    keep_from < self._floor):
                self._start_over(path, st_.st_ino)
            f.seek(self.offset)
            data = f.read()
        self.bytes_read += len(data)
        whole = data[:data.rfind(b"\0") + 1]
        self.offset += len(whole)
        for p in parse_htime(whole):
            try:
                ts = changelog_ts(p)
            except ChangelogError:
                raise ChangelogError(f"{path}: {p!r} is not a changelog") from None
            self._rolls.append((ts, _rebase(p, self.dir), is_usable(p)))
        if any(a[0] > b[0] for a, b in zip(self._rolls, self._rolls[1:])):
            self._rolls.sort(key=lambda t: t[0])  # a clock set back: as history() orders
        if keep_from is not None:
            before = [i for i, r in enumerate(self._rolls) if r[0] < keep_from]
            if len(before) > 1:
                del self._rolls[:before[-1]]
                self._floor = self._rolls[0][0]
        return list(self._rolls)


def changelogs_between(brick_path: str, start: int, end: int, *,
                       changelog_dir: str | None = None) -> list[str]:
    """The changelogs of a brick holding the changes made from `start` to
    `end` (UNIX times), oldest first, found through the htime index as
    libgfchangelog's history API finds them: CHANGELOG.<ts> holds what
    happened after the previous rollover up to <ts>, so the list runs from
    the first changelog with ts >= start to the first with ts >= end (or
    the last there is).  Empty (deleted) changelogs are left out.

    `changelog_dir` defaults to <brick_path>/.glusterfs/changelogs.
    ChangelogError when start > end or an htime file is not GlusterFS's."""
    if start > end:
        raise ChangelogError(f"start {start} is after end {end}")
    cdir = changelog_dir or os.path.join(brick_path, DEFAULT_DIR)
    out = []
    for ts, path, usable in history(cdir):
        if ts < start:
            continue
        if usable:
            out.append(path)
        if ts >= end:
            break
    return out


__all__ = ["Record", "encode", "parse", "changelogs_between", "encode_record", "header",
           "parse_header", "Header", "ChangelogError", "history", "htime_files",
           "parse_htime", "HtimeReader", "rolled_name", "changelog_ts", "is_usable", "FOP_NAMES",
           "FOP_NUMBERS"]
