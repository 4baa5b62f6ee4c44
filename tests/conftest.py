"""Fixtures shared by the test modules.

Keep them generic and append new ones below; module-specific helpers belong
in their test modules.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, settings

from glusterpy.graph import Graph

# The suite shares two cores with real daemons (and, in CI, nothing is
# quiet): Hypothesis's timing checks - a 200 ms deadline per example, the
# "generating inputs too slowly" health check - then fail tests for the
# machine's load, not for what they check.  Examples are still generated
# and shrunk as before; a test's own settings() still win.
settings.register_profile("shared-machine", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")


# -- storage/posix ------------------------------------------------------------

@pytest.fixture
def brick(tmp_path):
    """An empty directory to serve as a brick."""
    path = tmp_path / "brick"
    path.mkdir()
    return path


def posix_volfile(directory, name: str = "test-posix", **options) -> str:
    """A one-translator storage/posix volfile; keyword options use
    underscores for the volfile's hyphens (volume_id= -> volume-id)."""
    lines = [f"volume {name}", "    type storage/posix", f'    option directory "{directory}"']
    for key, value in options.items():
        lines.append(f'    option {key.replace("_", "-")} "{value}"')
    lines.append("end-volume")
    return "\n".join(lines) + "\n"


@pytest.fixture
def posix_graph():
    """`async with posix_graph(directory, **options) as top:` runs a
    storage/posix graph on `directory` and yields its top translator."""
    @contextlib.asynccontextmanager
    async def run(directory, name: str = "test-posix", **options):
        graph = Graph.from_text(posix_volfile(directory, name, **options))
        async with graph.running():
            yield graph.top
    return run


# -- a real GlusterFS 10 glusterd ------------------------------------------------

@pytest.fixture(scope="session")
def glusterd(tmp_path_factory):
    """A private GlusterFS 10 glusterd on 24007 (see tests/realgluster.py),
    shared by the session's interop tests and torn down at its end."""
    from realgluster import private_glusterd
    with private_glusterd(tmp_path_factory.mktemp("glusterd")) as gd:
        yield gd
