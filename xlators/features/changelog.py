"""features/changelog: the brick's journal of what changed, for geo-replication.

Follows GlusterFS 10's features/changelog (xlators/features/changelog/src):
on a brick where `changelog` is on, every entry, data and metadata fop that
succeeds leaves a record in ``<changelog-dir>/CHANGELOG``, rolled over to
``YYYY/MM/DD/CHANGELOG.<ts>`` every `rollover-time` seconds and indexed in
``htime/HTIME.<ts>``.  The files and their format are GlusterFS's, byte for
byte: glusterpy/changelog.py describes them and holds the encoders.
glusterd places the translator just above posix (and arbiter) and below
locks, on every brick, off until `volume set VOL changelog.changelog on`
(geo-replication switches it on), as brick_graph_add_changelog does.

What is recorded (changelog.c's fops):

    E  create mkdir mknod (mode, uid, gid of the caller), symlink, link,
       rename, unlink, rmdir (the removed entry's path when
       capture-del-path is on); an unlink that distribute marks with
       changelog.rename-op (a rename across its subvolumes) as RENAME
    D  writev truncate ftruncate - and fallocate discard zerofill
       copy_file_range (destination), which GlusterFS 10 leaves out
    M  setattr fsetattr (type METADATA), setxattr fsetxattr removexattr
       fremovexattr (METADATA_XATTR), xattrop fxattrop only when they carry
       shard's file-size xattr

Entry records are written for every fop; D and M records once per inode,
type and changelog (GlusterFS's slice versions: the slice number of the
last record of each type lives in the inode table, the current one goes up
at each rollover).  Not recorded, as in GlusterFS: the rebalance process's
fops (pid ClientPid.DEFRAG), and internal fops
(xdata glusterfs-internal-fop: distribute's linkto files, ...) of mknod,
unlink and setattr unless they come from the self-heal daemon; setattr of
shard's .shard directory.  A setxattr of glusterfs.geo-rep.trigger-sync=1
records the file's entry (CREATE 0644 or MKDIR 0755) and its data again,
and is not wound (changelog_handle_virtual_xattr).  A setxattr of
glusterfs.changelog.rollover on the brick root, from gsyncd's pid, rolls
over now (glusterpy's own: GlusterFS rolls over early only when
snapshot's barrier is switched on, which no client can ask for; the
geo-replication worker asks instead of waiting up to rollover-time);
EPERM for any other pid, and never wound, also while the journal is off.

Rollover (changelog_rollover_changelog): the journal is fsynced; a journal
with only its header is deleted and the index records it as
``changelog.<ts>`` (lower case), otherwise it is renamed; the index gets
the path, its xattr trusted.glusterfs.htime "<ts>:<records>".  At start the
current HTIME file (xattr trusted.glusterfs.current_htime on the htime
directory, else the newest) is reused and a CHANGELOG left by a crash is
rolled over first; switching the journal on by reconfigure starts a new
HTIME file; switching it off rolls over one last time and leaves no
CHANGELOG; any other reconfigure while on rolls over (that is how a new
`encoding` takes effect).  The directories are made 0600, as GlusterFS
makes them, even while the journal is off, so consumers can look.

The hot path: a fop's record is encoded in the event loop and appended to
one buffer; one writer task writes the whole buffer with one write() from a
worker thread, and the fops that added to it wait for that write (a reply
means the record is in the file, as in GlusterFS, whose cbk writes it
before unwinding) - but a write that adds nothing (the slice already has
the inode's D record, which is the common case for a stream of writes)
waits for nothing.  fsync every `fsync-interval` seconds (0: the journal is
opened O_SYNC, as GlusterFS does), never per fop.

Departures: the gfid of an entry fop comes from posix's reply (create,
mkdir, mknod, symlink, link, rename), not from gfid-req, so a creation
without gfid-req is recorded too; unlink and rmdir, whose loc carries no
gfid from protocol/server, look the name up first (only while the journal
is on).  fallocate, discard, zerofill and copy_file_range are recorded (D),
put as CREATE plus D.  A rollover within the same second as the previous
one takes the next second's name rather than overwrite it.
`changelog-dir` cannot change on a running brick (a restart applies it).
Left out: the RPC notification socket (`changelog-notification` on is
refused), the snapshot barrier and its csnap journal (glusterpy has no
snapshots; `changelog-barrier-timeout` is accepted for the volume set key
and has nothing to time out), icreate/namelink (not recorded).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import struct
import time
from typing import Any

import trio

from glusterpy import changelog as cl
from glusterpy import fops
from glusterpy.changelog import Record
from glusterpy.fops import ClientPid, FopError, GFID, Loc, ROOT_GFID
from glusterpy.keys import (CHANGELOG_ROLLOVER_KEY, DHT_CHANGELOG_RENAME_OP_KEY, INTERNAL_FOP,
                            SHARD_FILE_SIZE_KEY, TRIGGER_SYNC_KEY)
from glusterpy.options import Option, OptionError, OptionType
from glusterpy.xlator import Translator

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------
# Options (changelog.c's table; the templated paths resolved at init)

OPTIONS = (
    Option("changelog", OptionType.BOOL, "off", "enable/disable change-logging",
           set_keys=("changelog.changelog",)),
    Option("changelog-notification", OptionType.BOOL, "off",
           "enable/disable changelog live notification (not provided: consumers read "
           "the changelog directory)"),
    Option("changelog-brick", OptionType.PATH, None,
           "brick path to generate unique socket file name. should be the export "
           "directory of the volume strictly (default: the storage/posix brick below)",
           reconfigurable=False),
    Option("changelog-dir", OptionType.PATH, None,
           "directory for the changelog files (default: the brick's "
           ".glusterfs/changelogs)", set_keys=("changelog.changelog-dir",),
           reconfigurable=False),
    Option("op-mode", OptionType.ENUM, "realtime",
           "operation mode - futuristic operation modes", choices=("realtime",)),
    Option("encoding", OptionType.ENUM, "ascii", "encoding type for changelogs",
           choices=("binary", "ascii"), set_keys=("changelog.encoding",)),
    Option("rollover-time", OptionType.TIME, "15",
           "time to switch to a new changelog file (in seconds)", min=1,
           set_keys=("changelog.rollover-time",)),
    Option("fsync-interval", OptionType.TIME, "5",
           "do not open CHANGELOG file with O_SYNC mode. instead perform fsync() at "
           "specified intervals", set_keys=("changelog.fsync-interval",)),
    Option("changelog-barrier-timeout", OptionType.TIME, "120",
           "After 'timeout' seconds since the time 'barrier' option was set to \"on\", "
           "unlink/rmdir/rename  operations are no longer blocked and previously blocked "
           "fops are allowed to go through", set_keys=("changelog.changelog-barrier-timeout",)),
    Option("capture-del-path", OptionType.BOOL, "off",
           "enable/disable capturing paths of deleted entries",
           set_keys=("changelog.capture-del-path",)),
)

# --------------------------------------------------------------------------
# GlusterFS's names and numbers

#: changelog_log_type: the slots of an inode's context (the slice number of
#: its last record of each type)
TYPE_DATA, TYPE_METADATA, TYPE_ENTRY, TYPE_METADATA_XATTR = range(4)
SHARD_ROOT_GFID = GFID("be318638-e8a0-4c6d-977d-7a937aa84806")
#: dht_changelog_rename_info_t: two uuids and two int32 name lengths, then the names
_RENAME_INFO = struct.Struct("=16s16sii")
_O_SYNC = getattr(os, "O_SYNC", 0)


def _fop(name: str) -> int:
    return fops.BY_NAME[name].gf_fop


class Changelog(Translator):
    """features/changelog: see the module docstring."""

    OPTIONS = OPTIONS

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        _refuse_notification(self.opts.changelog_notification)
        #: recording now: set at once by reconfigure; the journal's files
        #: follow in the writer task
        self.active = False
        self.dir = ""
        self.brick = ""
        self.binary = self.opts.encoding == "binary"
        #: the current slice: goes up at each rollover (SLICE_VERSION_UPDATE)
        self.slice = 1
        self._buf = bytearray()
        self._batch = trio.Event()      # set once the buffer's records are written
        self._kick = trio.Event()       # wakes the writer
        self._ops: list[tuple] = []     # file work for the writer, in order
        self._io_lock = trio.Lock()
        self._journal: _Journal | None = None
        self._next_rollover = float("inf")
        self._last_ts = 0
        self.records = 0
        self.rollovers = 0

    # -- life cycle ------------------------------------------------------

    async def init(self) -> None:
        self.brick = self.opts.changelog_brick or _brick_below(self) or ""
        cdir = self.opts.changelog_dir
        if cdir is None:
            if not self.brick:
                raise FopError(errno.EINVAL, f"{self.name}: option 'changelog-dir' is "
                                             f"required when no storage/posix is below")
            cdir = os.path.join(self.brick, cl.DEFAULT_DIR)
        self.dir = os.path.abspath(cdir)
        self._journal = _Journal(self.dir, self.name)
        await trio.to_thread.run_sync(self._journal.make_dirs)
        self.spawn(self._writer)
        if self.opts.changelog:
            self._switch_on(new_htime=False)

    async def fini(self) -> None:
        """Write what is buffered and close the journal; the CHANGELOG stays
        and is rolled over at the next start, as GlusterFS leaves it."""
        self.active = False
        self._next_rollover = float("inf")
        self._cut("close")
        await self._run_ops()

    def reconfigure(self, options) -> None:
        value = options.get("changelog-notification")
        if value is not None:
            try:
                _refuse_notification(Option("x", OptionType.BOOL, "off", "").parse(value))
            except OptionError as e:
                raise FopError(errno.EINVAL, str(e)) from None
        super().reconfigure(options)

    def options_changed(self, old) -> None:
        was, now = old.changelog, self.opts.changelog
        if was and not now:
            self.active = False
            self._next_rollover = float("inf")
            self._cut("finale")
        elif now and not was:
            self._switch_on(new_htime=True)
        elif now:
            # every reconfigure of a live journal rolls over (a new encoding
            # starts with the new file's header; a new rollover-time counts
            # from now)
            self._cut("rollover", binary=self.opts.encoding == "binary")
            self._next_rollover = trio.current_time() + self.opts.rollover_time
        else:
            self.binary = self.opts.encoding == "binary"

    def _switch_on(self, new_htime: bool) -> None:
        self.binary = self.opts.encoding == "binary"
        self._cut("start", binary=self.binary, new_htime=new_htime)
        self.active = True
        self._next_rollover = trio.current_time() + self.opts.rollover_time

    def passthrough_fops(self):
        # off, every fop winds unchanged (_skip() is true for all of them)
        # but setxattr, which keeps the explicit rollover's key from posix;
        # only init and options_changed switch it on, and reconfigure
        # rebinds after options_changed
        if self.active:
            return self.default_fops()
        return [n for n in fops.BY_NAME if n != "setxattr"]

    def dump_state(self) -> dict[str, Any]:
        return {"changelog": self.active, "changelog-dir": self.dir,
                "encoding": "binary" if self.binary else "ascii", "slice": self.slice,
                "records": self.records, "rollovers": self.rollovers,
                "buffered": len(self._buf)}

    # -- the journal: records in, one writer out ----------------------------

    def _fresh(self, gfid: GFID | None, kind: int) -> bool:
        """True when the slice has no record of `kind` for the inode yet
        (and marks it as having one): changelog_update's version check."""
        if gfid is None:
            return True
        ctx = self.itable.ctx(self, gfid)
        if ctx is None:
            ctx = [0, 0, 0, 0]
            self.itable.set_ctx(self, gfid, ctx)
        if ctx[kind] == self.slice:
            return False
        ctx[kind] = self.slice
        return True

    async def _log(self, *records: Record) -> None:
        """Append records to the journal; returns once they are written."""
        if not self.active:
            return
        for rec in records:
            self._buf += cl.encode_record(rec, self.binary)
        self.records += len(records)
        batch = self._batch
        self._kick.set()
        await batch.wait()

    def _cut(self, kind: str, **params) -> None:
        """Hand the buffer, and the file work `kind` that follows it, to the
        writer.  Synchronous, so what was buffered before the cut goes to the
        old file and what comes after to the new one, and a rollover starts
        the new slice right here."""
        data = bytes(self._buf)
        self._buf.clear()
        batch, self._batch = self._batch, trio.Event()
        if kind in ("rollover", "finale", "start"):
            ts = max(int(time.time()), self._last_ts + 1)
            self._last_ts = params["ts"] = ts
            self.slice += 1
            # the new file's encoding: what records cut from now on use
            self.binary = params["binary"] = params.get("binary", self.binary)
        self._ops.append((kind, data, batch, params))
        self._kick.set()

    async def _writer(self) -> None:
        """The one task that writes the journal's files."""
        fsync_at = float("inf")
        while True:
            # records or work that came while the last work was done were
            # kicked before the kick below was made: they are looked at first
            if not (self._buf or self._ops):
                with trio.move_on_at(min(self._next_rollover, fsync_at)):
                    await self._kick.wait()
            self._kick = trio.Event()
            now = trio.current_time()
            if self.active and now >= self._next_rollover:
                self._next_rollover = now + self.opts.rollover_time
                self._cut("rollover")
            if self._buf and not self._ops:
                self._cut("write")
            wrote = await self._run_ops()
            interval = self.opts.fsync_interval
            if wrote and interval and fsync_at == float("inf"):
                fsync_at = now + interval
            if now >= fsync_at:
                fsync_at = float("inf")
                async with self._io_lock:
                    if self._journal is not None:
                        await trio.to_thread.run_sync(self._journal.fsync)

    async def _run_ops(self) -> bool:
        """Do the queued file work in order; True when something was written."""
        wrote = False
        while self._ops:
            kind, data, batch, params = self._ops.pop(0)
            async with self._io_lock:
                journal = self._journal
                try:
                    if journal is not None:
                        wrote |= bool(data)
                        await trio.to_thread.run_sync(
                            journal.apply, kind, data, params, self.opts.fsync_interval == 0)
                        if kind in ("rollover", "finale", "start"):
                            self.rollovers += kind != "start"
                except OSError as e:
                    # GlusterFS logs a failed journal write and lets the fop succeed
                    log.error("%s: changelog %s in %s failed: %s", self.name, kind,
                              self.dir, e)
                finally:
                    batch.set()
        return wrote

    # -- who and what is recorded --------------------------------------------

    def _skip(self, xdata=None, internal_check: bool = False) -> bool:
        """CHANGELOG_NOT_ACTIVE_THEN_GOTO (and CHANGELOG_IF_INTERNAL_FOP_THEN_GOTO)."""
        if not self.active:
            return True
        pid = fops.caller.get().pid
        if pid in (ClientPid.DEFRAG, ClientPid.TIER_DEFRAG):
            return True
        return internal_check and pid != ClientPid.SELF_HEALD and bool(
            xdata and xdata.get(INTERNAL_FOP))

    async def _gfid_of(self, loc: Loc) -> GFID | None:
        """The gfid of the inode `loc` names: its own, or a lookup's."""
        if loc.gfid is not None:
            return loc.gfid
        try:
            return (await self.first_child.lookup(Loc(path=loc.path, pargfid=loc.pargfid,
                                                      name=loc.name), None)).iatt.gfid
        except FopError:
            return None

    def _new_entry(self, gfid, fop: str, loc: Loc, mode: int) -> Record:
        who = fops.caller.get()
        return Record.entry(gfid, _fop(fop), loc.pargfid or ROOT_GFID, loc.name, mode=mode,
                            uid=who.uid & 0xFFFFFFFF, gid=who.gid & 0xFFFFFFFF)

    async def _data(self, gfid: GFID | None) -> None:
        if gfid is not None and self._fresh(gfid, TYPE_DATA):
            await self._log(Record.data(gfid))

    async def _meta(self, gfid: GFID | None, fop: str, kind: int) -> None:
        if gfid is not None and self._fresh(gfid, kind):
            await self._log(Record.meta(gfid, _fop(fop)))

    # -- entry fops ---------------------------------------------------------

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        reply = await self.first_child.create(loc, flags, mode, umask, fd, xdata)
        if not self._skip() and _named(loc):
            await self._log(self._new_entry(reply.iatt.gfid, "create", loc, mode))
        return reply

    async def mkdir(self, loc, mode, umask, xdata=None):
        reply = await self.first_child.mkdir(loc, mode, umask, xdata)
        if not self._skip() and _named(loc):
            await self._log(self._new_entry(reply.iatt.gfid, "mkdir", loc,
                                            stat.S_IFDIR | mode))
        return reply

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        reply = await self.first_child.mknod(loc, mode, rdev, umask, xdata)
        if not self._skip(xdata, internal_check=True) and _named(loc):
            await self._log(self._new_entry(reply.iatt.gfid, "mknod", loc, mode))
        return reply

    async def symlink(self, linkname, loc, umask, xdata=None):
        reply = await self.first_child.symlink(linkname, loc, umask, xdata)
        if not self._skip() and _named(loc):
            await self._log(Record.entry(reply.iatt.gfid, _fop("symlink"), loc.pargfid,
                                         loc.name))
        return reply

    async def link(self, oldloc, newloc, xdata=None):
        reply = await self.first_child.link(oldloc, newloc, xdata)
        if not self._skip() and _named(newloc):
            gfid = oldloc.gfid or reply.iatt.gfid
            await self._log(Record.entry(gfid, _fop("link"), newloc.pargfid, newloc.name))
        return reply

    async def rename(self, oldloc, newloc, xdata=None):
        reply = await self.first_child.rename(oldloc, newloc, xdata)
        if not self._skip() and _named(oldloc) and _named(newloc):
            gfid = oldloc.gfid or reply.iatt.gfid
            await self._log(Record.entry(gfid, _fop("rename"), oldloc.pargfid, oldloc.name,
                                         new_pargfid=newloc.pargfid,
                                         new_basename=newloc.name))
        return reply

    async def unlink(self, loc, xflags, xdata=None):
        info = xdata.get(DHT_CHANGELOG_RENAME_OP_KEY) if xdata else None
        if info is not None:
            return await self._unlink_as_rename(loc, xflags, xdata, info)
        if self._skip(xdata, internal_check=True) or not _named(loc):
            return await self.first_child.unlink(loc, xflags, xdata)
        return await self._remove("unlink", loc, xflags, xdata)

    async def rmdir(self, loc, xflags, xdata=None):
        if self._skip() or not _named(loc):
            return await self.first_child.rmdir(loc, xflags, xdata)
        return await self._remove("rmdir", loc, xflags, xdata)

    async def _remove(self, fop: str, loc: Loc, xflags, xdata):
        # the name's inode and path, before the name is gone
        gfid = await self._gfid_of(loc)
        path = ""
        if self.opts.capture_del_path and self.brick:
            path = await trio.to_thread.run_sync(
                resolve_pargfid_to_path, self.brick, loc.pargfid, loc.name) or ""
        reply = await getattr(self.first_child, fop)(loc, xflags, xdata)
        if gfid is not None and self.active:
            await self._log(Record.entry(gfid, _fop(fop), loc.pargfid, loc.name, path=path))
        return reply

    async def _unlink_as_rename(self, loc, xflags, xdata, info):
        """distribute's unlink of a rename's source on another subvolume:
        recorded as the RENAME it is."""
        if self._skip():
            return await self.first_child.unlink(loc, xflags, xdata)
        try:
            old_pargfid, new_pargfid, old_name, new_name = decode_rename_info(info)
        except ValueError as e:
            log.warning("%s: %s in unlink xdata: %s", self.name, DHT_CHANGELOG_RENAME_OP_KEY, e)
            return await self.first_child.unlink(loc, xflags, xdata)
        gfid = await self._gfid_of(loc)
        reply = await self.first_child.unlink(loc, xflags, xdata)
        if gfid is not None and self.active:
            await self._log(Record.entry(gfid, _fop("rename"), old_pargfid, old_name,
                                         new_pargfid=new_pargfid, new_basename=new_name))
        return reply

    async def put(self, loc, mode, umask, flags, data, offset, xattrs, xdata=None):
        reply = await self.first_child.put(loc, mode, umask, flags, data, offset, xattrs, xdata)
        if not self._skip() and _named(loc):
            gfid = reply.iatt.gfid
            recs = [self._new_entry(gfid, "create", loc, mode)]
            if self._fresh(gfid, TYPE_DATA):
                recs.append(Record.data(gfid))
            await self._log(*recs)
        return reply

    # -- data fops ----------------------------------------------------------

    async def writev(self, fd, data, offset, flags, xdata=None):
        reply = await self.first_child.writev(fd, data, offset, flags, xdata)
        if self.active and not self._skip():
            await self._data(fd.gfid)
        return reply

    async def truncate(self, loc, offset, xdata=None):
        reply = await self.first_child.truncate(loc, offset, xdata)
        if not self._skip():
            await self._data(loc.gfid or _post_gfid(reply))
        return reply

    async def ftruncate(self, fd, offset, xdata=None):
        reply = await self.first_child.ftruncate(fd, offset, xdata)
        if not self._skip():
            await self._data(fd.gfid)
        return reply

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        reply = await self.first_child.fallocate(fd, mode, offset, length, xdata)
        if not self._skip():
            await self._data(fd.gfid)
        return reply

    async def discard(self, fd, offset, length, xdata=None):
        reply = await self.first_child.discard(fd, offset, length, xdata)
        if not self._skip():
            await self._data(fd.gfid)
        return reply

    async def zerofill(self, fd, offset, length, xdata=None):
        reply = await self.first_child.zerofill(fd, offset, length, xdata)
        if not self._skip():
            await self._data(fd.gfid)
        return reply

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags,
                              xdata=None):
        reply = await self.first_child.copy_file_range(fd_in, off_in, fd_out, off_out,
                                                       length, flags, xdata)
        if not self._skip():
            await self._data(fd_out.gfid)
        return reply

    # -- metadata fops --------------------------------------------------------

    async def setattr(self, loc, stbuf, valid, xdata=None):
        reply = await self.first_child.setattr(loc, stbuf, valid, xdata)
        if not self._skip(xdata, internal_check=True):
            gfid = loc.gfid or _post_gfid(reply)
            if gfid != SHARD_ROOT_GFID:
                await self._meta(gfid, "setattr", TYPE_METADATA)
        return reply

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        reply = await self.first_child.fsetattr(fd, stbuf, valid, xdata)
        if not self._skip():
            await self._meta(fd.gfid, "fsetattr", TYPE_METADATA)
        return reply

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        if xattrs and CHANGELOG_ROLLOVER_KEY in xattrs:
            return await self._explicit_rollover(loc, xattrs)
        if self.active and xattrs and TRIGGER_SYNC_KEY in xattrs and not self._skip():
            return await self._trigger_sync(loc, xattrs[TRIGGER_SYNC_KEY])
        reply = await self.first_child.setxattr(loc, xattrs, flags, xdata)
        if not self._skip():
            await self._meta(await self._gfid_of(loc), "setxattr", TYPE_METADATA_XATTR)
        return reply

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        reply = await self.first_child.fsetxattr(fd, xattrs, flags, xdata)
        if not self._skip():
            await self._meta(fd.gfid, "fsetxattr", TYPE_METADATA_XATTR)
        return reply

    async def removexattr(self, loc, name, xdata=None):
        reply = await self.first_child.removexattr(loc, name, xdata)
        if not self._skip():
            await self._meta(await self._gfid_of(loc), "removexattr", TYPE_METADATA_XATTR)
        return reply

    async def fremovexattr(self, fd, name, xdata=None):
        reply = await self.first_child.fremovexattr(fd, name, xdata)
        if not self._skip():
            await self._meta(fd.gfid, "fremovexattr", TYPE_METADATA_XATTR)
        return reply

    async def xattrop(self, loc, optype, xattrs, xdata=None):
        reply = await self.first_child.xattrop(loc, optype, xattrs, xdata)
        if not self._skip() and xattrs and SHARD_FILE_SIZE_KEY in xattrs:
            await self._meta(await self._gfid_of(loc), "xattrop", TYPE_METADATA)
        return reply

    async def fxattrop(self, fd, optype, xattrs, xdata=None):
        reply = await self.first_child.fxattrop(fd, optype, xattrs, xdata)
        if not self._skip() and xattrs and SHARD_FILE_SIZE_KEY in xattrs:
            await self._meta(fd.gfid, "fxattrop", TYPE_METADATA_XATTR)
        return reply

    async def _explicit_rollover(self, loc: Loc, xattrs):
        """A setxattr of CHANGELOG_ROLLOVER_KEY on the brick root from
        gsyncd's pid: the journal rolls over now (and the timer counts
        rollover-time from now); the reply comes once the rolled-over file
        is in the htime index, so the caller can read it at once.  What it
        costs: a journal with no records is deleted at rollover, the index
        gets one more line.  Anyone else gets EPERM, and nothing is wound
        (the key never reaches posix).  The pid is what the client says,
        as for GlusterFS's stime xattrs: this keeps ordinary clients from
        rolling the journal over by mistake, not a hostile one."""
        if fops.caller.get().pid != ClientPid.GSYNCD:
            raise FopError(errno.EPERM, f"{CHANGELOG_ROLLOVER_KEY}: geo-replication's "
                                        f"(gsyncd's pid) only")
        if len(xattrs) != 1:
            raise FopError(errno.EINVAL, f"{CHANGELOG_ROLLOVER_KEY} is set alone")
        if not (loc.gfid == ROOT_GFID or (loc.gfid is None and loc.path == "/")):
            raise FopError(errno.EINVAL, f"{CHANGELOG_ROLLOVER_KEY}: on the brick root only")
        if not self.active:
            raise FopError(errno.ENOTSUP, f"{CHANGELOG_ROLLOVER_KEY}: the changelog is off")
        done = self._batch      # set once the work queued below is done
        self._next_rollover = trio.current_time() + self.opts.rollover_time
        self._cut("rollover")
        await done.wait()
        return fops.Reply()

    async def _trigger_sync(self, loc: Loc, value):
        """changelog_handle_virtual_xattr: 1 records the file again - its
        entry (when the loc names its parent) and, for a file, its data."""
        try:
            wanted = int(value.rstrip(b"\0") if isinstance(value, (bytes, bytearray))
                         else value)
        except (TypeError, ValueError):
            wanted = 0
        iatt = (await self.first_child.stat(loc, None)).iatt if wanted == 1 else None
        if iatt is None or not (stat.S_ISDIR(iatt.mode) or stat.S_ISREG(iatt.mode)):
            raise FopError(errno.ENOTSUP, f"{TRIGGER_SYNC_KEY} takes 1, on a file or directory")
        recs = []
        if _named(loc):
            if stat.S_ISDIR(iatt.mode):
                recs.append(self._new_entry(iatt.gfid, "mkdir", loc, stat.S_IFDIR | 0o755))
            else:
                recs.append(self._new_entry(iatt.gfid, "create", loc, stat.S_IFREG | 0o644))
        if not stat.S_ISDIR(iatt.mode):
            recs.append(Record.data(iatt.gfid))
        await self._log(*recs)
        return fops.Reply()


# --------------------------------------------------------------------------
# The files (run in a worker thread, by the writer task only)


class _Journal:
    """The CHANGELOG and HTIME files of one changelog directory."""

    def __init__(self, cdir: str, name: str):
        self.dir = cdir
        self.name = name
        self.htime_dir = os.path.join(cdir, cl.HTIME_DIR)
        self.path = os.path.join(cdir, cl.CHANGELOG_FILE_NAME)
        self.fd = -1
        self.htime_fd = -1
        self.rollover_count = 1
        self.header_len = 0

    def make_dirs(self) -> None:
        """mkdir_p(.., 0600) of the directory, htime/ and csnap/."""
        for d in (self.dir, self.htime_dir, os.path.join(self.dir, cl.CSNAP_DIR)):
            os.makedirs(d, mode=0o600, exist_ok=True)

    def apply(self, kind: str, data: bytes, params: dict, osync: bool) -> None:
        if data and self.fd >= 0:
            _write_all(self.fd, data)
        if kind == "start":
            if params["new_htime"]:
                self.htime_create(params["ts"])
            else:
                self.htime_open(params["ts"])
            self.roll(params["ts"])
            self.open_journal(params["binary"], osync)
        elif kind == "rollover":
            self.roll(params["ts"])
            self.open_journal(params["binary"], osync)
        elif kind == "finale":
            self.roll(params["ts"])
            self._close_htime()
        elif kind == "close":
            if self.fd >= 0:
                os.fsync(self.fd)
                os.close(self.fd)
                self.fd = -1
            self._close_htime()

    def fsync(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)

    # -- htime (htime_open / htime_create / htime_update) ------------------------

    def htime_open(self, ts: int) -> None:
        """Reuse the current HTIME file, or the newest, or make one."""
        try:
            bname = os.getxattr(self.htime_dir, cl.HTIME_CURRENT).decode()
        except OSError:
            bname = None
        if not bname or not os.path.exists(os.path.join(self.htime_dir, bname)):
            files = cl.htime_files(self.dir)
            if not files:
                self.htime_create(ts)
                return
            bname = os.path.basename(files[-1])
            os.setxattr(self.htime_dir, cl.HTIME_CURRENT, bname.encode())
        path = os.path.join(self.htime_dir, bname)
        self._close_htime()
        self.htime_fd = os.open(path, os.O_RDWR | os.O_APPEND | _O_SYNC)
        total = 0
        try:
            total = int(os.getxattr(path, cl.HTIME_KEY).decode().split(":")[1])
        except (OSError, ValueError, IndexError):
            pass
        with open(path, "rb") as f:
            total = max(total, len(cl.parse_htime(f.read())))
        self.rollover_count = total + 1

    def htime_create(self, ts: int) -> None:
        path = os.path.join(self.htime_dir, cl.htime_name(ts))
        self._close_htime()
        self.htime_fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_APPEND | _O_SYNC, 0o644)
        os.setxattr(path, cl.HTIME_KEY, cl.HTIME_INITIAL_VALUE.encode())
        os.fsync(self.htime_fd)
        os.setxattr(self.htime_dir, cl.HTIME_CURRENT, cl.htime_name(ts).encode())
        dfd = os.open(self.htime_dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.rollover_count = 1

    def _htime_update(self, ts: int, path: str) -> None:
        if self.htime_fd < 0:
            raise OSError(errno.EBADF, "no HTIME file open")
        _write_all(self.htime_fd, cl.htime_record(path))
        os.setxattr(self.htime_fd, cl.HTIME_KEY, f"{ts}:{self.rollover_count}".encode())
        self.rollover_count += 1

    def _close_htime(self) -> None:
        if self.htime_fd >= 0:
            os.close(self.htime_fd)
            self.htime_fd = -1

    # -- the journal ----------------------------------------------------------

    def open_journal(self, binary: bool, osync: bool) -> None:
        flags = os.O_CREAT | os.O_WRONLY | os.O_APPEND | (_O_SYNC if osync else 0)
        fd = os.open(self.path, flags, 0o644)
        try:
            head = cl.header(binary)
            _write_all(fd, head)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.header_len = len(head)

    def roll(self, ts: int) -> None:
        """changelog_rollover_changelog: CHANGELOG becomes CHANGELOG.<ts>, or
        goes away (empty) and the index says changelog.<ts>."""
        empty = False
        if self.fd >= 0:
            os.fsync(self.fd)
            empty = os.fstat(self.fd).st_size <= self.header_len
            os.close(self.fd)
            self.fd = -1
        elif os.path.exists(self.path):
            # a journal left by a crash (or a stop): rolled over at start
            with open(self.path, "rb") as f:
                data = f.read(1024)
            try:
                empty = os.path.getsize(self.path) <= cl.parse_header(data).length
            except cl.ChangelogError:
                empty = os.path.getsize(self.path) == 0
        else:
            return
        target = cl.rolled_name(self.dir, ts)
        if empty:
            os.unlink(self.path)
            target = cl.rolled_name(self.dir, ts, empty=True)
        else:
            os.makedirs(os.path.dirname(target), mode=0o600, exist_ok=True)
            os.rename(self.path, target)
        self._htime_update(ts, target)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# --------------------------------------------------------------------------
# Helpers


def _refuse_notification(on: bool) -> None:
    if on:
        raise OptionError("changelog-notification",
                          "option 'changelog-notification': live notification (GlusterFS's "
                          "changelog RPC socket) is not provided; consumers read the "
                          "changelog directory")


def _named(loc: Loc) -> bool:
    return loc.pargfid is not None and bool(loc.name)


def _post_gfid(reply) -> GFID | None:
    post = getattr(reply, "postbuf", None)
    return post.gfid if post is not None else None


def _brick_below(xl: Translator) -> str | None:
    """The directory of the storage/posix brick under `xl` (first children)."""
    node: Any = xl
    while getattr(node, "children", None):
        node = node.children[0]
        if getattr(node, "type_name", "") == "storage/posix":
            return node.base
    return None


def decode_rename_info(raw) -> tuple[GFID, GFID, str, str]:
    """dht_changelog_rename_info_t -> (old parent, new parent, old name, new name)."""
    raw = bytes(raw)
    if len(raw) < _RENAME_INFO.size:
        raise ValueError("too short")
    old_p, new_p, old_len, new_len = _RENAME_INFO.unpack_from(raw)
    names = raw[_RENAME_INFO.size:]
    if old_len <= 0 or new_len <= 0 or old_len + new_len > len(names):
        raise ValueError("name lengths out of range")
    old = names[:old_len].split(b"\0", 1)[0]
    new = names[old_len:old_len + new_len].split(b"\0", 1)[0]
    if not old or not new:
        raise ValueError("empty name")
    return GFID(old_p), GFID(new_p), os.fsdecode(old), os.fsdecode(new)


def resolve_pargfid_to_path(brick: str, pargfid: GFID | None, name: str | None) -> str | None:
    """The path of `name` in the directory `pargfid`, from the brick root
    (no leading slash), by following the directories' .glusterfs handles
    ("../../pp/qq/<parent gfid>/<dir name>") up to the root; None when a
    handle cannot be read (resolve_pargfid_to_path)."""
    if pargfid is None:
        return None
    parts = [name] if name else []
    gfid = GFID(pargfid)
    seen = 0
    while gfid != ROOT_GFID:
        hex_ = str(gfid)
        handle = os.path.join(brick, ".glusterfs", hex_[0:2], hex_[2:4], hex_)
        try:
            target = os.readlink(handle)
        except OSError:
            return None
        bits = target.split("/")
        if len(bits) < 6:
            return None
        try:
            gfid = GFID(bits[4])
        except ValueError:
            return None
        parts.insert(0, bits[5])
        seen += 1
        if seen > 4096:          # a loop of handles
            return None
    return "/".join(parts) if parts else "."


TRANSLATOR = Changelog
