"""One grammar for every `glusterpy` command (glusterpy/cli/global_options.py).

The global options - `--remote-host`, `--token`, `--json`, `--mode=script`,
`--yes` - come before ANY command word, as the gluster CLI takes them, and
the commands that took them after the command word still do.  Every
command that talks to glusterpyd honours `--remote-host` /
$GLUSTERPY_REMOTE_HOST and `--token` / $GLUSTERPY_TOKEN the same way; an
unknown or misplaced global option is a usage error (exit 2).

Parsing alone, then the real CLI (a subprocess, as an administrator runs
it) against a real glusterpyd process: `vm create-image`, `bd` and `--json`
after global options reach the daemon.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from glusterpy.cli import api_client, global_options
from glusterpy.cli.main import main
from test_glusterd_support import free_port, running_daemon

GLUSTERPY = [sys.executable, "-m", "glusterpy.cli.main"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")


def run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if k not in ("GLUSTERPY_REMOTE_HOST", "GLUSTERPY_TOKEN")}
    full.update(env or {})
    return subprocess.run([*GLUSTERPY, *argv], capture_output=True, text=True, timeout=120,
                          env=full, stdin=subprocess.DEVNULL)


# -- parsing --------------------------------------------------------------------------


def test_global_options_before_the_command_word():
    opts, rest = global_options.split(["--mode=script", "--remote-host", "h:1", "--json",
                                       "--token=abc", "volume", "stop", "v", "--yes"])
    assert (opts.remote, opts.token, opts.json, opts.yes) == ("h:1", "abc", True, True)
    assert rest == ["volume", "stop", "v", "--yes"]
    opts, rest = global_options.split(["--remote-host=h:2", "--token", "-dash", "vm",
                                       "create-image", "v", "i", "1M"])
    assert (opts.remote, opts.token) == ("h:2", "-dash") and rest[0] == "vm"
    # nothing before the command: nothing taken
    assert global_options.split(["brick", "--volfile", "x"])[1] == ["brick", "--volfile", "x"]
    # help is argparse's
    assert global_options.split(["--json", "--help"])[1] == ["--help"]


@pytest.mark.parametrize("argv, message", [
    (["--bogus", "volume", "list"], "unknown global option '--bogus'"),
    (["--remote-host"], "--remote-host needs a value"),
    (["--remote-host", "--json", "volume", "list"], "--remote-host needs a value"),
    (["--token"], "--token needs a value"),
    (["--mode=batch", "volume", "list"], "unknown mode 'batch'"),
    (["--xml", "volume", "info"], "--xml is not supported"),
    (["--remote-host", "h:1", "mount", "h:/v", "/mnt"], "talks to no glusterpyd"),
    (["--token", "t", "brick", "--volfile", "x"], "talks to no glusterpyd"),
    (["--remote-host", "h:1", "umount", "/mnt"], "talks to no glusterpyd"),
])
def test_wrong_global_options_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage: glusterpy [--remote-host HOST[:PORT]]" in err, err


def test_help_shows_the_global_options():
    r = run("--help")
    assert r.returncode == 0 and "--token TOKEN" in r.stdout and "--remote-host" in r.stdout


class Seen:
    """ApiClient's arguments, and no connection: every call fails."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str | None, str | None]] = []
        seen = self

        def fake_init(self, remote=None, timeout=300.0, token=None):
            seen.calls.append((remote, token))
            raise api_client.ApiFailure("no daemon in this test")
        monkeypatch.setattr(api_client.ApiClient, "__init__", fake_init)


@pytest.mark.parametrize("argv", [
    ["--remote-host", "h:7", "--token", "T", "volume", "list"],
    ["volume", "list", "--remote-host", "h:7", "--token", "T"],
    ["--remote-host", "h:1", "--token", "X", "volume", "--remote-host=h:7", "--token=T",
     "list"],
    ["--remote-host", "h:7", "--token", "T", "peer", "status"],
    ["--token", "T", "--remote-host", "h:7", "pool", "list"],
    ["--remote-host", "h:7", "--token", "T", "vm", "create-image", "v", "i", "1M"],
    ["--remote-host", "h:7", "--token", "T", "vm", "disk-xml", "v", "i"],
    ["vm", "--remote-host", "h:7", "--token", "T", "disk-xml", "v", "i"],
    ["vm", "disk-xml", "v", "i", "--remote-host", "h:7", "--token", "T"],
    ["--remote-host", "h:1", "vm", "disk-xml", "v", "i", "--remote-host", "h:7",
     "--token", "T"],
])
def test_every_daemon_command_gets_remote_host_and_token(argv, monkeypatch, capsys):
    seen = Seen(monkeypatch)
    assert main(argv) == 1
    assert seen.calls == [("h:7", "T")], (argv, seen.calls)
    assert "no daemon in this test" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--remote-host", "h:7", "token", "list"],
    ["--json", "--remote-host=h:7", "token", "list"],
    ["--remote-host", "h:7", "tls", "setup"],
])
def test_the_local_admin_commands_get_remote_host(argv, monkeypatch):
    seen = Seen(monkeypatch)
    assert main(argv) == 1
    assert [remote for remote, _ in seen.calls] == ["h:7"], (argv, seen.calls)


def test_the_token_env_reaches_the_client(monkeypatch):
    # ApiClient reads $GLUSTERPY_TOKEN / $GLUSTERPY_REMOTE_HOST itself when given None
    monkeypatch.setenv("GLUSTERPY_TOKEN", "from-env")
    monkeypatch.setenv("GLUSTERPY_REMOTE_HOST", "envhost:9")
    client = api_client.ApiClient(None, token=None)
    assert (client.host, client.port, client.token) == ("envhost", 9, "from-env")
    client = api_client.ApiClient("h:7", token="T")
    assert (client.host, client.port, client.token) == ("h", 7, "T")


# -- against glusterpyd -----------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grammar")
    with running_daemon(tmp / "wd") as d:
        d.ok("volume", "create", "g", f"127.0.0.1:{tmp / 'b1'}")
        d.ok("volume", "start", "g")
        d.brick = tmp / "b1"
        yield d


@needs_root
def test_vm_create_image_after_global_options(daemon):
    r = run("--remote-host", daemon.remote, "vm", "create-image", "g", "img1", "1M")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"created gluster://127.0.0.1:{daemon.port}/g/img1: raw, 1 MiB" in r.stdout
    assert (daemon.brick / "img1").stat().st_size == 1 << 20
    # $GLUSTERPY_REMOTE_HOST, and the option after `vm` as before
    r = run("vm", "create-image", "g", "img2", "1M", env={"GLUSTERPY_REMOTE_HOST":
                                                          daemon.remote})
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("vm", "--remote-host", daemon.remote, "disk-xml", "g", "img2")
    assert r.returncode == 0 and '<disk type="network"' in r.stdout, r.stdout + r.stderr


@needs_root
def test_json_before_any_command(daemon):
    for argv in (["volume", "info", "g"], ["volume", "list"], ["peer", "status"],
                 ["pool", "list"]):
        r = run("--json", "--remote-host", daemon.remote, *argv)
        assert r.returncode == 0 and r.stdout.lstrip().startswith("{"), (argv, r)
    r = run("--remote-host", daemon.remote, "--json", "volume", "list")
    assert '"g"' in r.stdout


@needs_root
def test_bd_takes_the_global_remote_host_and_the_env(daemon):
    """bd needs LVM to do anything; that it reaches the daemon shows here:
    the daemon's volume `g` is found, and is not a bd volume (no
    glusterfs.bd.vg) - where a daemon that is not there fails to connect."""
    for argv, env in [(["--remote-host", daemon.remote, "bd", "create", "g:/vg/lv", "1M"], {}),
                      (["bd", "--remote-host", daemon.remote, "create", "g:/vg/lv", "1M"], {}),
                      (["bd", "create", "g:/vg/lv", "1M", "--remote-host", daemon.remote], {}),
                      (["bd", "create", "g:/vg/lv", "1M"],
                       {"GLUSTERPY_REMOTE_HOST": daemon.remote}),
                      (["--token", "T", "bd", "delete", "g:/vg/lv"],
                       {"GLUSTERPY_REMOTE_HOST": daemon.remote})]:
        r = run(*argv, env=env)
        assert r.returncode == 2 and "volume g is not a bd volume" in r.stderr, (argv, r)
    nowhere = f"127.0.0.1:{free_port()}"
    r = run("bd", "create", "g:/vg/lv", "1M", env={"GLUSTERPY_REMOTE_HOST": nowhere})
    assert r.returncode == 1 and "not a bd volume" not in r.stderr, r
    # the option wins over the environment
    r = run("--remote-host", daemon.remote, "bd", "create", "g:/vg/lv", "1M",
            env={"GLUSTERPY_REMOTE_HOST": nowhere})
    assert "volume g is not a bd volume" in r.stderr, r


@needs_root
def test_script_mode_before_the_command(daemon, tmp_path):
    r = run("--remote-host", daemon.remote, "volume", "create", "s",
            f"127.0.0.1:{tmp_path / 's1'}")
    assert r.returncode == 0, r
    # no terminal: without --mode=script the confirmation fails rather than hang
    r = run("--remote-host", daemon.remote, "volume", "delete", "s")
    assert r.returncode != 0, r
    r = run("--mode=script", "--remote-host", daemon.remote, "volume", "delete", "s")
    assert r.returncode == 0 and "volume delete: s: success" in r.stdout, r
