"""storage/bd: the LV <-> file mapping and its metadata - start-up checks
of the VG and the companion directory, matching LVM's view with the
metadata files (adoption, vanished LVs), the written mark and mtime stored
on the metadata file, names, locs and iatts, and the fops that read the
VG as a directory (lookup, readdir, statfs).  GlusterFS: bd-helper.c, and
bd.c's bd_scan_vg, bd_lookup, bd_readdir, bd_statfs."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import operator
import os
import stat
import tempfile

import trio

from glusterpy import bd as lvm
from glusterpy import bd_snapshot as snapshots
from glusterpy import fops
from glusterpy.bd import LvmError
from glusterpy.fops import (GFID, ROOT_GFID, DirReply, FopError, Iatt, Loc, StatfsReply,
                            Statvfs, UInt)
from glusterpy.keys import CONTENT_KEY, GET_SIZE, GFID_REQ

from .common import Image, fop_errors

STATFS_BLOCK = 4096
#: the on-disk written mark is rounded up to this, so sequential writes
#: store it once per MiB; the exact mark is stored at flush and release
WRITTEN_GRANULE = 1 << 20
#: a lookup that misses re-reads LVM at most this often (seconds)
LVM_RESCAN_INTERVAL = 1.0
ADOPTED_MODE = 0o600                 # an LV's device node is not world-readable either


class BdMapping:
    """The VG seen as a directory: which LV is which file, and its metadata."""

    # -- lookup ------------------------------------------------------------

    @fop_errors
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
    # -- directory ---------------------------------------------------------------

    @fop_errors
    async def readdir(self, fd, size, offset, xdata=None):
        """The LVs: a listing of the root starts by matching LVM's view."""
        if offset == 0 and fd.gfid == ROOT_GFID:
            await self._reconcile()
        return await self.first_child.readdir(fd, size, offset, xdata)

    @fop_errors
    async def readdirp(self, fd, size, offset, xdata=None):
        if offset == 0 and fd.gfid == ROOT_GFID:
            await self._reconcile()
        return self._fix(await self.first_child.readdirp(fd, size, offset, xdata))

    @fop_errors
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
                        self._attach(img, lv,
                                     written=lv.visible_size if written is None else written)
                    else:
                        # the LV exists but the file was never told: a crash
                        # between lvcreate and setxattr, or an LV named like it
                        self._attach(img, lv, written=lv.visible_size)
                        await self._store_bd_xattrs(img)
                    if lv.gfid != bytes(img.gfid):
                        await self._tag(img, lv)
                        changed = True
                offset = entries[-1].off
        finally:
            await self.first_child.releasedir(fd, None)
        return changed

    async def _adopt(self, lv: lvm.LogicalVolume) -> Image:
        """A metadata file for an LV made outside glusterpy, with the gfid its
        tag records (unless in use); all of its data counts as written."""
        tagged = lv.gfid
        gfid = GFID(tagged) if tagged and GFID(tagged) not in self._images else GFID.random()
        loc = Loc(path=f"/{lv.name}", pargfid=ROOT_GFID, name=lv.name)
        reply = await self.first_child.mknod(loc, stat.S_IFREG | ADOPTED_MODE, 0, 0,
                                             {GFID_REQ: gfid})
        img = self._register(reply.iatt.gfid, lv.name)
        img.iatt = reply.iatt
        self._attach(img, lv, written=lv.visible_size)
        await self._store_bd_xattrs(img)
        if tagged != bytes(img.gfid):
            await self._tag(img, lv)
        self.log.info("adopted LV %s/%s as %s", self.vgname, lv.name, img.gfid)
        return img

    async def _tag(self, img: Image, lv: lvm.LogicalVolume) -> None:
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
        self._prune_cow_stores()
        for img in self._images.values():
            if img.sized:
                lv = self._vg.lvs.get(img.lv_name)
                # an origin's map names its snapshots' stores: rebuilt when
                # they change, though the origin's own LV did not
                if lv is not None and (lv != img.lv or self._origin_map_stale(img, lv)):
                    self._attach(img, lv, written=img.written)

    def _attach(self, img: Image, lv: lvm.LogicalVolume, *, written: int) -> None:
        """Give a file its LV and the map to the LV's bytes."""
        img.sized = True
        img.lv = lv
        img.thin = lv.thin
        img.written = min(written, lv.visible_size)
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
            return lvm.ExtentMap.for_device(self._devices.fd(path), lv.visible_size)
        if lv.thin:
            raise LvmError(errno.ENOTSUP, f"{self.vgname}/{lv.name} is a thin volume: its "
                                          f"blocks live in the pool and need device-mapper",
                           "map")
        vg = self._vg
        if lv.snapshot:
            origin = vg.lvs.get(lv.origin)
            if origin is None:
                raise LvmError(errno.EIO, f"{self.vgname}/{lv.name}: its origin {lv.origin} "
                                          f"is missing", "map")
            base = lvm.ExtentMap.for_lv(origin, vg, self._devices, raw=True)
            return snapshots.SnapshotMap(base, self._cow_store(lv), lv.visible_size)
        if lv.has_snapshots:
            try:
                stores = [(self._cow_store(s), s.visible_size)
                          for s in vg.lvs.values() if s.origin == lv.name]
            except OSError as e:
                # a snapshot whose store cannot be read: the origin still
                # reads, and refuses writes (EROFS) rather than leave that
                # snapshot without its old data
                self.log.warning("%s/%s is read-only: %s", self.vgname, lv.name, e)
                return lvm.ExtentMap.for_lv(lv, vg, self._devices)
            base = lvm.ExtentMap.for_lv(lv, vg, self._devices, raw=True)
            return snapshots.OriginMap(base, stores)
        return lvm.ExtentMap.for_lv(lv, vg, self._devices)

    def _cow_store(self, lv: lvm.LogicalVolume) -> snapshots.ExceptionStore:
        """The exception store of snapshot `lv`, read from its COW LV once
        and shared by the snapshot's map and its origin's (keyed by the LV's
        uuid, which renames keep)."""
        cow = lvm.ExtentMap.for_lv(lv, self._vg, self._devices, raw=True)
        store = self._cows.get(lv.uuid)
        if store is None:
            store = snapshots.ExceptionStore.load(
                cow, lv.chunk_size or snapshots.DEFAULT_CHUNK_SIZE, f"{self.vgname}/{lv.name}")
            self._cows[lv.uuid] = store
        elif cow.size != store.cow.size:
            with store.lock:        # the COW LV was extended (lvextend)
                store.cow = cow
        store.name = f"{self.vgname}/{lv.name}"
        return store

    def _prune_cow_stores(self) -> None:
        """Stores of snapshots LVM no longer has take no more copies."""
        alive = {lv.uuid for lv in self._vg.lvs.values() if lv.snapshot}
        for uuid in [u for u in self._cows if u not in alive]:
            store = self._cows.pop(uuid)
            with store.lock:
                store.retired = True

    def _origin_map_stale(self, img: Image, lv: lvm.LogicalVolume) -> bool:
        if self.lvm.dm:
            return False    # the kernel's snapshot-origin target copies
        have = img.map.snapshots if isinstance(img.map, snapshots.OriginMap) else ()
        if not have and not lv.has_snapshots:
            return False    # the common case, kept cheap: refresh asks for every file
        want = {self._cows.get(s.uuid) for s in self._vg.lvs.values() if s.origin == lv.name}
        return {store for store, _ in have} != want or None in want

    def _device_path(self, lv_name: str) -> str:
        return f"/dev/{self.vgname}/{lv_name}"

    def _register(self, gfid: GFID, name: str) -> Image:
        img = self._images.get(gfid)
        if img is None:
            img = self._images[gfid] = Image(gfid, name)
        self._names[name] = gfid
        return img

    # ======================================================================
    # helpers: the metadata file

    async def _note_written(self, img: Image, end: int) -> None:
        """Raise the written mark; store it (rounded up) when it passes what
        the metadata file says, so a crash never lowers it."""
        if end <= img.written:
            return
        img.written = end
        if end > img.written_disk:
            img.written_disk = min(img.size, lvm.round_up(end, WRITTEN_GRANULE))
            await self._set_meta_xattrs(img, {lvm.WRITTEN_XATTR: str(img.written_disk)})

    async def _store_meta(self, img: Image) -> None:
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

    async def _store_bd_xattrs(self, img: Image) -> None:
        img.written_disk = max(img.written_disk, img.written)
        await self._set_meta_xattrs(img, {
            lvm.BD_XATTR: self._bd_value(img).encode(),
            lvm.WRITTEN_XATTR: str(img.written_disk).encode()})

    async def _set_meta_xattrs(self, img: Image, values: dict) -> None:
        values = {k: v.encode() if isinstance(v, str) else v for k, v in values.items()}
        try:
            await self.first_child.setxattr(self._loc(img), values, 0, None)
        except FopError as e:
            if e.errno != errno.ENOENT:   # an unlinked file keeps no metadata
                raise

    def _bd_value(self, img: Image) -> str:
        return f"{lvm.BD_TYPE_THIN if img.thin else lvm.BD_TYPE_LV}:{img.size}"

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

    async def _image_of(self, loc: Loc) -> Image | None:
        """The file `loc` names (looked up, and so adopted, if unknown);
        None for what is not a file of ours (the root)."""
        if loc.gfid is not None and loc.gfid in self._images:
            return self._images[loc.gfid]
        name = self._root_name(loc)
        if name is not None and name in self._names:
            return self._images[self._names[name]]
        reply = await self.lookup(loc, None)
        return self._images.get(reply.iatt.gfid)

    def _image_of_fd(self, fd) -> Image:
        opened = fd.ctx.get(self)
        if opened is not None:
            return opened.image
        img = self._images.get(fd.gfid) if fd.gfid is not None else None
        if img is None:
            raise FopError(errno.EBADF if fd.gfid is None else errno.ENOENT,
                           f"{self.name}: fd {fd!r} is not on a file of this volume group")
        return img

    def _loc(self, img: Image) -> Loc:
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

    async def _iatt(self, img: Image) -> Iatt:
        """The file's iatt: the metadata file's, with the LV's size and the
        time of a write not yet stored."""
        if img.iatt is None:
            img.iatt = (await self.first_child.stat(self._loc(img), None)).iatt
        ia = _copy_iatt(img.iatt)
        self._apply(ia, img)
        return ia

    def _apply(self, ia: Iatt, img: Image) -> None:
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


def _int(value) -> int | None:
    if value is None:
        return None
    try:
        return int(bytes(value).strip(b"\0") if not isinstance(value, (int, str)) else value)
    except ValueError:
        return None
