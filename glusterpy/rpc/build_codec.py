"""Compile the codec (glusterpy.rpc.compiled.COMPILED) with mypyc, in place.

    python -m glusterpy.rpc.build_codec [--clean]

`make venv` runs it (so `make test`, `make run` and .ci/run do).  It needs
mypyc (it ships with mypy, the test extra), a C compiler and Python's
headers (gcc, python3-dev).  The C sources and objects go to a temporary
directory; the extension modules are moved beside the sources, each by a
rename (a process that has the old ones loaded keeps them), and the record
of what was built (codec.build.json) is written last, so a build cut short
is never used.  Whatever fails, the exit status is 0 and the message says
that glusterpy runs its pure-Python codec: compiling is a speed-up, never a
condition of the install.  --clean removes the build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .compiled import COMPILED, GROUP, HERE, STAMP, build_tag, source_hashes

ROOT = HERE.parent.parent


def built_files() -> list[Path]:
    """The extension modules of a build, whatever interpreter made them (the
    package has no others; one left from a module no longer compiled would
    shadow its source)."""
    return sorted(HERE.glob("*.so"))


def clean() -> None:
    STAMP.unlink(missing_ok=True)  # first: a half-removed build is never used
    for p in built_files():
        p.unlink()


def compile_into(work: Path) -> list[Path]:
    """Run mypyc and the C compiler in work; the extension modules made."""
    from mypyc.build import mypycify
    from setuptools import Distribution  # type: ignore[import-untyped]

    # mypyc reads [tool.mypy] from the current directory (strict, as `make lint`)
    os.chdir(ROOT)
    paths = [str(HERE / f"{name}.py") for name in COMPILED]
    extensions = mypycify(["--cache-dir", str(work / "mypy_cache"), *paths],
                          group_name=GROUP, target_dir=str(work / "c"), opt_level="3")
    dist = Distribution({"name": "glusterpy-codec", "ext_modules": extensions,
                         "script_name": "build_codec", "script_args": []})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(work / "lib")
    cmd.build_temp = str(work / "tmp")
    cmd.inplace = False
    dist.run_command("build_ext")
    made = sorted((work / "lib").rglob("*.so"))
    expected = len(COMPILED) + 1
    if len(made) != expected:
        raise RuntimeError(f"expected {expected} extension modules, the build made "
                           f"{[p.name for p in made]}")
    return made


def install(made: list[Path]) -> None:
    clean()
    for src in made:
        dst = HERE / src.name
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    STAMP.write_text(json.dumps({"tag": build_tag(), "sources": source_hashes(),
                                 "built": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clean", action="store_true", help="remove the build")
    args = ap.parse_args(argv)
    if args.clean:
        clean()
        print("glusterpy.rpc: compiled codec removed; the pure-Python sources run")
        return 0
    start = time.monotonic()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="glusterpy-codec-") as tmp:
        try:
            made = compile_into(Path(tmp))
            install(made)
        except (Exception, SystemExit) as e:  # distutils reports compiler errors by exit
            clean()
            print(f"glusterpy.rpc: compiling the codec with mypyc failed ({type(e).__name__}: "
                  f"{e}); glusterpy runs its pure-Python codec (slower, same behaviour)",
                  file=sys.stderr)
            return 0
        finally:
            os.chdir(cwd)
    print(f"glusterpy.rpc: codec compiled with mypyc ({len(made)} extension modules, "
          f"{time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
