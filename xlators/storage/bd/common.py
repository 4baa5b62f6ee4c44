"""storage/bd: what its concerns share - the options, one file's state
(`Image`: its LV, its map, its written mark) and the error mapping of the
fops (GlusterFS's bd.h)."""

from __future__ import annotations

import errno
import functools

import trio

from glusterpy import bd as lvm
from glusterpy.bd import LvmError
from glusterpy.fops import GFID, FopError, Iatt
from glusterpy.options import Option, OptionType

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

#: a clone copies this much between checkpoints
COPY_CHUNK = 1 << 20


class Image:
    """What this translator knows of one file (one LV, or a name without)."""

    __slots__ = ("gfid", "name", "sized", "thin", "lv", "map", "unmappable", "written",
                 "written_disk", "lock", "openfds", "iatt", "mtime_ns", "unlinked",
                 "unlinked_lv", "io_seq", "io_inflight", "io_idle")

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
        self.io_seq = 0                # IO in worker threads: numbered,
        self.io_inflight: set[int] = set()   # those not finished yet
        self.io_idle: trio.Event | None = None  # set when one finishes

    @property
    def size(self) -> int:
        return self.map.size if self.map is not None else (
            self.lv.visible_size if self.sized and self.lv is not None else 0)

    @property
    def lv_name(self) -> str:
        return self.unlinked_lv or self.name

    @property
    def hidden_lv_name(self) -> str:
        """Its LV's name once unlinked while open."""
        return lvm.UNLINKED_PREFIX + self.gfid.hex()



def fop_errors(fn):
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
