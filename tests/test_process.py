"""glusterpy.process: the process context a graph's owner gives its graph."""

from glusterpy.graph import Graph
from glusterpy.process import ProcessIdentity, set_process_identity

VOLFILE = """\
volume c0
    type protocol/client
    option remote-host 127.0.0.1
    option remote-subvolume /b0
end-volume

volume c1
    type protocol/client
    option remote-host 127.0.0.1
    option remote-subvolume /b1
end-volume

volume dht
    type cluster/distribute
    subvolumes c0 c1
end-volume
"""


def test_owner_identity_reaches_every_client():
    graph = Graph.from_text(VOLFILE)
    # without an owner each client is a process of its own
    assert graph.by_name["c0"].identity.ctx_uuid != graph.by_name["c1"].identity.ctx_uuid
    ident = ProcessIdentity(process_name="gfapi.test", volfile_key="v")
    set_process_identity(graph, ident)
    assert graph.by_name["c0"].identity is ident
    assert graph.by_name["c1"].identity is ident
    assert not hasattr(graph.by_name["dht"], "identity")


def test_settle_heap_freezes_startup_objects_and_raises_the_young_threshold():
    """A serving process's collector: what exists at start-up is frozen
    (never traversed again) and the young generation collects less often."""
    import subprocess
    import sys
    out = subprocess.run(
        [sys.executable, "-c",
         "import gc; from glusterpy.process import settle_heap, SERVING_GC_THRESHOLDS as T;"
         "before = gc.get_freeze_count(); settle_heap();"
         "print(before, gc.get_freeze_count() > 1000, gc.get_threshold() == T)"],
        capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "True", "True"]
