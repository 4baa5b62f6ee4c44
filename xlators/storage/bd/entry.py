"""storage/bd: the fops that create, clone, resize and remove LVs - create,
mknod, symlink (a snapshot), link (a full clone), unlink, rename, and the
size fops (truncate, setattr with a size, fallocate, discard, zerofill),
with the LVM changes under them (bd.c's bd_create, bd_link, bd_unlink,
bd_truncate, bd_zerofill; bd-helper.c's bd_create, bd_resize, bd_clone,
bd_snapshot_create, bd_delete)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time

import trio

from glusterpy import bd as lvm
from glusterpy import bd_snapshot as snapshots
from glusterpy import fops
from glusterpy.bd import LvmError
from glusterpy.fops import GFID, EntryReply, FopError, Iatt, Loc, PrePostReply
from glusterpy.keys import GFID_REQ
from glusterpy.options import PercentOrSize

from .common import COPY_CHUNK, Image, fop_errors

_FALLOC_KEEP_SIZE, _FALLOC_PUNCH_HOLE, _FALLOC_ZERO_RANGE = 0x01, 0x02, 0x10


class BdEntry:
    """The LVs' life: created, cloned, resized, renamed, removed."""

    # -- entry fops -------------------------------------------------------

    @fop_errors
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

    @fop_errors
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

    @fop_errors
    async def symlink(self, linkname, loc, umask, xdata=None):
        """A linked clone: an LVM snapshot of the LV `linkname` names.
        Without device-mapper a copy-on-write snapshot is made and served
        in user space (`_user_space_snapshot`); a thin one needs
        device-mapper."""
        name = self._new_name(loc)
        origin_name = (linkname or "").rstrip("/").rpartition("/")[2]
        if name in self._names or name in self._vg.lvs or name in self._pending:
            raise FopError(errno.EEXIST)
        origin = self._images.get(self._names.get(origin_name)) if origin_name else None
        if origin is None:
            raise FopError(errno.ENOENT, f"{self.name}: snapshot origin {linkname!r} is not "
                                         f"an LV of {self.vgname}")
        if not origin.sized:
            raise FopError(errno.EINVAL, f"{self.name}: {origin_name} has no LV yet: "
                                         f"nothing to snapshot")
        if origin.lv is not None and origin.lv.snapshot:
            raise FopError(errno.EINVAL, f"{self.name}: {origin_name} is a snapshot itself; "
                                         f"LVM makes no snapshots of snapshots")
        if not self.lvm.dm and origin.thin:
            raise FopError(errno.ENOTSUP, f"{self.name}: a thin snapshot updates the pool's "
                                          f"metadata, which needs the kernel's device-mapper "
                                          f"(this kernel lacks it); nothing was created")
        gfid = self._gfid_req(xdata)
        async with origin.lock:
            ext = self._vg.extent_size
            extents = None
            if not origin.thin:
                size = self._snapshot_size(origin, xdata)
                if not self.lvm.dm:
                    size = max(size, snapshots.MIN_STORE_CHUNKS * snapshots.DEFAULT_CHUNK_SIZE)
                extents = lvm.extents_for(size, ext)
            async with self._vg_lock:
                if name in self._vg.lvs or name in self._names:
                    raise FopError(errno.EEXIST)
                if extents is not None and extents > self._vg.free_extents:
                    raise FopError(errno.ENOSPC, f"{self.name}: a snapshot of {extents * ext} "
                                                 f"bytes does not fit in the VG's "
                                                 f"{self._vg.free} free bytes")
                if self.lvm.dm:
                    await self._lvm_call(self.lvm.snapshot, self.vgname, origin.lv_name, name,
                                         extents=extents, tags=[lvm.gfid_tag(gfid)])
                else:
                    await self._user_space_snapshot(origin, name, gfid, extents)
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

    @fop_errors
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

    @fop_errors
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

    @fop_errors
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

    @fop_errors
    async def truncate(self, loc, offset, xdata=None):
        """lvresize to `offset` rounded up to extents (see the shrink rule)."""
        img = await self._image_of(loc)
        if img is None:
            return self._fix(await self.first_child.truncate(loc, offset, xdata))
        return await self._truncate(img, offset, self._forced(xdata))

    @fop_errors
    async def ftruncate(self, fd, offset, xdata=None):
        return await self._truncate(self._image_of_fd(fd), offset, self._forced(xdata))

    @fop_errors
    async def setattr(self, loc, stbuf, valid, xdata=None):
        """A size in `valid` resizes the LV first; the rest goes to the
        metadata file."""
        img = await self._image_of(loc) if valid & fops.SET_ATTR_SIZE else None
        return await self._setattr(img, valid, stbuf, xdata,
                                   lambda v: self.first_child.setattr(loc, stbuf, v, xdata))

    @fop_errors
    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        img = self._image_of_fd(fd) if valid & fops.SET_ATTR_SIZE else None
        return await self._setattr(img, valid, stbuf, xdata,
                                   lambda v: self.first_child.fsetattr(fd, stbuf, v, xdata))

    @fop_errors
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

    @fop_errors
    async def discard(self, fd, offset, length, xdata=None):
        """Zero the range (data reads as zeros afterwards, as after a punch)."""
        img = self._image_of_fd(fd)
        pre = await self._iatt(img)
        await self._zero(img, offset, min(offset + length, img.size) - offset)
        return PrePostReply(pre, await self._iatt(img))

    @fop_errors
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
    # ======================================================================
    # helpers: LVM changes (callers hold the file's lock, then the VG lock)

    async def _truncate(self, img: Image, size: int, force: bool) -> PrePostReply:
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

    async def _grow(self, img: Image, end: int, *, for_write: bool) -> None:
        async with img.lock:
            if end <= img.size:
                return
            if for_write and not self.opts.extend_on_write:
                raise FopError(errno.ENOSPC, f"{self.name}: write past the end of "
                                             f"{img.name} (extend-on-write is off)")
            self._check_mappable(img)
            await self._set_lv_size(img, lvm.round_up(end, self._vg.extent_size))

    async def _set_lv_size(self, img: Image, want: int) -> None:
        """Make `img`'s LV `want` bytes (whole extents): create, extend,
        reduce, or (0) remove it."""
        ext = self._vg.extent_size
        if img.lv is not None and img.lv.snapshot and want != img.size:
            raise FopError(errno.EINVAL, f"{self.name}: {img.name} is a snapshot: its size "
                                         f"is its origin's when it was taken ({img.size} "
                                         f"bytes); unlink it to remove it")
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

    async def _user_space_snapshot(self, origin: Image, name: str, gfid: GFID,
                                   extents: int) -> None:
        """A copy-on-write snapshot without device-mapper (origin's lock and
        the VG lock held): a linear LV of `extents` gets an empty exception
        store, the origin's map starts copying into it, then `lvconvert -s`
        makes LVM record the snapshot (origin, COW LV, chunk size).  On
        failure nothing is left: the origin's map and the LV are undone."""
        self._check_mappable(origin)
        chunk = snapshots.DEFAULT_CHUNK_SIZE
        await self._lvm_call(self.lvm.lvcreate, self.vgname, name, extents,
                             tags=[lvm.gfid_tag(gfid)])
        previous, uuid = origin.map, None
        try:
            await self._refresh()
            cow_lv = self._vg.lvs[name]
            uuid = cow_lv.uuid
            cow = lvm.ExtentMap.for_lv(cow_lv, self._vg, self._devices, raw=True)
            store = await trio.to_thread.run_sync(snapshots.ExceptionStore.create, cow, chunk,
                                                  f"{self.vgname}/{name}")
            self._cows[uuid] = store
            # the snapshot's moment: from here every write of the origin
            # copies its old chunks aside; writes still using the old map
            # finish first
            if isinstance(previous, snapshots.OriginMap):
                base, snaps = previous.base, list(previous.snapshots)
            else:
                base, snaps = previous, []
            origin.map = snapshots.OriginMap(base, snaps + [(store, origin.size)])
            await self._drain(origin)
            await self._lvm_call(self.lvm.convert_to_snapshot, self.vgname, origin.lv_name,
                                 name, chunk)
        except BaseException:
            with trio.CancelScope(shield=True):
                origin.map = previous
                if uuid is not None:
                    self._cows.pop(uuid, None)
                with contextlib.suppress(LvmError):
                    await self._lvm_call(self.lvm.lvremove, self.vgname, name)
                with contextlib.suppress(LvmError):
                    await self._refresh()
            raise

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

    def _forget_name(self, img: Image) -> None:
        """`img`'s name is gone; it lives on while open."""
        if self._names.get(img.name) == img.gfid:
            del self._names[img.name]
        img.unlinked = True
        if not img.openfds:
            self._images.pop(img.gfid, None)

    async def _retire_lv(self, img: Image) -> None:
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

    async def _remove_lv(self, img: Image, lv_name: str) -> None:
        """lvremove once no IO can reach the LV: its map gone, IO in flight
        drained, its device node (with device-mapper) closed - LVM refuses
        to remove an open LV."""
        img.map = None
        await self._drain(img)
        self._devices.forget(self._device_path(lv_name))
        await self._lvm_call(self.lvm.lvremove, self.vgname, lv_name)

    def _refuse_if_snapshots(self, img: Image) -> None:
        snaps = self._vg.snapshots_of(img.lv_name)
        if snaps:
            raise FopError(errno.EBUSY, f"{self.name}: {img.name} has snapshots "
                                        f"({', '.join(snaps)}): remove them first")

    async def _new_entry(self, loc: Loc, gfid: GFID, like: Image) -> EntryReply:
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
    # helpers: sizes

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

    def _snapshot_size(self, origin: Image, xdata) -> int:
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


def _copy_chunk(src: lvm.ExtentMap, dst: lvm.ExtentMap, offset: int, length: int) -> None:
    dst.pwrite(src.pread(length, offset), offset)
