"""The codec compiled with mypyc, and its pure-Python sources beside it.

Issue 15: the brick's one event-loop thread is bound by interpreter time
spread thin over the request path; the sans-IO codec (XDR, record marking,
RPC headers, auth, the fop program's codecs, dicts, iatt structs, the
connection's state machine) is a fifth of it.  mypyc compiles those modules
from the same typed sources (`python -m glusterpy.rpc.build_codec`, run by
`make venv`) into extension modules beside them: `<module>.cpython-*.so`
shims and one shared library, `codec__mypyc.cpython-*.so`, all git-ignored.

Which one a process imports is decided once, here, when `glusterpy.rpc` is
imported (every codec module is imported through the package, so before any
of them):

- GLUSTERPY_PURE_PYTHON=1 in the environment: the .py sources, always
  (the tests run the codec's tests this way too, tests/test_rpc_compiled.py);
- no build (never built, or the build failed and said so): the .py sources;
- a build whose recorded source hashes differ from the sources now (a module
  edited since `make venv`), or for another interpreter, or whose shared
  library does not load: the .py sources and a RuntimeWarning saying why and
  how to rebuild - stale compiled code never runs silently;
- otherwise the compiled modules (Python's own finder prefers an extension
  module to a .py file of the same name).

The pure mode puts a finder first on sys.meta_path that answers for the
package's modules with their .py files, so no .so beside them is loaded.  `MODE` and `REASON` tell which one this process runs.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, TypeVar

_C = TypeVar("_C")

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    # mypyc reads the decorator from the source; at run time (and where
    # mypy_extensions is not installed) it is nothing.
    def mypyc_attr(*args: Any, **kwargs: Any) -> Callable[[_C], _C]:
        return lambda cls: cls

PACKAGE = __name__.rpartition(".")[0]
HERE = Path(__file__).parent

#: the modules mypyc compiles, one group (one shared library)
COMPILED: tuple[str, ...] = ("xdr", "record", "message", "auth", "structs", "dicts",
                             "fops4", "xdrmsg", "programs", "connection")
#: the group's shared library: glusterpy/rpc/codec__mypyc.<suffix>
GROUP = f"{PACKAGE}.codec"
#: written last by a successful build: the interpreter and the sources' hashes
STAMP = HERE / "codec.build.json"
PURE_ENV = "GLUSTERPY_PURE_PYTHON"

MODE = "pure"
REASON = "not decided yet"


def source_hashes() -> dict[str, str]:
    """sha256 of every compiled module's source, by module name."""
    return {name: hashlib.sha256((HERE / f"{name}.py").read_bytes()).hexdigest()
            for name in COMPILED}


def build_tag() -> dict[str, str]:
    """What an extension module is built for (a build for another Python is unusable)."""
    return {"cache_tag": str(sys.implementation.cache_tag),
            "suffix": importlib.machinery.EXTENSION_SUFFIXES[0]}


class _SourceFinder:
    """A meta path finder answering for this package's modules with their
    .py files (every one that has a source, not only COMPILED: no extension
    module of the package is loaded in the pure mode, a stray one included)."""

    @classmethod
    def find_spec(cls, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        source = HERE / f"{name}.py"
        if package != PACKAGE or not source.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def _stale_reason() -> str | None:
    """Why the build on disk must not be used (None: it may), or "" when there is none."""
    try:
        recorded = json.loads(STAMP.read_text())
    except FileNotFoundError:
        return ""
    except (OSError, ValueError) as e:
        return f"its record {STAMP.name} is unreadable ({e})"
    if recorded.get("tag") != build_tag():
        return f"it was built for another interpreter ({recorded.get('tag')})"
    changed = [name for name, digest in source_hashes().items()
               if recorded.get("sources", {}).get(name) != digest]
    if changed:
        return f"{', '.join(f'{n}.py' for n in changed)} changed since it was built"
    suffix = build_tag()["suffix"]
    expected = {f"{n}{suffix}" for n in (*COMPILED, GROUP.rpartition(".")[2] + "__mypyc")}
    present = {p.name for p in HERE.glob("*.so")}
    if expected - present:
        return f"{', '.join(sorted(expected - present))} missing from the build"
    if present - expected:
        # an extension module of a module no longer compiled would shadow its source
        return f"{', '.join(sorted(present - expected))} not of this build"
    return None


def _use_pure(reason: str, warn: bool) -> None:
    global MODE, REASON
    MODE, REASON = "pure", reason
    if _SourceFinder not in sys.meta_path:
        sys.meta_path.insert(0, _SourceFinder)
    if warn:
        warnings.warn(f"glusterpy.rpc runs its pure-Python codec: {reason}; "
                      "rebuild it with `make venv` (python -m glusterpy.rpc.build_codec)",
                      RuntimeWarning, stacklevel=3)


def choose() -> str:
    """Decide, once per process, which codec the imports below get; the mode."""
    global MODE, REASON
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        _use_pure(f"{PURE_ENV} is set", warn=False)
        return MODE
    stale = _stale_reason()
    if stale is not None:
        _use_pure(stale or "the codec is not compiled", warn=bool(stale))
        return MODE
    try:
        importlib.import_module(f"{GROUP}__mypyc")
    except ImportError as e:
        _use_pure(f"its shared library does not load ({e})", warn=True)
        return MODE
    MODE, REASON = "compiled", "built from these sources"
    return MODE


__all__ = ["COMPILED", "GROUP", "MODE", "PURE_ENV", "REASON", "STAMP", "build_tag", "choose",
           "mypyc_attr", "source_hashes"]
