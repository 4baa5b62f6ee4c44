"""The inode table: what a graph knows of each inode, kept in one place.

GlusterFS's inode_table_t (libglusterfs/src/inode.c), reduced to what
glusterpy's translators use:

* one table per tree of translators: every translator of a graph sees the
  same `Translator.itable`, so an inode is known once however many
  translators keep something about it;
* per-translator context slots on each inode (GlusterFS's inode_ctx_set /
  inode_ctx_get, keyed by the translator);
* the lookup count the FUSE bridge keeps for the kernel (nlookup): when the
  kernel forgets an inode, the table drops it and every translator's
  context with it, as fuse_forget -> inode_forget does;
* an LRU bound (`limit`, GlusterFS's lru-limit / inode-lru-limit): past it
  the least recently used inodes are dropped, each translator holding a
  context told through `Translator.forget` first.  An inode a translator
  still needs (a lock held, a transaction in flight) is passed over: the
  translator says so in `Translator.inode_busy`, or holds a `ref`.
  GlusterFS keeps such inodes on its active list for the same reason.

Dropping an inode is always safe for correctness: a translator whose
context is gone rebuilds it on the next fop (a lookup, a discover), which
is what it does for an inode it never saw.  The bound is what keeps a
long-lived client's memory flat while it walks a large namespace.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Iterator

from .fops import GFID, ROOT_GFID, Dirent

if TYPE_CHECKING:
    from .xlator import Translator

#: inodes a table keeps by default (GlusterFS's fuse lru-limit default)
DEFAULT_LRU_LIMIT = 65536


class Inode:
    """One inode as the graph knows it."""

    __slots__ = ("gfid", "ctx", "nlookup", "refs")

    def __init__(self, gfid: GFID):
        self.gfid = gfid
        #: translator -> what it keeps about this inode
        self.ctx: dict[Translator, Any] = {}
        #: lookups the kernel holds (FUSE); zero for other clients
        self.nlookup = 0
        #: holders that keep the inode in the table whatever the LRU says
        self.refs = 0

    def __repr__(self) -> str:
        return f"Inode({self.gfid}, nlookup={self.nlookup}, refs={self.refs})"


class InodeTable:
    """gfid -> Inode, least recently used first, bounded by `limit`."""

    def __init__(self, limit: int = DEFAULT_LRU_LIMIT):
        if limit < 1:
            raise ValueError(f"an inode table holds at least one inode, not {limit}")
        self._limit = limit
        self._inodes: OrderedDict[GFID, Inode] = OrderedDict()
        #: translator -> how many inodes hold a context of it: a listing's
        #: pass for a translator that holds none (io-cache before any read,
        #: quick-read before any content) is skipped whole (listed_held)
        self._held: dict[Translator, int] = {}
        #: inodes dropped by the LRU bound since the table was made
        self.pruned = 0

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"an inode table holds at least one inode, not {limit}")
        self._limit = limit
        self.prune()

    def __len__(self) -> int:
        return len(self._inodes)

    def __contains__(self, gfid: object) -> bool:
        return gfid in self._inodes

    # -- finding ----------------------------------------------------------------

    def get(self, gfid: GFID | None) -> Inode | None:
        """The inode, made the most recently used; None if not known."""
        inode = self._inodes.get(gfid) if gfid is not None else None
        if inode is not None:
            self._inodes.move_to_end(inode.gfid)
        return inode

    def peek(self, gfid: GFID | None) -> Inode | None:
        """The inode without touching the LRU order (statedumps, scans)."""
        return self._inodes.get(gfid) if gfid is not None else None

    def find_or_create(self, gfid: GFID) -> Inode:
        inode = self._inodes.get(gfid)
        if inode is None:
            inode = self._inodes[gfid] = Inode(gfid)
            if len(self._inodes) > self._limit:
                self.prune(keep=inode)  # the caller is about to use it
        else:
            self._inodes.move_to_end(gfid)
        return inode

    # -- a translator's context -----------------------------------------------------

    def ctx(self, xl: Translator, gfid: GFID | None) -> Any:
        """What `xl` keeps about the inode (None if nothing); a use, so the
        inode becomes the most recently used."""
        inode = self._inodes.get(gfid) if gfid is not None else None
        if inode is None:
            return None
        self._inodes.move_to_end(inode.gfid)
        return inode.ctx.get(xl)

    def peek_ctx(self, xl: Translator, gfid: GFID | None) -> Any:
        inode = self._inodes.get(gfid) if gfid is not None else None
        return None if inode is None else inode.ctx.get(xl)

    def listed_ctx(self, xl: Translator, entries: list[Dirent]) -> list[Any]:
        """peek_ctx of every entry of a listing (Dirents), in one pass:
        aligned with `entries`, None where an entry has no iatt, the table
        no inode or the inode nothing of `xl`.  A readdirp reply brings
        hundreds of entries through every translator that looks at them; a
        call of peek_ctx each cost more than the dict lookups themselves."""
        get = self._inodes.get
        return [None if (inode := get(ia.gfid) if (ia := e.iatt) is not None else None)
                is None else inode.ctx.get(xl) for e in entries]

    def listed_held(self, xl: Translator,
                    entries: list[Dirent]) -> list[tuple[Dirent, Any]]:
        """(entry, context) of the entries of a listing whose inode `xl`
        holds a context for (see listed_ctx): a translator that acts only
        on what it holds loops over those alone - and one that holds
        nothing costs nothing per entry."""
        if not self._held.get(xl):
            return []
        return [(e, c) for e, c in zip(entries, self.listed_ctx(xl, entries))
                if c is not None]

    def set_ctx(self, xl: Translator, gfid: GFID, value: Any) -> Inode:
        inode = self.find_or_create(gfid)
        if xl not in inode.ctx:
            self._held[xl] = self._held.get(xl, 0) + 1
        inode.ctx[xl] = value
        return inode

    def held(self, xl: Translator) -> int:
        """How many inodes hold a context of `xl`."""
        return self._held.get(xl, 0)

    def _unheld(self, xl: Translator) -> None:
        self._held[xl] -= 1

    def del_ctx(self, xl: Translator, gfid: GFID | None) -> Any:
        """Drop what `xl` keeps about the inode (returned, or None); the
        inode stays for the other translators."""
        inode = self._inodes.get(gfid) if gfid is not None else None
        if inode is None or xl not in inode.ctx:
            return None
        self._unheld(xl)
        return inode.ctx.pop(xl)

    def contexts(self, xl: Translator) -> Iterator[tuple[GFID, Any]]:
        """Every (gfid, context) `xl` holds, least recently used first.  A
        snapshot: the caller may change the table while it iterates."""
        return iter([(gfid, inode.ctx[xl]) for gfid, inode in self._inodes.items()
                     if xl in inode.ctx])

    # -- lookups and references ---------------------------------------------------------

    def lookup(self, gfid: GFID, count: int = 1) -> Inode:
        """The kernel (or another holder of lookups) learned the inode."""
        # once per listed entry (readdirplus): a known inode without the
        # call of find_or_create
        inode = self._inodes.get(gfid)
        if inode is None:
            inode = self.find_or_create(gfid)
        else:
            self._inodes.move_to_end(gfid)
        inode.nlookup += count
        return inode

    def forget(self, gfid: GFID, count: int | None = None) -> None:
        """The kernel forgot `count` lookups (all when None); at zero the
        inode and every translator's context go, unless a holder refs it."""
        inode = self._inodes.get(gfid)
        if inode is None:
            return
        inode.nlookup = 0 if count is None else max(0, inode.nlookup - count)
        if inode.nlookup == 0 and not inode.refs and gfid != ROOT_GFID:
            self._drop(inode)

    def ref(self, gfid: GFID) -> Inode:
        inode = self.find_or_create(gfid)
        inode.refs += 1
        return inode

    def unref(self, inode: Inode) -> None:
        inode.refs = max(0, inode.refs - 1)

    # -- the bound ---------------------------------------------------------------------

    def prune(self, keep: Inode | None = None) -> int:
        """Drop least recently used inodes until the table is within its
        limit; in-use ones (and `keep`) are passed over.  Returns how many
        went."""
        dropped = 0
        passed_over = 0
        # an in-use inode moves to the young end, so each prune looks at
        # the old end only: constant work per new inode, not a scan
        while len(self._inodes) > self._limit and passed_over < len(self._inodes):
            inode = next(iter(self._inodes.values()))
            if inode is keep or inode.refs or inode.gfid == ROOT_GFID or self._busy(inode):
                self._inodes.move_to_end(inode.gfid)
                passed_over += 1
                continue
            self._drop(inode)
            dropped += 1
        self.pruned += dropped
        return dropped

    @staticmethod
    def _busy(inode: Inode) -> bool:
        return any(xl.inode_busy(value) for xl, value in inode.ctx.items())

    def _drop(self, inode: Inode) -> None:
        del self._inodes[inode.gfid]
        for xl in list(inode.ctx):
            xl.forget(inode)
            self._unheld(xl)
        inode.ctx.clear()

    def adopt(self, other: InodeTable) -> None:
        """Take in what another table knows (a translator tree joined under
        a parent whose first child brought this table)."""
        for gfid, inode in other._inodes.items():
            mine = self.find_or_create(gfid)
            for xl in inode.ctx:
                if xl not in mine.ctx:
                    self._held[xl] = self._held.get(xl, 0) + 1
            mine.ctx.update(inode.ctx)
            mine.nlookup += inode.nlookup
            mine.refs += inode.refs
        other._inodes.clear()
        other._held.clear()

    def stats(self) -> dict[str, int]:
        return {"inodes": len(self._inodes), "limit": self._limit, "pruned": self.pruned,
                "looked_up": sum(1 for i in self._inodes.values() if i.nlookup),
                "referenced": sum(1 for i in self._inodes.values() if i.refs)}
