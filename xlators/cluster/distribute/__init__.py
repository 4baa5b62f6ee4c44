"""cluster/distribute: one namespace over many bricks, as GlusterFS's DHT.

Each directory exists on every subvolume and carries, on each, one range of
the 32-bit hash space in `trusted.glusterfs.dht` (GlusterFS's 16-byte
format: commit hash, hash type, start, stop).  A file lives on the
subvolume whose range holds the hash of its name (GlusterFS's
Davies-Meyer hash after the rsync-name munging: layout.py),
so GlusterFS 10 and glusterpy put the same name on the same brick and can
serve each other's bricks.  A file whose data is elsewhere - renamed to a
name that hashes to another brick, placed away by `min-free-disk`, a hard
link - has a *linkto file* on its hashed brick: an empty regular file of
mode 01000 whose `trusted.glusterfs.dht.linkto` names the subvolume with
the data.  Every name of a file exists on the data's brick.

Following GlusterFS (xlators/cluster/dht/src):

* lookup goes to the hashed subvolume; a directory is then looked up
  everywhere, its layout merged and healed (dht-selfheal.c: a directory
  missing on a brick is created there; holes and overlaps get a fresh
  layout, commit hash 1; the mds xattr `trusted.glusterfs.dht.mds` marks
  the hashed subvolume; owner and mode are made equal); a linkto file is
  followed; a miss is looked up everywhere unless `lookup-optimize` says
  the directory's layout is committed (its commit hash equals the
  volume's), and what that finds is repaired: a linkto file created on the
  hashed brick, stale linkto files removed.  A gfid without a name is
  looked up on every brick (dht_do_discover).
* create, mknod and symlink go to the hashed subvolume; with `min-free-disk`
  or `min-free-inodes` exceeded there, create and mknod put the data on the
  subvolume with most room and a linkto file on the hashed one.
* mkdir: the hashed subvolume first (with the mds xattr), then the others,
  then the layout (dht_selfheal_new_directory, weighted by brick size with
  `weighted-rebalance`).  rmdir: every brick must be empty but for stale
  linkto files, which are removed; then the non-hashed bricks, then the
  hashed one; a partial failure recreates the directory.
* rename of files follows dht-rename.c (linkto on the new hashed brick, a
  hard link on the data brick, rename, then the old names removed); of
  directories: on the new name's hashed brick first, then the others, undone
  everywhere if one fails.  link: a linkto file on the new name's hashed
  brick, then the link on the data brick.  unlink removes the name on the
  data brick and the linkto file on the hashed one.
* readdir(p) reads the bricks one after the other; each entry's d_off carries
  the brick's index (gf_itransform), so a listing resumes where it was.
  Linkto files are never shown; a directory is shown by the brick its name
  hashes to (the first one up when that one is down; the first one up with
  `readdir-optimize`).  readdir is served by the bricks' readdirp, as
  GlusterFS does with its default `use-readdirp`; off, plain readdir shows
  each name from its hashed brick.
* Directory attributes are the merge GlusterFS makes (size 4096, blocks 8,
  latest times); setattr, setxattr and removexattr of a directory go to the
  mds subvolume first, then to all; getxattr of user xattrs to the mds
  subvolume, of others to all, merged; the layout and mds xattrs are hidden.
  pathinfo answers `(<DISTRIBUTE:name> ...)`, `trusted.distribute.linkinfo`
  the pathinfo of a file's linkto.  statfs sums the bricks.
* Events as dht_notify: nothing goes up until every child has spoken; then
  CHILD_UP if one is up, and afterwards every event passes (a child going
  down while others are up is SOME_DESCENDENT_DOWN).  A fop that needs a
  subvolume that is down fails with ENOTCONN.
* The building blocks of rebalance: `set_volume_commit_hash(h)` (the
  commithash xattr on the brick roots, first step of a rebalance),
  `fix_layout(loc)` (dht_fix_layout_of_directory: new ranges, swapped to
  keep as many files in place as possible; with `new_commit_hash` it
  settles a directory whose files are in place), `migrate_file(loc)` (moves
  a file to its hashed brick as dht-rebalance.c does, migrate.py).  They are also reached the way GlusterFS's rebalance
  process reaches them: setxattr of `distribute.fix.layout` (with
  `new-commit-hash`), of the commithash key on the root, and of
  `trusted.distribute.migrate-data`.

Departures:

* No entry or inode locks are taken (GlusterFS's dht_protect_namespace and
  layout-heal inodelks): fops of this graph are ordered by trio, bricks of
  glusterpy need not load features/locks, and racing creations of a linkto
  file are resolved by checking what EEXIST found.  Concurrent namespace
  changes from several clients are therefore not serialised.
* The inode context (directory layouts, files' data subvolumes) lives in
  this translator, keyed by gfid and bounded; a gfid it does not know is
  discovered by a nameless lookup on every brick.  A directory's layout is
  refreshed by every lookup of it; without the pre-op check below, a
  create under a layout another client has just changed can land on the
  old hashed brick (a later lookup-everywhere or rebalance finds it).
* mkdir without a gfid-req makes one (GlusterFS answers EPERM), since every
  brick must get the same gfid.  GlusterFS's parent-layout pre-op check in
  mkdir/create (GF_PREOP_PARENT_KEY) is not sent: storage/posix here does not
  serve it.
* fix_layout of a directory whose commit hash is the volume's writes commit
  hash 1 instead (so misses keep looking everywhere until it is settled);
  GlusterFS's rebalance avoids the same hazard by changing the volume's
  commit hash first.
* The d_off transform counts distribute's children instead of the graph's
  leaves (the same for distribute over clients; also right over replicate).
* icreate and namelink (gfid-only creation, no name to hash) answer
  ENOTSUP; GlusterFS would wind them to the first child.  rchecksum, seek
  and copy_file_range go to the file's data subvolume instead of the first
  child (GlusterFS 10 winds them to the first child).  copy_file_range
  between two bricks into an empty file (`cp`'s clone) first migrates that
  file to the source's brick, leaving a linkto file where its name hashes
  (migrate_file with a target), so the brick copies; into a file with data
  it is done here, readv/writev of the source's data extents.  create takes
  COLOCATE_KEY to put a clone's data beside its source from the start.
* Regex options are Python regexes over bytes, not POSIX ERE (they agree on
  the default and the usual patterns).

The package, one concern a module as GlusterFS's dht-*.c files (each
module's class is a mixin of the translator class `Distribute` below):

* common.py: options, GlusterFS's names and numbers, the contexts kept
  (`DirCtx`, `FileCtx`, `FileFd`, `DirFd`), events, winding to the
  subvolumes, inode contexts by gfid and name (`DhtCommon`, the base)
* lookup.py: lookup, lookup everywhere, discover (`DhtLookup`)
* entry.py: mknod, create, symlink, link, put, unlink (`DhtEntry`)
* directory.py: mkdir, rmdir, opendir, readdir(p), directory fds
  (`DhtDirectory`)
* rename.py: rename of files and directories (`DhtRename`)
* inode_read.py: fops on a file's data subvolume or a directory's bricks
  that leave data alone - stat, open, readv, locks ... (`DhtInodeRead`)
* inode_write.py: writev, truncate, setattr ..., kept right during a
  migration (`DhtInodeWrite`)
* xattr.py: the xattr fops, pathinfo, rebalance's keys (`DhtXattr`)
* selfheal.py: directory self-heal, layouts written, fix-layout
  (`DhtSelfheal`)
* linkfile.py: linkto files (`DhtLinkfile`)
* diskusage.py: statfs, free space, min-free-disk placement (`DhtDiskUsage`)
* migrate.py: the commit hash, file placement and migration of rebalance
  (`DhtMigrate`)
* layout.py: the pure hash and layout arithmetic, no I/O
"""

from __future__ import annotations

from . import layout
from .common import (ACL_KEYS, DIR_STAT_BLOCKS, DIR_STAT_SIZE, DU_REFRESH,
                     FIX_LAYOUT_KEYS, HEAL_ATTR_VALID, HEALED_XATTR_PREFIXES, LINKTO_MODE,
                     MIGRATE_KEYS, NEW_COMMIT_HASH_KEY, OPTIONS, DhtCommon)
from .diskusage import DhtDiskUsage
from .directory import DhtDirectory
from .entry import DhtEntry
from .inode_read import DhtInodeRead
from .inode_write import DhtInodeWrite
from .linkfile import DhtLinkfile
from .lookup import DhtLookup
from .migrate import DhtMigrate, Migration
from .rename import DhtRename
from .selfheal import DhtSelfheal
from .xattr import DhtXattr


class Distribute(DhtLookup, DhtEntry, DhtDirectory, DhtRename, DhtInodeRead, DhtInodeWrite,
                 DhtXattr, DhtSelfheal, DhtLinkfile, DhtDiskUsage, DhtMigrate, DhtCommon):
    """cluster/distribute: see the package docstring."""

    OPTIONS = OPTIONS
    CHILDREN = (1, None)
    FOPS_NEVER_SUSPEND = False   # fans out in nurseries


TRANSLATOR = Distribute

__all__ = ["ACL_KEYS", "DIR_STAT_BLOCKS", "DIR_STAT_SIZE", "DU_REFRESH",
           "FIX_LAYOUT_KEYS", "HEAL_ATTR_VALID", "HEALED_XATTR_PREFIXES", "LINKTO_MODE",
           "MIGRATE_KEYS", "NEW_COMMIT_HASH_KEY", "OPTIONS", "TRANSLATOR", "Distribute",
           "Migration", "layout"]
