"""The conformance suite over cluster/replicate.

Replicate over 2 and over 3 brick stacks (storage/posix -> features/locks
-> features/index, glusterd's order) joined in one graph: the suite checks
the translator's behaviour as a filesystem, and one graph per check keeps it
fast (no sockets, no processes).  Replica 3 runs with GlusterFS's defaults
for three children (auto quorum) and eager locking with a delayed post-op;
the arbiter variant puts features/arbiter on the third brick.  Over the
network (protocol/client to protocol/server in process) the suite runs once
more for replica 3, which exercises the fds and locks as a remote client
holds them.
"""

import contextlib

from conformance import conformance_tests
from replicate_support import NetworkReplica, local_factory

test_replica2_conformance = conformance_tests(local_factory(2))
test_replica3_conformance = conformance_tests(local_factory(3))
test_replica3_no_eager_lock_conformance = conformance_tests(
    local_factory(3, {"eager-lock": "off", "post-op-delay-secs": "0"}))
test_arbiter_conformance = conformance_tests(
    local_factory(3, {"arbiter-count": "1"}, arbiter=True))


@contextlib.asynccontextmanager
async def network_factory(tmp_path):
    net = NetworkReplica(tmp_path, 3)
    async with net.running():
        yield net.client_graph()


test_network_replica3_conformance = conformance_tests(network_factory)


async def test_the_suites_run_on_the_stacks_they_name(tmp_path):
    """Replicate on top with as many brick stacks as the suite's name says,
    features/arbiter on the arbiter's third brick only."""
    for label, factory, n, arbiters in (
            ("r2", local_factory(2), 2, 0), ("r3", local_factory(3), 3, 0),
            ("arb", local_factory(3, {"arbiter-count": "1"}, arbiter=True), 3, 1)):
        (tmp_path / label).mkdir()
        async with factory(tmp_path / label) as graph:
            assert graph.top.type_name == "cluster/replicate"
            assert len(graph.top.children) == n
            types = [xl.type_name for xl in graph.by_name.values()]
            assert types.count("features/arbiter") == arbiters
            assert types.count("storage/posix") == n
