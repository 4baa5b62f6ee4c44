"""cluster/stripe: each regular file cut into blocks, dealt round-robin over the children.

Follows GlusterFS's cluster/stripe (removed upstream in release 6; read here
from its release-5 sources).  Block N of a file (`block-size` bytes, chosen
per file by the first matching pattern of the option) lives on child
N % count, the "piece" of the file on that child:

* without `coalesce` at its own file offset, so a piece is a sparse file
  with holes where the other children's blocks would be;
* with `coalesce` (GlusterFS's default) packed: block N at offset
  (N // count) * block-size of its piece, so pieces have no holes.

Every piece carries the file's geometry in GlusterFS's xattrs,
`trusted.<this translator's name>.stripe-size`, `.stripe-count`,
`.stripe-index` and `.stripe-coalesce`, valued as GlusterFS's dict stores
integers (decimal text and a NUL).  A file made with another geometry (the
option changed since) keeps its own.

Where fops go, as in stripe.c: regular files and directories exist on every
child; symlinks and special files only on the first child, which holds the
namespace.  lookup, stat, fstat, setattr, fsetattr, truncate, ftruncate,
open, opendir, flush, fsync, fsyncdir, release and statfs reach every child
that holds the target at once; mkdir, create, mknod of a regular file, link,
rename, rmdir, setxattr and removexattr run on the first child and then on
the others; unlink runs on the others and then on the first child (a
failure leaves the name, so it can be retried); readv, writev, fallocate,
discard and zerofill go to the children holding the blocks concerned, in
parallel; readdirp lists the first child and looks each regular file up on
the others.  getxattr, readdir, readlink, access, the lock fops, xattrop
and the rest go to the first child.

Sizes and times: the true size is the largest size any piece implies (a
piece of S bytes without coalesce implies S; with coalesce, the end of its
last byte in file coordinates - GlusterFS's uncoalesced_size); truncate
gives each piece its share.  Blocks are summed over the pieces.

Departures from GlusterFS, each because stripe must be exact:

* A child that is down (CHILD_DOWN) makes every fop fail with ENOTCONN
  until it is back; CHILD_UP goes up only when every child is up.
  GlusterFS served what the remaining children had, with sizes computed
  from the pieces it could see.
* Every reply's attributes merge all pieces: the latest of each time
  (stripe_iatt_merge's rule, which GlusterFS applied only in readdirp), so
  mtime moves with a write to any piece; readv and writev replies carry the
  exact size (pieces a write did not touch are fstat'ed alongside).
* A read returns zeros for holes and stops exactly at end of file; holes
  inside a read were a TODO in GlusterFS.
* O_APPEND is honoured: writes on such an fd land at the true end of file,
  one at a time per file.  GlusterFS dropped the flag.
* With coalesce, one read, write, fallocate, discard or zerofill goes to
  each child per request (its blocks are contiguous there); GlusterFS sent
  one per block.
* Extended attribute changes on files and directories reach every child, so
  each piece carries its file's xattrs; GlusterFS changed only the first
  child's.  Reads still come from the first child.  Setting or removing a
  `trusted.*stripe*` key is EPERM (as GlusterFS); reading a geometry key
  answers ENODATA.
* rmdir runs on the first child first: it holds every name of the
  directory, so ENOTEMPTY leaves the others untouched.
* lk goes to the first child only, which arbitrates every lock of the file;
  GlusterFS asked every child at once, and two clients could each win one
  child and wait on the other.
* A new entry that fails on a later child is removed again from the
  children that made it.  A regular file missing a piece is EIO; missing
  entries are not re-created (GlusterFS's lookup self-heal).
* `block-size` patterns apply in order, the first match wins (GlusterFS's
  parser kept only the last entry of the list); sizes must be at least
  16KB, multiples of 512 and at most 1GB (GlusterFS set no maximum).
* seek (SEEK_DATA/SEEK_HOLE) asks every piece and maps the answers back
  to file offsets (GlusterFS: ENOTSUP, so QEMU saw a striped image as all
  data).  rchecksum, icreate and namelink answer ENOTSUP (GlusterFS:
  rchecksum checksummed the first piece only); fallocate's COLLAPSE_RANGE
  and INSERT_RANGE answer ENOTSUP; put is served through this
  translator's own fops.  copy_file_range between two files cut alike,
  at offsets a whole stripe apart, is each child's copy of its own piece
  (server-side, holes kept); otherwise readv/writev here.
* `use-xattr off` stores no geometry: it comes from the options and the
  path, and a file reached by gfid alone whose geometry is not known here
  answers EINVAL rather than a guess.

The package, one concern a module (each a mixin of `Stripe`, composed
here): `options` (the options and their limits), `layout` (a file's
Geometry, the block arithmetic, and how it is stored and learnt),
`fanout` (fops sent to several children, their replies judged and
merged), `entry` (entry, inode, directory and xattr fops), `data` (open,
read, write, space fops); `stripe_fops` is generated (glusterpy.fopgen).
"""

from __future__ import annotations


import trio

from glusterpy.fopgen import Family, install
from glusterpy.fops import GFID
from glusterpy.xlator import Event, Translator

from .data import StripeData
from .entry import StripeEntry
from .fanout import StripeFanout
from .layout import Geometry, StripeLayout
from .options import MAX_CHILDREN, OPTIONS

__all__ = ["FOP_METHODS", "OPTIONS", "TRANSLATOR", "Geometry", "Stripe"]


class Stripe(StripeEntry, StripeData, StripeFanout, StripeLayout, Translator):
    """cluster/stripe: see the package docstring; each concern is a mixin of
    its own module."""

    OPTIONS = OPTIONS
    CHILDREN = (2, MAX_CHILDREN)

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self._index = {child: i for i, child in enumerate(self.children)}
        self._all = tuple(range(len(self.children)))
        #: the last CHILD_UP/CHILD_DOWN of each child (None: not heard yet)
        self._child_state: list[Event | None] = [None] * len(self.children)
        #: what this translator last told its parents
        self._reported: Event | None = None
        prefix = f"trusted.{name}."
        self.key_size = prefix + "stripe-size"
        self.key_count = prefix + "stripe-count"
        self.key_index = prefix + "stripe-index"
        self.key_coalesce = prefix + "stripe-coalesce"
        self._keys = (self.key_size, self.key_count, self.key_index, self.key_coalesce)
        # each inode's shape (Geometry, DIRECTORY or SINGLE; it never
        # changes) is its slot in the graph's inode table; a dropped one
        # costs a lookup
        #: one lock per file with appends in flight (O_APPEND)
        self._append_locks: dict[GFID, trio.Lock] = {}

    # -- events ------------------------------------------------------------

    def notify(self, event, source, data=None):
        """Track each child's CHILD_UP/CHILD_DOWN; report CHILD_UP when every
        child is up, CHILD_DOWN once all have been heard from and one is not.
        CHILD_CONNECTING is ignored, as GlusterFS's stripe ignores it."""
        index = self._index.get(source)
        if index is None or event not in (Event.CHILD_UP, Event.CHILD_DOWN,
                                          Event.CHILD_CONNECTING):
            return super().notify(event, source, data)
        if event == Event.CHILD_CONNECTING:
            return
        self._child_state[index] = event
        if all(s == Event.CHILD_UP for s in self._child_state):
            if self._reported != Event.CHILD_UP:
                self._reported = Event.CHILD_UP
                self.log.info("all %d subvolumes up", len(self.children))
                self.notify_parents(Event.CHILD_UP, data)
        elif None not in self._child_state and self._reported != Event.CHILD_DOWN:
            self._reported = Event.CHILD_DOWN
            down = [c.name for c, s in zip(self.children, self._child_state)
                    if s != Event.CHILD_UP]
            self.log.warning("subvolume(s) down: %s; files cannot be served",
                             ", ".join(down))
            self.notify_parents(Event.CHILD_DOWN, data)

    def dump_state(self) -> dict:
        return {"children": {c.name: (s.name if s else None)
                             for c, s in zip(self.children, self._child_state)},
                "reported": self._reported.name if self._reported else None,
                "known_inodes": sum(1 for _ in self.itable.contexts(self)),
                "appending_files": len(self._append_locks)}


#: readlink and symlink: symlinks live on the first child; the lock fops:
#: one child arbitrates; the rest act on what the first child alone keeps
FIRST_CHILD_FOPS = ("access", "readlink", "symlink", "readdir", "xattrop", "fxattrop",
                    "inodelk", "finodelk", "entrylk", "fentrylk", "lk", "lease",
                    "getactivelk", "setactivelk", "ipc")

#: the fops stripe sends to the first child only (stripe.c's defaults)
FOP_METHODS = Family(
    module="xlators.cluster.stripe.stripe_fops", owner="Stripe",
    doc="{name}: to the first child, which holds the namespace.",
    fop_names=lambda: FIRST_CHILD_FOPS,
    template="""
async def {name}(self, {params}, xdata=None):
    self._check_up()
    return await self.first_child.{name}({params}, xdata)
""")
install(Stripe, FOP_METHODS)

TRANSLATOR = Stripe
