"""The process context: who this client process is (GlusterFS's glusterfs_ctx_t).

GlusterFS keeps one `ctx` per process: its process-uuid (ctx->process_uuid),
the process name and volfile id from the command line (cmd_args.process_name,
cmd_args.volfile_id) and the server the volfile came from.  protocol/client
sends them in SETVOLUME, so a brick can tell two processes apart and knows
two connections of one process are one client.

`settle_heap()` sets the garbage collector for a serving process.

The graph's owner (gfapi, the FUSE mount, the volfile fetcher) makes one
`ProcessIdentity` and gives it to the graph with `set_process_identity()`
before the graph runs.  A translator takes part by carrying a
`ProcessIdentity` in its `identity` attribute (protocol/client makes its own
in __init__, so a graph without an owner is a process of its own); this
module never names a translator.
"""

from __future__ import annotations

import gc
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["ProcessIdentity", "set_process_identity", "settle_heap"]


@dataclass(slots=True)
class ProcessIdentity:
    """Who this client process is, as SETVOLUME tells the brick."""

    ctx_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    graph_id: int = 0
    process_name: str | None = None
    #: the volfile's key (volume name) when it came from a volfile server
    volfile_key: str | None = None
    #: the host the volfile came from: remote-host when a volfile has none
    volfile_server: str | None = None


def set_process_identity(graph: Graph, identity: ProcessIdentity) -> None:
    """Give `identity` to every translator of `graph` that carries one
    (protocol/client); gfapi and the FUSE bridge call this before running
    the graph."""
    for xl in graph.by_name.values():
        if isinstance(getattr(xl, "identity", None), ProcessIdentity):
            xl.identity = identity


#: gc.set_threshold for a serving process: a young generation of 20,000
#: container objects instead of CPython's 700.  A brick with 64 requests in
#: flight has thousands of young objects alive at any time, and the default
#: traverses them every few requests: collections were ~10 % of a brick's
#: CPU under 4 KiB reads (perf: gc_collect_main, visit_decref,
#: visit_reachable), ~10 % less CPU per request with this (bench/notes/qemu.md).
SERVING_GC_THRESHOLDS = (20_000, 20, 100)


def settle_heap() -> None:
    """Move what exists now (modules, the graph, option tables) out of the
    collector's sight and collect the young generation less often.  Call
    when a service has started; the objects it has then live as long as
    the process, so traversing them in every full collection is waste."""
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
