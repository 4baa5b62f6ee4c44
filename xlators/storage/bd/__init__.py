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
  the origin is thin, else a copy-on-write snapshot whose COW store has
  xdata `glusterfs.bd.snapshot-size` bytes or the option `snapshot-size`.
  The snapshot is a regular file of the origin's size, readable and
  writable; its writes never reach the origin, the origin's writes after it
  never reach the snapshot.  With device-mapper LVM makes it (lvcreate -s);
  without, bd does (see "Snapshots without device-mapper" below).  A
  snapshot of a snapshot, or resizing one (its size is its origin's when
  taken), is EINVAL; a thin snapshot without device-mapper is ENOTSUP.
  Through a FUSE mount `ln -s ORIGIN SNAP` works: FUSE insists that a
  symlink's new entry be a symbolic link (else EIO), so the mount's bridge
  answers it as one with timeouts of zero and the kernel's next look at
  the name shows the regular file it is (glusterpy/fuse/bridge.py,
  `_made_by_symlink`).  `readlink` on it is EINVAL (it is no link).
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
ENOTSUP.  Copy-on-write snapshots and their origins are mapped too (next
paragraph); an origin whose snapshot's store cannot be read reads but
answers EROFS to writes (nothing would copy its old data aside).
Without device-mapper thin pools
are not used (a warning says so) and new files are linear LVs; with it and
a thin pool in the VG (the first one, or option `thin-pool`) new files are
thin LVs, as GlusterFS offered them.  New extents are zeroed (option `zero-new-extents`, with
BLKZEROOUT, which a loop device or an SSD does without writing), so a new
or grown file reads zeros as a file does; discard and zerofill zero their
range the same way (GlusterFS's discard sent BLKDISCARD, whose data
afterwards the device decides).

Snapshots without device-mapper (`glusterpy.bd_snapshot`).  LVM's
`lvcreate -s` refuses to run without device-mapper, but its metadata is
all a snapshot is to LVM: symlink creates a linear LV for the COW store,
writes the kernel's persistent exception-store header into it
(drivers/md/dm-snap-persistent.c: "SnAp", valid, version 1, the chunk
size), then `lvconvert -s` (which runs with activation off) turns it into
the snapshot of the origin with 4 KiB chunks, so `lvs` shows the snapshot
with its origin and a kernel with device-mapper activates it as any
snapshot.  IO follows dm-snapshot: the snapshot reads its exceptions from
the store and the rest from the origin; a write to the origin first copies
the chunks it replaces into the store of every snapshot of it; a write to
the snapshot gives its chunk an exception (a partial write copies the rest
of the chunk from the origin).  The exception's data is flushed before its
metadata entry, as the kernel commits.  A full store invalidates the
snapshot (header valid = 0): it then answers EIO, and the origin is
written without copying, as with the kernel.  The stores are read back at
start-up, so a restart (or a snapshot made elsewhere) serves them as they
were.  The origin's map starts copying into a new store before LVM records
the snapshot, after IO in flight with the old map has finished, so no
write slips between.  Thin pools are not written in user space: their
metadata is a btree of block mappings and space maps (dm-thin-metadata),
not read or written here, so a thin LV and thin snapshots still need
device-mapper.

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

The package, one concern a module (each a mixin of `BD`, composed here
with its life cycle): `common` (options, one file's state `Image`, the
fops' error mapping), `mapping` (the LV <-> file mapping and its
metadata: start-up checks, adoption, the metadata file, lookup, readdir,
statfs), `entry` (create, clone, snapshot, resize, rename and remove
LVs), `lv_io` (user-space LV IO), `xattrs` (the xattr fops and
GlusterFS's virtual keys).
"""

from __future__ import annotations

import contextlib
import errno

import trio

from glusterpy import bd as lvm
from glusterpy import bd_snapshot as snapshots
from glusterpy import fops
from glusterpy.bd import LvmError
from glusterpy.fops import GFID, FopError
from glusterpy.options import OptionError
from glusterpy.xlator import Translator

from .common import OPTIONS, Image
from .entry import BdEntry
from .lv_io import BdIO
from .mapping import BdMapping, vg_lock_path
from .xattrs import BdXattrs

__all__ = ["BD", "OPTIONS", "TRANSLATOR", "vg_lock_path"]


class BD(BdEntry, BdIO, BdXattrs, BdMapping, Translator):
    """storage/bd: see the package docstring; each concern is a mixin of its
    own module."""

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
        self._images: dict[GFID, Image] = {}
        self._names: dict[str, GFID] = {}
        self._pending: set[str] = set()       # LV names being made by a clone/snapshot
        self._devices = lvm.Devices()
        self._lockfd = -1
        self._pool: str | None = None
        #: snapshots' exception stores by their LV's uuid (glusterpy.bd_snapshot)
        self._cows: dict[str, snapshots.ExceptionStore] = {}

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
                          for i in self._images.values()},
                "snapshots": {s.name: {"valid": s.valid, "chunk-size": s.chunk,
                                       "exceptions": len(s.exceptions),
                                       "next-free-chunk": s.next_free}
                              for s in self._cows.values()}}


TRANSLATOR = BD


def _passing_through(fop: fops.Fop):
    """The default of a fop storage/bd does not change: wind it to the
    metadata file, then put the LV's size into the reply's iatts."""
    name = fop.name

    async def wind(self, *args, **kwargs):
        return self._fix(await getattr(self.first_child, name)(*args, **kwargs))
    wind.__name__ = wind.__qualname__ = name
    wind.__doc__ = f"{name}: the metadata file's, with the LV's size in its iatts."
    return wind


#: the fops BD or one of its concern mixins defines itself
_OWN = set().union(*(vars(c) for c in BD.__mro__[:BD.__mro__.index(Translator)]))
for _f in fops.CATALOGUE:
    if _f.name not in _OWN:
        setattr(BD, _f.name, _passing_through(_f))
del _f
