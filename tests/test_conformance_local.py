"""The conformance suite on the local stacks: storage/posix alone, and
performance/io-cache over it."""

import contextlib

from glusterpy.graph import Graph

from conformance import conformance_tests

POSIX = """
volume c-posix
    type storage/posix
    option directory {brick}
end-volume
"""
IO_CACHE = POSIX + """
volume c-io-cache
    type performance/io-cache
    option cache-timeout 0
    subvolumes c-posix
end-volume
"""


def stack(volfile):
    @contextlib.asynccontextmanager
    async def factory(tmp_path):
        brick = tmp_path / "brick"
        brick.mkdir()
        yield Graph.from_text(volfile.format(brick=brick))
    return factory


test_posix_conformance = conformance_tests(stack(POSIX))
test_io_cache_conformance = conformance_tests(stack(IO_CACHE))
