"""features/index: the brick's index of inodes with pending heals.

Follows GlusterFS's features/index (xlators/features/index/src/index.c).  It
sits above features/locks in a brick graph, as glusterd places it, and
watches the xattrops cluster/replicate sends: whenever a changelog counter
it watches becomes non-zero on an inode, the inode's gfid is added to an
index directory, and when every watched counter of that kind is back to
zero the gfid is removed.  The self-heal daemon and ``volume heal info``
crawl these directories instead of the whole brick.

On disk (GlusterFS 10's layout, ``index-base`` =
``<brick>/.glusterfs/indices``)::

    indices/                     mode 0600, like every directory index makes
      xattrop/xattrop-<uuid>     the base file (mode 0000); every entry is a
      xattrop/<gfid>             hard link to it - pending data/metadata/entry
      dirty/dirty-<uuid>         ... counters of the dirty watchlist
      dirty/<gfid>
      entry-changes/<pargfid>/<name>   names created or removed in a
                                       directory while a brick was down
                                       (granular entry heal)

The watch lists: ``xattrop-pending-watchlist`` (GlusterFS's default is
``trusted.afr.<volume>-``, a prefix) and ``xattrop64-watchlist``
(``trusted.ec.dirty``) feed the xattrop index, ``xattrop-dirty-watchlist``
(``trusted.afr.dirty``) the dirty index; a key is watched when it starts
with an entry of a list.  An xattrop is tracked when it is ADD_ARRAY, or
ADD_ARRAY64 on a pending-watched key.  For each tracked xattrop, in this
order (index_xattrop_do, xattrop_index_action):

1. before winding, a kind whose request value is non-zero is added to its
   index - so a brick that crashes right after storage/posix wrote the
   counter still has the gfid indexed;
2. xdata ``glusterfs.xattrop-entry-create: NAME`` links
   ``entry-changes/<gfid>/NAME``;
3. after posix answered, a kind whose stored values (the reply) are all
   zero leaves its index, a kind with a non-zero one enters it;
4. ``glusterfs.xattrop-entry-delete: NAME`` unlinks the name index, and
   ``glusterfs.xattrop-purge-index`` with an all-zero xattrop kind removes
   ``entry-changes/<gfid>`` (renamed aside when not empty, as GlusterFS
   does, so a later crawl wipes it).

Xattrops on one inode are serialized, as index_queue_process does.

The index is also served over the fops, the way the self-heal daemon and
glfsheal read it through protocol/client: getxattr of
``glusterfs.xattrop_index_gfid``, ``glusterfs.xattrop_dirty_gfid`` or
``glusterfs.xattrop_entry_changes_gfid`` answers a virtual gfid (random per
brick start) for the directory; lookup, opendir, readdir (offsets resume,
``get-gfid-type`` fills each entry's type by a lookup of its gfid) work on
those gfids and on ``entry-changes/<pargfid>`` below them; unlink removes
an index entry and rmdir a name-index directory (xflags: the whole tree).
``glusterfs.xattrop_index_count`` and ``glusterfs.xattrop_dirty_count``
count the entries, and a lookup or fstat asking ``link-count:
glusterfs.xattrop_index_count`` gets ``link-count`` 0 or 1 (anything
pending on the brick at all).

Departures: ``index-base`` and ``xattrop-pending-watchlist`` need no value
- glusterd fills GlusterFS's templates ({{ brick.path }}, {{ volume.name }})
- so without them the base is the storage/posix brick below plus
``.glusterfs/indices`` and the pending watch list is every ``trusted.afr.``
key; index offsets are positions in a sorted listing rather than telldir
cookies; readdirp on an index directory is served as readdir (GlusterFS
winds it to posix, which cannot read it); no inode-context cache, so the
index directories are the only state.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from typing import Any

import trio

from glusterpy.fops import (GFID, DictReply, Dirent, DirReply, FopError, Iatt, Loc,
                            LookupReply, OpenReply, ParentReply, Reply, UInt, XattropType)
from glusterpy.keys import (AFR_DIRTY, AFR_XATTR_PREFIX, DIRTY_COUNT_KEY, EC_DIRTY, ENTRY_IN_KEY,
                            ENTRY_OUT_KEY, GET_GFID_TYPE, IA_TYPE_GET_REQ, IA_TYPE_GET_RSP,
                            INDEX_COUNT_KEY, LINK_COUNT, PURGE_INDEX_KEY, XATTROP_DIRTY_GFID,
                            XATTROP_ENTRY_CHANGES_GFID, XATTROP_INDEX_GFID)
from glusterpy.options import Option, OptionType
from glusterpy.xlator import Translator

# --------------------------------------------------------------------------
# Options (index.c's table; GlusterFS's templated defaults are resolved here)

OPTIONS = (
    Option("index-base", OptionType.PATH, None,
           "path where the index files need to be stored (default: the brick "
           "directory's .glusterfs/indices)", reconfigurable=False),
    Option("xattrop64-watchlist", OptionType.STR, EC_DIRTY,
           "Comma separated list of xattrs that are watched", reconfigurable=False),
    Option("xattrop-dirty-watchlist", OptionType.STR, AFR_DIRTY,
           "Comma separated list of xattrs that are watched", reconfigurable=False),
    Option("xattrop-pending-watchlist", OptionType.STR, None,
           "Comma separated list of xattrs that are watched (default: every "
           "trusted.afr. key)", reconfigurable=False),
)

# --------------------------------------------------------------------------
# GlusterFS's names (glusterfs.h)

XATTROP, DIRTY, ENTRY_CHANGES = 0, 1, 2
SUBDIRS = ("xattrop", "dirty", "entry-changes")
VGFID_KEYS = (XATTROP_INDEX_GFID, XATTROP_DIRTY_GFID, XATTROP_ENTRY_CHANGES_GFID)
#: ia_type_t values the index reports
IA_IFREG, IA_IFDIR = 1, 2
#: max(sizeof(gf_dirent_t), sizeof(gfs3_dirplist)) on x86_64
DIRENT_COST = 208
#: the lookups of a get-gfid-type readdir in flight at once
GFID_TYPE_LOOKUPS = 32
_DT_DIR, _DT_REG, _DT_UNKNOWN = 4, 8, 0
DEFAULT_PENDING_PREFIX = AFR_XATTR_PREFIX + "."


def _watchlist(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    keys = tuple(k for k in text.split(","))
    if any(not k for k in keys):
        raise ValueError(f"empty key in watch list {text!r}")
    return keys


class Index(Translator):
    """features/index: see the module docstring."""

    OPTIONS = OPTIONS

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self.dirty_watch = _watchlist(self.opts.xattrop_dirty_watchlist)
        pending = self.opts.xattrop_pending_watchlist
        self.pending_watch = _watchlist(self.opts.xattrop64_watchlist) + (
            _watchlist(pending) if pending is not None else (DEFAULT_PENDING_PREFIX,))
        self.base = ""
        #: the uuid naming the current base file of each index directory
        self._index_uuid = uuid.uuid4()
        self.vgfids = tuple(GFID.random() for _ in SUBDIRS)
        self._by_vgfid = {g: i for i, g in enumerate(self.vgfids)}
        #: gfids handed out for entry-changes/<pargfid> directories -> pargfid
        self._name_dirs: dict[GFID, str] = {}
        self._inode_locks: dict[GFID, list] = {}

    # -- life cycle ------------------------------------------------------

    async def init(self) -> None:
        base = self.opts.index_base
        if base is None:
            posix = _brick_below(self)
            if posix is None:
                raise FopError(errno.EINVAL, f"{self.name}: option 'index-base' is "
                                             f"required when no storage/posix is below")
            base = os.path.join(posix, ".glusterfs", "indices")
        self.base = os.path.abspath(base)
        parent = os.path.dirname(self.base)
        if not os.path.isdir(parent):
            raise FopError(errno.ENOENT, f"{self.name}: parent {parent} of index-base "
                                         f"{self.base} is not a directory")
        self._make_dir(SUBDIRS[XATTROP])
        if self.dirty_watch:
            self._make_dir(SUBDIRS[DIRTY])
        self._make_dir(SUBDIRS[ENTRY_CHANGES])

    def passthrough_fops(self):
        # the data fops (readv, writev, ...) and whatever else index leaves
        # to the default: it watches only xattrop and entry changes
        return self.default_fops()

    def dump_state(self) -> dict:
        return {"index-base": self.base,
                "xattrop-pending-count": self._count(XATTROP),
                "vgfids": {SUBDIRS[i]: str(g) for i, g in enumerate(self.vgfids)}}

    # ======================================================================
    # fops: the xattrops index watches

    async def xattrop(self, loc, optype, xattrs, xdata=None):
        gfid = loc.gfid
        if not self._tracked(optype, xattrs) or gfid is None:
            return await self.first_child.xattrop(loc, optype, xattrs, xdata)
        async with self._serialized(gfid):
            return await self._xattrop(gfid, optype, xattrs, xdata,
                                       lambda: self.first_child.xattrop(loc, optype, xattrs,
                                                                        xdata))

    async def fxattrop(self, fd, optype, xattrs, xdata=None):
        gfid = fd.gfid
        if not self._tracked(optype, xattrs) or gfid is None:
            return await self.first_child.fxattrop(fd, optype, xattrs, xdata)
        async with self._serialized(gfid):
            return await self._xattrop(gfid, optype, xattrs, xdata,
                                       lambda: self.first_child.fxattrop(fd, optype, xattrs,
                                                                         xdata))

    # ======================================================================
    # fops: the index as a directory tree (what the self-heal daemon reads)

    async def getxattr(self, loc, name, xdata=None):
        if name in VGFID_KEYS:
            return DictReply({name: bytes(self.vgfids[VGFID_KEYS.index(name)])})
        if name == INDEX_COUNT_KEY:
            return DictReply({name: UInt(self._count(XATTROP))})
        if name == DIRTY_COUNT_KEY:
            return DictReply({name: UInt(self._count(DIRTY))})
        return await self.first_child.getxattr(loc, name, xdata)

    async def lookup(self, loc, xdata=None):
        path, virtual_gfid, kind = self._virtual_path(loc)
        if path is None:
            reply = await self.first_child.lookup(loc, xdata)
            if xdata and xdata.get(LINK_COUNT) == INDEX_COUNT_KEY:
                reply.xdata = dict(reply.xdata or {})
                reply.xdata[LINK_COUNT] = int(self._count(XATTROP) > 0)
            return reply
        try:
            st = os.lstat(path)
        except OSError as e:
            raise FopError(e.errno) from None
        if virtual_gfid is None:
            if stat.S_ISDIR(st.st_mode) and kind == ENTRY_CHANGES:
                # entry-changes/<pargfid>: a directory of names, reachable by a
                # gfid of its own that readdir/unlink understand
                virtual_gfid = self._name_dir_gfid(os.path.basename(path))
            else:
                virtual_gfid = GFID.random()
        ia = Iatt.from_stat(st, virtual_gfid)
        ia.ino = (1 << 64) - 1
        reply_x = None
        if xdata and IA_TYPE_GET_REQ in xdata and loc.gfid in self._by_vgfid:
            reply_x = {IA_TYPE_GET_RSP: UInt(IA_IFDIR if kind == ENTRY_CHANGES else IA_IFREG)}
        return LookupReply(ia, Iatt(), xdata=reply_x)

    async def fstat(self, fd, xdata=None):
        reply = await self.first_child.fstat(fd, xdata)
        if xdata and xdata.get(LINK_COUNT) == INDEX_COUNT_KEY:
            reply.xdata = dict(reply.xdata or {})
            reply.xdata[LINK_COUNT] = int(self._count(XATTROP) > 0)
        return reply

    async def opendir(self, loc, fd, xdata=None):
        gfid = loc.gfid if loc.gfid is not None else fd.gfid
        dirpath = self._dir_of_gfid(gfid)
        if dirpath is None:
            return await self.first_child.opendir(loc, fd, xdata)
        if not os.path.isdir(dirpath):
            raise FopError(errno.ENOENT)
        fd.gfid = gfid
        fd.ctx[self] = dirpath
        return OpenReply(fd)

    async def readdir(self, fd, size, offset, xdata=None):
        dirpath = fd.ctx.get(self)
        if dirpath is None:
            return await self.first_child.readdir(fd, size, offset, xdata)
        return DirReply(await self._list(fd.gfid, dirpath, size, offset, xdata))

    async def readdirp(self, fd, size, offset, xdata=None):
        dirpath = fd.ctx.get(self)
        if dirpath is None:
            return await self.first_child.readdirp(fd, size, offset, xdata)
        return DirReply(await self._list(fd.gfid, dirpath, size, offset, xdata))

    async def releasedir(self, fd, xdata=None):
        if fd.ctx.pop(self, None) is not None:
            return Reply()
        return await self.first_child.releasedir(fd, xdata)

    async def unlink(self, loc, xflags, xdata=None):
        pargfid = loc.pargfid
        kind = self._by_vgfid.get(pargfid)
        if kind is None and pargfid not in self._name_dirs:
            return await self.first_child.unlink(loc, xflags, xdata)
        parent_dir = self._dir_of_gfid(pargfid)
        pre = self._dir_iatt(parent_dir, pargfid)
        if kind is None:
            self._remove_name(self._name_dirs[pargfid], loc.name)
        elif kind == ENTRY_CHANGES:
            _unlink_quiet(os.path.join(self.base, SUBDIRS[ENTRY_CHANGES], loc.name))
        else:
            self._index_del(_gfid_or_einval(loc.name), kind)
        return ParentReply(pre, self._dir_iatt(parent_dir, pargfid))

    async def rmdir(self, loc, xflags, xdata=None):
        pargfid = loc.pargfid
        kind = self._by_vgfid.get(pargfid)
        if kind is None:
            return await self.first_child.rmdir(loc, xflags, xdata)
        parent_dir = os.path.join(self.base, SUBDIRS[kind])
        pre = self._dir_iatt(parent_dir, pargfid)
        if xflags:
            shutil.rmtree(os.path.join(parent_dir, loc.name), ignore_errors=True)
        else:
            self._index_del(_gfid_or_einval(loc.name), kind)
        return ParentReply(pre, self._dir_iatt(parent_dir, pargfid))

    # ======================================================================
    # helpers: xattrop tracking

    def _tracked(self, optype, xattrs) -> bool:
        """index_xattrop_track."""
        if optype == XattropType.ADD_ARRAY:
            return True
        if optype != XattropType.ADD_ARRAY64:
            return False
        return any(self._watched(k, self.pending_watch) for k in (xattrs or {}))

    @staticmethod
    def _watched(key: str, watchlist) -> bool:
        return any(key.startswith(w) for w in watchlist)

    def _kind(self, key: str) -> int | None:
        """index_find_xattr_type: the dirty list wins over the pending one."""
        if self._watched(key, self.dirty_watch):
            return DIRTY
        if self._watched(key, self.pending_watch):
            return XATTROP
        return None

    async def _xattrop(self, gfid, optype, xattrs, xdata, wind):
        # wind phase: non-zero requested values enter the index first
        for kind in {self._kind(k) for k, v in (xattrs or {}).items() if any(_raw(v))}:
            if kind is not None:
                self._index_add(gfid, kind)
        if xdata and xdata.get(ENTRY_IN_KEY):
            self._entry_create(gfid, _text(xdata[ENTRY_IN_KEY]))
        reply = await wind()
        zero_filled: dict[int, bool] = {}
        for key, value in (reply.dict or {}).items():
            kind = self._kind(key)
            if kind is None:
                continue
            zero_filled[kind] = zero_filled.get(kind, True) and not any(_raw(value))
        for kind, all_zero in zero_filled.items():
            if all_zero:
                self._index_del(gfid, kind)
            else:
                self._index_add(gfid, kind)
        if xdata:
            if xdata.get(ENTRY_OUT_KEY):
                self._remove_name(str(gfid), _text(xdata[ENTRY_OUT_KEY]))
            if xdata.get(PURGE_INDEX_KEY) and zero_filled.get(XATTROP) is True:
                self._index_del(gfid, ENTRY_CHANGES)
        return reply

    # -- the index directories ---------------------------------------------

    def _make_dir(self, subdir: str) -> None:
        """index_dir_create: every missing component with mode 0600."""
        full = os.path.join(self.base, subdir)
        if os.path.isdir(full):
            return
        if os.path.exists(full):
            raise FopError(errno.ENOTDIR, f"{full} exists and is not a directory")
        path = "/"
        for part in full.strip("/").split("/"):
            path = os.path.join(path, part)
            try:
                os.mkdir(path, 0o600)
            except FileExistsError:
                pass

    def _base_file(self, subdir: str) -> str:
        return os.path.join(self.base, subdir, f"{subdir}-{self._index_uuid}")

    def _link_to_base(self, path: str, subdir: str) -> None:
        """index_link_to_base: a hard link to the current base file, made
        (with its directory) when missing; a full base file gets a new one."""
        base = self._base_file(subdir)
        try:
            os.link(base, path)
            return
        except FileExistsError:
            return
        except FileNotFoundError:
            self._make_dir(subdir)
        except OSError as e:
            if e.errno != errno.EMLINK:
                raise FopError(e.errno) from None
            self._index_uuid = uuid.uuid4()
            base = self._base_file(subdir)
        try:
            os.close(os.open(base, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o000))
        except FileExistsError:
            pass
        try:
            os.link(base, path)
        except FileExistsError:
            pass
        except OSError as e:
            raise FopError(e.errno, f"{path}: not able to add to index") from None

    def _index_add(self, gfid: GFID, kind: int) -> None:
        path = os.path.join(self.base, SUBDIRS[kind], str(gfid))
        if not os.path.lexists(path):
            self._link_to_base(path, SUBDIRS[kind])

    def _index_del(self, gfid: GFID, kind: int) -> None:
        """index_del; a name-index directory that is not empty is renamed to
        a random name for a later crawl to wipe."""
        path = os.path.join(self.base, SUBDIRS[kind], str(gfid))
        try:
            if kind == ENTRY_CHANGES:
                try:
                    os.rmdir(path)
                except OSError as e:
                    if e.errno != errno.ENOTEMPTY:
                        raise
                    os.rename(path, os.path.join(self.base, SUBDIRS[kind],
                                                 str(uuid.uuid4())))
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise FopError(e.errno, f"{path}: failed to delete from index") from None

    def _entry_create(self, pargfid: GFID, name: str) -> None:
        """index_entry_create: entry-changes/<pargfid>/<name>."""
        if not name or "/" in name:
            raise FopError(errno.EINVAL, f"invalid entry {name!r} for the name index")
        dirpath = os.path.join(self.base, SUBDIRS[ENTRY_CHANGES], str(pargfid))
        try:
            os.mkdir(dirpath, 0o600)
        except FileExistsError:
            pass
        except FileNotFoundError:
            self._make_dir(SUBDIRS[ENTRY_CHANGES])
            os.mkdir(dirpath, 0o600)
        self._link_to_base(os.path.join(dirpath, name), SUBDIRS[ENTRY_CHANGES])

    def _remove_name(self, pargfid: str, name: str) -> None:
        """index_entry_delete."""
        if not name or "/" in name:
            raise FopError(errno.EINVAL, f"invalid entry {name!r} for the name index")
        _unlink_quiet(os.path.join(self.base, SUBDIRS[ENTRY_CHANGES], pargfid, name))

    def _count(self, kind: int) -> int:
        """index_entry_count: entries other than the base files."""
        try:
            names = os.listdir(os.path.join(self.base, SUBDIRS[kind]))
        except OSError:
            return 0
        prefix = SUBDIRS[kind]
        return sum(1 for n in names if not n.startswith(prefix))

    # -- serving the index over fops ---------------------------------------

    def _name_dir_gfid(self, pargfid_text: str) -> GFID:
        for g, text in self._name_dirs.items():
            if text == pargfid_text:
                return g
        if len(self._name_dirs) > 4096:
            self._name_dirs.clear()
        g = GFID.random()
        self._name_dirs[g] = pargfid_text
        return g

    def _dir_of_gfid(self, gfid) -> str | None:
        if gfid in self._by_vgfid:
            return os.path.join(self.base, SUBDIRS[self._by_vgfid[gfid]])
        if gfid in self._name_dirs:
            return os.path.join(self.base, SUBDIRS[ENTRY_CHANGES], self._name_dirs[gfid])
        return None

    def _virtual_path(self, loc) -> tuple[str | None, GFID | None, int | None]:
        """(path, gfid to report, kind) when `loc` is in the index, else Nones."""
        if loc.name is None and loc.gfid is not None:
            if loc.gfid in self._by_vgfid:
                return self._dir_of_gfid(loc.gfid), loc.gfid, self._by_vgfid[loc.gfid]
            if loc.gfid in self._name_dirs:
                return self._dir_of_gfid(loc.gfid), loc.gfid, ENTRY_CHANGES
            return None, None, None
        if loc.pargfid is not None and loc.name is not None:
            parent = self._dir_of_gfid(loc.pargfid)
            if parent is None:
                return None, None, None
            if "/" in loc.name or loc.name in (".", ".."):
                raise FopError(errno.EINVAL)
            kind = self._by_vgfid.get(loc.pargfid, ENTRY_CHANGES)
            return os.path.join(parent, loc.name), None, kind
        return None, None, None

    async def _list(self, dir_gfid, dirpath: str, size: int, offset: int, xdata) -> list[Dirent]:
        """index_fill_readdir: entries from position `offset`, skipping (and
        removing when stale) the base files; Dirent.off resumes after each."""
        try:
            names = sorted(os.listdir(dirpath))
        except OSError as e:
            raise FopError(e.errno) from None
        kind = self._by_vgfid.get(dir_gfid)
        entries: list[Dirent] = []
        filled = 0
        for pos in range(max(0, offset), len(names)):
            name = names[pos]
            if name.startswith(f"{SUBDIRS[XATTROP]}-") or name.startswith(f"{SUBDIRS[DIRTY]}-"):
                self._drop_stale_base(dirpath, name)
                continue
            cost = DIRENT_COST + len(os.fsencode(name)) + 1
            if entries and filled + cost > size:
                break
            filled += cost
            ent = Dirent(name, ino=0, off=pos + 1, type=_DT_UNKNOWN)
            entries.append(ent)
        if kind is not None and xdata and GET_GFID_TYPE in xdata:
            await self._fill_gfid_types(entries)
        return entries

    async def _fill_gfid_types(self, entries: list[Dirent]) -> None:
        """index_get_gfid_type for a chunk of entries, GFID_TYPE_LOOKUPS
        lookups at a time (GlusterFS looks them up one after the other: a
        heal index of thousands of entries then takes thousands of round
        trips to the disk before the self-heal daemon heals anything)."""
        limit = trio.CapacityLimiter(GFID_TYPE_LOOKUPS)

        async def fill(ent: Dirent) -> None:
            async with limit:
                await self._fill_gfid_type(ent)
        async with trio.open_nursery() as nursery:
            for ent in entries:
                nursery.start_soon(fill, ent)

    async def _fill_gfid_type(self, ent: Dirent) -> None:
        """index_get_gfid_type: the type of the inode an entry names."""
        try:
            gfid = GFID(ent.name)
        except ValueError:
            return
        try:
            reply = await self.first_child.lookup(Loc(gfid=gfid), None)
        except FopError:
            return
        ent.iatt = reply.iatt
        ent.type = _DT_DIR if reply.iatt.is_dir else _DT_REG if reply.iatt.is_reg else \
            _dtype(reply.iatt.mode)

    def _drop_stale_base(self, dirpath: str, name: str) -> None:
        """check_delete_stale_index_file: an old base file nothing links to."""
        subdir = name.split("-", 1)[0]
        if name == f"{subdir}-{self._index_uuid}":
            return
        path = os.path.join(dirpath, name)
        try:
            if os.lstat(path).st_nlink == 1:
                os.unlink(path)
        except OSError:
            pass

    def _dir_iatt(self, path: str | None, gfid) -> Iatt:
        try:
            ia = Iatt.from_stat(os.lstat(path), gfid)
        except (OSError, TypeError):
            return Iatt(gfid=gfid)
        ia.ino = (1 << 64) - 1
        return ia

    # -- per-inode serialization ------------------------------------------

    def _serialized(self, gfid: GFID):
        return _InodeTurn(self._inode_locks, gfid)


TRANSLATOR = Index


class _InodeTurn:
    """index_queue_process: one tracked xattrop at a time per inode (a
    trio.Lock kept only while someone holds or waits for it)."""

    def __init__(self, table: dict, gfid: GFID):
        self.table, self.gfid = table, gfid

    async def __aenter__(self):
        entry = self.table.get(self.gfid)
        if entry is None:
            entry = self.table[self.gfid] = [trio.Lock(), 0]
        entry[1] += 1
        try:
            await entry[0].acquire()
        except BaseException:
            self._release_ref(entry)
            raise
        return self

    async def __aexit__(self, *exc):
        entry = self.table[self.gfid]
        entry[0].release()
        self._release_ref(entry)

    def _release_ref(self, entry) -> None:
        entry[1] -= 1
        if entry[1] == 0:
            self.table.pop(self.gfid, None)


def _brick_below(xl: Translator) -> str | None:
    """The directory of the storage/posix brick under `xl` (first children)."""
    node: Any = xl
    while getattr(node, "children", None):
        node = node.children[0]
        if getattr(node, "type_name", "") == "storage/posix":
            return node.base
    return None


def _raw(value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return b"\x01" if value else b""


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).rstrip(b"\0").decode("utf-8", "surrogateescape")
    return str(value)


def _gfid_or_einval(name: str) -> GFID:
    try:
        return GFID(name)
    except (ValueError, TypeError):
        raise FopError(errno.EINVAL, f"{name!r} is not a gfid") from None


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise FopError(e.errno) from None


def _dtype(mode: int) -> int:
    return {stat.S_IFDIR: 4, stat.S_IFREG: 8, stat.S_IFLNK: 10, stat.S_IFIFO: 1,
            stat.S_IFSOCK: 12, stat.S_IFCHR: 2, stat.S_IFBLK: 6}.get(stat.S_IFMT(mode), 0)
