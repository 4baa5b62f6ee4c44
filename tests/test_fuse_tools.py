"""Legacy tools on a glusterpy FUSE mount (issue 8): each checked by its own
means.  The mount is `glusterpy mount` of a volume served by our brick
process through our volfile server - the whole network path."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from test_interop_server import make_tree, served_volume

GLUSTERPY = [sys.executable, "-m", "glusterpy.cli.main"]

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3 (fuse3)"),
]


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (make test installs them)")


@pytest.fixture(scope="module")
def mnt(tmp_path_factory):
    base = tmp_path_factory.mktemp("tools")
    mountpoint = base / "mnt"
    mountpoint.mkdir()
    with served_volume(base / "srv", "toolsvol") as sv:
        done = subprocess.run([*GLUSTERPY, "mount", "-o", f"log-file={base / 'mount.log'}",
                               f"127.0.0.1:{sv.volfile_port}:/{sv.vol}", str(mountpoint)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        try:
            yield mountpoint
        finally:
            if subprocess.run([*GLUSTERPY, "umount", str(mountpoint)]).returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(mountpoint)])


def run(*cmd, cwd=None, timeout=300):
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_cp_a_and_diff(mnt, tmp_path):
    need("cp", "diff")
    make_tree(tmp_path / "src")
    run("cp", "-a", tmp_path / "src", mnt / "cp-copy")
    run("diff", "-r", "--no-dereference", tmp_path / "src", mnt / "cp-copy")


def test_rsync_a_and_diff(mnt, tmp_path):
    need("rsync", "diff")
    make_tree(tmp_path / "src")
    run("rsync", "-aHAX", f"{tmp_path / 'src'}/", f"{mnt / 'rsync-copy'}/")
    run("diff", "-r", "--no-dereference", tmp_path / "src", mnt / "rsync-copy")
    # a second rsync finds nothing to do: times and sizes came through exactly
    out = run("rsync", "-aHAX", "--itemize-changes", f"{tmp_path / 'src'}/",
              f"{mnt / 'rsync-copy'}/")
    assert out.strip() == "", out


def test_tar_create_and_extract(mnt, tmp_path):
    need("tar", "diff")
    make_tree(tmp_path / "src")
    run("tar", "--xattrs", "-cf", mnt / "tree.tar", "-C", tmp_path, "src")
    (mnt / "untar").mkdir()
    run("tar", "--xattrs", "-xf", mnt / "tree.tar", "-C", mnt / "untar")
    run("diff", "-r", "--no-dereference", tmp_path / "src", mnt / "untar" / "src")
    listing = run("tar", "-tvf", mnt / "tree.tar")
    assert "src/d1/d2/big" in listing


def test_git_clone_status_and_fsck(mnt, tmp_path):
    need("git")
    origin = tmp_path / "origin"
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")

    def git(*args, cwd):
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"git {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout
    origin.mkdir()
    git("init", "-q", cwd=origin)
    for i in range(30):
        (origin / f"f{i}.txt").write_text(f"line {i}\n" * (i + 1))
        if i % 10 == 9:
            git("add", ".", cwd=origin)
            git("commit", "-qm", f"batch {i}", cwd=origin)
    git("clone", "-q", str(origin), str(mnt / "clone"), cwd=tmp_path)
    clone = mnt / "clone"
    assert git("status", "--porcelain", cwd=clone) == ""
    git("fsck", "--full", "--strict", cwd=clone)
    (clone / "f3.txt").write_text("changed\n")
    assert git("status", "--porcelain", cwd=clone).strip() == "M f3.txt"
    git("commit", "-qam", "change", cwd=clone)
    git("gc", "-q", cwd=clone)
    git("fsck", "--full", "--strict", cwd=clone)
    assert git("log", "--oneline", cwd=clone).count("\n") == 4


def test_sqlite_database_with_its_journal(mnt):
    db_path = mnt / "db.sqlite"
    for mode in ("DELETE", "WAL"):
        db = sqlite3.connect(db_path)
        db.execute(f"PRAGMA journal_mode={mode}")
        db.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)")
        with db:
            db.executemany("INSERT INTO t (v) VALUES (?)", [(f"value {i}" * 20,)
                                                             for i in range(2000)])
        with db:  # a rolled-back transaction leaves nothing behind
            db.execute("DELETE FROM t")
            db.rollback()
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 4000
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


@pytest.mark.parametrize("engine", ["psync", "libaio"])
def test_fio_with_verify(mnt, engine):
    need("fio")
    run("fio", f"--name=verify-{engine}", f"--directory={mnt}", f"--ioengine={engine}",
        "--rw=randwrite", "--bs=4k", "--size=8m", "--verify=crc32c", "--do_verify=1",
        "--verify_fatal=1", "--verify_state_save=0", "--iodepth=4", "--direct=0",
        f"--filename=fio-{engine}.dat",
        timeout=600)
