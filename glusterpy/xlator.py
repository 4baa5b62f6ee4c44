"""The translator base class.

A translator is one node of the graph a volfile describes.  It receives every
fop from its parent and either serves it or winds it to its children.
`Translator` has a default for every fop in `fops.CATALOGUE` that winds the
call, unchanged, to the first child - generated from the catalogue the way
GlusterFS generates `defaults.c` - so a translator writes only the fops it
changes.  A leaf (no children) that does not serve a fop answers ENOTSUP.
A translator that, as its options stand, passes some fops through unchanged
names them in `passthrough_fops()`; a running graph binds those past it
(`skip_passthroughs`, redone on reconfigure), one frame fewer per fop.

Life cycle, driven by `graph.Graph`:

    __init__(name, options, children)   options checked against OPTIONS
    await init()                        bottom-up, inside the graph's nursery
    notify(PARENT_UP)                   top-down; leaves answer CHILD_UP
    ... fops ...                        reconfigure() may run at any time
    await fini()                        top-down

Events (`Event`) follow GlusterFS's notify(): PARENT_UP/PARENT_DOWN travel
to the children, everything else travels to the parents.  Cluster
translators override `notify` to aggregate their children's states.
"""

from __future__ import annotations

import enum
import errno
import logging
from typing import Any, Awaitable, Callable, ClassVar, Iterable, Mapping, Sequence

import trio

from . import fops
from .fopgen import Family, install
from .fops import FopError
from .inode import Inode, InodeTable
from .options import Option, OptionValues, validate


class Event(enum.IntEnum):
    """GlusterFS's glusterfs_event_t values."""

    PARENT_UP = 1
    CHILD_UP = 5
    CHILD_DOWN = 6
    CHILD_CONNECTING = 7
    TRANSPORT_CONNECTED = 10
    VOLFILE_MODIFIED = 11
    GRAPH_NEW = 12
    AUTH_FAILED = 15
    PARENT_DOWN = 17
    UPCALL = 19
    SOME_DESCENDENT_DOWN = 21
    SOME_DESCENDENT_UP = 23
    CHILD_PING = 24


DOWNWARD_EVENTS = frozenset({Event.PARENT_UP, Event.PARENT_DOWN})


class Translator:
    """Base of every translator; see the module docstring."""

    #: the volfile type this class serves, e.g. "storage/posix"
    type_name: ClassVar[str] = ""
    #: declared options; validated against the volfile before init()
    OPTIONS: ClassVar[Sequence[Option]] = ()
    #: how many children the translator takes: (min, max); max None = any
    CHILDREN: ClassVar[tuple[int, int | None]] = (1, 1)
    #: True when every fop completes without suspending - it awaits only its
    #: children and touches trio only in thread-safe ways - so a graph made
    #: only of such translators may run fops in the caller's thread
    #: (gfapi's synchronous facade does, saving the hand-off to its loop)
    FOPS_NEVER_SUSPEND: ClassVar[bool] = False
    #: True when the fops this class leaves to the generated default wind
    #: unchanged whatever the options: the running graph then binds them
    #: past it (passthrough_fops) - a coroutine and a frame fewer per fop
    #: and translator, which the client's stack of performance translators
    #: pays on every request
    SKIP_DEFAULT_FOPS: ClassVar[bool] = False

    def __init__(self, name: str, options: Mapping[str, str] | None = None,
                 children: Sequence["Translator"] = ()):
        self.name = name
        self.children: list[Translator] = list(children)
        self.parents: list[Any] = []
        for child in self.children:
            child.parents.append(self)
        #: where fops go by default; a leaf's default answers ENOTSUP
        self.first_child = self.children[0] if self.children else _UNSERVED
        self.log = logging.getLogger(name)
        #: the fops skip_passthroughs() bound past this translator, and
        #: whether the graph asked for that (until then none are)
        self._skipped: frozenset[str] = frozenset()
        self._skipping = False
        self.opts: OptionValues = validate(self.OPTIONS, options or {})
        #: the graph's nursery, set before init(); for background tasks
        self.nursery: trio.Nursery | None = None
        #: the inode table the whole tree shares (glusterpy/inode.py): a
        #: leaf makes one, a parent takes its first child's and brings the
        #: other children's subtrees onto it
        self.itable: InodeTable = self.children[0].itable if self.children else InodeTable()
        for child in self.children[1:]:
            if child.itable is not self.itable:
                self.itable.adopt(child.itable)
                child._use_table(self.itable)

    def _use_table(self, table: InodeTable) -> None:
        self.itable = table
        for child in self.children:
            if child.itable is not table:
                child._use_table(table)

    # -- life cycle ------------------------------------------------------

    async def init(self) -> None:
        """Acquire resources; runs bottom-up once the children are ready."""

    # -- the inode table's hooks (GlusterFS's forget cbk) ------------------------

    def forget(self, inode: Inode) -> None:
        """The table is dropping `inode`; `inode.ctx[self]` is what this
        translator kept about it, still there.  Release what it holds
        outside the table; the slot itself goes with the inode."""

    def inode_busy(self, ctx: Any) -> bool:
        """True while this translator cannot let its context `ctx` go (the
        LRU bound then passes the inode over)."""
        return False

    async def fini(self) -> None:
        """Release resources; runs top-down when the graph stops."""

    def reconfigure(self, options: Mapping[str, str]) -> None:
        """Apply a new set of options on a live graph.

        Validates all of them first (nothing changes if one is bad), refuses
        a change to an option that is not reconfigurable, then calls
        `options_changed(old)`.
        """
        new = validate(self.OPTIONS, options)
        old = self.opts
        for opt in self.OPTIONS:
            if not opt.reconfigurable and new[opt.key] != old[opt.key]:
                raise FopError(errno.EINVAL, f"{self.name}: option '{opt.key}' cannot "
                                             f"change on a running graph")
        self.opts = new
        self.options_changed(old)
        if self._skipping:
            self.skip_passthroughs()

    def options_changed(self, old: OptionValues) -> None:
        """Hook: react to reconfigured options (`self.opts` is the new set)."""

    # -- pass-throughs the graph skips -------------------------------------

    def passthrough_fops(self) -> Iterable[str]:
        """The fops this translator, as its options and state stand now,
        winds to its first child unchanged and does nothing else with
        (changelog off, upcall without cache-invalidation).  The graph
        skips it for them: see `skip_passthroughs`.  Default: none, so a
        translator is skipped only where it says it may be - by overriding
        this, or with `SKIP_DEFAULT_FOPS` when every fop its class leaves
        to the generated default is a pass-through whatever its options."""
        return self.default_fops() if self.SKIP_DEFAULT_FOPS else ()

    def skip_passthroughs(self) -> None:
        """Bind each of `passthrough_fops()` on this instance to the first
        child's method as it resolves now, so a parent's
        `self.first_child.readv(...)` lands one translator lower without a
        frame here (GlusterFS winds through every xlator; in Python each
        async pass-through costs a coroutine and a frame per fop).  The
        bindings of the last call are dropped first, and the parents bind
        again, since theirs may lead through this one.  Called by the
        graph once the tree runs, and by `reconfigure` after that."""
        self._skipping = True
        for name in self._skipped:
            self.__dict__.pop(name, None)
        skipped: frozenset[str] = frozenset()
        if self.children:
            skipped = frozenset(self.passthrough_fops())
            unknown = skipped - fops.BY_NAME.keys()
            if unknown:
                raise ValueError(f"{self.name}: not fops: {sorted(unknown)}")
            child = self.first_child
            for name in skipped:
                setattr(self, name, getattr(child, name))
        self._skipped = skipped
        for parent in self.parents:
            if isinstance(parent, Translator) and parent._skipping:
                parent.skip_passthroughs()

    def default_fops(self) -> frozenset[str]:
        """The fops this translator's class leaves to the generated default
        (wind to the first child): always pass-throughs."""
        return frozenset(f.name for f in fops.CATALOGUE
                         if getattr(getattr(type(self), f.name), "is_default_fop", False))

    def notify(self, event: Event, source: Any, data: Any = None) -> None:
        """Pass an event on: PARENT_* down to the children, the rest up.

        A leaf answers PARENT_UP with CHILD_UP, as GlusterFS's posix does.
        """
        if event in DOWNWARD_EVENTS:
            if not self.children:
                if event == Event.PARENT_UP:
                    self.notify_parents(Event.CHILD_UP, data)
                return
            for child in self.children:
                child.notify(event, self, data)
        else:
            self.notify_parents(event, data)

    async def client_disconnected(self, client: Any) -> None:
        """A client of the brick went away (GlusterFS's cbks->client_disconnect):
        drop what it held here - locks, leases.  protocol/server calls this on
        every translator of its graph; `client` is what it put in
        `fops.caller.client`.  Default: nothing."""

    def notify_parents(self, event: Event, data: Any = None) -> None:
        for parent in self.parents:
            parent.notify(event, self, data)

    # -- helpers ---------------------------------------------------------

    def spawn(self, async_fn: Callable[..., Awaitable[Any]], *args: Any,
              name: str | None = None) -> None:
        """Start a background task that lives as long as the graph."""
        if self.nursery is None:
            raise RuntimeError(f"{self.name}: spawn() before the graph runs")
        self.nursery.start_soon(async_fn, *args, name=name or f"{self.name}:{async_fn.__name__}")

    async def put_with_own_fops(self, loc: fops.Loc, mode: int, umask: int, flags: int,
                                data: bytes | bytearray | memoryview, offset: int,
                                xattrs: fops.GfDict | None,
                                xdata: fops.GfDict | None = None) -> fops.EntryReply:
        """put as GlusterFS's posix_put does it: create, write, set xattrs,
        flush, fstat and release, each through this translator's own fops -
        so a translator that lays files out its own way (stripe, bd) puts
        them its own way too."""
        fd = fops.Fd(flags=flags)
        own: Any = self  # the fops are set on the class below, out of mypy's sight
        created = await own.create(loc, flags, mode, umask, fd, xdata)
        fd.gfid = created.iatt.gfid
        try:
            await own.writev(fd, data, offset, flags, None)
            if xattrs:
                await own.fsetxattr(fd, xattrs, 0, None)
            await own.flush(fd, None)
            iatt = (await own.fstat(fd, None)).iatt
        finally:
            await own.release(fd, None)
        return fops.EntryReply(iatt, created.preparent, created.postparent)

    def dump_state(self) -> dict[str, Any]:
        """Private state for statedumps and tests."""
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class _Unserved:
    """Stands in for the missing child of a leaf: every fop is ENOTSUP."""

    name = "(no child)"

    def __getattr__(self, fop_name: str) -> Callable[..., Awaitable[Any]]:
        if fop_name not in fops.BY_NAME:
            raise AttributeError(fop_name)

        async def unsupported(*args: Any, **kwargs: Any) -> Any:
            raise FopError(errno.ENOTSUP, f"{fop_name} is not supported here")
        return unsupported


_UNSERVED = _Unserved()


#: the defaults: wind every fop, unchanged, to the first child
DEFAULTS = Family(
    module="glusterpy.xlator_fops", owner="Translator",
    doc="{name}: default - wind to the first child.",
    template="""
async def {name}(self, {params}, xdata=None):
    return await self.first_child.{name}({params}, xdata)
""",
    marks={"is_default_fop": True})      # overridden_fops() looks for it
install(Translator, DEFAULTS)


def overridden_fops(cls: type[Translator]) -> list[str]:
    """The fops a translator class serves itself rather than by default."""
    return [f.name for f in fops.CATALOGUE
            if not getattr(getattr(cls, f.name), "is_default_fop", False)]


async def both(first: Callable[[], Awaitable[Any]],
               second: Callable[[], Awaitable[Any]]) -> tuple[Any, Any]:
    """Two calls of a translator's that do not depend on each other, at
    once (each a function giving an awaitable): one round trip instead of
    two.  Their results in order; when a call fails, its exception (the
    first call's when both fail) comes out as itself once both are over,
    not in an exception group."""
    results: list[Any] = [None, None]
    errors: list[Exception | None] = [None, None]

    async def run(k: int, fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            results[k] = await fn()
        except Exception as e:
            errors[k] = e
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, 1, second)
        await run(0, first)
    for e in errors:
        if e is not None:
            raise e
    return results[0], results[1]
