"""LVM for storage/bd: lvm2 driven through `sh`, and the way to an LV's bytes.

storage/bd (the package xlators/storage/bd/) and the `glusterpy bd` commands share
this module.  It knows nothing of translators or fops:

* `Lvm` runs lvm2's commands (`lvm lvcreate ...`) with a `--config` that
  restricts LVM to the devices it may touch and, when the kernel has no
  device-mapper, turns activation off (`global{activation=0}`): LVM then
  still writes its metadata, but creates no device nodes.  `Lvm.report()`
  reads one VG in a single `lvm fullreport` (JSON): the group, its physical
  volumes and every segment of every LV.
* `ExtentMap` says where each byte of an LV lives.  With device-mapper that
  is the LV's device node (/dev/VG/LV).  Without it, the map is built from
  LVM's own metadata - each segment's physical extents on its physical
  volume, the PV's `pe_start` and the VG's extent size - and reads and
  writes go to the physical volumes with pread/pwrite: a user-space linear
  (and striped) mapping, what dm-linear would do in the kernel.  Snapshots
  and their origins are mapped on top of it by `glusterpy.bd_snapshot`
  (dm-snapshot's work, on the kernel's exception-store format).
* `check_lv_name()` applies LVM's naming rules, so a bad name is refused
  before anything is created.

The names GlusterFS's storage/bd used (release-3.12 bd.h) are kept:
`user.glusterfs.bd` holds "lv:<bytes>" (or "thin:<bytes>") on the file that
carries an LV's metadata, `volume.type`, `volume.caps` and `list-origin` are
its virtual xattrs, and a VG belonging to a volume carries the tag
`trusted.glusterfs.volume-id:<uuid>` (glusterd_bd_set_vg_tag).  glusterpy
adds the LV tag `trusted.gfid:<uuid>`, so the identity of an LV survives the
loss of its metadata file, and the xdata keys below.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import json
import logging
import math
import os
import re
import shutil
import struct
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import sh

from glusterpy.keys import GFID_KEY, VOLUME_ID_KEY

# --------------------------------------------------------------------------
# Names shared with GlusterFS's storage/bd

BD_XATTR = "user.glusterfs.bd"          # "lv:<bytes>" / "thin:<bytes>"
BD_TYPE_LV = "lv"
BD_TYPE_THIN = "thin"
VOL_TYPE_KEY = "volume.type"            # getxattr: 1 on a bd volume
VOL_CAPS_KEY = "volume.caps"            # getxattr: the CAPS_* bits below
ORIGIN_KEY = "list-origin"              # getxattr: the origin of a snapshot
CAPS_BD = 0x01
CAPS_THIN = 0x02
CAPS_OFFLOAD_COPY = 0x04
CAPS_OFFLOAD_SNAPSHOT = 0x08
CAPS_OFFLOAD_ZERO = 0x20
VOLUME_ID_TAG = VOLUME_ID_KEY           # VG tag "<key>:<uuid>"

# glusterpy's own
GFID_TAG = GFID_KEY                     # LV tag "trusted.gfid:<uuid>"
WRITTEN_XATTR = "trusted.glusterfs.bd.written"  # high-water mark of written data
VG_BINDING_XATTR = "trusted.glusterfs.bd.vg-uuid"  # on the metadata directory
VG_KEY = "glusterfs.bd.vg"              # getxattr: the exported VG's name
#: xdata of symlink (snapshot): the copy-on-write size in bytes
XDATA_SNAPSHOT_SIZE = "glusterfs.bd.snapshot-size"
#: xdata of truncate/ftruncate/setattr: shrink below written data
XDATA_FORCE = "glusterfs.bd.force"
#: an LV unlinked while open waits under this name for its last close
UNLINKED_PREFIX = "glusterpy_unlinked_"

LV_NAME_MAX = 127                       # NAME_LEN - 1, for "VG/LV" as a whole
_LV_NAME_CHARS = re.compile(r"[A-Za-z0-9+_.-]+")
_RESERVED_PREFIXES = ("snapshot", "pvmove")
_RESERVED_PARTS = ("_cdata", "_cmeta", "_corig", "_iorig", "_mimage", "_mlog", "_pmspare",
                   "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig")

# ioctls of linux/fs.h
BLKZEROOUT = 0x127F

log = logging.getLogger(__name__)
# sh logs every command it runs at INFO; a brick's log gets ours, at DEBUG
logging.getLogger("sh").setLevel(logging.WARNING)


# --------------------------------------------------------------------------
# Errors


class LvmError(OSError):
    """An lvm2 command failed; `errno` says how, `strerror` is LVM's own
    message (warnings left out) and `command` the subcommand."""

    def __init__(self, err: int, message: str, command: str = ""):
        super().__init__(err, message)
        self.command = command

    def __str__(self) -> str:
        return f"{self.command}: {self.strerror}" if self.command else self.strerror


# LVM's messages, most specific first: the errno a fop answers for each
_ERRNO_OF_MESSAGE = (
    (re.compile(r"insufficient (free|suitable)|not enough (free )?(space|extents)"
                r"|no free extents|exceeds.*free", re.I), errno.ENOSPC),
    (re.compile(r"already exists", re.I), errno.EEXIST),
    (re.compile(r"in use|is open|has dependent|used as origin|is a snapshot origin"
                r"|snapshot origin volumes", re.I), errno.EBUSY),
    (re.compile(r"device-mapper|without activation|kernel driver|cannot activate", re.I),
     errno.ENOTSUP),
    (re.compile(r"not found|failed to find|does not exist|doesn't exist|no such", re.I),
     errno.ENOENT),
    (re.compile(r"invalid|reserved|not supported|not allowed|illegal|must be", re.I),
     errno.EINVAL),
)


def lvm_error(command: str, stderr: str) -> LvmError:
    """The LvmError for an lvm command's stderr."""
    lines = [line.strip() for line in stderr.splitlines()
             if line.strip() and not line.strip().startswith(("WARNING", "Run `"))]
    message = "; ".join(lines) or "lvm failed without a message"
    for pattern, err in _ERRNO_OF_MESSAGE:
        if pattern.search(message):
            return LvmError(err, message, command)
    return LvmError(errno.EIO, message, command)


# --------------------------------------------------------------------------
# Names and sizes


def check_lv_name(name: str, vg: str | None = None) -> None:
    """Raise ValueError (saying why) unless `name` is a name lvcreate takes
    for a new LV: LVM's characters (a-z A-Z 0-9 + _ . -), no leading hyphen,
    not '.'/'..', no reserved prefix or part, "VG/LV" within 127 bytes.
    glusterpy reserves UNLINKED_PREFIX."""
    if not isinstance(name, str) or not name:
        raise ValueError("an LV name cannot be empty")
    bad = sorted(set(_LV_NAME_CHARS.sub("", name)))
    if bad:
        raise ValueError(f"LV name {name!r} has characters LVM does not allow: "
                         f"{''.join(bad)!r} (allowed: a-z A-Z 0-9 + _ . -)")
    if name.startswith("-"):
        raise ValueError(f"LV name {name!r} cannot begin with a hyphen")
    if name in (".", ".."):
        raise ValueError(f"{name!r} is not an LV name")
    for prefix in _RESERVED_PREFIXES:
        if name.startswith(prefix):
            raise ValueError(f"LV names starting {prefix!r} are reserved by LVM")
    for part in _RESERVED_PARTS:
        if part in name:
            raise ValueError(f"LV names including {part!r} are reserved by LVM")
    if name.startswith(UNLINKED_PREFIX):
        raise ValueError(f"LV names starting {UNLINKED_PREFIX!r} are reserved by glusterpy")
    full = f"{vg}/{name}" if vg else name
    if len(full.encode()) > LV_NAME_MAX:
        raise ValueError(f"'{full}' is longer than LVM's {LV_NAME_MAX} bytes")
    if vg and len(dm_name(vg, name).encode()) > LV_NAME_MAX:
        raise ValueError(f"the device-mapper name of '{full}' is longer than "
                         f"{LV_NAME_MAX} bytes")


def dm_name(vg: str, lv: str) -> str:
    """The device-mapper name of VG/LV: hyphens doubled, joined by one."""
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?b)?\s*", re.I)


def parse_size(text: str) -> int:
    """Bytes from `10G`, `10GB`, `10GiB`, `512k`, `4096` (a bare number is
    bytes, as GlusterFS reads sizes; the units are powers of 1024, as LVM's
    and GlusterFS's both are)."""
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"{text!r} is not a size (e.g. 4096, 512K, 10M, 2G)")
    number, unit = m.group(1), m.group(2).lower()
    scale = 1024 ** ("kmgtpe".index(unit) + 1) if unit else 1
    return int(float(number) * scale) if "." in number else int(number) * scale


def round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def device_mapper_available() -> bool:
    """True when the running kernel has device-mapper: its control device is
    registered in /proc/misc (/dev/mapper/control may exist without it)."""
    try:
        with open("/proc/misc") as f:
            return any(line.split()[1:] == ["device-mapper"] for line in f)
    except OSError:
        return False


def find_lvm() -> str | None:
    """The lvm2 binary, or None when lvm2 is not installed."""
    return shutil.which("lvm") or next(
        (p for p in ("/usr/sbin/lvm", "/sbin/lvm") if os.access(p, os.X_OK)), None)


def gfid_tag(gfid) -> str:
    return f"{GFID_TAG}:{uuid.UUID(bytes=bytes(gfid))}"


# --------------------------------------------------------------------------
# What LVM reports


@dataclass(frozen=True)
class PhysicalVolume:
    name: str
    uuid: str
    pe_start: int           # bytes from the device start to extent 0
    missing: bool = False


@dataclass(frozen=True)
class Segment:
    """Extents [start_extent, start_extent + extents) of an LV.  `areas`
    are (pv name, first physical extent) per stripe; linear is one stripe."""

    start_extent: int
    extents: int
    segtype: str
    areas: tuple[tuple[str, int], ...]
    stripe_size: int = 0    # bytes, for striped segments of 2+ stripes


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    uuid: str
    size: int
    attr: str
    role: str
    tags: tuple[str, ...]
    origin: str
    pool: str
    segments: tuple[Segment, ...]
    origin_size: int = 0    # a snapshot's size: its origin's when it was taken
    chunk_size: int = 0     # a snapshot's copy-on-write chunk, bytes

    @property
    def visible_size(self) -> int:
        """The bytes a reader sees: a snapshot's `size` is its COW store's."""
        return self.origin_size if self.snapshot and self.origin_size else self.size

    @property
    def public(self) -> bool:
        """A volume users address (not a pool, its data or metadata, an
        image or a log)."""
        return "public" in self.role.split(",") and self.attr[:1] not in ("t", "T", "d",
                                                                           "D", "e")

    @property
    def thin(self) -> bool:
        return self.attr[:1] == "V" or any(s.segtype == "thin" for s in self.segments)

    @property
    def thin_pool(self) -> bool:
        return self.attr[:1] == "t" or any(s.segtype == "thin-pool" for s in self.segments)

    @property
    def snapshot(self) -> bool:
        return bool(self.origin)

    @property
    def has_snapshots(self) -> bool:
        """The origin of (old-style) snapshots: attr 'o', or 'O' merging."""
        return self.attr[:1] in ("o", "O")

    @property
    def gfid(self) -> bytes | None:
        """The gfid this LV's tag records, if any."""
        for tag in self.tags:
            if tag.startswith(GFID_TAG + ":"):
                try:
                    return uuid.UUID(tag[len(GFID_TAG) + 1:]).bytes
                except ValueError:
                    return None
        return None

    @property
    def mappable(self) -> bool:
        """Its bytes can be found without device-mapper: every segment is
        linear or striped over physical volumes, and it is no copy-on-write
        snapshot (whose segments hold the exception store, not its data)."""
        return not self.snapshot and bool(self.segments) and all(
            s.segtype in ("linear", "striped") for s in self.segments)


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    uuid: str
    size: int
    free: int
    extent_size: int
    free_extents: int
    tags: tuple[str, ...]
    seqno: int
    pvs: dict[str, PhysicalVolume] = field(default_factory=dict)
    lvs: dict[str, LogicalVolume] = field(default_factory=dict)

    def snapshots_of(self, name: str) -> list[str]:
        return sorted(lv.name for lv in self.lvs.values() if lv.origin == name)

    @property
    def thin_pools(self) -> list[str]:
        return sorted(lv.name for lv in self.lvs.values() if lv.thin_pool)

    def tag_value(self, key: str) -> str | None:
        for tag in self.tags:
            if tag.startswith(key + ":"):
                return tag[len(key) + 1:]
        return None


_REPORT_FIELDS = (
    ("vg", "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,vg_free_count,vg_tags,vg_seqno"),
    ("pv", "pv_name,pv_uuid,pe_start,pv_missing"),
    ("lv", "lv_uuid"),
    ("pvseg", "pvseg_start"),
    ("seg", "lv_name,lv_uuid,lv_size,lv_attr,lv_role,lv_tags,origin,pool_lv,segtype,"
            "seg_start_pe,seg_size_pe,seg_pe_ranges,devices,stripes,stripe_size,origin_size,"
            "chunk_size"),
)


def parse_report(text: str, vg_name: str) -> VolumeGroup:
    """A VolumeGroup from `lvm fullreport --reportformat json --units b
    --nosuffix` restricted to _REPORT_FIELDS."""
    reports = json.loads(text)["report"]
    if not reports or not reports[0].get("vg"):
        raise LvmError(errno.ENOENT, f"Volume group \"{vg_name}\" not found", "fullreport")
    rep = reports[0]
    v = rep["vg"][0]
    pvs = {p["pv_name"]: PhysicalVolume(p["pv_name"], p["pv_uuid"], int(p["pe_start"] or 0),
                                        bool(p.get("pv_missing")))
           for p in rep.get("pv", []) if p.get("pv_name")}
    by_lv: dict[str, list[dict]] = {}
    for seg in rep.get("seg", []):
        by_lv.setdefault(seg["lv_name"], []).append(seg)
    lvs = {}
    for name, segs in by_lv.items():
        first = segs[0]
        segments = tuple(sorted((_parse_segment(s) for s in segs),
                                key=lambda s: s.start_extent))
        lvs[name] = LogicalVolume(
            name=name, uuid=first["lv_uuid"], size=int(first["lv_size"] or 0),
            attr=first["lv_attr"], role=first.get("lv_role", ""),
            tags=tuple(t for t in first.get("lv_tags", "").split(",") if t),
            origin=first.get("origin", ""), pool=first.get("pool_lv", ""), segments=segments,
            origin_size=int(first.get("origin_size") or 0),
            chunk_size=max(int(s.get("chunk_size") or 0) for s in segs))
    return VolumeGroup(name=v["vg_name"], uuid=v["vg_uuid"], size=int(v["vg_size"]),
                       free=int(v["vg_free"]), extent_size=int(v["vg_extent_size"]),
                       free_extents=int(v["vg_free_count"]),
                       tags=tuple(t for t in v.get("vg_tags", "").split(",") if t),
                       seqno=int(v.get("vg_seqno") or 0), pvs=pvs, lvs=lvs)


def _parse_segment(s: dict) -> Segment:
    areas = []
    # seg_pe_ranges: "PV:first-last" per stripe, space-separated; a PV name
    # may itself hold colons (/dev/disk/by-path/pci-0000:00:...)
    for item in (s.get("seg_pe_ranges") or "").split():
        pv, _, span = item.rpartition(":")
        first = span.split("-", 1)[0]
        if pv and first.isdigit():
            areas.append((pv, int(first)))
    return Segment(start_extent=int(s["seg_start_pe"] or 0), extents=int(s["seg_size_pe"] or 0),
                   segtype=s.get("segtype", ""), areas=tuple(areas),
                   stripe_size=int(s.get("stripe_size") or 0))


# --------------------------------------------------------------------------
# Running lvm2


class Lvm:
    """lvm2's commands, for one set of devices.

    `devices` restricts LVM to those device paths (a devices filter, and no
    devices file), so it never scans or touches anything else; `config` is
    more lvm.conf text for `--config`.  Activation is off when the kernel
    has no device-mapper (`dm` False).  Every method blocks while lvm runs
    (tens of milliseconds): trio callers run them in a worker thread.
    """

    def __init__(self, *, devices: Sequence[str] = (), config: str = "",
                 dm: bool | None = None, binary: str | None = None):
        self.binary = binary or find_lvm()
        if self.binary is None:
            raise LvmError(errno.ENOENT, "lvm2 is not installed (no 'lvm' binary)", "lvm")
        self.dm = device_mapper_available() if dm is None else dm
        self.devices = tuple(devices)
        parts = []
        if not self.dm:
            parts.append("global{activation=0}")
        if self.devices:
            accept = ",".join(f'"a|^{re.escape(d)}$|"' for d in self.devices)
            rules = f'[{accept},"r|.*|"]'
            parts.append(f"devices{{filter={rules} global_filter={rules} use_devicesfile=0 "
                         f"obtain_device_list_from_udev=0}}")
        if config:
            parts.append(config)
        self.config = " ".join(parts)
        env = dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1", LC_ALL="C")
        self._lvm = sh.Command(self.binary).bake(_env=env, _tty_out=False, _return_cmd=True)

    def run(self, command: str, *args: str) -> str:
        """`lvm COMMAND --config ... ARGS`; its stdout, or LvmError."""
        argv = [command, *(["--config", self.config] if self.config else []), *args]
        log.debug("lvm %s %s", command, " ".join(args))
        try:
            return str(self._lvm(*argv))
        except sh.ErrorReturnCode as e:
            raise lvm_error(command, e.stderr.decode(errors="replace")) from None

    def report(self, vg: str) -> VolumeGroup:
        args = ["--reportformat", "json", "--units", "b", "--nosuffix"]
        for kind, fields in _REPORT_FIELDS:
            args += ["--configreport", kind, "-o", fields]
        return parse_report(self.run("fullreport", *args, vg), vg)

    def lvcreate(self, vg: str, name: str, extents: int, *, tags: Iterable[str] = (),
                 thin_pool: str | None = None, extent_size: int = 0) -> None:
        """A linear LV of `extents` extents, or with `thin_pool` a thin LV of
        extents * extent_size bytes in it."""
        tag_args = [a for t in tags for a in ("--addtag", t)]
        if thin_pool:
            self.run("lvcreate", "--yes", "-n", name, "-V", f"{extents * extent_size}b",
                     "--thinpool", f"{vg}/{thin_pool}", *tag_args)
        else:
            self.run("lvcreate", "--yes", "-n", name, "-l", str(extents), *tag_args, vg)

    def lvresize(self, vg: str, name: str, extents: int, *, thin: bool = False,
                 extent_size: int = 0) -> None:
        """Grow or shrink to exactly `extents` (a thin LV: that many bytes
        of extents); -f: bd has already decided whether data may go."""
        size = ["-L", f"{extents * extent_size}b"] if thin else ["-l", str(extents)]
        self.run("lvresize", "-f", *size, f"{vg}/{name}")

    def lvremove(self, vg: str, name: str) -> None:
        self.run("lvremove", "-f", f"{vg}/{name}")

    def lvrename(self, vg: str, old: str, new: str) -> None:
        self.run("lvrename", vg, old, new)

    def snapshot(self, vg: str, origin: str, name: str, *, extents: int | None,
                 tags: Iterable[str] = ()) -> None:
        """`lvcreate -s`: a copy-on-write snapshot of `extents` extents, or
        (extents None) a thin snapshot of a thin origin, activated (-kn)."""
        tag_args = [a for t in tags for a in ("--addtag", t)]
        size = ["-l", str(extents)] if extents is not None else ["-kn"]
        self.run("lvcreate", "--yes", "-s", *size, "-n", name, *tag_args, f"{vg}/{origin}")

    def convert_to_snapshot(self, vg: str, origin: str, cow: str, chunk_size: int) -> None:
        """`lvconvert -s`: LV `cow` becomes the COW store of a snapshot of
        `origin` with `chunk_size`-byte chunks.  Unlike `lvcreate -s` it
        works with activation off; --zero n: the caller has written the
        store's header already (lvcreate would zero its start)."""
        self.run("lvconvert", "--yes", "-s", "-c", f"{chunk_size // 1024}k", "--zero", "n",
                 f"{vg}/{origin}", f"{vg}/{cow}")

    def activate(self, vg: str, name: str) -> None:
        self.run("lvchange", "-ay", "-K", f"{vg}/{name}")

    def lv_tags(self, vg: str, name: str, *, add: Iterable[str] = (),
                remove: Iterable[str] = ()) -> None:
        args = [a for t in add for a in ("--addtag", t)] + \
            [a for t in remove for a in ("--deltag", t)]
        if args:
            self.run("lvchange", *args, f"{vg}/{name}")

    def vg_tags(self, vg: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        args = [a for t in add for a in ("--addtag", t)] + \
            [a for t in remove for a in ("--deltag", t)]
        if args:
            self.run("vgchange", *args, vg)


# --------------------------------------------------------------------------
# Where the bytes are


class Devices:
    """The block devices an ExtentMap reads and writes, opened once each."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            self._fds[path] = fd
        return fd

    def forget(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


@dataclass(frozen=True)
class _Run:
    """LV bytes [start, start + length) on devices: one area (linear) or
    `stripe_size` units dealt round-robin over several (striped)."""

    start: int
    length: int
    areas: tuple[tuple[int, int], ...]     # (fd, byte offset of the area)
    stripe_size: int = 0


class ExtentMap:
    """An LV's bytes, read and written with pread/pwrite on its devices.

    Immutable: a resize builds a new map.  `size` is the LV's size; reads
    stop there, and writes must stay below it (the caller grows the LV).
    A `read_only` map refuses writes with EROFS (the origin of a snapshot
    without device-mapper: nothing would copy the old data aside).
    """

    def __init__(self, size: int, runs: Sequence[_Run], read_only: str = ""):
        self.size = size
        self.read_only = read_only
        self._runs = tuple(runs)
        self._starts = [r.start for r in self._runs]
        self.fds = tuple(sorted({fd for r in self._runs for fd, _ in r.areas}))

    @classmethod
    def for_device(cls, fd: int, size: int) -> "ExtentMap":
        """The LV's own device node (the kernel maps it)."""
        return cls(size, [_Run(0, size, ((fd, 0),))] if size else [])

    @classmethod
    def for_lv(cls, lv: LogicalVolume, vg: VolumeGroup, devices: Devices, *,
               raw: bool = False) -> "ExtentMap":
        """The user-space mapping: each segment's extents on its PVs.
        `raw`: the LV's own extents whatever it is - a snapshot's COW
        store, an origin written without copying (glusterpy.bd_snapshot
        builds the snapshot's and the origin's maps on these)."""
        ext = vg.extent_size
        runs = []
        if lv.snapshot and not raw:
            raise LvmError(errno.ENOTSUP, f"{vg.name}/{lv.name} is a snapshot of {lv.origin}: "
                                          f"its blocks are copy-on-write exceptions, read "
                                          f"through device-mapper", "map")
        for seg in lv.segments:
            if seg.segtype not in ("linear", "striped") or not seg.areas:
                raise LvmError(errno.ENOTSUP, f"{vg.name}/{lv.name}: a {seg.segtype or 'unknown'}"
                                              f" segment cannot be mapped without device-mapper",
                               "map")
            areas = []
            for pv_name, first_pe in seg.areas:
                pv = vg.pvs.get(pv_name)
                if pv is None or pv.missing:
                    raise LvmError(errno.EIO, f"{vg.name}/{lv.name}: physical volume "
                                              f"{pv_name} is missing", "map")
                areas.append((devices.fd(pv.name), pv.pe_start + first_pe * ext))
            start, length = seg.start_extent * ext, seg.extents * ext
            if len(areas) == 1:
                runs.append(_Run(start, length, tuple(areas)))
            else:
                if not seg.stripe_size:
                    raise LvmError(errno.EIO, f"{vg.name}/{lv.name}: striped segment "
                                              f"without a stripe size", "map")
                runs.append(_Run(start, length, tuple(areas), seg.stripe_size))
        size = sum(r.length for r in runs)
        if size != lv.size:
            raise LvmError(errno.EIO, f"{vg.name}/{lv.name}: segments cover {size} bytes "
                                      f"of {lv.size}", "map")
        read_only = f"{vg.name}/{lv.name} has snapshots and writing it without " \
                    f"device-mapper would not copy old data to them" \
            if lv.has_snapshots and not raw else ""
        return cls(size, runs, read_only)

    def truncated(self, size: int) -> "ExtentMap":
        """The first `size` bytes only (installed before an LV shrinks, so
        no IO reaches extents about to be freed)."""
        runs = []
        for r in self._runs:
            if r.start >= size:
                break
            runs.append(_Run(r.start, min(r.length, size - r.start), r.areas, r.stripe_size))
        return ExtentMap(min(size, self.size), runs, self.read_only)

    def pieces(self, offset: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(fd, device offset, bytes) for LV bytes [offset, offset+length),
        in order; stops at the LV's end."""
        end = min(offset + length, self.size)
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while offset < end and i < len(self._runs):
            run = self._runs[i]
            if offset >= run.start + run.length:
                i += 1
                continue
            within = offset - run.start
            limit = min(end, run.start + run.length) - offset
            if run.stripe_size:
                unit, count = run.stripe_size, len(run.areas)
                index, into = divmod(within, unit)
                row, stripe = divmod(index, count)
                fd, base = run.areas[stripe]
                n = min(limit, unit - into)
                yield fd, base + row * unit + into, n
            else:
                fd, base = run.areas[0]
                n = limit
                yield fd, base + within, n
            offset += n

    def _linear_at(self, offset: int, end: int) -> tuple[int, int] | None:
        """(fd, device offset) when LV bytes [offset, end) lie in one linear
        run - the usual case, served by one syscall without the generator."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i < 0:
            return None
        run = self._runs[i]
        if run.stripe_size or end > run.start + run.length:
            return None
        fd, base = run.areas[0]
        return fd, base + offset - run.start

    def pread(self, size: int, offset: int):
        """Up to `size` bytes at `offset` (short at the LV's end)."""
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        direct = self._linear_at(offset, end)
        if direct is not None:
            data = os.pread(direct[0], end - offset, direct[1])
            if len(data) != end - offset:
                raise OSError(errno.EIO, "short read from a physical volume")
            return data
        pieces = list(self.pieces(offset, end - offset))
        if len(pieces) == 1:
            fd, at, n = pieces[0]
            data = os.pread(fd, n, at)
            if len(data) != n:
                raise OSError(errno.EIO, "short read from a physical volume")
            return data
        buf = bytearray(end - offset)
        view = memoryview(buf)
        pos = 0
        for fd, at, n in pieces:
            if os.preadv(fd, [view[pos:pos + n]], at) != n:
                raise OSError(errno.EIO, "short read from a physical volume")
            pos += n
        return buf

    def pwrite(self, data, offset: int) -> int:
        """Write a buffer or a list of buffers at `offset`; all of it must
        lie within the LV."""
        if self.read_only:
            raise OSError(errno.EROFS, self.read_only)
        if not isinstance(data, (list, tuple)):
            n = memoryview(data).nbytes
            direct = self._linear_at(offset, offset + n) if offset + n <= self.size else None
            if direct is not None and os.pwrite(direct[0], data, direct[1]) == n:
                return n     # (a short pwrite falls through and finishes below)
        bufs = data if isinstance(data, (list, tuple)) else (data,)
        total = 0
        for buf in bufs:
            view = memoryview(buf).cast("B")
            if offset + total + len(view) > self.size:
                raise OSError(errno.ENOSPC, "write beyond the end of the logical volume")
            pos = 0
            for fd, at, n in self.pieces(offset + total, len(view)):
                done = 0
                while done < n:
                    w = os.pwrite(fd, view[pos + done:pos + n], at + done)
                    if w <= 0:
                        raise OSError(errno.EIO, "short write to a physical volume")
                    done += w
                pos += n
            total += len(view)
        return total

    def zero(self, offset: int, length: int) -> None:
        """Zero LV bytes [offset, offset+length): BLKZEROOUT for the aligned
        middle of each piece (the device may offload it: a loop device
        punches or zeroes a range of its file), pwrite for the rest."""
        if self.read_only:
            raise OSError(errno.EROFS, self.read_only)
        for fd, at, n in list(self.pieces(offset, length)):
            head = min(n, (-at) % 512)
            if head:
                _write_zeros(fd, at, head)
            body = (n - head) // 512 * 512
            if body:
                try:
                    fcntl.ioctl(fd, BLKZEROOUT, struct.pack("QQ", at + head, body))
                except OSError as e:
                    if e.errno not in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    _write_zeros(fd, at + head, body)
            tail = n - head - body
            if tail:
                _write_zeros(fd, at + head + body, tail)

    def sync(self, datasync: bool = True) -> None:
        for fd in self.fds:
            (os.fdatasync if datasync else os.fsync)(fd)


_ZEROS = bytes(1 << 20)


def _write_zeros(fd: int, at: int, length: int) -> None:
    done = 0
    while done < length:
        n = os.pwrite(fd, memoryview(_ZEROS)[:min(len(_ZEROS), length - done)], at + done)
        if n <= 0:
            raise OSError(errno.EIO, "short write to a physical volume")
        done += n


def extents_for(size: int, extent_size: int) -> int:
    return max(1, math.ceil(size / extent_size))
