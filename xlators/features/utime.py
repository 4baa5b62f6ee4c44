"""features/utime: the client's clock, and the times a fop changes, for the bricks.

The client side of GlusterFS's ctime feature (xlators/features/utime): glusterd
loads it into every client graph while `features.ctime` is on.  For each fop
that changes an inode's times it stamps the call - GlusterFS's
`frame->root->ctime` and `frame->root->flags`, here the `fops.caller` context
variable's `ctime_ns` and `flags` - with the client's clock and the MDATA_*
bits of the times the fop moves, then winds.  protocol/client carries both in
the v3 auth header, and storage/posix stores that clock in
`trusted.glusterfs.mdata` on every brick, so the replicas of a file hold the
same times whatever the bricks' clocks say.  A new Caller is set for the
wind and the previous one restored after it; the translators below, and
tasks they start, see the stamped one (GlusterFS's copy_frame copies the
flags and the time too).

The table follows utime_update_attribute_flags (utime-helpers.c) and the fops
its generator (utime-gen-fops-c.py) wraps:

    mknod mkdir symlink create    ctime mtime atime, parent ctime mtime
    unlink rmdir link rename      ctime, parent ctime mtime
    writev truncate ftruncate     ctime mtime
    fallocate zerofill            mtime atime
    removexattr fremovexattr      ctime
    setxattr fsetxattr            ctime
    readv open opendir            atime, unless noatime
    copy_file_range               ctime mtime (destination), atime unless
                                  noatime (source)
    setattr fsetattr              ctime when the owner, group or mode change,
                                  or when nothing does; with ATIME_NOW or
                                  MTIME_NOW the clock is the given atime or
                                  mtime (the client's "now")

Flags are added to the caller's (`|=`, as GlusterFS does); the clock is
always replaced.  Every other fop passes through untouched.

lookup asks posix for the stored times (xdata `trusted.glusterfs.mdata`);
when the reply has none - a file made before the ctime feature was on - it
sends posix a setxattr of `set-ctime-mdata` with the times of the looked-up
iatt, as root with GlusterFS's GF_CLIENT_PID_SET_UTIME, so every later
client sees the same times; a failure there is logged and the lookup still
succeeds (gf_utime_set_mdata_lookup_cbk).

Option `noatime` (volume set `ctime.noatime`, on by default): reads, opens
and opendirs leave atime alone.

Departures: GlusterFS 10 lists setxattr and fsetxattr in its table but its
generator never wraps them, and it generates a copy_file_range wrapper it
never registers; here all three are stamped, so their times too come from the
client.  A setattr whose *_NOW time is zero (not filled in by the caller)
keeps the client's clock rather than stamping the epoch.

`clock` (an attribute, `time.time_ns` by default) is the client's clock.
Wrappers only set the context variable and await the child, so
FOPS_NEVER_SUSPEND holds.
"""

from __future__ import annotations

import time

from glusterpy import fops
from glusterpy.fops import Caller, ClientPid, FopError, Loc, caller
from glusterpy.fopgen import Family, install
from glusterpy.keys import MDATA_KEY, SET_CTIME_MDATA
from glusterpy.options import Option, OptionType
from glusterpy.rpc import MdataIatt
from glusterpy.xlator import Translator

# --------------------------------------------------------------------------
# Options

OPTIONS = (
    Option("noatime", OptionType.BOOL, "on",
           "Enable/Disable atime updation when ctime feature is enabled. When noatime "
           "is on, atime is not updated with ctime feature enabled and vice versa.",
           set_keys=("ctime.noatime",)),
)

# --------------------------------------------------------------------------
# GlusterFS's names and numbers

#: call_stack flags (stack.h): which times a fop updates
MDATA_CTIME, MDATA_MTIME, MDATA_ATIME = 0x1, 0x2, 0x4
MDATA_PAR_CTIME, MDATA_PAR_MTIME, MDATA_PAR_ATIME = 0x8, 0x10, 0x20

_NEW_ENTRY = MDATA_CTIME | MDATA_MTIME | MDATA_ATIME | MDATA_PAR_CTIME | MDATA_PAR_MTIME
_NAME_CHANGE = MDATA_CTIME | MDATA_PAR_CTIME | MDATA_PAR_MTIME

#: utime_update_attribute_flags: the flags each stamped fop always adds
FLAGS = {
    "mknod": _NEW_ENTRY, "mkdir": _NEW_ENTRY, "symlink": _NEW_ENTRY, "create": _NEW_ENTRY,
    "unlink": _NAME_CHANGE, "rmdir": _NAME_CHANGE, "link": _NAME_CHANGE,
    "rename": _NAME_CHANGE,
    "writev": MDATA_CTIME | MDATA_MTIME,
    "truncate": MDATA_CTIME | MDATA_MTIME, "ftruncate": MDATA_CTIME | MDATA_MTIME,
    "fallocate": MDATA_MTIME | MDATA_ATIME, "zerofill": MDATA_MTIME | MDATA_ATIME,
    "removexattr": MDATA_CTIME, "fremovexattr": MDATA_CTIME,
    "setxattr": MDATA_CTIME, "fsetxattr": MDATA_CTIME,
    "copy_file_range": MDATA_CTIME | MDATA_MTIME,
    "readv": 0, "open": 0, "opendir": 0,
}
#: fops that also move atime unless noatime is on
ATIME_FOPS = frozenset({"readv", "open", "opendir", "copy_file_range"})


class Utime(Translator):
    """features/utime: see the module docstring."""

    SKIP_DEFAULT_FOPS = True  # its default fops only wind

    OPTIONS = OPTIONS
    FOPS_NEVER_SUSPEND = True  # it sets a context variable and awaits its child

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        #: the client's clock in ns (GlusterFS: timespec_get(TIME_UTC))
        self.clock = time.time_ns
        self._set_atime()

    def options_changed(self, old) -> None:
        self._set_atime()

    def _set_atime(self) -> None:
        # read on every read: a plain attribute, not an option lookup
        self._atime = 0 if self.opts.noatime else MDATA_ATIME

    # -- lookup: give legacy files stored times --------------------------------

    async def lookup(self, loc, xdata=None):
        request = dict(xdata) if xdata else {}
        request[MDATA_KEY] = 1   # GlusterFS's dict_set_int8(xdata, MDATA_KEY, 1)
        reply = await self.first_child.lookup(loc, request)
        if not reply.xdata or MDATA_KEY not in reply.xdata:
            await self._store_legacy_times(loc, reply.iatt)
        return reply

    async def _store_legacy_times(self, loc: Loc, iatt: fops.Iatt) -> None:
        """gf_utime_set_mdata_lookup_cbk: setxattr set-ctime-mdata with the
        iatt's times, as root and GF_CLIENT_PID_SET_UTIME; never fails the
        lookup."""
        times = MdataIatt(atime=iatt.atime, mtime=iatt.mtime, ctime=iatt.ctime,
                          atime_nsec=iatt.atime_nsec, mtime_nsec=iatt.mtime_nsec,
                          ctime_nsec=iatt.ctime_nsec)
        target = Loc(path=loc.path, gfid=iatt.gfid, pargfid=loc.pargfid, name=loc.name)
        c = caller.get()
        token = caller.set(Caller(0, 0, (), ClientPid.SET_UTIME, c.lk_owner, c.client,
                                  c.flags, c.ctime_ns))
        try:
            await self.first_child.setxattr(target, {SET_CTIME_MDATA: times}, 0, None)
        except FopError as e:
            self.log.error("dict set of key for set-ctime-mdata failed on %s: %s", target, e)
        finally:
            caller.reset(token)

    # -- setattr and fsetattr: flags and clock depend on what changes --------

    async def setattr(self, loc, stbuf, valid, xdata=None):
        token = caller.set(self._setattr_caller(stbuf, valid))
        try:
            return await self.first_child.setattr(loc, stbuf, valid, xdata)
        finally:
            caller.reset(token)

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        token = caller.set(self._setattr_caller(stbuf, valid))
        try:
            return await self.first_child.fsetattr(fd, stbuf, valid, xdata)
        finally:
            caller.reset(token)

    def _setattr_caller(self, stbuf: fops.Iatt, valid: int) -> Caller:
        """FOPS_SETATTR_TEMPLATE: ctime for owner, group and mode changes and
        for a setattr of nothing; with *_NOW the client's "now" it sent."""
        flags = 0
        if not valid or valid & (fops.SET_ATTR_UID | fops.SET_ATTR_GID | fops.SET_ATTR_MODE):
            flags = MDATA_CTIME
        now = self.clock()
        if valid & (fops.SET_ATTR_ATIME | fops.SET_ATTR_MTIME):
            if valid & fops.SET_ATTR_ATIME_NOW:
                now = stbuf.atime_ns or now
            elif valid & fops.SET_ATTR_MTIME_NOW:
                now = stbuf.mtime_ns or now
        return self._stamped(flags, now)

    # -- helpers -------------------------------------------------------------

    def _stamped(self, flags: int, now: int) -> Caller:
        """The caller with `flags` added and the clock `now` (positional:
        this runs on every stamped fop)."""
        c = caller.get()
        return Caller(c.uid, c.gid, c.groups, c.pid, c.lk_owner, c.client, c.flags | flags, now)


# --------------------------------------------------------------------------
# The stamped fops, generated from the table and the catalogue

def _flags(fop: fops.Fop) -> dict[str, str]:
    flags = str(FLAGS[fop.name])
    if fop.name in ATIME_FOPS:
        flags += " | self._atime"
    return {"flags": flags}


#: wind every fop of FLAGS under a Caller stamped with the client's clock
FOP_METHODS = Family(
    module="xlators.features.utime_fops", owner="Utime",
    doc="{name}: stamp the client's clock and the times it moves, then wind.",
    header="from glusterpy.fops import caller",
    fop_names=lambda: list(FLAGS), fields=_flags,
    template="""
async def {name}(self, {params}, xdata=None):
    _token = caller.set(self._stamped({flags}, self.clock()))
    try:
        return await self.first_child.{name}({params}, xdata)
    finally:
        caller.reset(_token)
""")
install(Utime, FOP_METHODS)

TRANSLATOR = Utime
