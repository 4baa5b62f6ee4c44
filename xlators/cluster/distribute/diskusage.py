"""cluster/distribute's view of the bricks' space: statfs summed over them,
their free space refreshed at most once a second, and the placement of a
new file away from a filled hashed brick (min-free-disk, min-free-inodes)
(dht-diskusage.c, dht-common.c's dht_statfs)."""

from __future__ import annotations

import dataclasses
import errno
import time

from glusterpy.fops import FopError, Loc, StatfsReply, Statvfs
from glusterpy.options import PercentOrSize

from . import layout as dl
from .common import DU_REFRESH, DirCtx, DiskUsage


class DhtDiskUsage:
    """statfs and min-free-disk placement."""

    async def statfs(self, loc, xdata=None):
        """dht_statfs: the bricks' sums, in the largest block size any uses."""
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, lambda i: self._wind(i, "statfs", Loc.root(), xdata))
        total: Statvfs | None = None
        first_error = None
        for i in ups:
            r = results[i]
            if isinstance(r, FopError):
                first_error = first_error or r
                continue
            total = _add_statvfs(total, r.statvfs)
        if total is None:
            raise first_error or FopError(errno.ENOTCONN)
        return StatfsReply(total)

    # -- placement: min-free-disk ----------------------------------------------------

    async def _placement(self, hashed: int, parent: DirCtx) -> int:
        """dht_free_disk_available_subvol: the hashed subvolume unless it is
        filled, else the one with most free space and inodes."""
        await self._refresh_du()
        if not self._filled(hashed):
            return hashed
        best = self._with_free_space(parent) or self._max_space(parent)
        if best is None:
            self.log.warning("no subvolume has enough free space and/or inodes to create")
            return hashed
        return best

    def _usable(self, i: int, parent: DirCtx) -> bool:
        """dht_subvol_has_err: up, in the layout without error, not leaving."""
        if not self._up[i] or i in self.decommissioned:
            return False
        e = parent.layout.entry(i)
        return e is None or e.err == 0

    def _with_free_space(self, parent: DirCtx) -> int | None:
        """dht_subvol_with_free_space_inodes (file size 0)."""
        limit = self.opts.min_free_disk
        best, best_value, best_inodes = None, 0.0, 0.0
        for i, du in enumerate(self._du):
            if not self._usable(i, parent):
                continue
            if limit.percent is not None:
                value, enough = du.avail_percent, du.avail_percent > limit.percent
            else:
                value, enough = du.avail_space, du.avail_space > limit.size
            if enough and du.avail_inodes > self.opts.min_free_inodes:
                if du.avail_inodes > best_inodes or value > best_value:
                    best, best_value, best_inodes = i, value, du.avail_inodes
        if best is None:
            return None
        du = self._du[best]
        if limit.percent is not None:
            post = du.avail_blocks * 100 / du.total_blocks if du.total_blocks else 0
            return best if post >= limit.percent else None
        return best if best_value >= limit.size else None

    def _max_space(self, parent: DirCtx) -> int | None:
        """dht_subvol_maxspace_nonzeroinode."""
        limit = self.opts.min_free_disk
        best, best_value = None, 0.0
        for i, du in enumerate(self._du):
            if not self._usable(i, parent):
                continue
            value = du.avail_percent if limit.percent is not None else du.avail_space
            if value > best_value and du.avail_inodes > 0:
                best, best_value = i, value
        return best

    def _filled(self, i: int) -> bool:
        """dht_is_subvol_filled."""
        du = self._du[i]
        if not du.total_blocks:
            return False      # never measured
        limit: PercentOrSize = self.opts.min_free_disk
        if limit.percent is not None:
            space = du.avail_percent < limit.percent
        else:
            space = du.avail_space < limit.size
        return space or du.avail_inodes < self.opts.min_free_inodes

    async def _refresh_du(self) -> None:
        """dht_get_du_info: statfs of every brick, at most once a second."""
        now = time.monotonic()
        if now - self._du_time < DU_REFRESH:
            return
        self._du_time = now
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, lambda i: self._wind(i, "statfs", Loc.root(), None))
        for i in ups:
            r = results[i]
            if isinstance(r, FopError):
                self.log.warning("failed to get disk info from %s: %s", self.names[i], r)
                continue
            self._du[i] = _disk_usage(r.statvfs)

    def _chunks(self) -> dict[int, int]:
        return {i: du.chunks for i, du in enumerate(self._du) if du.chunks}


def _disk_usage(sv: Statvfs) -> DiskUsage:
    """dht_du_info_cbk."""
    du = DiskUsage()
    if sv.blocks:
        du.avail_percent = float(sv.bavail * 100 // sv.blocks)
        du.avail_space = sv.bavail * sv.frsize
        du.chunks = dl.chunks_from_statfs(sv.blocks, sv.bsize)
    du.avail_inodes = float(sv.ffree * 100 // sv.files) if sv.files else 100.0
    du.total_blocks, du.avail_blocks, du.frsize = sv.blocks, sv.bavail, sv.frsize
    return du


def _add_statvfs(total: Statvfs | None, sv: Statvfs) -> Statvfs:
    """dht_statfs_cbk: sum, converting both to the larger block sizes."""
    sv = dataclasses.replace(sv)
    if total is None:
        return sv
    bsize, frsize = max(total.bsize, sv.bsize), max(total.frsize, sv.frsize)
    for part in (total, sv):
        part.bsize = bsize
        if part.frsize != frsize and frsize:
            factor = part.frsize / frsize
            part.frsize = frsize
            part.blocks = int(factor * part.blocks)
            part.bfree = int(factor * part.bfree)
            part.bavail = int(factor * part.bavail)
    total.blocks += sv.blocks
    total.bfree += sv.bfree
    total.bavail += sv.bavail
    total.files += sv.files
    total.ffree += sv.ffree
    total.favail += sv.favail
    total.fsid, total.flag, total.namemax = sv.fsid, sv.flag, sv.namemax
    return total
