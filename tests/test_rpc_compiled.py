"""The codec compiled with mypyc and its pure-Python fallback (issue 15,
glusterpy/rpc/compiled.py): which one a process imports, that a stale or
failed build never runs, and the codec's own tests in the pure mode (the
rest of the suite runs whatever `make venv` built, compiled where it could).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from glusterpy.rpc import compiled

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import json, sys
import glusterpy.rpc.compiled as c
import importlib
files = {n: importlib.import_module(f"glusterpy.rpc.{n}").__file__ for n in c.COMPILED}
print(json.dumps({"mode": c.MODE, "reason": c.REASON, "files": files}))
"""
#: the codec's round-trip and fuzz tests, run again in the pure mode
CODEC_TESTS = ["tests/test_rpc_xdr.py", "tests/test_rpc_record.py", "tests/test_rpc_message.py",
               "tests/test_rpc_dicts.py", "tests/test_rpc_fops.py",
               "tests/test_rpc_connection.py", "tests/test_rpc_fuzz.py",
               "tests/test_rpc_captures.py"]


def env_with(root: Path, pure: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    env.pop(compiled.PURE_ENV, None)
    if pure:
        env[compiled.PURE_ENV] = "1"
    return env


def probe(root: Path, pure: bool) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-W", "always", "-c", PROBE], cwd=root,
                          env=env_with(root, pure), capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout), done.stderr


def require_build() -> None:
    if not compiled.STAMP.exists():
        pytest.skip("the codec is not compiled here (make venv builds it; "
                    "python -m glusterpy.rpc.build_codec)")


def test_mode_matches_environment():
    """In this very process: the pure mode imports every codec module from
    its .py file; otherwise a build of these sources is what runs."""
    files = {n: sys.modules[f"glusterpy.rpc.{n}"].__file__ for n in compiled.COMPILED}
    if os.environ.get(compiled.PURE_ENV) == "1":
        assert compiled.MODE == "pure"
        assert all(f.endswith(f"{n}.py") for n, f in files.items()), files
        return
    require_build()
    assert compiled.MODE == "compiled", compiled.REASON
    assert all(f.endswith(".so") for f in files.values()), files


def test_default_process_loads_the_build():
    require_build()
    out, err = probe(ROOT, pure=False)
    assert out["mode"] == "compiled", out
    assert all(f.endswith(".so") for f in out["files"].values()), out
    assert "pure-Python" not in err


def test_pure_env_loads_sources_silently():
    out, err = probe(ROOT, pure=True)
    assert out["mode"] == "pure"
    assert compiled.PURE_ENV in out["reason"]
    for name, f in out["files"].items():
        assert f == str(ROOT / "glusterpy" / "rpc" / f"{name}.py")
    assert "RuntimeWarning" not in err


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "glusterpy", tmp_path / "glusterpy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_credentials_are_compiled():
    """auth.py is part of the build (a brick decodes a credential per
    request): loaded from the extension module unless the pure mode is
    asked for, and its credentials behave the same either way."""
    assert "auth" in compiled.COMPILED
    check = ("from glusterpy.rpc.auth import *\n"
             "c = AuthGlusterfsV3(7, 1, 2, 1, 5, 6, (3, 4), b'owner')\n"
             "assert decode_auth(c.flavor, c.body()) == c and c.flavor == AUTH_GLUSTERFS_V3\n"
             "assert AuthGlusterfsV2(pid=9).flavor == AUTH_GLUSTERFS_V2\n"
             "assert all(cls().flavor == f for f, cls in FLAVORS.items())\n"
             "import glusterpy.rpc.auth as a; print(a.__file__)\n")
    modes = [True] + ([False] if compiled.STAMP.exists() else [])
    for pure in modes:
        done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env=env_with(ROOT, pure),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith("auth.py" if pure else ".so"), done.stdout


@pytest.mark.parametrize("module", ["record", "auth"])
def test_stale_build_is_not_used(tmp_path, module):
    """A module edited since the build: its sources run, with a warning
    naming the module and the way to rebuild."""
    require_build()
    root = copy_package(tmp_path)
    out, _ = probe(root, pure=False)
    assert out["mode"] == "compiled"  # the copy's build matches the copy's sources
    with open(root / "glusterpy" / "rpc" / f"{module}.py", "a") as f:
        f.write("\n# edited after the build\n")
    out, err = probe(root, pure=False)
    assert out["mode"] == "pure"
    assert all(f.endswith(".py") for f in out["files"].values()), out
    assert f"{module}.py changed since it was built" in err
    assert "make venv" in err


def test_leftover_extension_module_is_not_used(tmp_path):
    """An .so beside a module the build does not cover would shadow its
    source: the build is refused."""
    require_build()
    root = copy_package(tmp_path)
    rpc = root / "glusterpy" / "rpc"
    so = next(rpc.glob("xdr.*.so"))
    shutil.copyfile(so, rpc / so.name.replace("xdr.", "mgmt.", 1))
    out, err = probe(root, pure=False)
    assert out["mode"] == "pure"
    assert "not of this build" in err


def test_failed_build_leaves_pure_python(tmp_path):
    """No working C compiler: the build says so, exits 0, removes the old
    build, and the package imports its sources."""
    root = copy_package(tmp_path)
    env = env_with(root, pure=True)
    env["CC"] = "/bin/false"
    done = subprocess.run([sys.executable, "-m", "glusterpy.rpc.build_codec"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "compiling the codec with mypyc failed" in done.stderr
    assert "pure-Python codec" in done.stderr
    rpc = root / "glusterpy" / "rpc"
    assert not list(rpc.glob("*.so")) and not (rpc / compiled.STAMP.name).exists()
    out, err = probe(root, pure=False)
    assert out["mode"] == "pure" and "RuntimeWarning" not in err
    assert all(f.endswith(".py") for f in out["files"].values())


def test_codec_tests_pass_in_pure_mode():
    """The codec's tests again, on the .py sources (this module's first test
    checks, inside that run, that the sources are what it imported)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_rpc_compiled.py::test_mode_matches_environment", *CODEC_TESTS],
        cwd=ROOT, env=env_with(ROOT, pure=True), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
