"""The conformance suite on the local stacks: storage/posix alone,
performance/io-cache over it, and the small-file stack glusterd puts in
client graphs (open-behind, quick-read, nl-cache) over it."""

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

SMALL_FILES = POSIX + """
volume c-open-behind
    type performance/open-behind
    subvolumes c-posix
end-volume

volume c-quick-read
    type performance/quick-read
    subvolumes c-open-behind
end-volume

volume c-nl-cache
    type performance/nl-cache
    option nl-cache-positive-entry on
    subvolumes c-quick-read
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
test_small_files_conformance = conformance_tests(stack(SMALL_FILES))
test_md_cache_conformance = conformance_tests(stack(IO_CACHE + '''
volume c-mdc
    type performance/md-cache
    option md-cache-timeout 600
    subvolumes c-io-cache
end-volume
'''))


async def test_the_suites_run_on_the_stacks_they_name(tmp_path):
    """A volfile that lost its top translator would run the suite on bare
    posix, and it would still pass: check each stack's shape."""
    for label, volfile, shape in (("posix", POSIX, ["storage/posix"]),
                                  ("io-cache", IO_CACHE,
                                   ["performance/io-cache", "storage/posix"]),
                                  ("small-files", SMALL_FILES,
                                   ["performance/nl-cache", "performance/quick-read",
                                    "performance/open-behind", "storage/posix"])):
        (tmp_path / label).mkdir()
        async with stack(volfile)(tmp_path / label) as graph:
            types, xl = [], graph.top
            while xl is not None:
                types.append(xl.type_name)
                xl = xl.children[0] if xl.children else None
            assert types == shape
