"""features/access-control on glusterpy's bricks, from an attacker's side.

A one-brick glusterpy volume (glusterpyd, `glusterpy brick`), reached
through `from gluster import gfapi` as root and, with setfsuid/setfsgid/
setfsgroups, as unprivileged users: what the mode bits, the owner, the
groups, the sticky bit and POSIX ACLs refuse is refused by the brick, and
what they allow still works (so the tests fail if everything is refused).
The rules themselves (acl_permits, the inherited ACL) are checked without
a brick too, and the brick volfile's shape against glusterd's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat

import pytest

from gluster.gfapi import Volume
from glusterpy import fops
from glusterpy import volfile as vf
from glusterpy.fops import GFID, ROOT_GFID, Caller, ClientPid, Fd, FopError, Loc, UInt
from glusterpy.graph import Graph
from glusterpy.keys import CONTENT_KEY
from glusterpy.glusterd import volgen
from gfapi_compat_servers import glusterpy_volume
from xlators.features.access_control import (GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ,
                                             Perm, dump_acl, inherit, parse_acl, permits)

ROOT = os.geteuid() == 0
ACCESS, DEFAULT = "system.posix_acl_access", "system.posix_acl_default"
NOBODY = 0xFFFFFFFF


# -- the rules, without a brick --------------------------------------------------------


def test_permits_follows_owner_group_other_and_acl_entries():
    me = Caller(uid=1000, gid=100, groups=(200,))
    assert permits(me, Perm(1000, 0, 0o600), 4 | 2)
    assert not permits(me, Perm(1000, 0, 0o066), 4)  # the owner gets the owner bits only
    assert permits(me, Perm(0, 200, 0o640), 4)        # an auxiliary group
    assert not permits(me, Perm(0, 200, 0o604), 4)    # in the group: not "other"
    assert permits(me, Perm(0, 300, 0o604), 4)
    acl = ((USER_OBJ, 6, NOBODY), (USER, 6, 1000), (GROUP_OBJ, 0, NOBODY),
           (MASK, 4, NOBODY), (OTHER, 0, NOBODY))
    p = Perm(0, 0, 0o640, acl)
    assert permits(me, p, 4) and not permits(me, p, 2)   # the mask cuts the named user
    assert not permits(Caller(uid=1001), p, 4)
    groups = ((USER_OBJ, 7, NOBODY), (GROUP_OBJ, 0, NOBODY), (GROUP, 5, 200),
              (MASK, 7, NOBODY), (OTHER, 0, NOBODY))
    assert permits(me, Perm(0, 0, 0o770, groups), 4 | 1)
    assert not permits(me, Perm(0, 0, 0o770, groups), 2)
    assert parse_acl(dump_acl(acl)) == acl
    assert parse_acl(b"\x01\x00\x00\x00") is None and parse_acl(b"junk") is None


def test_inherited_acl_is_cut_to_the_mode_asked():
    default = ((USER_OBJ, 7, NOBODY), (USER, 7, 4242), (GROUP_OBJ, 5, NOBODY),
               (MASK, 7, NOBODY), (OTHER, 5, NOBODY))
    acl, mode = inherit(default, 0o100644)
    assert mode == 0o100644
    assert dict(((t, i), p) for t, p, i in acl) == {
        (USER_OBJ, NOBODY): 6, (USER, 4242): 7, (GROUP_OBJ, NOBODY): 5,
        (MASK, NOBODY): 4, (OTHER, NOBODY): 4}


def test_brick_graph_puts_access_control_between_changelog_and_locks():
    from test_glusterd_units import volume
    vol = volume()
    brick = vf.parses(volgen.brick_volfile(vol, vol.bricks[0]))
    acl = brick["vm-access-control"]
    assert acl.type == "features/access-control" and acl.subvolumes == ["vm-changelog"]
    assert brick["vm-locks"].subvolumes == ["vm-access-control"]
    vol.options["features.acl"] = "off"   # GlusterFS's debug switch
    brick = vf.parses(volgen.brick_volfile(vol, vol.bricks[0]))
    assert "features/access-control" not in {v.type for v in brick.volumes}
    assert brick["vm-locks"].subvolumes == ["vm-changelog"]


def test_fd_fops_that_need_no_check_are_bound_past_it():
    from xlators.features.access_control import AccessControl
    from xlators.storage.posix import TRANSLATOR as Posix
    acl = AccessControl("acl", {}, [Posix("posix", {"directory": "/nonexistent"})])
    skipped = set(acl.passthrough_fops())
    assert {"fsync", "flush", "inodelk", "finodelk", "lk", "readlink", "release"} <= skipped
    # checked at open, or (anonymous fds) here
    assert not {"open", "create", "lookup", "readv", "writev", "setattr", "stat"} & skipped


# -- a graph of storage/posix and access-control, called directly -------------------


def acl_graph(brick, options: str = "") -> Graph:
    return Graph.from_text(
        f"volume b-posix\n    type storage/posix\n    option directory {brick}\nend-volume\n"
        f"volume b-acl\n    type features/access-control\n{options}"
        "    subvolumes b-posix\nend-volume\n")


@contextlib.contextmanager
def calling_as(uid, gid=None, groups=(), pid=0):
    token = fops.caller.set(Caller(uid=uid, gid=uid if gid is None else gid,
                                   groups=groups, pid=pid))
    try:
        yield
    finally:
        fops.caller.reset(token)


async def fop_refused(err, coro):
    with pytest.raises(FopError) as e:
        await coro
    assert e.value.errno == err


@pytest.mark.skipif(not ROOT, reason="storage/posix needs trusted.* xattrs (root)")
async def test_anonymous_fds_and_content_requests_are_checked(brick):
    """What protocol/server hands down for fd -2 (an Fd on the gfid never
    opened, O_RDWR) and quick-read's content request in any fop's xdata."""
    graph = acl_graph(brick)
    top = graph.by_name["b-acl"]
    async with graph.running():
        files = {}
        for name, mode in (("secret", 0o600), ("public", 0o644)):
            fd = Fd(flags=os.O_RDWR)
            reply = await top.create(Loc(pargfid=ROOT_GFID, name=name),
                                     os.O_RDWR | os.O_CREAT, stat.S_IFREG | mode, 0, fd,
                                     {"gfid-req": GFID.random()})
            await top.writev(fd, name.encode(), 0, 0, None)
            await top.release(fd, None)
            files[name] = reply.iatt.gfid
        want = {CONTENT_KEY: UInt(4096)}
        secret = Loc(gfid=files["secret"])
        with calling_as(4242):
            anon = Fd(files["secret"], os.O_RDWR)
            await fop_refused(errno.EACCES, top.readv(anon, 6, 0, 0, None))
            await fop_refused(errno.EACCES, top.writev(anon, b"x", 0, 0, None))
            await fop_refused(errno.EACCES, top.ftruncate(anon, 0, None))
            await fop_refused(errno.EACCES, top.rchecksum(anon, 0, 6, None))
            await fop_refused(errno.EACCES, top.open(secret, os.O_RDONLY, Fd(files["secret"])))
            looked = await top.lookup(Loc(pargfid=ROOT_GFID, name="secret"), dict(want))
            assert CONTENT_KEY not in (looked.xdata or {})
            for reply in (await top.stat(secret, dict(want)),
                          await top.xattrop(secret, 0, {}, dict(want))):
                assert CONTENT_KEY not in (reply.xdata or {})
            # what the mode allows still works, anonymous or not
            assert bytes((await top.readv(Fd(files["public"], os.O_RDWR), 6, 0, 0,
                                          None)).data) == b"public"
            await fop_refused(errno.EACCES, top.writev(Fd(files["public"], os.O_RDWR),
                                                       b"x", 0, 0, None))
            looked = await top.lookup(Loc(pargfid=ROOT_GFID, name="public"), dict(want))
            assert bytes(looked.xdata[CONTENT_KEY]) == b"public"
        with calling_as(4242, pid=int(ClientPid.SELF_HEALD)):  # internal: passes
            assert bytes((await top.readv(Fd(files["secret"], os.O_RDWR), 6, 0, 0,
                                          None)).data) == b"secret"
        looked = await top.lookup(Loc(pargfid=ROOT_GFID, name="secret"), dict(want))
        assert bytes(looked.xdata[CONTENT_KEY]) == b"secret"  # root's lookup
        assert bytes((await top.stat(secret, dict(want))).xdata[CONTENT_KEY]) == b"secret"


@pytest.mark.skipif(not ROOT, reason="storage/posix needs trusted.* xattrs (root)")
async def test_super_uid_passes_as_root_does(brick):
    graph = acl_graph(brick, "    option super-uid 4242\n")
    top = graph.by_name["b-acl"]
    async with graph.running():
        fd = Fd(flags=os.O_RDWR)
        reply = await top.create(Loc(pargfid=ROOT_GFID, name="s"), os.O_RDWR | os.O_CREAT,
                                 stat.S_IFREG | 0o600, 0, fd, {"gfid-req": GFID.random()})
        await top.release(fd, None)
        with calling_as(4242):
            await top.open(Loc(gfid=reply.iatt.gfid), os.O_RDWR, Fd(reply.iatt.gfid))
        with calling_as(4343):
            await fop_refused(errno.EACCES, top.open(Loc(gfid=reply.iatt.gfid), os.O_RDONLY,
                                                     Fd(reply.iatt.gfid)))


# -- through a brick ------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not ROOT:
        pytest.skip("bricks need trusted.* xattrs (root)")
    with glusterpy_volume(tmp_path_factory.mktemp("acl"), name="acl", replica=None) as s:
        yield s


@pytest.fixture(scope="module")
def shared_vol(served):
    vol = Volume(served.host, served.volname, port=served.port)
    vol.mount()
    yield vol
    vol.umount()


@pytest.fixture
def vol(shared_vol, request):
    top = "/" + request.node.name
    shared_vol.mkdir(top, 0o755)
    shared_vol.chdir(top)
    try:
        yield shared_vol
    finally:
        shared_vol.chdir("/")
        shared_vol.rmtree(top, ignore_errors=True)


@contextlib.contextmanager
def as_user(vol, uid, gid=None, groups=()):
    vol.setfsuid(uid)
    vol.setfsgid(uid if gid is None else gid)
    vol.fs.setfsgroups(groups)
    try:
        yield
    finally:
        vol.setfsuid(0)
        vol.setfsgid(0)
        vol.fs.setfsgroups(())


def refused(err, fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    assert e.value.errno == err, (fn, args, e.value)


def read(vol, path):
    with vol.fopen(path, "rb") as f:
        return f.read()


def scribble(vol, path, how="r+b"):
    """Open for writing and write: open-behind may let the open through
    lazily, so what is refused may be the write (or its flush at close)."""
    with vol.fopen(path, how) as f:
        f.write(b"scribbled")


def write(vol, path, data=b"data", mode=0o644):
    with vol.fopen(path, "wb") as f:
        f.write(data)
    vol.chmod(path, mode)


def test_no_entry_made_in_a_0700_root_directory(vol):
    vol.mkdir("private", 0o700)
    vol.mkdir("open", 0o777)
    with as_user(vol, 4242):
        refused(errno.EACCES, vol.fopen, "private/x", "w")
        refused(errno.EACCES, vol.mkdir, "private/d")
        refused(errno.EACCES, vol.listdir, "private")
        assert vol.access("private", os.W_OK) is False
        assert vol.access("open", os.W_OK | os.X_OK) is True
        write(vol, "open/mine")
        vol.mkdir("open/mydir", 0o700)
    assert vol.stat("open/mine").st_uid == 4242
    assert vol.stat("open/mydir").st_uid == 4242
    assert not vol.exists("private/x") and not vol.exists("private/d")


def test_a_root_file_opens_only_as_its_mode_and_groups_allow(vol):
    vol.mkdir("d", 0o755)
    write(vol, "d/secret", b"secret", 0o600)
    write(vol, "d/public", b"public", 0o644)
    write(vol, "d/team", b"team", 0o640)
    vol.chown("d/team", 0, 5000)
    with as_user(vol, 4242):
        refused(errno.EACCES, read, vol, "d/secret")
        refused(errno.EACCES, scribble, vol, "d/secret")
        refused(errno.EACCES, scribble, vol, "d/secret", "ab")
        refused(errno.EACCES, scribble, vol, "d/public")
        refused(errno.EACCES, read, vol, "d/team")
        with vol.fopen("d/public", "rb") as f:
            assert f.read() == b"public"
    with as_user(vol, 4242, groups=(5000,)):  # an auxiliary group reads it
        with vol.fopen("d/team", "rb") as f:
            assert f.read() == b"team"
        refused(errno.EACCES, scribble, vol, "d/team")
    assert read(vol, "d/secret") == b"secret"  # root reads anything
    assert read(vol, "d/public") == b"public"  # nothing scribbled


def test_only_the_owner_changes_mode_and_group_and_only_root_gives_away(vol):
    vol.mkdir("d", 0o777)
    write(vol, "d/roots", mode=0o666)
    with as_user(vol, 4242, groups=(5000,)):
        write(vol, "d/mine")
        refused(errno.EPERM, vol.chmod, "d/roots", 0o777)
        refused(errno.EPERM, vol.chown, "d/roots", 4242, 4242)
        refused(errno.EPERM, vol.chown, "d/mine", 0, 4242)
        refused(errno.EPERM, vol.chown, "d/mine", 4242, 6000)
        vol.chmod("d/mine", 0o600)
        vol.chown("d/mine", 4242, 5000)
    st = vol.stat("d/mine")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (4242, 5000, 0o600)
    assert vol.stat("d/roots").st_mode & 0o7777 == 0o666
    vol.chown("d/mine", 0, 0)  # root may
    assert vol.stat("d/mine").st_uid == 0


def test_sticky_directory_keeps_others_from_removing_ones_file(vol):
    vol.mkdir("tmp", 0o777)
    vol.chmod("tmp", 0o1777)
    vol.mkdir("plain", 0o777)
    with as_user(vol, 1001):
        write(vol, "tmp/a")
        write(vol, "plain/a")
    with as_user(vol, 1002):
        refused(errno.EACCES, vol.unlink, "tmp/a")
        refused(errno.EACCES, vol.rename, "tmp/a", "tmp/b")
        write(vol, "tmp/c")
        refused(errno.EACCES, vol.rename, "tmp/c", "tmp/a")  # replacing 1001's
        vol.unlink("tmp/c")
        vol.unlink("plain/a")  # no sticky bit: the directory's w is enough
    assert vol.exists("tmp/a")
    with as_user(vol, 1001):
        vol.rename("tmp/a", "tmp/b")
        vol.unlink("tmp/b")


def acl_bytes(*entries):
    return dump_acl(tuple((tag, perm, NOBODY if ident is None else ident)
                          for tag, perm, ident in entries))


def test_posix_acls_grant_named_users_under_the_mask(vol):
    vol.mkdir("d", 0o755)
    write(vol, "d/f", b"acl", 0o600)
    with as_user(vol, 4242):
        refused(errno.EPERM, vol.setxattr, "d/f", ACCESS,
                acl_bytes((USER_OBJ, 6, None), (USER, 6, 4242), (GROUP_OBJ, 0, None),
                          (MASK, 6, None), (OTHER, 0, None)))
        refused(errno.EACCES, read, vol, "d/f")
    vol.setxattr("d/f", ACCESS, acl_bytes((USER_OBJ, 6, None), (USER, 6, 4242),
                                          (GROUP_OBJ, 0, None), (MASK, 4, None),
                                          (OTHER, 0, None)))
    with as_user(vol, 4242):
        with vol.fopen("d/f", "rb") as f:
            assert f.read() == b"acl"
        refused(errno.EACCES, scribble, vol, "d/f")  # the mask allows r only
    with as_user(vol, 4343):
        refused(errno.EACCES, read, vol, "d/f")


def test_owner_sets_an_acl_on_own_file(vol):
    vol.mkdir("d", 0o777)
    with as_user(vol, 4242):
        write(vol, "d/mine", b"mine", 0o600)
        vol.setxattr("d/mine", ACCESS, acl_bytes((USER_OBJ, 6, None), (USER, 4, 4343),
                                                 (GROUP_OBJ, 0, None), (MASK, 4, None),
                                                 (OTHER, 0, None)))
    with as_user(vol, 4343):
        with vol.fopen("d/mine", "rb") as f:
            assert f.read() == b"mine"
        refused(errno.EPERM, vol.removexattr, "d/mine", ACCESS)
    with as_user(vol, 4444):
        refused(errno.EACCES, read, vol, "d/mine")


def test_default_acl_is_inherited(vol):
    vol.mkdir("shared", 0o755)
    full = [(USER_OBJ, 7, None), (USER, 7, 4242), (GROUP_OBJ, 5, None), (MASK, 7, None),
            (OTHER, 5, None)]
    vol.setxattr("shared", ACCESS, acl_bytes(*full))
    vol.setxattr("shared", DEFAULT, acl_bytes(*full))
    write(vol, "shared/byroot", b"r", 0o644)   # mode 0644: the mask becomes r--
    vol.mkdir("shared/sub", 0o775)            # 0775: the mask stays rwx
    vol.mkdir("shared/narrow", 0o755)         # 0755: the mask becomes r-x
    inherited = parse_acl(vol.getxattr("shared/byroot", ACCESS))
    assert (USER, 7, 4242) in inherited and (MASK, 4, NOBODY) in inherited
    assert parse_acl(vol.getxattr("shared/sub", DEFAULT)) == parse_acl(acl_bytes(*full))
    with as_user(vol, 4242):
        with vol.fopen("shared/byroot", "rb") as f:
            assert f.read() == b"r"
        refused(errno.EACCES, scribble, vol, "shared/byroot")
        write(vol, "shared/sub/bymine", b"m", 0o644)  # the inherited rwx of sub
        refused(errno.EACCES, vol.fopen, "shared/narrow/x", "wb")
    assert vol.stat("shared/sub/bymine").st_uid == 4242
    with as_user(vol, 4343):
        refused(errno.EACCES, vol.fopen, "shared/sub/x", "wb")


def test_internal_clients_pass(vol):
    """A negative pid (self-heal, rebalance, gsyncd) passes the checks as
    GlusterFS lets its internal clients pass, whatever its uid."""
    vol.mkdir("d", 0o700)
    write(vol, "d/secret", b"s", 0o600)
    avol = vol.fs._avol
    saved = avol.identity
    avol.identity = dataclasses.replace(saved, uid=4242, gid=4242, groups=(),
                                        pid=int(ClientPid.SELF_HEALD))
    try:
        with vol.fopen("d/secret", "rb") as f:
            assert f.read() == b"s"
        write(vol, "d/healed", b"h", 0o600)
    finally:
        avol.identity = saved
    with as_user(vol, 4242):
        refused(errno.EACCES, read, vol, "d/secret")


def test_attackers_own_client_reads_nothing_it_may_not(served, vol):
    """The attacker's own process (no cache shared with root's): open-behind
    reads through an anonymous fd without an open, and quick-read asks for
    the content with the lookup - neither yields a 0600 root file."""
    vol.mkdir("d", 0o755)
    write(vol, "d/secret", b"top secret", 0o600)
    write(vol, "d/public", b"public", 0o644)
    attacker = Volume(served.host, served.volname, port=served.port)
    attacker.setfsuid(4242)
    attacker.setfsgid(4242)
    attacker.mount()
    try:
        attacker.fs.setfsgroups(())
        top = vol.getcwd()
        refused(errno.EACCES, read, attacker, f"{top}/d/secret")
        refused(errno.EACCES, scribble, attacker, f"{top}/d/secret")
        refused(errno.EACCES, scribble, attacker, f"{top}/d/public", "ab")
        assert read(attacker, f"{top}/d/public") == b"public"
    finally:
        attacker.umount()
    assert read(vol, "d/secret") == b"top secret"
    assert read(vol, "d/public") == b"public"
