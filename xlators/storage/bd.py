"""storage/bd: an LVM volume group served as a directory, its logical volumes as files.

VM images get LVM's speed, snapshots and thin provisioning and stay files
to everything above: protocol/server, gfapi, QEMU's `gluster://`, a mount.
GlusterFS had this translator until release-3.12 and then dropped it; this
one follows it where the seed's mapping allows and says where it departs.

    volume vm-posix                  # the companion metadata directory
        type storage/posix
        option directory /var/lib/glusterpy/bd/vg0
    end-volume
    volume vm-bd
        type storage/bd
        option export vg0            # the volume group
        option device lv
        subvolumes vm-posix
    end-volume

The seed's mapping of fops onto LVM:

* create (and mknod of a regular file) names a new LV.  LVM cannot make an
  LV of size 0, so a just-created file is a name without an LV yet: its
  size is 0, it reads as empty, `lvs` does not list it.  The following
  truncate (ftruncate, setattr with a size, fallocate, or a write) creates
  the LV, its size rounded up to whole extents of the VG.
* truncate resizes the LV (lvresize).  Sizes are always whole extents, so
  stat answers the LV's size - truncate -s 10M on 4 MiB extents gives 12 MiB,
  as GlusterFS's bd_adjust_size rounded.  Shrinking the LV below the data
  written to it is refused (EPERM) unless forced: xdata `glusterfs.bd.force`
  on the truncate, or the option `force-shrink` for a whole volume (a mount
  cannot send xdata).  Truncate to 0 removes the LV: the file is then a
  name without an LV again.  A truncate that keeps the LV's extents (10 MiB
  to 9 MiB on 4 MiB extents) changes nothing.
* a write past the end grows the LV to cover it (option `extend-on-write`;
  off: ENOSPC, as the device would answer).  QEMU's qcow2 grows its image
  file by writing past its end, so this is what makes qcow2 work here.
* link is a full clone: a new LV of the source's size and a block copy of
  the source's written data, taken while writers of the source go on (the
  copy runs chunk by chunk; the source cannot be resized or removed during
  it).  The clone is a new file with its own gfid (replies say so), the
  source's mode and owner; xattrs are not copied.
* symlink is a linked clone: an LVM snapshot of the LV the link target
  names (its last path component, an LV of this VG) - a thin snapshot when
  the origin is thin, else a copy-on-write snapshot of xdata
  `glusterfs.bd.snapshot-size` bytes or the option `snapshot-size`.
  Snapshots need device-mapper in the kernel: without it symlink answers
  ENOTSUP and says so, and creates nothing.  The snapshot is a regular file.
* unlink removes the LV (lvremove), refused with EBUSY while the LV has
  snapshots.  An LV unlinked while open is renamed `glusterpy_unlinked_<gfid>`
  and removed at its last close (or at the next start), as posix keeps
  unlinked open files in .glusterfs/unlink.
* rename renames the LV (lvrename); a replaced file's LV is removed.
* readdir lists the LVs: at the start of every listing of the root, LVs
  created outside glusterpy are adopted (they get a metadata file, with the
  gfid their `trusted.gfid:<uuid>` tag records, if any), and files whose LV
  vanished outside become files without an LV (with a warning) - GlusterFS's
  bd dropped such a "mapping" the same way.  Thin pools and LVM's internal
  volumes are not files.
* stat answers the LV's size (and blocks); statfs answers the VG's size and
  free space (vgs), in 4 KiB blocks, with the metadata directory's inodes
  and LVM's name limit.
* mkdir answers ENOTSUP: a VG's LVs are one flat namespace, as the original
  BD translator exported them.  Special files (mknod of a FIFO, a device)
  are ENOTSUP too.  LV names follow LVM's rules (a-z A-Z 0-9 + _ . -, no
  leading hyphen, no reserved name or part, "VG/LV" within 127 bytes); any
  other name is EINVAL before anything is created.

Where the metadata lives.  LVM holds only names, sizes and tags.  Like
GlusterFS's bd, this translator keeps the rest - gfid, mode, owner, times,
xattrs - on a file of the same name in its child, storage/posix, on the
companion directory: `user.glusterfs.bd` = "lv:<bytes>" marks a file that
has its LV (as in GlusterFS), `trusted.glusterfs.bd.written` records how far
data was written (for the shrink rule), and every LV carries the tag
`trusted.gfid:<uuid>`.  The companion directory is bound to the VG's uuid
(`trusted.glusterfs.bd.vg-uuid` on its root) and refuses another VG.  Writes
move a file's mtime in memory; flush, fsync, release and truncate store it.

Where the data goes.  With device-mapper, IO goes to the LV's device node
(/dev/VG/LV).  Without it - as on a kernel built without - LVM runs with
activation off and IO goes through a user-space mapping of the LV's
segments onto its physical volumes, read from LVM's own metadata
(`glusterpy.bd.ExtentMap`): each read and write becomes preads and pwrites
on the PVs.  Linear and striped segments are mapped.  What only the kernel
can serve is refused, and says so: a thin LV (its blocks live in the
pool's btree) is listed but opening, resizing or removing it answers
ENOTSUP; so does opening a copy-on-write snapshot (its segments hold the
exception store), and the origin of one reads but answers EROFS to writes
(nothing would copy the old data aside).  Without device-mapper thin pools
are not used (a warning says so) and new files are linear LVs; with it and
a thin pool in the VG (the first one, or option `thin-pool`) new files are
thin LVs, as GlusterFS offered them.  New extents are zeroed (option `zero-new-extents`, with
BLKZEROOUT, which a loop device or an SSD does without writing), so a new
or grown file reads zeros as a file does; discard and zerofill zero their
range the same way (GlusterFS's discard sent BLKDISCARD, whose data
afterwards the device decides).

One process per VG: init takes a lock named after the VG's uuid (and
fails with EBUSY when another graph serves it), because an LV's mapping and
its written-data mark are held in memory, as GlusterFS runs one brick
process per brick.  Every lvm2 command runs in a worker thread, so fops do
suspend; per-file locks keep a resize, a clone copy and an unlink of one
file apart, and one lock per VG orders LVM's changes.  With `bd-aio` on
(GlusterFS's option for its Linux AIO path) reads and writes run in worker
threads too, so a slow device never stalls the brick.

Departures from GlusterFS's bd, beyond the mapping above: LVs are named by
their file name, not their gfid (the seed's mapping: the VG's LVs are the
files); GlusterFS's setxattr interface for clone, snapshot and merge is
replaced by link and symlink, but setting `user.glusterfs.bd` = "lv:SIZE"
on a file without an LV still creates it; `volume.type`, `volume.caps`,
`list-origin` answer as they did, and `glusterfs.bd.vg` names the VG.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import operator
import os
import stat
import tempfile
import time
import zlib

import trio

from glusterpy import bd as lvm
from glusterpy import fops
from glusterpy.bd import LvmError
from glusterpy.fops import (GFID, ROOT_GFID, ChecksumReply, CopyRangeReply, DictReply,
                            DirReply, EntryReply, FopError, Iatt, Loc, PrePostReply, ReadReply,
                            Reply, SeekReply, StatfsReply, Statvfs, UInt, WriteReply)
from glusterpy.keys import CONTENT_KEY, GET_SIZE, GFID_REQ
from glusterpy.options import Option, OptionError, OptionType, PercentOrSize
from glusterpy.xlator import Translator

# --------------------------------------------------------------------------
# Options: GlusterFS's three (export, device, bd-aio), then glusterpy's

OPTIONS = (
    Option("export", OptionType.STR, None,
           "The LVM volume group this brick serves; its LVs are the files.",
           reconfigurable=False),
    Option("device", OptionType.ENUM, "vg",
           "The backend: the LVs of a volume group ('lv', the issue's name, and 'vg', "
           "what GlusterFS's volgen wrote, both mean that).", choices=("vg", "lv"),
           reconfigurable=False),
    Option("bd-aio", OptionType.BOOL, "off",
           "Run reads and writes in worker threads, so a slow device never stalls the "
           "brick (GlusterFS: native Linux AIO).", set_keys=("storage.bd-aio",)),
    Option("volume-id", OptionType.STR, None,
           "The volume's UUID: the VG must carry the tag "
           "trusted.glusterfs.volume-id:<uuid> (a VG without one gets it).",
           reconfigurable=False),
    Option("lvm-devices", OptionType.LIST, None,
           "Block devices LVM may scan and use (a devices filter); empty: LVM's own "
           "configuration decides.", reconfigurable=False),
    Option("lvm-config", OptionType.STR, None,
           "More lvm.conf settings passed with --config to every LVM command.",
           reconfigurable=False),
    Option("thin-pool", OptionType.STR, None,
           "The thin pool new files are made in (needs device-mapper); default: the "
           "VG's first thin pool, as GlusterFS chose.", reconfigurable=False),
    Option("extend-on-write", OptionType.BOOL, "on",
           "A write past a file's end grows its LV (off: ENOSPC, as a device answers)."),
    Option("zero-new-extents", OptionType.BOOL, "on",
           "Zero the extents an LV gets, so new and grown files read zeros (off: they "
           "hold whatever the extents held, as plain LVM leaves them)."),
    Option("snapshot-size", OptionType.PERCENT_OR_SIZE, "20%",
           "Copy-on-write space of a snapshot made by symlink without xdata "
           "glusterfs.bd.snapshot-size: a share of the origin's size, or bytes."),
    Option("force-shrink", OptionType.BOOL, "off",
           "Let truncate shrink an LV below the data written to it without xdata "
           "glusterfs.bd.force."),
)

# --------------------------------------------------------------------------
# Numbers and names

STATFS_BLOCK = 4096
#: the on-disk written mark is rounded up to this, so sequential writes
#: store it once per MiB; the exact mark is stored at flush and release
WRITTEN_GRANULE = 1 << 20
#: a clone copies this much between checkpoints
COPY_CHUNK = 1 << 20
#: a lookup that misses re-reads LVM at most this often (seconds)
LVM_RESCAN_INTERVAL = 1.0
ADOPTED_MODE = 0o600                 # an LV's device node is not world-readable either
_FALLOC_KEEP_SIZE, _FALLOC_PUNCH_HOLE, _FALLOC_ZERO_RANGE = 0x01, 0x02, 0x10
_GF_SEEK_DATA, _GF_SEEK_HOLE = 0, 1


class _Image:
    """What this translator knows of one file (one LV, or a name without)."""

    __slots__ = ("gfid", "name", "sized", "thin", "lv", "map", "unmappable", "written",
                 "written_disk", "lock", "openfds", "iatt", "mtime_ns", "unlinked",
                 "unlinked_lv", "io_active", "io_idle")

    def __init__(self, gfid: GFID, name: str):
        self.gfid = gfid
        self.name = name
        self.sized = False             # the file has its LV
        self.thin = False
        self.lv: lvm.LogicalVolume | None = None
        self.map: lvm.ExtentMap | None = None
        self.unmappable = ""           # why the LV's bytes cannot be reached
        self.written = 0               # high-water mark of written data
        self.written_disk = 0          # what WRITTEN_XATTR says (>= written)
        self.lock = trio.Lock()        # resize, clone copy, unlink, rename
        self.openfds = 0
        self.iatt: Iatt | None = None  # the metadata file's, last seen
        self.mtime_ns = 0              # a write's time, not yet stored
        self.unlinked = False          # its name is gone; open fds keep it
        self.unlinked_lv: str | None = None
        self.io_active = 0
        self.io_idle: trio.Event | None = None

    @property
    def size(self) -> int:
        return self.map.size if self.map is not None else (
            self.lv.size if self.sized and self.lv is not None else 0)

    @property
    def lv_name(self) -> str:
        return self.unlinked_lv or self.name

    @property
    def hidden_lv_name(self) -> str:
        """Its LV's name once unlinked while open."""
        return lvm.UNLINKED_PREFIX + self.gfid.hex()


class _Open:
    __slots__ = ("image", "flags")

    def __init__(self, image: _Image, flags: int):
        self.image = image
        self.flags = flags


def _fop_errors(fn):
    """LvmError and OSError from the LVM helpers become FopError with their
    errno, keeping LVM's message."""
    @functools.wraps(fn)
    async def fop(self, *args, **kwargs):
        try:
            return await fn(self, *args, **kwargs)
        except LvmError as e:
            raise FopError(e.errno, f"{self.name}: {e}") from None
        except FopError:
            raise
        except OSError as e:
            raise FopError(e.errno or errno.EIO, f"{self.name}: {e.strerror or e}") from None
    return fop


class BD(Translator):
    """storage/bd: see the module docstring."""

    OPTIONS = OPTIONS
    CHILDREN = (1, 1)   # storage/posix on the companion metadata directory

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        if not self.opts.export:
            raise OptionError("export", "option 'export' is required (the volume group "
                                        "to serve)")
        self.vgname = self.opts.export.strip().lstrip("/")
        if not self.vgname or "/" in self.vgname:
            raise OptionError("export", f"option 'export': {self.opts.export!r} is not a "
                                        f"volume group name")
        self.lvm: lvm.Lvm | None = None
        self._vg: lvm.VolumeGroup | None = None
        self._vg_time = float("-inf")
        self._vg_lock = trio.Lock()
        self._images: dict[GFID, _Image] = {}
        self._names: dict[str, GFID] = {}
        self._pending: set[str] = set()       # LV names being made by a clone/snapshot
        self._devices = lvm.Devices()
        self._lockfd = -1
        self._pool: str | None = None

    # -- life cycle ------------------------------------------------------

    async def init(self) -> None:
        """bd_init/bd_scan_vg: find the VG (a missing VG fails with a clear
        message), take the VG's lock, check its volume-id tag, bind the
        metadata directory, choose the thin pool, then match the VG's LVs
        and the metadata directory's files."""
        try:
            self.lvm = lvm.Lvm(devices=self.opts.lvm_devices or (),
                               config=self.opts.lvm_config or "")
        except LvmError as e:
            raise FopError(e.errno, f"{self.name}: {e.strerror}") from None
        try:
            self._vg = await self._lvm_call(self.lvm.report, self.vgname)
        except LvmError as e:
            if e.errno == errno.ENOENT:
                raise FopError(errno.ENOENT, f"{self.name}: volume group '{self.vgname}' "
                                             f"does not exist (option export): "
                                             f"{e.strerror}") from None
            raise FopError(e.errno, f"{self.name}: volume group '{self.vgname}': "
                                    f"{e.strerror}") from None
        self._vg_time = trio.current_time()
        self._take_vg_lock()
        try:
            await self._check_volume_id()
            await self._bind_companion()
            self._choose_pool()
            await self._reconcile(initial=True)
        except BaseException as e:
            self._release_vg_lock()
            self._devices.close()
            if isinstance(e, LvmError):
                raise FopError(e.errno, f"{self.name}: {e}") from None
            raise
        mode = "device-mapper" if self.lvm.dm else \
            "no device-mapper: LVM without activation, IO through the extent map"
        self.log.info("serving volume group %s (%d LVs, %s)", self.vgname,
                      sum(1 for i in self._images.values() if i.sized), mode)

    async def fini(self) -> None:
        for img in list(self._images.values()):
            with contextlib.suppress(FopError, OSError):
                await self._store_meta(img)
        self._devices.close()
        self._release_vg_lock()

    def dump_state(self) -> dict:
        return {"vg": self.vgname, "device-mapper": bool(self.lvm and self.lvm.dm),
                "thin-pool": self._pool or "",
                "files": {i.name: {"size": i.size, "written": i.written, "open": i.openfds,
                                   "lv": i.lv_name if i.sized else ""}
                          for i in self._images.values()}}

    # -- entry fops -------------------------------------------------------

    @_fop_errors
    async def lookup(self, loc, xdata=None):
        """posix's lookup with the LV's size; an LV created outside
        glusterpy is adopted when first looked up.  quick-read's content
        request is not passed on: the metadata file holds no data."""
        req = xdata
        if xdata and CONTENT_KEY in xdata:
            req = {k: v for k, v in xdata.items() if k != CONTENT_KEY}
        try:
            reply = await self.first_child.lookup(loc, req)
        except FopError as e:
            name = self._root_name(loc)
            if e.errno != errno.ENOENT or name is None or not await self._adopt_named(name):
                raise
            reply = await self.first_child.lookup(loc, req)
        ia = reply.iatt
        name = self._root_name(loc)
        if ia.is_reg and name is not None and ia.gfid not in self._images:
            self._register(ia.gfid, name)   # a file put into the directory by hand
        self._fix(reply)
        img = self._images.get(ia.gfid)
        if img is not None and reply.xdata and GET_SIZE in reply.xdata:
            reply.xdata[GET_SIZE] = UInt(img.size)
        return reply

    @_fop_errors
    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        """A new LV name (no LV until it is given a size); without O_EXCL an
        existing file is opened, O_TRUNC then truncates it (the shrink rule
        applies)."""
        name = self._new_name(loc)
        async with self._vg_lock:
            if name in self._pending:
                raise FopError(errno.EEXIST)
            if name not in self._names and name in self._vg.lvs:
                await self._adopt(self._vg.lvs[name])
            reply = await self.first_child.create(loc, flags & ~os.O_TRUNC, mode, umask, fd,
                                                  xdata)
            img = self._images.get(reply.iatt.gfid) or self._register(reply.iatt.gfid, name)
        img.iatt = reply.iatt
        await self._open_image(img, fd, flags, xdata)
        return self._fix(reply)

    @_fop_errors
    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        """A regular file is a new LV name, as create; other types are not
        LVs (ENOTSUP)."""
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise FopError(errno.ENOTSUP, f"{self.name}: only regular files (LVs) live in "
                                          f"a volume group")
        name = self._new_name(loc)
        async with self._vg_lock:
            if name in self._vg.lvs or name in self._pending:
                raise FopError(errno.EEXIST, f"{self.name}: LV {self.vgname}/{name} exists")
            reply = await self.first_child.mknod(loc, mode, rdev, umask, xdata)
            self._register(reply.iatt.gfid, name).iatt = reply.iatt
        return self._fix(reply)

    async def mkdir(self, loc, mode, umask, xdata=None):
        raise FopError(errno.ENOTSUP, f"{self.name}: a volume group has no directories: "
                                      f"its LVs are one flat namespace")

    @_fop_errors
    async def symlink(self, linkname, loc, umask, xdata=None):
        """A linked clone: an LVM snapshot of the LV `linkname` names."""
        name = self._new_name(loc)
        origin_name = (linkname or "").rstrip("/").rpartition("/")[2]
        if name in self._names or name in self._vg.lvs or name in self._pending:
            raise FopError(errno.EEXIST)
        origin = self._images.get(self._names.get(origin_name)) if origin_name else None
        if origin is None:
            raise FopError(errno.ENOENT, f"{self.name}: snapshot origin {linkname!r} is not "
                                         f"an LV of {self.vgname}")
        if not self.lvm.dm:
            raise FopError(errno.ENOTSUP, f"{self.name}: LVM snapshots need the kernel's "
                                          f"device-mapper, which this kernel lacks (no "
                                          f"device-mapper in /proc/misc); nothing was created")
        if not origin.sized:
            raise FopError(errno.EINVAL, f"{self.name}: {origin_name} has no LV yet: "
                                         f"nothing to snapshot")
        gfid = self._gfid_req(xdata)
        async with origin.lock:
            ext = self._vg.extent_size
            extents = None
            if not origin.thin:
                extents = lvm.extents_for(self._snapshot_size(origin, xdata), ext)
            async with self._vg_lock:
                if name in self._vg.lvs or name in self._names:
                    raise FopError(errno.EEXIST)
                if extents is not None and extents > self._vg.free_extents:
                    raise FopError(errno.ENOSPC, f"{self.name}: a snapshot of {extents * ext} "
                                                 f"bytes does not fit in the VG's "
                                                 f"{self._vg.free} free bytes")
                await self._lvm_call(self.lvm.snapshot, self.vgname, origin.lv_name, name,
                                     extents=extents, tags=[lvm.gfid_tag(gfid)])
                try:
                    await self._refresh()
                    reply = await self._new_entry(loc, gfid, origin)
                    img = self._register(gfid, name)
                    img.iatt = reply.iatt
                    self._attach(img, self._vg.lvs[name], written=origin.written)
                    await self._store_bd_xattrs(img)
                except BaseException:
                    await self._undo_new(name, gfid, loc, lv=True)
                    raise
        return self._fix(reply)

    @_fop_errors
    async def link(self, oldloc, newloc, xdata=None):
        """A full clone: a new LV of the source's size, then a block copy of
        what was written to the source, chunk by chunk while its writers go
        on."""
        src = await self._image_of(oldloc)
        if src is None:
            return self._fix(await self.first_child.link(oldloc, newloc, xdata))
        name = self._new_name(newloc)
        if name in self._names or name in self._pending:
            raise FopError(errno.EEXIST)
        gfid = self._gfid_req(xdata)
        async with src.lock:
            self._check_mappable(src)
            async with self._vg_lock:
                if name in self._vg.lvs or name in self._names:
                    raise FopError(errno.EEXIST)
                if src.sized:
                    # the copy overwrites the head; only the tail is zeroed
                    await self._make_lv(name, gfid, src.size, thin=src.thin, zero=False)
                self._pending.add(name)
            try:
                if src.sized:
                    lv = self._vg.lvs[name]
                    dst_map = self._map_for(lv)
                    copied = 0
                    # the source's writers go on: copy up to its written
                    # mark as it stands at each step
                    while copied < min(src.written, src.size):
                        n = min(COPY_CHUNK, min(src.written, src.size) - copied)
                        await self._io(src, _copy_chunk, src.map, dst_map, copied, n)
                        copied += n
                        await trio.lowlevel.checkpoint()
                    if self.opts.zero_new_extents and not src.thin and copied < dst_map.size:
                        await trio.to_thread.run_sync(dst_map.zero, copied, dst_map.size - copied)
                async with self._vg_lock:
                    reply = await self._new_entry(newloc, gfid, src)
                    img = self._register(gfid, name)
                    img.iatt = reply.iatt
                    if src.sized:
                        self._attach(img, self._vg.lvs[name], written=copied)
                        await self._store_bd_xattrs(img)
            except BaseException:
                with trio.CancelScope(shield=True):
                    async with self._vg_lock:
                        await self._undo_new(name, gfid, newloc, lv=src.sized)
                raise
            finally:
                self._pending.discard(name)
        return self._fix(reply)

    @_fop_errors
    async def unlink(self, loc, xflags, xdata=None):
        """lvremove, then the metadata file; EBUSY while the LV has
        snapshots.  An open file's LV waits for its last close under a
        hidden name."""
        img = await self._image_of(loc)
        if img is None:
            return self._fix(await self.first_child.unlink(loc, xflags, xdata))
        async with img.lock:
            async with self._vg_lock:
                await self._retire_lv(img)
                reply = await self.first_child.unlink(loc, xflags, xdata)
                self._forget_name(img)
        return self._fix(reply)

    @_fop_errors
    async def rename(self, oldloc, newloc, xdata=None):
        """lvrename, then the metadata file; a file replaced at the new name
        loses its LV (EBUSY while that LV has snapshots)."""
        img = await self._image_of(oldloc)
        if img is None:
            return self._fix(await self.first_child.rename(oldloc, newloc, xdata))
        new = self._new_name(newloc)
        victim = self._images.get(self._names.get(new))
        if victim is img:
            return self._fix(await self.first_child.rename(oldloc, newloc, xdata))
        locks = sorted([img] + ([victim] if victim else []), key=lambda i: bytes(i.gfid))
        async with contextlib.AsyncExitStack() as stack:
            for held in locks:
                await stack.enter_async_context(held.lock)
            async with self._vg_lock:
                if new in self._pending or (new in self._vg.lvs and victim is None):
                    raise FopError(errno.EEXIST, f"{self.name}: LV {self.vgname}/{new} exists "
                                                 f"(made outside glusterpy)")
                if victim is not None:
                    await self._retire_lv(victim)
                old = img.name
                if img.sized:
                    await self._lvm_call(self.lvm.lvrename, self.vgname, old, new)
                    self._devices.forget(self._device_path(old))
                try:
                    reply = await self.first_child.rename(oldloc, newloc, xdata)
                except BaseException:
                    if img.sized:
                        with trio.CancelScope(shield=True), contextlib.suppress(LvmError):
                            await self._lvm_call(self.lvm.lvrename, self.vgname, new, old)
                    raise
                if victim is not None:
                    self._forget_name(victim)
                self._names.pop(old, None)
                self._names[new] = img.gfid
                img.name = new
                if img.sized:
                    await self._refresh()
        return self._fix(reply)

    # -- size ------------------------------------------------------------------

    @_fop_errors
    async def truncate(self, loc, offset, xdata=None):
        """lvresize to `offset` rounded up to extents (see the shrink rule)."""
        img = await self._image_of(loc)
        if img is None:
            return self._fix(await self.first_child.truncate(loc, offset, xdata))
        return await self._truncate(img, offset, self._forced(xdata))

    @_fop_errors
    async def ftruncate(self, fd, offset, xdata=None):
        return await self._truncate(self._image_of_fd(fd), offset, self._forced(xdata))

    @_fop_errors
    async def setattr(self, loc, stbuf, valid, xdata=None):
        """A size in `valid` resizes the LV first; the rest goes to the
        metadata file."""
        img = await self._image_of(loc) if valid & fops.SET_ATTR_SIZE else None
        return await self._setattr(img, valid, stbuf, xdata,
                                   lambda v: self.first_child.setattr(loc, stbuf, v, xdata))

    @_fop_errors
    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        img = self._image_of_fd(fd) if valid & fops.SET_ATTR_SIZE else None
        return await self._setattr(img, valid, stbuf, xdata,
                                   lambda v: self.first_child.fsetattr(fd, stbuf, v, xdata))

    @_fop_errors
    async def fallocate(self, fd, mode, offset, length, xdata=None):
        """0: grow the LV to cover the range; KEEP_SIZE: nothing (an LV is
        allocated already); PUNCH_HOLE: zero the range; ZERO_RANGE: zero it,
        growing the LV unless KEEP_SIZE."""
        img = self._image_of_fd(fd)
        if offset < 0 or length <= 0:
            raise FopError(errno.EINVAL)
        if mode & ~(_FALLOC_KEEP_SIZE | _FALLOC_PUNCH_HOLE | _FALLOC_ZERO_RANGE):
            raise FopError(errno.ENOTSUP, f"{self.name}: fallocate mode {mode:#x}")
        pre = await self._iatt(img)
        end = offset + length
        if mode & _FALLOC_PUNCH_HOLE:
            await self._zero(img, offset, min(end, img.size) - offset)
        else:
            if not mode & _FALLOC_KEEP_SIZE and end > img.size:
                await self._grow(img, end, for_write=False)
            if mode & _FALLOC_ZERO_RANGE:
                await self._zero(img, offset, min(end, img.size) - offset)
                await self._note_written(img, min(end, img.size))
        img.mtime_ns = time.time_ns()
        return PrePostReply(pre, await self._iatt(img))

    @_fop_errors
    async def discard(self, fd, offset, length, xdata=None):
        """Zero the range (data reads as zeros afterwards, as after a punch)."""
        img = self._image_of_fd(fd)
        pre = await self._iatt(img)
        await self._zero(img, offset, min(offset + length, img.size) - offset)
        return PrePostReply(pre, await self._iatt(img))

    @_fop_errors
    async def zerofill(self, fd, offset, length, xdata=None):
        """Zero the range, growing the LV when it reaches past the end."""
        img = self._image_of_fd(fd)
        if offset < 0 or length < 0:
            raise FopError(errno.EINVAL)
        pre = await self._iatt(img)
        if offset + length > img.size:
            await self._grow(img, offset + length, for_write=True)
        await self._zero(img, offset, length)
        await self._note_written(img, offset + length)
        img.mtime_ns = time.time_ns()
        return PrePostReply(pre, await self._iatt(img))

    # -- open, read, write ------------------------------------------------------

    @_fop_errors
    async def open(self, loc, flags, fd, xdata=None):
        """Opens the metadata file too (fd-based metadata fops use it), as
        bd_open did; O_TRUNC truncates the LV (the shrink rule applies)."""
        reply = await self.first_child.open(loc, flags & ~os.O_TRUNC, fd, xdata)
        gfid = fd.gfid or loc.gfid
        img = self._images.get(gfid) if gfid is not None else None
        if img is None:
            return reply     # not a file of ours (a directory opened as a file)
        await self._open_image(img, fd, flags, xdata)
        return reply

    @_fop_errors
    async def readv(self, fd, size, offset, flags, xdata=None):
        """pread through the LV's map; short at the LV's end, empty past it."""
        img = self._image_of_fd(fd)
        if size <= 0 or offset < 0:
            raise FopError(errno.EINVAL)
        self._check_mappable(img)     # an anonymous fd was never opened here
        m = img.map
        data = b"" if m is None or offset >= m.size else \
            await self._io(img, m.pread, size, offset)
        return ReadReply(data, iatt=await self._iatt(img))

    @_fop_errors
    async def writev(self, fd, data, offset, flags, xdata=None):
        """pwrite through the LV's map, growing the LV first when the write
        reaches past its end; O_APPEND writes at the LV's end."""
        opened = fd.ctx.get(self)
        img = self._image_of_fd(fd)
        if offset < 0:
            raise FopError(errno.EINVAL)
        self._check_mappable(img)
        open_flags = opened.flags if opened is not None else fd.flags
        length = _length(data)
        if open_flags & os.O_APPEND:
            offset = img.size
        pre = await self._iatt(img)
        if length == 0:
            return WriteReply(pre, pre, count=0)
        if offset + length > img.size:
            await self._grow(img, offset + length, for_write=True)
        m = img.map
        count = await self._io(img, m.pwrite, data, offset)
        await self._note_written(img, offset + count)
        img.mtime_ns = time.time_ns()
        if (flags | open_flags) & (os.O_SYNC | os.O_DSYNC):
            await self._io(img, m.sync)
        return WriteReply(pre, await self._iatt(img), count=count)

    @_fop_errors
    async def flush(self, fd, xdata=None):
        """Stores the written mark and mtime (bd_flush set a|mtime)."""
        opened = fd.ctx.get(self)
        if opened is not None:
            await self._store_meta(opened.image)
        return await self.first_child.flush(fd, xdata)

    @_fop_errors
    async def fsync(self, fd, datasync, xdata=None):
        img = self._image_of_fd(fd)
        pre = await self._iatt(img)
        if img.map is not None:
            await self._io(img, img.map.sync, bool(datasync))
        await self._store_meta(img)
        await self.first_child.fsync(fd, datasync, xdata)
        return PrePostReply(pre, await self._iatt(img))

    async def release(self, fd, xdata=None):
        """The last close of an unlinked file removes its LV."""
        opened = fd.ctx.pop(self, None)
        reply = await self.first_child.release(fd, xdata)
        if opened is None:
            return reply
        img = opened.image
        img.openfds -= 1
        if img.openfds:
            return reply
        try:
            if img.unlinked:
                self._images.pop(img.gfid, None)
                if img.unlinked_lv:
                    async with img.lock, self._vg_lock:
                        await self._remove_lv(img, img.unlinked_lv)
                        await self._refresh()
            else:
                await self._store_meta(img)
        except (LvmError, OSError, FopError) as e:
            self.log.warning("release of %s: %s", img.name, e)
        return reply

    @_fop_errors
    async def seek(self, fd, offset, what, xdata=None):
        """An LV is all data: DATA finds `offset`, HOLE the LV's end."""
        img = self._image_of_fd(fd)
        kind = {_GF_SEEK_DATA: os.SEEK_DATA, _GF_SEEK_HOLE: os.SEEK_HOLE,
                os.SEEK_DATA: os.SEEK_DATA, os.SEEK_HOLE: os.SEEK_HOLE}.get(what)
        if kind is None:
            raise FopError(errno.ENOTSUP, f"seek: unknown what {what}")
        if offset < 0 or offset >= img.size:
            raise FopError(errno.ENXIO)
        return SeekReply(offset if kind == os.SEEK_DATA else img.size)

    @_fop_errors
    async def rchecksum(self, fd, offset, length, xdata=None):
        """adler32 seeded with 0 and MD5, as bd_rchecksum and posix."""
        img = self._image_of_fd(fd)
        if length < 0:
            raise FopError(errno.EINVAL)
        m = img.map
        buf = bytes(await self._io(img, m.pread, length, offset)) if m is not None else b""
        return ChecksumReply(zlib.adler32(buf, 0),
                             hashlib.md5(buf, usedforsecurity=False).digest())

    @_fop_errors
    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        """A copy between two LVs' maps (one chunk per call; the count says
        how much)."""
        if flags:
            raise FopError(errno.EINVAL, "copy_file_range takes no flags")
        src, dst = self._image_of_fd(fd_in), self._image_of_fd(fd_out)
        pre = await self._iatt(dst)
        n = max(0, min(length, src.size - off_in, COPY_CHUNK * 64))
        count = 0
        if n and src.map is not None:
            data = await self._io(src, src.map.pread, n, off_in)
            if off_out + len(data) > dst.size:
                await self._grow(dst, off_out + len(data), for_write=True)
            count = await self._io(dst, dst.map.pwrite, data, off_out)
            await self._note_written(dst, off_out + count)
            dst.mtime_ns = time.time_ns()
        return CopyRangeReply(await self._iatt(src), pre, await self._iatt(dst), count)

    put = Translator.put_with_own_fops  # so the new file is an LV

    # -- directory ---------------------------------------------------------------

    @_fop_errors
    async def readdir(self, fd, size, offset, xdata=None):
        """The LVs: a listing of the root starts by matching LVM's view."""
        if offset == 0 and fd.gfid == ROOT_GFID:
            await self._reconcile()
        return await self.first_child.readdir(fd, size, offset, xdata)

    @_fop_errors
    async def readdirp(self, fd, size, offset, xdata=None):
        if offset == 0 and fd.gfid == ROOT_GFID:
            await self._reconcile()
        return self._fix(await self.first_child.readdirp(fd, size, offset, xdata))

    @_fop_errors
    async def statfs(self, loc, xdata=None):
        """The VG's size and free space in 4 KiB blocks (bd_statfs read
        them from LVM); inodes from the metadata directory."""
        if trio.current_time() - self._vg_time > LVM_RESCAN_INTERVAL:
            async with self._vg_lock:
                await self._refresh()
        meta = (await self.first_child.statfs(Loc.root(), xdata)).statvfs
        vg = self._vg
        blocks, free = vg.size // STATFS_BLOCK, vg.free // STATFS_BLOCK
        return StatfsReply(Statvfs(
            bsize=STATFS_BLOCK, frsize=STATFS_BLOCK, blocks=blocks, bfree=free, bavail=free,
            files=meta.files, ffree=meta.ffree, favail=meta.favail, fsid=meta.fsid,
            flag=meta.flag, namemax=lvm.LV_NAME_MAX - len(self.vgname) - 1))

    # -- xattrs ------------------------------------------------------------------

    @_fop_errors
    async def getxattr(self, loc, name, xdata=None):
        """GlusterFS's virtual keys (volume.type, volume.caps, list-origin,
        user.glusterfs.bd) and glusterfs.bd.vg; the written mark is hidden."""
        answer = await self._virtual_xattr(name, lambda: self._image_of(loc))
        if answer is not None:
            return answer
        return self._hide_xattrs(await self.first_child.getxattr(loc, name, xdata),
                                 self._images.get(loc.gfid))

    @_fop_errors
    async def fgetxattr(self, fd, name, xdata=None):
        async def image():
            return self._image_of_fd(fd)
        answer = await self._virtual_xattr(name, image)
        if answer is not None:
            return answer
        return self._hide_xattrs(await self.first_child.fgetxattr(fd, name, xdata),
                                 self._images.get(fd.gfid))

    @_fop_errors
    async def setxattr(self, loc, xattrs, flags, xdata=None):
        """Setting user.glusterfs.bd = "lv:SIZE" on a file without an LV
        creates it (GlusterFS's way of making a BD file); the written mark
        cannot be set."""
        rest = await self._set_bd_xattr(xattrs, lambda: self._image_of(loc))
        if not rest:
            return Reply()
        return self._fix(await self.first_child.setxattr(loc, rest, flags, xdata))

    @_fop_errors
    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        async def image():
            return self._image_of_fd(fd)
        rest = await self._set_bd_xattr(xattrs, image)
        if not rest:
            return Reply()
        return self._fix(await self.first_child.fsetxattr(fd, rest, flags, xdata))

    async def removexattr(self, loc, name, xdata=None):
        if name in (lvm.BD_XATTR, lvm.WRITTEN_XATTR):
            raise FopError(errno.ENODATA)     # bd_removexattr
        return self._fix(await self.first_child.removexattr(loc, name, xdata))

    async def fremovexattr(self, fd, name, xdata=None):
        if name in (lvm.BD_XATTR, lvm.WRITTEN_XATTR):
            raise FopError(errno.ENODATA)
        return self._fix(await self.first_child.fremovexattr(fd, name, xdata))

    # ======================================================================
    # helpers: start-up

    def _take_vg_lock(self) -> None:
        """One graph per VG: an flock named after the VG's uuid."""
        path = vg_lock_path(self._vg.uuid)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise FopError(errno.EBUSY, f"{self.name}: volume group {self.vgname} is already "
                                        f"served by another storage/bd "
                                        f"({holder or 'unknown holder'}; lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {self.name}\n".encode(), 0)
        self._lockfd = fd

    def _release_vg_lock(self) -> None:
        if self._lockfd >= 0:
            os.close(self._lockfd)
            self._lockfd = -1

    async def _check_volume_id(self) -> None:
        """bd_scan_vg: a VG tagged for another volume is refused; an
        untagged VG is tagged (glusterd did it at volume create)."""
        want = self.opts.volume_id
        if not want:
            return
        try:
            want = str(GFID(want.strip()))
        except ValueError:
            raise FopError(errno.EINVAL, f"{self.name}: volume-id {want!r} is not a "
                                         f"UUID") from None
        have = self._vg.tag_value(lvm.VOLUME_ID_TAG)
        if have is None:
            await self._lvm_call(self.lvm.vg_tags, self.vgname,
                                 add=[f"{lvm.VOLUME_ID_TAG}:{want}"])
            async with self._vg_lock:
                await self._refresh()
        elif have != want:
            raise FopError(errno.EEXIST, f"{self.name}: volume group {self.vgname} belongs to "
                                         f"volume {have}, not {want}")

    async def _bind_companion(self) -> None:
        """The metadata directory records the VG's uuid, and refuses another."""
        root = Loc.root()
        try:
            got = (await self.first_child.getxattr(root, lvm.VG_BINDING_XATTR, None)).dict
            bound = bytes(got.get(lvm.VG_BINDING_XATTR) or b"").decode()
        except FopError as e:
            if e.errno != errno.ENODATA:
                raise
            bound = ""
        if not bound:
            await self.first_child.setxattr(
                root, {lvm.VG_BINDING_XATTR: self._vg.uuid.encode()}, 0, None)
        elif bound != self._vg.uuid:
            raise FopError(errno.EEXIST, f"{self.name}: the metadata directory belongs to the "
                                         f"volume group with uuid {bound}, not "
                                         f"{self.vgname} ({self._vg.uuid})")

    def _choose_pool(self) -> None:
        pools = self._vg.thin_pools
        want = self.opts.thin_pool
        if want and want not in pools:
            raise FopError(errno.ENOENT, f"{self.name}: thin pool {want!r} is not in volume "
                                         f"group {self.vgname} (pools: "
                                         f"{', '.join(pools) or 'none'})")
        pool = want or (pools[0] if pools else None)
        if pool and not self.lvm.dm:
            self.log.warning("thin pool %s/%s is not used: thin volumes need device-mapper, "
                             "which this kernel lacks; new files are linear LVs",
                             self.vgname, pool)
            pool = None
        elif pool:
            self.log.info('thin pool "%s" will be used for new files', pool)
        self._pool = pool

    # ======================================================================
    # helpers: matching LVM's view and the metadata directory

    async def _reconcile(self, *, initial: bool = False) -> None:
        """Adopt LVs that have no file; a file whose LV vanished loses its
        mapping.  At start-up the metadata directory is read first, and LVs
        of files unlinked while open before a crash are removed."""
        async with self._vg_lock:
            if initial:
                changed = await self._load_companion()
            else:
                await self._refresh()
                changed = False
            vg = self._vg
            for img in list(self._images.values()):
                if not img.sized or img.unlinked:
                    continue
                lv = vg.lvs.get(img.name)
                if lv is None:
                    self.log.warning("LV %s/%s of %s vanished outside glusterpy: the file "
                                     "has no LV now", self.vgname, img.name, img.gfid)
                    img.sized, img.lv, img.map, img.written = False, None, None, 0
                    for key in (lvm.BD_XATTR, lvm.WRITTEN_XATTR):
                        with contextlib.suppress(FopError):
                            await self.first_child.removexattr(self._loc(img), key, None)
            waiting = {i.unlinked_lv for i in self._images.values() if i.unlinked_lv}
            for lv in list(vg.lvs.values()):
                if lv.name.startswith(lvm.UNLINKED_PREFIX):
                    if lv.name not in waiting:
                        self.log.info("removing %s/%s, unlinked while open before a restart",
                                      self.vgname, lv.name)
                        await self._lvm_call(self.lvm.lvremove, self.vgname, lv.name)
                        changed = True
                    continue
                if lv.public and lv.name not in self._names and lv.name not in self._pending:
                    await self._adopt(lv)
                    changed = True
            if changed:
                await self._refresh()

    async def _load_companion(self) -> bool:
        """Every regular file of the metadata directory's root, with its
        bd xattrs, matched with the VG's LVs; True if LVM was changed."""
        changed = False
        fd = fops.Fd(gfid=ROOT_GFID, is_dir=True)
        await self.first_child.opendir(Loc.root(), fd, None)
        want = {lvm.BD_XATTR: 0, lvm.WRITTEN_XATTR: 0}
        try:
            offset = 0
            while True:
                entries = (await self.first_child.readdirp(fd, 128 * 1024, offset, want)).entries
                if not entries:
                    break
                for ent in entries:
                    if ent.iatt is None or not ent.iatt.is_reg:
                        continue
                    img = self._register(ent.iatt.gfid, ent.name)
                    img.iatt = ent.iatt
                    x = ent.xdata or {}
                    bdval = x.get(lvm.BD_XATTR)
                    lv = self._vg.lvs.get(ent.name)
                    if lv is None or not lv.public:
                        if bdval:
                            img.sized = True   # _reconcile reports it and unmaps
                        continue
                    if bdval:
                        written = _int(x.get(lvm.WRITTEN_XATTR))
                        self._attach(img, lv, written=lv.size if written is None else written)
                    else:
                        # the LV exists but the file was never told: a crash
                        # between lvcreate and setxattr, or an LV named like it
                        self._attach(img, lv, written=lv.size)
                        await self._store_bd_xattrs(img)
                    if lv.gfid != bytes(img.gfid):
                        await self._tag(img, lv)
                        changed = True
                offset = entries[-1].off
        finally:
            await self.first_child.releasedir(fd, None)
        return changed

    async def _adopt(self, lv: lvm.LogicalVolume) -> _Image:
        """A metadata file for an LV made outside glusterpy, with the gfid its
        tag records (unless in use); all of its data counts as written."""
        tagged = lv.gfid
        gfid = GFID(tagged) if tagged and GFID(tagged) not in self._images else GFID.random()
        loc = Loc(path=f"/{lv.name}", pargfid=ROOT_GFID, name=lv.name)
        reply = await self.first_child.mknod(loc, stat.S_IFREG | ADOPTED_MODE, 0, 0,
                                             {GFID_REQ: gfid})
        img = self._register(reply.iatt.gfid, lv.name)
        img.iatt = reply.iatt
        self._attach(img, lv, written=lv.size)
        await self._store_bd_xattrs(img)
        if tagged != bytes(img.gfid):
            await self._tag(img, lv)
        self.log.info("adopted LV %s/%s as %s", self.vgname, lv.name, img.gfid)
        return img

    async def _tag(self, img: _Image, lv: lvm.LogicalVolume) -> None:
        """The LV's tag records its file's gfid (and no other)."""
        stale = [t for t in lv.tags if t.startswith(lvm.GFID_TAG + ":")]
        await self._lvm_call(self.lvm.lv_tags, self.vgname, lv.name,
                             add=[lvm.gfid_tag(img.gfid)], remove=stale)

    async def _adopt_named(self, name: str) -> bool:
        """A lookup missed `name`: adopt the LV of that name if LVM has one
        (re-reading LVM at most every LVM_RESCAN_INTERVAL)."""
        try:
            lvm.check_lv_name(name)
        except ValueError:
            return False
        async with self._vg_lock:
            if name in self._names:
                return True
            if name not in self._vg.lvs and \
                    trio.current_time() - self._vg_time > LVM_RESCAN_INTERVAL:
                await self._refresh()
            lv = self._vg.lvs.get(name)
            if lv is None or not lv.public or name in self._pending:
                return False
            await self._adopt(lv)
            await self._refresh()
            return True

    async def _refresh(self) -> None:
        """Re-read the VG (the caller holds the VG lock) and rebuild the map
        of every file whose LV changed."""
        self._vg = await self._lvm_call(self.lvm.report, self.vgname)
        self._vg_time = trio.current_time()
        for img in self._images.values():
            if img.sized:
                lv = self._vg.lvs.get(img.lv_name)
                if lv is not None and lv != img.lv:
                    self._attach(img, lv, written=img.written)

    def _attach(self, img: _Image, lv: lvm.LogicalVolume, *, written: int) -> None:
        """Give a file its LV and the map to the LV's bytes."""
        img.sized = True
        img.lv = lv
        img.thin = lv.thin
        img.written = min(written, lv.size)
        img.written_disk = max(img.written_disk, img.written)
        try:
            img.map = self._map_for(lv)
            img.unmappable = ""
        except (LvmError, OSError) as e:
            img.map = None
            img.unmappable = str(e)

    def _map_for(self, lv: lvm.LogicalVolume) -> lvm.ExtentMap:
        if self.lvm.dm:
            path = self._device_path(lv.name)
            if not os.path.exists(path):
                # an inactive LV made outside glusterpy (ours are created
                # active): rare enough to activate inline
                self.lvm.activate(self.vgname, lv.name)
            return lvm.ExtentMap.for_device(self._devices.fd(path), lv.size)
        if lv.thin:
            raise LvmError(errno.ENOTSUP, f"{self.vgname}/{lv.name} is a thin volume: its "
                                          f"blocks live in the pool and need device-mapper",
                           "map")
        return lvm.ExtentMap.for_lv(lv, self._vg, self._devices)

    def _device_path(self, lv_name: str) -> str:
        return f"/dev/{self.vgname}/{lv_name}"

    def _register(self, gfid: GFID, name: str) -> _Image:
        img = self._images.get(gfid)
        if img is None:
            img = self._images[gfid] = _Image(gfid, name)
        self._names[name] = gfid
        return img

    # ======================================================================
    # helpers: LVM changes (callers hold the file's lock, then the VG lock)

    async def _truncate(self, img: _Image, size: int, force: bool) -> PrePostReply:
        if size < 0:
            raise FopError(errno.EINVAL)
        self._check_mappable(img)
        async with img.lock:
            pre = await self._iatt(img)
            want = lvm.round_up(size, self._vg.extent_size)
            if want < img.size and size < img.written and not force:
                raise FopError(errno.EPERM, f"{self.name}: shrinking {img.name} to {size} "
                                            f"bytes would cut data written up to "
                                            f"{img.written}; send xdata {lvm.XDATA_FORCE} or "
                                            f"set option force-shrink")
            if want != img.size:
                await self._set_lv_size(img, want)
                img.mtime_ns = time.time_ns()
            await self._store_meta(img)
        return PrePostReply(pre, await self._iatt(img))

    async def _grow(self, img: _Image, end: int, *, for_write: bool) -> None:
        async with img.lock:
            if end <= img.size:
                return
            if for_write and not self.opts.extend_on_write:
                raise FopError(errno.ENOSPC, f"{self.name}: write past the end of "
                                             f"{img.name} (extend-on-write is off)")
            self._check_mappable(img)
            await self._set_lv_size(img, lvm.round_up(end, self._vg.extent_size))

    async def _set_lv_size(self, img: _Image, want: int) -> None:
        """Make `img`'s LV `want` bytes (whole extents): create, extend,
        reduce, or (0) remove it."""
        ext = self._vg.extent_size
        async with self._vg_lock:
            old = img.size
            if not img.sized:
                if want:
                    # an open file unlinked before it had an LV gets it aside
                    name = img.hidden_lv_name if img.unlinked else img.name
                    if name in self._vg.lvs:
                        raise FopError(errno.EEXIST, f"{self.name}: an LV named "
                                                     f"{self.vgname}/{name} already "
                                                     f"exists (made outside glusterpy)")
                    await self._make_lv(name, img.gfid, want, thin=bool(self._pool))
                    if img.unlinked:
                        img.unlinked_lv = name
                    self._attach(img, self._vg.lvs[name], written=0)
                    img.written_disk = 0
                    await self._store_bd_xattrs(img)
                return
            if want == 0:
                await self._refresh()      # a snapshot made outside counts too
                self._refuse_if_snapshots(img)
                await self._remove_lv(img, img.lv_name)
                img.sized, img.lv, img.written, img.written_disk = False, None, 0, 0
                img.unlinked_lv = None
                for key in (lvm.BD_XATTR, lvm.WRITTEN_XATTR):
                    with contextlib.suppress(FopError):
                        await self.first_child.removexattr(self._loc(img), key, None)
                await self._refresh()
                return
            if want > old and not img.thin and (want - old) // ext > self._vg.free_extents:
                raise FopError(errno.ENOSPC, f"{self.name}: growing {img.name} by "
                                             f"{want - old} bytes does not fit in the VG's "
                                             f"{self._vg.free} free bytes")
            if want < old:
                # no IO may reach the extents about to be freed
                previous = img.map
                img.map = previous.truncated(want) if previous is not None else None
                await self._drain(img)
                try:
                    await self._lvm_call(self.lvm.lvresize, self.vgname, img.lv_name,
                                         want // ext, thin=img.thin, extent_size=ext)
                except BaseException:
                    img.map = previous
                    raise
                img.written = min(img.written, want)
            else:
                await self._lvm_call(self.lvm.lvresize, self.vgname, img.lv_name, want // ext,
                                     thin=img.thin, extent_size=ext)
            await self._refresh()
            if want > old and self.opts.zero_new_extents and not img.thin:
                try:
                    await trio.to_thread.run_sync(img.map.zero, old, want - old)
                except BaseException:
                    # never leave extents holding another LV's old data
                    with trio.CancelScope(shield=True), contextlib.suppress(LvmError):
                        img.map = img.map.truncated(old)
                        await self._lvm_call(self.lvm.lvresize, self.vgname, img.lv_name,
                                             old // ext, thin=img.thin, extent_size=ext)
                        await self._refresh()
                    raise
            await self._store_bd_xattrs(img)

    async def _make_lv(self, name: str, gfid: GFID, size: int, *, thin: bool,
                       zero: bool = True) -> None:
        """lvcreate (VG lock held): ENOSPC before LVM is asked when the VG
        cannot hold it, and no LV left behind when zeroing it fails."""
        ext = self._vg.extent_size
        extents = lvm.extents_for(size, ext)
        pool = self._pool if thin else None
        if pool is None and extents > self._vg.free_extents:
            raise FopError(errno.ENOSPC, f"{self.name}: {name} needs {extents * ext} bytes, "
                                         f"the volume group has {self._vg.free} free")
        await self._lvm_call(self.lvm.lvcreate, self.vgname, name, extents,
                             tags=[lvm.gfid_tag(gfid)], thin_pool=pool, extent_size=ext)
        try:
            await self._refresh()
            if zero and self.opts.zero_new_extents and pool is None:
                new_map = self._map_for(self._vg.lvs[name])
                await trio.to_thread.run_sync(new_map.zero, 0, new_map.size)
        except BaseException:
            with trio.CancelScope(shield=True), contextlib.suppress(LvmError):
                await self._lvm_call(self.lvm.lvremove, self.vgname, name)
                await self._refresh()
            raise

    def _forget_name(self, img: _Image) -> None:
        """`img`'s name is gone; it lives on while open."""
        if self._names.get(img.name) == img.gfid:
            del self._names[img.name]
        img.unlinked = True
        if not img.openfds:
            self._images.pop(img.gfid, None)

    async def _retire_lv(self, img: _Image) -> None:
        """An unlinked file's LV (VG lock held): removed, or renamed aside
        until its last close; refused while it has snapshots."""
        if not img.sized or img.unlinked_lv:
            return
        if img.thin and not self.lvm.dm:
            raise FopError(errno.ENOTSUP, f"{self.name}: removing thin volume {img.name} "
                                          f"updates its pool's metadata, which needs "
                                          f"device-mapper")
        await self._refresh()
        self._refuse_if_snapshots(img)
        if img.openfds:
            hidden = img.hidden_lv_name
            await self._lvm_call(self.lvm.lvrename, self.vgname, img.name, hidden)
            self._devices.forget(self._device_path(img.name))
            img.unlinked_lv = hidden
        else:
            await self._remove_lv(img, img.name)
            img.sized, img.lv = False, None
        await self._refresh()

    async def _remove_lv(self, img: _Image, lv_name: str) -> None:
        """lvremove once no IO can reach the LV: its map gone, IO in flight
        drained, its device node (with device-mapper) closed - LVM refuses
        to remove an open LV."""
        img.map = None
        await self._drain(img)
        self._devices.forget(self._device_path(lv_name))
        await self._lvm_call(self.lvm.lvremove, self.vgname, lv_name)

    def _refuse_if_snapshots(self, img: _Image) -> None:
        snaps = self._vg.snapshots_of(img.lv_name)
        if snaps:
            raise FopError(errno.EBUSY, f"{self.name}: {img.name} has snapshots "
                                        f"({', '.join(snaps)}): remove them first")

    async def _new_entry(self, loc: Loc, gfid: GFID, like: _Image) -> EntryReply:
        """The metadata file of a clone or snapshot: the source's mode and
        owner."""
        src = await self._iatt(like)
        reply = await self.first_child.mknod(loc, stat.S_IFREG | stat.S_IMODE(src.mode), 0, 0,
                                             {GFID_REQ: gfid})
        if (reply.iatt.uid, reply.iatt.gid) != (src.uid, src.gid):
            with contextlib.suppress(FopError):
                post = await self.first_child.setattr(
                    Loc(gfid=gfid), Iatt(uid=src.uid, gid=src.gid),
                    fops.SET_ATTR_UID | fops.SET_ATTR_GID, None)
                reply.iatt = post.postbuf
        return reply

    async def _undo_new(self, name: str, gfid: GFID, loc: Loc, *, lv: bool) -> None:
        """Take back a clone or snapshot that failed half-way (VG lock held)."""
        with trio.CancelScope(shield=True):
            if lv and name in self._vg.lvs:
                with contextlib.suppress(LvmError):
                    await self._lvm_call(self.lvm.lvremove, self.vgname, name)
            if self._names.get(name) == gfid:
                with contextlib.suppress(FopError):
                    await self.first_child.unlink(loc, 0, None)
                self._names.pop(name, None)
                self._images.pop(gfid, None)
            with contextlib.suppress(LvmError):
                await self._refresh()

    # ======================================================================
    # helpers: IO

    async def _open_image(self, img: _Image, fd, flags: int, xdata) -> None:
        """An fd the child opened becomes an open of `img` (O_TRUNC cuts
        the LV); on failure the child's fd is released again."""
        try:
            self._check_mappable(img)
            if flags & os.O_TRUNC and img.sized:
                await self._truncate(img, 0, self._forced(xdata))
        except BaseException:
            await self.first_child.release(fd, None)
            raise
        fd.ctx[self] = _Open(img, flags)
        img.openfds += 1

    def _check_mappable(self, img: _Image) -> None:
        if img.sized and img.map is None:
            raise FopError(errno.ENOTSUP if "device-mapper" in img.unmappable else errno.EIO,
                           f"{self.name}: {img.unmappable or img.name + ' cannot be reached'}")

    async def _io(self, img: _Image, fn, *args):
        """Run a read, write or sync inline, or (bd-aio) in a worker thread
        counted in the file's active IO, so a shrink can wait for it."""
        if not self.opts.bd_aio:
            return fn(*args)
        img.io_active += 1
        try:
            return await trio.to_thread.run_sync(fn, *args)
        finally:
            img.io_active -= 1
            if not img.io_active and img.io_idle is not None:
                img.io_idle.set()
                img.io_idle = None

    async def _drain(self, img: _Image) -> None:
        while img.io_active:
            if img.io_idle is None:
                img.io_idle = trio.Event()
            await img.io_idle.wait()

    async def _zero(self, img: _Image, offset: int, length: int) -> None:
        if length <= 0 or offset < 0 or img.map is None:
            return
        await trio.to_thread.run_sync(img.map.zero, offset, length)

    async def _note_written(self, img: _Image, end: int) -> None:
        """Raise the written mark; store it (rounded up) when it passes what
        the metadata file says, so a crash never lowers it."""
        if end <= img.written:
            return
        img.written = end
        if end > img.written_disk:
            img.written_disk = min(img.size, lvm.round_up(end, WRITTEN_GRANULE))
            await self._set_meta_xattrs(img, {lvm.WRITTEN_XATTR: str(img.written_disk)})

    async def _store_meta(self, img: _Image) -> None:
        """Store the exact written mark and a write's mtime."""
        if img.unlinked or img.gfid not in self._images:
            return
        if img.sized and img.written != img.written_disk:
            img.written_disk = img.written
            await self._set_meta_xattrs(img, {lvm.WRITTEN_XATTR: str(img.written)})
        if img.mtime_ns:
            when = img.mtime_ns
            ia = Iatt(mtime=when // 1_000_000_000, mtime_nsec=when % 1_000_000_000)
            try:
                reply = await self.first_child.setattr(self._loc(img), ia,
                                                       fops.SET_ATTR_MTIME, None)
            except FopError as e:
                if e.errno != errno.ENOENT:
                    raise
                return
            img.iatt = reply.postbuf
            if img.mtime_ns == when:
                img.mtime_ns = 0

    async def _store_bd_xattrs(self, img: _Image) -> None:
        img.written_disk = max(img.written_disk, img.written)
        await self._set_meta_xattrs(img, {
            lvm.BD_XATTR: self._bd_value(img).encode(),
            lvm.WRITTEN_XATTR: str(img.written_disk).encode()})

    async def _set_meta_xattrs(self, img: _Image, values: dict) -> None:
        values = {k: v.encode() if isinstance(v, str) else v for k, v in values.items()}
        try:
            await self.first_child.setxattr(self._loc(img), values, 0, None)
        except FopError as e:
            if e.errno != errno.ENOENT:   # an unlinked file keeps no metadata
                raise

    def _bd_value(self, img: _Image) -> str:
        return f"{lvm.BD_TYPE_THIN if img.thin else lvm.BD_TYPE_LV}:{img.size}"

    # ======================================================================
    # helpers: metadata

    async def _setattr(self, img, valid, stbuf, xdata, wind):
        if img is None or not valid & fops.SET_ATTR_SIZE:
            return self._fix(await wind(valid))
        sized = await self._truncate(img, stbuf.size, self._forced(xdata))
        rest = valid & ~fops.SET_ATTR_SIZE
        if not rest & ~fops.SET_ATTR_CTIME:
            return sized
        reply = self._fix(await wind(rest))
        reply.prebuf = sized.prebuf
        return reply

    async def _virtual_xattr(self, name, image) -> DictReply | None:
        if name == lvm.VOL_TYPE_KEY:
            return DictReply({name: "1"})
        if name == lvm.VOL_CAPS_KEY:
            caps = lvm.CAPS_BD | lvm.CAPS_OFFLOAD_COPY | lvm.CAPS_OFFLOAD_ZERO
            if self.lvm.dm:
                caps |= lvm.CAPS_OFFLOAD_SNAPSHOT | (lvm.CAPS_THIN if self._pool else 0)
            return DictReply({name: str(caps)})
        if name == lvm.VG_KEY:
            return DictReply({name: self.vgname})
        if name in (lvm.ORIGIN_KEY, lvm.BD_XATTR):
            img = await image()
            if img is None or not img.sized:
                raise FopError(errno.ENODATA)
            if name == lvm.BD_XATTR:
                return DictReply({name: self._bd_value(img)})
            if not img.lv or not img.lv.origin:
                raise FopError(errno.ENODATA)
            return DictReply({name: img.lv.origin})
        if name == lvm.WRITTEN_XATTR:
            raise FopError(errno.ENODATA)
        return None

    def _hide_xattrs(self, reply: DictReply, img: _Image | None) -> DictReply:
        reply.dict.pop(lvm.WRITTEN_XATTR, None)
        reply.dict.pop(lvm.VG_BINDING_XATTR, None)
        if lvm.BD_XATTR in reply.dict and img is not None and img.sized:
            reply.dict[lvm.BD_XATTR] = self._bd_value(img)
        return reply

    async def _set_bd_xattr(self, xattrs: dict, image) -> dict:
        """Handle the bd keys of a setxattr; the rest is returned."""
        if not isinstance(xattrs, dict):
            raise FopError(errno.EINVAL)
        if lvm.WRITTEN_XATTR in xattrs:
            raise FopError(errno.EPERM, f"{lvm.WRITTEN_XATTR} is kept by storage/bd")
        if lvm.BD_XATTR not in xattrs:
            return xattrs
        img = await image()
        if img is None:
            raise FopError(errno.EINVAL, "only a regular file can be an LV")
        value = xattrs[lvm.BD_XATTR]
        text = value.decode(errors="replace") if isinstance(value, (bytes, bytearray)) \
            else str(value)
        kind, _, size = text.strip("\0").partition(":")
        if kind not in (lvm.BD_TYPE_LV, lvm.BD_TYPE_THIN):
            raise FopError(errno.EINVAL, f"invalid bd type {kind!r}")
        if kind == lvm.BD_TYPE_THIN and not self._pool:
            raise FopError(errno.EOPNOTSUPP, "thin LVs are not supported by this volume")
        if img.sized:
            raise FopError(errno.EEXIST, f"{img.name} already has its LV")
        try:
            nbytes = lvm.parse_size(size) if size else self._vg.extent_size
        except ValueError as e:
            raise FopError(errno.EINVAL, str(e)) from None
        async with img.lock:
            await self._set_lv_size(img, lvm.round_up(max(nbytes, 1), self._vg.extent_size))
        return {k: v for k, v in xattrs.items() if k != lvm.BD_XATTR}

    def _snapshot_size(self, origin: _Image, xdata) -> int:
        """Copy-on-write bytes: xdata's, or the option's share or size."""
        given = (xdata or {}).get(lvm.XDATA_SNAPSHOT_SIZE)
        if given is not None:
            try:
                size = int(given)
            except (TypeError, ValueError):
                size = 0
            if size <= 0:
                raise FopError(errno.EINVAL, f"{self.name}: {lvm.XDATA_SNAPSHOT_SIZE} "
                                             f"{given!r} is not a size in bytes")
            return size
        spec: PercentOrSize = self.opts.snapshot_size
        if spec.percent is not None:
            return max(1, int(origin.size * spec.percent / 100))
        return spec.size

    # ======================================================================
    # helpers: names, locs, replies

    def _root_name(self, loc: Loc) -> str | None:
        """The name of an entry directly in the root, or None."""
        if loc.name is not None and loc.pargfid == ROOT_GFID:
            return loc.name
        if loc.path:
            head, _, tail = loc.path.rstrip("/").rpartition("/")
            if tail and head == "" and (loc.pargfid in (None, ROOT_GFID)):
                return tail
        return None

    def _new_name(self, loc: Loc) -> str:
        """The name a new file would take: directly in the root, and a name
        lvcreate accepts (EINVAL saying why otherwise)."""
        name = self._root_name(loc)
        if name is None:
            raise FopError(errno.ENOTSUP, f"{self.name}: files live directly in the volume "
                                          f"group's directory")
        try:
            lvm.check_lv_name(name, self.vgname)
        except ValueError as e:
            raise FopError(errno.EINVAL, f"{self.name}: {e}") from None
        return name

    async def _image_of(self, loc: Loc) -> _Image | None:
        """The file `loc` names (looked up, and so adopted, if unknown);
        None for what is not a file of ours (the root)."""
        if loc.gfid is not None and loc.gfid in self._images:
            return self._images[loc.gfid]
        name = self._root_name(loc)
        if name is not None and name in self._names:
            return self._images[self._names[name]]
        reply = await self.lookup(loc, None)
        return self._images.get(reply.iatt.gfid)

    def _image_of_fd(self, fd) -> _Image:
        opened = fd.ctx.get(self)
        if opened is not None:
            return opened.image
        img = self._images.get(fd.gfid) if fd.gfid is not None else None
        if img is None:
            raise FopError(errno.EBADF if fd.gfid is None else errno.ENOENT,
                           f"{self.name}: fd {fd!r} is not on a file of this volume group")
        return img

    def _loc(self, img: _Image) -> Loc:
        return Loc(path=f"/{img.name}", gfid=img.gfid)

    def _gfid_req(self, xdata) -> GFID:
        value = (xdata or {}).get(GFID_REQ)
        if value is None:
            return GFID.random()
        try:
            return GFID(bytes(value) if isinstance(value, (bytearray, memoryview)) else value)
        except (ValueError, TypeError):
            raise FopError(errno.EINVAL, f"gfid-req {value!r} is not a gfid") from None

    def _forced(self, xdata) -> bool:
        return bool(self.opts.force_shrink or (xdata and xdata.get(lvm.XDATA_FORCE)))

    async def _iatt(self, img: _Image) -> Iatt:
        """The file's iatt: the metadata file's, with the LV's size and the
        time of a write not yet stored."""
        if img.iatt is None:
            img.iatt = (await self.first_child.stat(self._loc(img), None)).iatt
        ia = _copy_iatt(img.iatt)
        self._apply(ia, img)
        return ia

    def _apply(self, ia: Iatt, img: _Image) -> None:
        ia.size = img.size
        ia.blocks = (img.size + 511) // 512
        if img.mtime_ns > ia.mtime_ns:
            ia.mtime, ia.mtime_nsec = divmod(img.mtime_ns, 1_000_000_000)
            if img.mtime_ns > ia.ctime_ns:
                ia.ctime, ia.ctime_nsec = ia.mtime, ia.mtime_nsec

    def _fix(self, reply):
        """Every iatt of a child's reply that describes one of our files gets
        the LV's size (the metadata file is empty); the metadata file's
        own iatt is remembered."""
        for name in _iatt_fields(type(reply)):
            self._fix_iatt(getattr(reply, name))
        if isinstance(reply, DirReply):
            for ent in reply.entries:
                self._fix_iatt(ent.iatt)
        if reply.xdata:
            for value in reply.xdata.values():
                self._fix_iatt(value)
        return reply

    def _fix_iatt(self, ia) -> None:
        if isinstance(ia, Iatt) and ia.is_reg:
            img = self._images.get(ia.gfid)
            if img is not None:
                img.iatt = _copy_iatt(ia)
                self._apply(ia, img)

    async def _lvm_call(self, fn, *args, **kwargs):
        """An lvm2 command in a worker thread (they take tens of ms)."""
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


TRANSLATOR = BD


def vg_lock_path(vg_uuid: str) -> str:
    """The file whose flock says a graph serves the VG.  It stays when the
    graph ends (removing a lock file others may wait on races with them);
    /run/lock is emptied at boot."""
    base = "/run/lock" if os.path.isdir("/run/lock") else tempfile.gettempdir()
    return os.path.join(base, f"glusterpy-bd-{vg_uuid}.lock")


_IATT_VALUES = operator.attrgetter(*(f.name for f in dataclasses.fields(Iatt)))


def _copy_iatt(ia: Iatt) -> Iatt:
    """A copy, five times quicker than dataclasses.replace (hot path)."""
    return Iatt(*_IATT_VALUES(ia))


@functools.lru_cache(maxsize=None)
def _iatt_fields(cls) -> tuple[str, ...]:
    if not dataclasses.is_dataclass(cls):
        return ()
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "xdata")


def _length(data) -> int:
    if isinstance(data, (list, tuple)):
        return sum(memoryview(b).nbytes for b in data)
    return memoryview(data).nbytes


def _int(value) -> int | None:
    if value is None:
        return None
    try:
        return int(bytes(value).strip(b"\0") if not isinstance(value, (int, str)) else value)
    except ValueError:
        return None


def _copy_chunk(src: lvm.ExtentMap, dst: lvm.ExtentMap, offset: int, length: int) -> None:
    dst.pwrite(src.pread(length, offset), offset)


def _passing_through(fop: fops.Fop):
    """The default of a fop storage/bd does not change: wind it to the
    metadata file, then put the LV's size into the reply's iatts."""
    name = fop.name

    async def wind(self, *args, **kwargs):
        return self._fix(await getattr(self.first_child, name)(*args, **kwargs))
    wind.__name__ = wind.__qualname__ = name
    wind.__doc__ = f"{name}: the metadata file's, with the LV's size in its iatts."
    return wind


for _f in fops.CATALOGUE:
    if _f.name not in BD.__dict__:
        setattr(BD, _f.name, _passing_through(_f))
del _f
