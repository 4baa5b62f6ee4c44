"""From a volfile to a live tree of translators.

`TRANSLATORS` is the registry: every volfile type glusterpy serves and the
module whose `TRANSLATOR` attribute is its class (`cluster/replicate` ->
`xlators.cluster.replicate`, a package whose `__init__` composes it;
hyphens become underscores, `performance/io-cache` -> `io_cache.py`), and
GlusterFS's aliases
(`cluster/afr`, `cluster/dht`, ...) map to the same modules.  The table is
static: a type not in it is unknown (`UnknownTranslatorType`, which gfapi
and volgen take as "not available"); a registered module that fails to
import raises its own error with its traceback, so a broken translator
fails loudly instead of vanishing from volfiles and tests.  Building checks every type, option value and child count against
the translators' declarations before anything starts, and reports the
volfile's file and line.

`Graph.running()` starts the tree (init bottom-up in one nursery, then
PARENT_UP from the top) and stops it (fini top-down).  The graph's owner -
gfapi, the FUSE bridge, the brick's protocol/server - is the top's parent:
it watches events through `Graph.root`.
"""

from __future__ import annotations

import importlib
import logging
import re
from contextlib import asynccontextmanager
from typing import Any, Callable, Iterator

import trio

from . import volfile as vf
from .options import OptionError
from .volfile import Volfile, VolfileError
from .xlator import Event, Translator

log = logging.getLogger(__name__)

#: GlusterFS's other names for our translator types
TYPE_ALIASES = {
    "cluster/afr": "cluster/replicate",
    "cluster/dht": "cluster/distribute",
    "cluster/stripe": "cluster/stripe",
    "performance/iocache": "performance/io-cache",
    "debug/iostats": "debug/io-stats",
    "features/posix-locks": "features/locks",
    "performance/stat-prefetch": "performance/md-cache",
}

_TYPE_NAME = re.compile(r"[a-z][a-z0-9_-]*/[a-z][a-z0-9_-]*")


class UnknownTranslatorType(LookupError):
    pass


def canonical_type(type_name: str) -> str:
    return TYPE_ALIASES.get(type_name, type_name)


def _module(type_name: str) -> str:
    category, name = type_name.split("/")
    return f"xlators.{category.replace('-', '_')}.{name.replace('-', '_')}"


#: volfile type -> the module that serves it (its TRANSLATOR class); a new
#: translator is added here (tests/test_graph_registry.py checks the table
#: against xlators/)
TRANSLATORS: dict[str, str] = {t: _module(t) for t in (
    "cluster/distribute",
    "cluster/replicate",
    "cluster/stripe",
    "debug/delay-gen",
    "debug/io-stats",
    "features/access-control",
    "features/arbiter",
    "features/changelog",
    "features/index",
    "features/locks",
    "features/upcall",
    "features/utime",
    "performance/io-cache",
    "performance/io-threads",
    "performance/md-cache",
    "performance/nl-cache",
    "performance/open-behind",
    "performance/quick-read",
    "performance/read-ahead",
    "performance/readdir-ahead",
    "performance/write-behind",
    "protocol/client",
    "protocol/server",
    "storage/bd",
    "storage/posix",
)}


def translator_class(type_name: str) -> type[Translator]:
    """The class serving a volfile type; UnknownTranslatorType if glusterpy
    has none.  A registered translator that does not import raises its
    ImportError (or whatever its module raised), not UnknownTranslatorType."""
    canonical = canonical_type(type_name)
    if not _TYPE_NAME.fullmatch(canonical):
        raise UnknownTranslatorType(f"'{type_name}' is not a translator type (CATEGORY/NAME)")
    module_name = TRANSLATORS.get(canonical)
    if module_name is None:
        raise UnknownTranslatorType(f"unknown translator type '{type_name}'")
    module = importlib.import_module(module_name)
    cls = getattr(module, "TRANSLATOR", None)
    if not (isinstance(cls, type) and issubclass(cls, Translator)):
        raise TypeError(f"{module_name} (translator type {canonical}) defines no "
                        f"TRANSLATOR class")
    return cls


class GraphRoot:
    """The parent of the top translator: records what reaches the top."""

    name = "(graph root)"

    def __init__(self) -> None:
        self.child_up = False
        self.state_changed = trio.Event()
        self.listeners: list[Callable[[Event, Any, Any], None]] = []

    def notify(self, event: Event, source: Any, data: Any = None) -> None:
        if event == Event.CHILD_UP:
            self.child_up = True
        elif event == Event.CHILD_DOWN:
            self.child_up = False
        if event in (Event.CHILD_UP, Event.CHILD_DOWN):
            self.state_changed.set()
            self.state_changed = trio.Event()
        for listener in list(self.listeners):
            listener(event, source, data)


class Graph:
    """A tree of translators built from a volfile."""

    def __init__(self, volfile: Volfile):
        self.volfile = volfile
        self.by_name: dict[str, Translator] = {}
        self.top = self._build(volfile.top.name)
        unused = [v.name for v in volfile.volumes if v.name not in self.by_name]
        if unused:
            log.warning("%s: volumes not reachable from the top '%s' are ignored: %s",
                        volfile.filename, volfile.top.name, ", ".join(unused))
        self.root = GraphRoot()
        self.top.parents.append(self.root)
        self._running = False

    @classmethod
    def from_file(cls, path, xlator_options=()) -> "Graph":
        """Build from a volfile; `xlator_options` are VOLUME.KEY=VALUE overrides."""
        return cls(vf.apply_xlator_options(vf.load(path), xlator_options))

    @classmethod
    def from_text(cls, text: str, filename: str = "<volfile>", xlator_options=()) -> "Graph":
        return cls(vf.apply_xlator_options(vf.parses(text, filename), xlator_options))

    def _build(self, name: str) -> Translator:
        if name in self.by_name:
            return self.by_name[name]
        vdef = self.volfile[name]
        where = self.volfile.filename
        try:
            cls = translator_class(vdef.type)
        except UnknownTranslatorType as e:
            raise VolfileError(where, vdef.type_line, str(e)) from None
        lo, hi = cls.CHILDREN
        n = len(vdef.subvolumes)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
            raise VolfileError(where, vdef.subvolumes_line or vdef.line,
                               f"volume '{name}' ({vdef.type}) takes {want} "
                               f"subvolume{'s' if hi != 1 else ''}, not {n}")
        children = [self._build(sub) for sub in vdef.subvolumes]
        try:
            xl = cls(name, vdef.options, children)
        except OptionError as e:
            line = vdef.option_lines.get(e.key, vdef.line)
            raise VolfileError(where, line, f"volume '{name}' ({vdef.type}): {e}") from None
        xl.type_name = canonical_type(vdef.type)
        self.by_name[name] = xl
        return xl

    def bottom_up(self) -> Iterator[Translator]:
        """Children before parents, each translator once."""
        seen: set[int] = set()

        def walk(xl: Translator):
            for child in xl.children:
                yield from walk(child)
            if id(xl) not in seen:
                seen.add(id(xl))
                yield xl
        yield from walk(self.top)

    @asynccontextmanager
    async def running(self):
        """Start the tree for the duration of the block.

        A failure (an init that refuses its brick, an error in the block)
        comes out as itself, not wrapped in the nursery's exception group,
        so callers can catch FopError or OSError as usual.
        """
        try:
            async with self._running_tree():
                yield self
        except BaseExceptionGroup as group:
            raise _sole_exception(group) from None

    @asynccontextmanager
    async def _running_tree(self):
        if self._running:
            raise RuntimeError("graph is already running")
        self._running = True
        async with trio.open_nursery() as nursery:
            started: list[Translator] = []
            try:
                for xl in self.bottom_up():
                    xl.nursery = nursery
                    await xl.init()
                    started.append(xl)
                # bottom-up, so each binds past what its children skip
                for xl in self.bottom_up():
                    xl.skip_passthroughs()
                self.top.notify(Event.PARENT_UP, self.root)
                yield self
            finally:
                with trio.CancelScope(shield=True):
                    try:
                        self.top.notify(Event.PARENT_DOWN, self.root)
                    except Exception:
                        log.exception("PARENT_DOWN failed")
                    for xl in reversed(started):
                        try:
                            await xl.fini()
                        except Exception:
                            log.exception("%s: fini failed", xl.name)
                nursery.cancel_scope.cancel()
                self._running = False

    async def client_disconnected(self, client: Any) -> None:
        """Tell every translator, top-down, that a client went away."""
        for xl in reversed(list(self.bottom_up())):
            try:
                await xl.client_disconnected(client)
            except Exception:
                log.exception("%s: client_disconnected failed", xl.name)

    async def wait_child_up(self, timeout: float | None = None) -> bool:
        """Wait until the top reports CHILD_UP; False on timeout."""
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            while not self.root.child_up:
                await self.root.state_changed.wait()
        return self.root.child_up

    def same_shape(self, other: Volfile) -> bool:
        """True when `other` differs from this graph only in options, so it
        can be applied by reconfigure() instead of a graph switch."""
        mine = {v.name: (vf_type(v), tuple(v.subvolumes)) for v in self.volfile.volumes
                if v.name in self.by_name}
        theirs = {v.name: (vf_type(v), tuple(v.subvolumes)) for v in other.volumes}
        return mine == {k: theirs.get(k) for k in mine} and \
            other.top.name == self.top.name and \
            set(_reachable(other)) == set(mine)

    def reconfigure(self, other: Volfile) -> None:
        """Apply the options of a same-shape volfile to the live graph.

        Every translator validates its new options before any is applied,
        so a bad value leaves the whole graph as it was.
        """
        if not self.same_shape(other):
            raise ValueError("the new volfile changes the graph's shape; switch graphs instead")
        from .options import validate
        for name, xl in self.by_name.items():
            vdef = other[name]
            try:
                validate(xl.OPTIONS, vdef.options)
            except OptionError as e:
                raise VolfileError(other.filename, vdef.option_lines.get(e.key, vdef.line),
                                   f"volume '{name}': {e}") from None
        for name, xl in self.by_name.items():
            if other[name].options != self.volfile[name].options:
                xl.reconfigure(other[name].options)
        self.volfile = other


def _sole_exception(group: BaseExceptionGroup) -> BaseException:
    """The one exception inside nested single-member groups, or the group."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    return leaf if not isinstance(leaf, BaseExceptionGroup) else group


def vf_type(v: vf.VolumeDef) -> str:
    return canonical_type(v.type or "")


def _reachable(volfile: Volfile) -> list[str]:
    out, stack = [], [volfile.top.name]
    while stack:
        name = stack.pop()
        if name not in out:
            out.append(name)
            stack.extend(volfile[name].subvolumes)
    return out
