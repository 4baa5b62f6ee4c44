"""Stacks for the cluster/replicate tests.

Three ways to put replicate over bricks, each used where it fits:

* `local_volfile` - one graph: replicate over N brick stacks
  (storage/posix -> features/locks -> features/index, the order glusterd
  uses) joined directly.  No network, so the conformance and model tests
  run fast and deterministically; the children are named
  ``<vol>-client-<N>`` as glusterd names them, so the changelog keys are
  GlusterFS's (``trusted.afr.<vol>-client-<N>``).
* `NetworkReplica` - in process, but each brick is its own graph served by
  protocol/server on loopback and the client graph reaches it through
  protocol/client: a brick can be stopped and restarted on its port, which
  makes the client send real CHILD_DOWN/CHILD_UP events, and several
  client graphs are separate clients of the bricks (locks conflict).
* `BrickProcesses` (in test_replicate_processes.py) - bricks as
  ``glusterpy brick`` processes, for kill -9.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import trio

from glusterpy.fops import GFID, ROOT_GFID, Fd, Loc
from glusterpy.graph import Graph

AFR_KEYS = ("trusted.afr.",)


def brick_stack(vol: str, i: int, directory: Path, *, arbiter: bool = False,
                top_name: str | None = None, index: bool = True) -> tuple[str, str]:
    """The brick translators of brick `i` (posix, [arbiter,] locks, index)
    as volfile text, and the name of the top one."""
    top = top_name or f"{vol}-client-{i}"
    text = (f"volume {vol}-posix-{i}\n    type storage/posix\n"
            f"    option directory {directory}\nend-volume\n")
    below = f"{vol}-posix-{i}"
    if arbiter:
        text += (f"volume {vol}-arbiter-{i}\n    type features/arbiter\n"
                 f"    subvolumes {below}\nend-volume\n")
        below = f"{vol}-arbiter-{i}"
    locks = f"{vol}-locks-{i}" if index else top
    text += (f"volume {locks}\n    type features/locks\n"
             f"    subvolumes {below}\nend-volume\n")
    if index:
        text += (f"volume {top}\n    type features/index\n"
                 f"    option xattrop-pending-watchlist trusted.afr.{vol}-\n"
                 f"    subvolumes {locks}\nend-volume\n")
    return text, top


def replicate_block(vol: str, children: list[str], options: dict | None = None) -> str:
    text = f"volume {vol}-replicate-0\n    type cluster/replicate\n"
    opts = {"afr-pending-xattr": ",".join(children)}
    opts.update(options or {})
    for k, v in opts.items():
        text += f"    option {k} {v}\n"
    text += f"    subvolumes {' '.join(children)}\nend-volume\n"
    return text


def local_volfile(bricks: list[Path], vol: str = "rep", options: dict | None = None,
                  arbiter: bool = False) -> str:
    """One graph: replicate over the brick stacks (see the module doc)."""
    text = ""
    children = []
    for i, b in enumerate(bricks):
        t, top = brick_stack(vol, i, b, arbiter=arbiter and i == len(bricks) - 1)
        text += t
        children.append(top)
    return text + replicate_block(vol, children, options)


def make_bricks(tmp_path: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        b = tmp_path / f"b{i}"
        b.mkdir()
        out.append(b)
    return out


def local_factory(n: int, options: dict | None = None, arbiter: bool = False):
    """A conformance factory: replicate over `n` local brick stacks."""
    @contextlib.asynccontextmanager
    async def factory(tmp_path):
        bricks = make_bricks(tmp_path, n)
        yield Graph.from_text(local_volfile(bricks, options=options, arbiter=arbiter))
    return factory


# -- what is on the bricks -------------------------------------------------


def afr_xattrs(path: Path) -> dict[str, bytes]:
    """The trusted.afr.* xattrs of a file on a brick."""
    out = {}
    for key in os.listxattr(path, follow_symlinks=False):
        if key.startswith("trusted.afr."):
            out[key] = os.getxattr(path, key, follow_symlinks=False)
    return out


def pending(path: Path, key: str) -> tuple[int, int, int]:
    from xlators.cluster.replicate.changelog import decode
    try:
        return decode(os.getxattr(path, key, follow_symlinks=False))
    except OSError:
        return (0, 0, 0)


def index_entries(brick: Path, kind: str = "xattrop") -> set[str]:
    d = brick / ".glusterfs" / "indices" / kind
    if not d.exists():
        return set()
    return {n for n in os.listdir(d) if not n.startswith(kind + "-")}


def tree_of(brick: Path) -> dict[str, tuple]:
    """A comparable snapshot of a brick's namespace: path -> (type, mode,
    content or link target, gfid) - .glusterfs left out."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(brick):
        rel = os.path.relpath(dirpath, brick)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d != ".glusterfs"]
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            gfid = os.getxattr(p, "trusted.gfid", follow_symlinks=False)
            relp = os.path.relpath(p, brick)
            if p.is_symlink():
                out[relp] = ("l", os.readlink(p), gfid)
            elif p.is_dir():
                out[relp] = ("d", st.st_mode & 0o7777, gfid)
            else:
                out[relp] = ("f", st.st_mode & 0o7777, p.read_bytes(), gfid)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- bricks behind protocol/server, in process ---------------------------------


def served_brick_volfile(vol: str, i: int, directory: Path, port: int,
                         arbiter: bool = False) -> str:
    text, top = brick_stack(vol, i, directory, arbiter=arbiter,
                            top_name=f"{vol}-index-{i}")
    return text + (f"volume {vol}-server-{i}\n    type protocol/server\n"
                   f"    option transport.socket.listen-port {port}\n"
                   f"    option transport.socket.bind-address 127.0.0.1\n"
                   f"    option auth.addr.{top}.allow *\n"
                   f"    subvolumes {top}\nend-volume\n")


def network_client_volfile(vol: str, ports: list[int], options: dict | None = None) -> str:
    text = ""
    children = []
    for i, port in enumerate(ports):
        name = f"{vol}-client-{i}"
        children.append(name)
        text += (f"volume {name}\n    type protocol/client\n"
                 f"    option remote-host 127.0.0.1\n    option remote-port {port}\n"
                 f"    option remote-subvolume {vol}-index-{i}\n"
                 f"    option ping-timeout 10\nend-volume\n")
    return text + replicate_block(vol, children, options)


class NetworkReplica:
    """N bricks served in process on loopback; `stop(i)`/`start(i)` take a
    brick away and back on the same port."""

    def __init__(self, tmp_path: Path, n: int, vol: str = "rep", arbiter: bool = False):
        self.vol = vol
        self.bricks = make_bricks(tmp_path, n)
        self.ports = [free_port() for _ in range(n)]
        self.arbiter = arbiter
        self._scopes: list[trio.CancelScope | None] = [None] * n
        self._stopped: list[trio.Event | None] = [None] * n
        self.nursery: trio.Nursery | None = None

    async def _serve(self, i: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
        text = served_brick_volfile(self.vol, i, self.bricks[i], self.ports[i],
                                    arbiter=self.arbiter and i == len(self.bricks) - 1)
        graph = Graph.from_text(text)
        done = trio.Event()
        self._stopped[i] = done
        try:
            with trio.CancelScope() as scope:
                self._scopes[i] = scope
                async with graph.running():
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            done.set()

    async def start(self, i: int) -> None:
        await self.nursery.start(self._serve, i)

    async def stop(self, i: int) -> None:
        scope, done = self._scopes[i], self._stopped[i]
        if scope is not None:
            scope.cancel()
            await done.wait()
            self._scopes[i] = None

    def client_graph(self, options: dict | None = None) -> Graph:
        return Graph.from_text(network_client_volfile(self.vol, self.ports, options))

    @contextlib.asynccontextmanager
    async def running(self):
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            for i in range(len(self.bricks)):
                await self.start(i)
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()


async def wait_for(predicate, timeout: float = 15.0, step: float = 0.02) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)


def gfid_req() -> dict:
    return {"gfid-req": GFID.random()}


def root_loc(name: str, gfid=None) -> Loc:
    return Loc(path="/" + name, pargfid=ROOT_GFID, name=name, gfid=gfid)


async def create_file(top, name: str, data: bytes = b"", parent=ROOT_GFID,
                      parent_path: str = "") -> tuple[Fd, GFID]:
    fd = Fd(flags=os.O_RDWR)
    reply = await top.create(Loc(path=f"{parent_path}/{name}", pargfid=parent, name=name),
                             os.O_RDWR | os.O_CREAT, 0o644, 0, fd, gfid_req())
    fd.gfid = reply.iatt.gfid
    if data:
        await top.writev(fd, data, 0, 0, None)
    return fd, reply.iatt.gfid


# -- watching what replicate sends ---------------------------------------------

from glusterpy import fops as _fops  # noqa: E402
from glusterpy.xlator import Translator  # noqa: E402

WATCHED = ("xattrop", "fxattrop", "inodelk", "finodelk", "entrylk", "fentrylk", "writev",
           "fsync")


class Recorder(Translator):
    """A pass-through put between replicate and one child: it records the
    calls whose names are in WATCHED (name, arguments) and forwards every
    fop unchanged - the test sees what replicate sends, as a capture would."""

    CHILDREN = (1, 1)

    def __init__(self, name, child):
        super().__init__(name, {}, [child])
        self.calls: list[tuple[str, tuple]] = []


def _recording(fop):
    async def method(self, *args):
        if fop.name in WATCHED:
            self.calls.append((fop.name, args))
        return await getattr(self.first_child, fop.name)(*args)
    method.__name__ = fop.name
    return method


for _f in _fops.CATALOGUE:
    setattr(Recorder, _f.name, _recording(_f))


def insert_recorders(graph, afr) -> list[Recorder]:
    """Put a Recorder between `afr` and each of its children (before the
    graph runs)."""
    recs = []
    for i, child in enumerate(list(afr.children)):
        child.parents.remove(afr)
        rec = Recorder(f"rec-{i}", child)
        rec.type_name = "debug/recorder"
        rec.parents.append(afr)
        afr.children[i] = rec
        graph.by_name[rec.name] = rec
        recs.append(rec)
    afr.first_child = afr.children[0]
    afr._index = {id(c): i for i, c in enumerate(afr.children)}
    return recs


# -- a brick that stays up but fails chosen fops -----------------------------------


class Failer(Translator):
    """A pass-through put between replicate and one child that answers the
    fops named in `fail` with their errno instead of forwarding them (as a
    brick with a full or read-only disk would, while it stays connected),
    and that holds a call for which `hold_when(name, args)` is true until
    the test sets `let_go` (`held` is set when one arrives)."""

    CHILDREN = (1, 1)

    def __init__(self, name, child):
        super().__init__(name, {}, [child])
        self.fail: dict[str, int] = {}
        self.hold_when = None
        self.held = trio.Event()
        self.let_go = trio.Event()
        self.calls: list[str] = []


def _failing(fop):
    async def method(self, *args):
        self.calls.append(fop.name)
        if fop.name in self.fail:
            raise _fops.FopError(self.fail[fop.name], f"{self.name}: injected {fop.name} failure")
        if self.hold_when is not None and self.hold_when(fop.name, args):
            self.held.set()
            await self.let_go.wait()
        return await getattr(self.first_child, fop.name)(*args)
    method.__name__ = fop.name
    return method


for _f in _fops.CATALOGUE:
    setattr(Failer, _f.name, _failing(_f))


def insert_failers(graph, afr) -> list[Failer]:
    """Put a Failer between `afr` and each of its children (before the
    graph runs); they forward everything until a test arms them."""
    out = []
    for i, child in enumerate(list(afr.children)):
        child.parents.remove(afr)
        f = Failer(f"failer-{i}", child)
        f.type_name = "debug/failer"
        f.parents.append(afr)
        afr.children[i] = f
        graph.by_name[f.name] = f
        out.append(f)
    afr.first_child = afr.children[0]
    afr._index = {id(c): i for i, c in enumerate(afr.children)}
    return out
