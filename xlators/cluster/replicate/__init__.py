"""cluster/replicate: every file on every child, kept consistent the way AFR does.

Follows GlusterFS 10's AFR (xlators/cluster/afr/src: afr-transaction.c,
afr-inode-write.c, afr-dir-write.c, afr-read-txn.c, afr-common.c,
afr-lk-common.c, afr-self-heal-*.c, afr.c) closely enough that GlusterFS's
own AFR and this one read and heal each other's bricks.  The children are
usually protocol/client translators of the bricks of one replica set; the
bricks run features/locks (and features/index for the heal index).

Writes and namespace operations are *transactions* (afr-transaction.c):

1. lock - inodelk (data: the written range, the whole file with
   ``full-lock`` or eager locking or an arbiter; metadata: the special
   range start=LLONG_MAX-1 len=0, which features/locks turns into the
   domain ``<name>:metadata``) or entrylk on (parent, name) - in the domain
   named after this translator, first non-blocking on every child at once,
   and on any failure one child after another with blocking locks;
2. pre-op - xattrop ADD_ARRAY on every locked child: ``trusted.afr.dirty``
   +1 in the transaction's slot (data 0, metadata 1, entry 2) together
   with an all-zero ``trusted.afr.<vol>-client-<N>`` for every child (the
   reply shows the current changelog, which the arbiter rule and the
   write-subvolume rule read).  Metadata and entry transactions skip the
   pre-op when every child is locked (``optimistic-change-log``).  With
   ``granular-entry-heal`` an entry pre-op carries
   ``glusterfs.xattrop-entry-create: <name>`` for features/index;
3. the operation, on every locked child in parallel (an arbiter gets a
   one-byte write);
4. post-op - xattrop: dirty -1 and +1 in the pending key of every child on
   which the operation failed or that was not locked, so the children that
   did it accuse those that did not; nothing at all when everything
   succeeded and no pre-op was made;
5. unlock.

Data and metadata transactions use *eager locking* (``eager-lock``): the
lock, taken on the whole file with the inode as owner, is shared by
transactions that do not overlap; a later transaction inherits the dirty
mark of an earlier one instead of making its own pre-op; and after a write
(or fsync, fxattrop) the post-op and unlock wait ``post-op-delay-secs`` so
that the next write of a sequential writer finds the lock and the pre-op
already in place - one lock and two xattrops per burst, not per write.
flush, release, fsync with ``last-fsync``, a CHILD_UP/DOWN (event
generation change), a failure and a contention upcall from the bricks end
the delay.  The post-op after unstable writes is preceded by an fsync on
the children (``ensure-durability``).

Reads (afr-read-txn.c) go to one child chosen among the *readable* ones:
a child is readable for data (file content, directory entries) or metadata
unless some child's changelog accuses it, a regular file smaller than the
largest unaccused copy is not readable either, and an arbiter never is.
Readability is computed from lookup and from an *inode refresh* (a lookup
of the gfid on every child, made on the first read and again after any
child went down or came up).  A lookup whose children hold a name with
different gfids judges them by the parent directory's readable set for
entries, refreshed first when a child went down or came up since it was
computed: a copy the parent's changelog accuses is outvoted, and the
answer comes from a copy the parent vouches for; two gfids that no
changelog decides between (a gfid split-brain) answer EIO.  The child is
chosen by ``read-subvolume`` / ``read-subvolume-index``, else the local
brick (``choose-local``, found from the bricks' pathinfo), else
``read-hash-mode`` (0 first readable, 1 gfid hash, 2 gfid+pid hash, 3 least
outstanding reads, 4 least ping latency, 5 both), among the children
readable for data and metadata both where there is one.  A read that
fails is retried once after a refresh, then on the other readable
children.  A file with no readable child - split-brain -
fails reads and writes with EIO.  An inode write that failed on some
children and succeeded on others takes the failed ones out of the
inode's readable set at once, before its post-op accuses them on disk (a
refresh meanwhile keeps them out too); when it failed on every good copy
and only stale ones took it, it fails and accuses nobody (transaction.py's
`_drop_failed_readers`, GlusterFS's afr_set_in_flight_sb_status).

Children's state (afr_notify): parents hear CHILD_UP once some child is up
and every child has reported (or after 10 s), CHILD_DOWN when every child
is down, SOME_DESCENDENT_UP/DOWN for the changes in between.  Every change
of a child's state bumps the event generation, which makes cached
readability stale.

Quorum (``quorum-type``/``quorum-count``, GlusterFS's auto default for
more than two children): a transaction, an open or a read when fewer than
the quorum of children are up - or a write that succeeded on fewer - fails
with ENOTCONN (afr_quorum_errno) instead of creating a split-brain.

Self-heal (heal_*.py): a lookup or refresh that finds an accused child
heals the inode in the background when ``data-self-heal``,
``metadata-self-heal`` or ``entry-self-heal`` is on (GlusterFS's defaults
are off: its self-heal daemon heals); a lookup of a name that exists on
some children only, or without a gfid, heals the name (name heal is not
optional, as in GlusterFS).  The building blocks the self-heal daemon and
``volume heal`` use are methods of this class: `heal_gfid`, `heal_name`,
`pending_entries`, `heal_index`, `heal_full`, `heal_info`,
`split_brain_status`, `resolve_split_brain`.  The same are reachable as
GlusterFS's virtual xattrs (``glusterfs.heal-info``,
``replica.split-brain-status``, ``glusterfs.heal-sbrain`` with xdata
``heal-op`` and ``child-name``) through getxattr.  With
``iam-self-heal-daemon`` (the glustershd process), shd.py's healers
crawl the local bricks' indices every ``heal-timeout`` seconds and whenever
a child comes up (afr-self-heald.c); ``node-uuid`` says which bricks are
local.

Departures from GlusterFS:

* A transaction returns to its caller after its post-op and unlock, not
  between the operation and the post-op (GlusterFS unwinds as soon as the
  operation succeeded everywhere); with eager locking the post-op of a
  write is delayed anyway, so sequential writers see no difference.
* A lookup whose children hold two gfids for a name refreshes the
  parent's readable set when a child went down or came up since
  (GlusterFS refreshed the parent in every lookup of a newer event
  generation until 2020, and no longer does); and when only a stale copy
  holds the other gfid, the lookup answers from the good copy while a
  quorum of children answered, where GlusterFS 10 answers ENOTCONN
  (afr_attempt_readsubvol_set counts no readable copy then) until the
  name is healed.
* A lookup that finds an accused child starts the background heal at once
  (GlusterFS marks the inode for a refresh and heals on the next read or
  metadata transaction).
* The eager lock's owner is a random 8-byte value per inode, not the
  address of the inode; transactions get random owners.  The inode table
  is a bounded cache keyed by gfid (no forget from the parents).
* Not implemented (their options are not declared): halo replication,
  thin-arbiter, consistent-metadata, consistent-io, lock healing after a
  reconnect, mandatory-lock modes, the "open" value of data-self-heal, the
  anonymous-inode directory for renamed directories
  (``use-anonymous-inode``, accepted and without effect - deleted
  directories go to the brick's landfill as before GlusterFS 8),
  put (ENOTSUP: GlusterFS would wind it to one child), icreate, namelink, lease and the lock-migration fops (ENOTSUP).

The package is split by concern as GlusterFS splits afr's sources; each
part of the translator is a mixin class, composed into `Replicate` here:

* common.py - the translator's state and options applied, life cycle,
  events (afr_notify), lookup, the fan-out helpers (afr-common.c);
  options.py - the options (afr.c); state.py - GlusterFS's numbers and the
  per-inode, per-fd and per-transaction state (afr.h);
* read_txn.py - readability, inode refresh and the read transaction
  (afr-read-txn.c); open.py - open, flush, release (afr-open.c);
  inode_read.py - the read fops (afr-inode-read.c, afr-dir-read.c);
* transaction.py - the write transaction: eager lock, changelog pre-op and
  post-op, quorum (afr-transaction.c); lk.py - the transactions' locks and
  the lock fops (afr-lk-common.c); inode_write.py (afr-inode-write.c);
  dir_write.py (afr-dir-write.c); changelog.py - the changelog arithmetic,
  without I/O;
* heal.py - self-heal as methods of the translator, background heals;
  heal_common.py (the heal frame, afr-self-heal-common.c), heal_data.py,
  heal_metadata.py, heal_entry.py, heal_name.py (afr-self-heal-*.c),
  heal_inode.py (afr_selfheal, heal info, split-brain status and
  resolution); crawl.py (the index and full sweeps) and shd.py (the
  self-heal daemon) - afr-self-heald.c.
"""

from __future__ import annotations

from glusterpy.xlator import Translator

from xlators.cluster.replicate.common import AfrCommon
from xlators.cluster.replicate.dir_write import AfrDirWrite
from xlators.cluster.replicate.heal import AfrHeal
from xlators.cluster.replicate.heal_common import CrawlStats, Outcome
from xlators.cluster.replicate.inode_read import AfrInodeRead
from xlators.cluster.replicate.inode_write import AfrInodeWrite
from xlators.cluster.replicate.lk import AfrLk
from xlators.cluster.replicate.open import AfrOpen
from xlators.cluster.replicate.options import OPTIONS
from xlators.cluster.replicate.read_txn import AfrReadTxn
from xlators.cluster.replicate.shd import SelfHealDaemon
from xlators.cluster.replicate.transaction import AfrTransaction

__all__ = ["OPTIONS", "TRANSLATOR", "CrawlStats", "Outcome", "Replicate", "SelfHealDaemon"]


class Replicate(AfrCommon, AfrReadTxn, AfrOpen, AfrInodeRead, AfrTransaction, AfrLk,
                AfrInodeWrite, AfrDirWrite, AfrHeal, Translator):
    """cluster/replicate: see the package docstring."""

    OPTIONS = OPTIONS
    CHILDREN = (1, None)


TRANSLATOR = Replicate
