"""The conformance suite on cluster/distribute over three storage/posix
bricks (tests/conformance.py)."""

import contextlib

from glusterpy.graph import Graph

from conformance import conformance_tests


def distribute_volfile(bricks, name="conf", **options) -> str:
    parts = []
    for i, brick in enumerate(bricks):
        parts.append(f"volume {name}-client-{i}\n    type storage/posix\n"
                     f"    option directory {brick}\nend-volume\n")
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in options.items())
    subs = " ".join(f"{name}-client-{i}" for i in range(len(bricks)))
    parts.append(f"volume {name}-dht\n    type cluster/distribute\n{opts}"
                 f"    subvolumes {subs}\nend-volume\n")
    return "".join(parts)


@contextlib.asynccontextmanager
async def three_bricks(tmp_path):
    bricks = []
    for i in range(3):
        brick = tmp_path / f"brick{i}"
        brick.mkdir()
        bricks.append(brick)
    yield Graph.from_text(distribute_volfile(bricks))


test_distribute_conformance = conformance_tests(three_bricks)


async def test_the_suite_runs_on_three_distributed_bricks(tmp_path):
    async with three_bricks(tmp_path) as graph:
        assert graph.top.type_name == "cluster/distribute"
        assert [c.type_name for c in graph.top.children] == ["storage/posix"] * 3
