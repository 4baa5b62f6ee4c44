"""Geo-replication over TLS, set up by `create push-pem` (issue 19), tried
as an attacker would.

A primary node and a secondary node, each in its network namespace, each
with its own OpenSSL directory ($GLUSTERPY_SSL_CERT_DIR: the machine's
/usr/lib/ssl is not touched), and a third namespace for the attacker.
The secondary has `tls setup` done and its volume client.ssl/server.ssl on,
with an auth.ssl-allow of its own.  Checked:

* push-pem without a token, with a forged one, with a read-only one, with a
  token of another node (its pin does not match), to a secondary pool
  without TLS set up, and to a volume without TLS: refused, with the reason,
  and nothing changed on either node (state, OpenSSL files);
* a geo-replication token made for another volume: refused too;
* with the secondary's geo-replication token: the primary node's
  certificate is in the secondary's glusterfs.ca, its name added to
  auth.ssl-allow (what was there kept), the session mirrors files, and the
  secondary's brick saw the worker's TLS connection under the primary
  node's name;
* from the attacker's namespace: no certificate, or a self-signed one with
  the primary node's very name, mounts nothing of the secondary volume; the
  geo-replication token does nothing but push-pem; the push route
  anonymously is a 401;
* `delete` of the session: without the token, with one that did not admit
  the certificates, a read-only one or another node's, refused and the
  session kept, nothing changed; with the token, node 1 - which mounted the
  secondary volume with its certificate before - mounts it no more, and the
  volume's other auth.ssl-allow names stay.

The units check what the secondary refuses to admit (glusterd/georep_pem.py)
and the token and answer checks of the primary's side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from glusterpy import pki
from glusterpy.glusterd import georep_pem
from test_glusterd_cluster import SUBNET, in_netns, switched_namespaces
from test_glusterd_support import Daemon, snapshot, wait_for

PORT = 24431


# -- units ------------------------------------------------------------------------


def test_ssl_allow_keeps_what_was_there():
    assert georep_pem.ssl_allow_with(None, ["p1"]) is None       # unset: any trusted one
    assert georep_pem.ssl_allow_with("*", ["p1"]) is None
    assert georep_pem.ssl_allow_with("p*", ["p1", "p2"]) is None
    assert georep_pem.ssl_allow_with("admin, qemu-*", ["p1", "qemu-1"]) == "admin,qemu-*,p1"


def test_token_and_answer_checks():
    pin = "0123456789abcdef" * 2
    for token, message in ((None, "needs the secondary's token"), ("  ", "needs the"),
                           ("not a token", "not a glusterpy token"),
                           ("geo.SECRET", "has no pin"), ("geo.SECRET.abc", "has no pin")):
        with pytest.raises(ValueError, match=message):
            georep_pem.token_pin(token)
    assert georep_pem.token_pin(f"geo.SECRET.{pin.upper()}") == pin
    cert = pki.cert_pem(pki.self_signed("s1", pki.new_key())).decode()
    with pytest.raises(ValueError, match="refused: nope"):
        georep_pem.admitted(403, {"error": "nope"}, "h:1")
    with pytest.raises(ValueError, match="no CA list"):
        georep_pem.admitted(200, {"added": []}, "h:1")
    with pytest.raises(ValueError, match="not PEM"):
        georep_pem.admitted(200, {"ca": "junk"}, "h:1")
    assert georep_pem.admitted(200, {"ca": cert}, "h:1")["ca"] == cert


def test_a_geo_replication_token_may_be_limited_to_a_volume(tmp_path):
    from glusterpy.glusterd.trust import TokenStore, TrustError
    store = TokenStore(tmp_path / "tokens.json")
    pin = "ab" * 32
    token = store.create("g", "geo-replication", pin, volume="sv")
    assert store.check(token) == ("g", "geo-replication") and store.volume_of("g") == "sv"
    assert store.volume_of(store.create("g2", "geo-replication", pin).split(".")[0]) is None
    for name, role, volume, message in (("a", "admin", "sv", "only a geo-replication"),
                                        ("b", "geo-replication", "a/b", "volume 'a/b'"),
                                        ("c", "geo-replication", "", "volume ''")):
        with pytest.raises(TrustError, match=message):
            store.create(name, role, pin, volume)
    assert [t["name"] for t in store.listing()] == ["g", "g2"]
    assert TokenStore(tmp_path / "tokens.json").volume_of("g") == "sv"  # kept on disk


def test_what_a_secondary_refuses_to_admit(tmp_path):
    from glusterpy.glusterd import tls_setup
    from glusterpy.glusterd.model import Brick, Volume
    from glusterpy.glusterd.trust import NodeTrust
    gd = SimpleNamespace(trust=NodeTrust(tmp_path, "sec1"), peers={})
    vol = Volume(name="sv", id="6d3b0e84-8d1c-4bb8-9a2c-1f1c1c1c1c1c", status="Started",
                 bricks=[Brick("sec1", "/b", "u1", 49152)])

    def cert(name, ca=False):
        return pki.cert_pem(pki.self_signed(name, pki.new_key(), ca=ca)).decode()
    prim = cert("prim1")
    with pytest.raises(georep_pem.Refused, match="no TLS set up"):
        georep_pem.check_admission(gd, vol, [prim])
    tls_setup.state_path(gd).write_text('{"management": false}')
    with pytest.raises(georep_pem.Refused, match="client.ssl and server.ssl off"):
        georep_pem.check_admission(gd, vol, [prim])
    vol.options.update({"client.ssl": "on", "server.ssl": "on"})
    for certs, message in (([cert("evil", ca=True)], "is a CA"),
                           ([cert("sec1")], "already trusted under the name 'sec1'"),
                           ([prim, cert("prim1")], "already trusted under the name 'prim1'"),
                           (["junk"], "not PEM"), ([], "a list of PEM"), (prim, "a list of PEM"),
                           ([7], "a list of PEM")):
        with pytest.raises(georep_pem.Refused, match=message):
            georep_pem.check_admission(gd, vol, certs)
    assert georep_pem.check_admission(gd, vol, [prim]) == ([prim], ["prim1"])
    # already admitted (push-pem again): nothing to add, the name still counts
    (gd.trust.dir / "clients.pem").write_text(prim)
    assert georep_pem.check_admission(gd, vol, [prim]) == ([], ["prim1"])
    # a client of the secondary's own under that name: another certificate is refused
    with pytest.raises(georep_pem.Refused, match="already trusted"):
        georep_pem.check_admission(gd, vol, [cert("prim1")])


def test_what_a_withdrawal_takes_back(tmp_path, monkeypatch):
    """Two primaries admitted to two volumes: each withdrawal takes back only
    its own, keeps what another session or `tls client` still needs, and a
    token may withdraw only what it (or a token of the same volume) admitted."""
    import trio

    from glusterpy.glusterd import tls_setup
    from glusterpy.glusterd.model import Brick, Volume
    from glusterpy.glusterd.trust import NodeTrust
    monkeypatch.setenv("GLUSTERPY_SSL_CERT_DIR", str(tmp_path / "ssl"))
    (tmp_path / "ssl").mkdir()
    gd = SimpleNamespace(trust=NodeTrust(tmp_path, "sec1"), peers={}, names=["sec1"])
    tls_setup.state_path(gd).write_text('{"management": false}')

    def volume(name, allow):
        return Volume(name=name, id="6d3b0e84-8d1c-4bb8-9a2c-1f1c1c1c1c1c", status="Started",
                      bricks=[Brick("sec1", "/b", "u1", 49152)],
                      options={"client.ssl": "on", "server.ssl": "on", "auth.ssl-allow": allow})
    sv, other = volume("sv", "backup-admin"), volume("other", "x")

    def setter(vol):
        async def set_allow(value):
            vol.options["auth.ssl-allow"] = value
        return set_allow
    p1, p2, client = (pki.cert_pem(pki.self_signed(n, pki.new_key())).decode()
                      for n in ("prim1", "prim2", "laptop"))
    tls_setup.apply_locally(gd, client, None)   # a `tls client` of the secondary's own
    geo = {"kind": "token", "role": "geo-replication", "token": "geo", "volume": "sv"}
    geo_other = {"kind": "token", "role": "geo-replication", "token": "geo3",
                 "volume": "other"}

    async def main():
        await georep_pem.admit(gd, sv, [p1, client], setter(sv), "pv-id", geo)
        await georep_pem.admit(gd, other, [p1, p2], setter(other), "pv-id", geo_other)
        assert sv.options["auth.ssl-allow"] == "backup-admin,prim1,laptop"
        before = (tls_setup.client_certs(gd), georep_pem.record_path(gd).read_text(),
                  dict(sv.options))
        # refused, nothing changed: another volume's token, another session, junk
        for vol, certs, session, who, message in (
                (sv, [p1], "pv-id", geo_other, "this token did not admit prim1"),
                (sv, [p1], "pv-id", {"kind": "token", "role": "geo-replication",
                                     "token": "geo2"}, "did not admit"),
                (sv, [p1], "other-session", geo, "no certificate of this primary"),
                (sv, [p2], "pv-id", geo, "no certificate of this primary"),
                (sv, ["junk"], "pv-id", geo, "not PEM"), (sv, [], "pv-id", geo, "a list"),
                (sv, [p1], 7, geo, "session must be")):
            with pytest.raises(georep_pem.Refused, match=message):
                await georep_pem.withdraw(gd, vol, certs, setter(vol), session, who)
        assert before == (tls_setup.client_certs(gd), georep_pem.record_path(gd).read_text(),
                          dict(sv.options))
        # sv's session goes: its names leave sv's auth.ssl-allow; prim1's certificate
        # stays (volume other still admits it), laptop's too (it was there before)
        doc = await georep_pem.withdraw(gd, sv, [p1, client], setter(sv), "pv-id", geo)
        assert doc["withdrawn"] == ["laptop", "prim1"] and doc["removed"] == []
        assert sv.options["auth.ssl-allow"] == "backup-admin"
        assert other.options["auth.ssl-allow"] == "x,prim1,prim2"
        names = {pki.common_name(c) for c in pki.load_certs(
            tls_setup.client_certs(gd).encode())}
        assert names == {"prim1", "prim2", "laptop"}
        # other's session goes: now the certificates leave every glusterfs.ca
        doc = await georep_pem.withdraw(gd, other, [p1, p2], setter(other), "pv-id",
                                        {"kind": "local", "role": "admin"})
        assert doc["removed"] == ["prim1", "prim2"] and other.options["auth.ssl-allow"] == "x"
        assert [pki.common_name(c) for c in pki.load_certs(
            tls_setup.client_certs(gd).encode())] == ["laptop"]
        ca = (tmp_path / "ssl" / "glusterfs.ca").read_text()
        assert "prim1" not in {pki.common_name(c) for c in pki.load_certs(ca.encode())}
        assert georep_pem.admissions(gd) == []
    trio.run(main)


# -- two pools in network namespaces ---------------------------------------------------


def cli(d: Daemon, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in `d`'s namespace, with `env` added (Daemon.cli takes none)."""
    return subprocess.run(["ip", "netns", "exec", d.netns, sys.executable, "-m",
                           "glusterpy.cli.main", args[0], "--remote-host", d.remote, *args[1:]],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env={**(d.env or os.environ), **(env or {})})


def files(paths: list[Path]) -> dict[str, bytes]:
    out = {}
    for p in paths:
        for f in sorted(p.rglob("*")) if p.exists() else []:
            if f.is_file():
                out[str(f)] = f.read_bytes()
    return out


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_push_pem_sets_up_tls_and_nothing_else(tmp_path):
    h1, h2, evil = (f"{SUBNET}.{i}" for i in (1, 2, 3))
    ssl1, ssl2 = tmp_path / "ssl1", tmp_path / "ssl2"
    with switched_namespaces(3) as namespaces:
        n1, n2 = (Daemon(tmp_path / f"node{i}", port=PORT, address=f"{SUBNET}.{i}",
                         netns=namespaces[i - 1],
                         env={"GLUSTERPY_SSL_CERT_DIR": str(ssl), "GLUSTERPY_SECURE_ACCESS": "0"})
                  for i, ssl in ((1, ssl1), (2, ssl2)))
        attacker_ns = namespaces[2]
        try:
            n1.start()
            n2.start()
            n1.ok("volume", "create", "pv", f"{h1}:{tmp_path}/pb", "force")
            n1.ok("volume", "start", "pv")
            n1.ok("volume", "set", "pv", "changelog.rollover-time", "1")
            n2.ok("volume", "create", "sv", f"{h2}:{tmp_path}/sb", "force")
            n2.ok("volume", "create", "plain", f"{h2}:{tmp_path}/plainb", "force")
            n2.ok("volume", "start", "plain")
            for key, value in (("client.ssl", "on"), ("server.ssl", "on"),
                               ("auth.ssl-allow", "backup-admin")):
                n2.ok("volume", "set", "sv", key, value)
            geo_token = n2.ok("token", "create", "geo", "--role", "geo-replication",
                              "--volume", "sv").out.splitlines()[1]
            any_volume_token = n2.ok("token", "create", "geo2", "--role",
                                     "geo-replication").out.splitlines()[1]
            ro_token = n2.ok("token", "create", "ro", "--role", "read-only").out.splitlines()[1]
            other_token = n1.ok("token", "create", "geo", "--role",
                                "geo-replication").out.splitlines()[1]
            secondary = f"{h2}:{PORT}::sv"

            def push(token: str | None, where: str = secondary):
                env = {"GLUSTERPY_SECONDARY_TOKEN": token} if token else {}
                return cli(n1, "volume", "geo-replication", "pv", where, "create", "push-pem",
                           env=env)

            # -- refused, and nothing changes on either side
            def state():
                return [snapshot(n1.workdir), snapshot(n2.workdir), files([ssl1, ssl2])]
            before = state()
            name, _secret, pin = geo_token.split(".")
            for token, where, message in (
                    (None, secondary, "push-pem needs the secondary's token"),
                    (f"{name}.AAAAAAAAAAAAAAAAAAAAAAAAAAAA.{pin}", secondary,
                     "the token is not valid on this node"),
                    (ro_token, secondary, "a read-only token may not change state"),
                    (other_token, secondary, "is not the one"),
                    (geo_token, secondary, "this pool has no TLS set up"),
                    ("nonsense", secondary, "not a glusterpy token")):
                r = push(token, where)
                assert r.returncode == 1 and message in r.stderr, (message, r.stdout + r.stderr)
            assert state() == before
            n2.ok("tls", "setup")
            n2.ok("volume", "start", "sv")
            before = state()
            r = push(any_volume_token, f"{h2}:{PORT}::plain")
            assert r.returncode == 1 and "volume plain does not use TLS" in r.stderr, r.stderr
            r = push(geo_token, f"{h2}:{PORT}::plain")
            assert r.returncode == 1 and "to volume sv only" in r.stderr, r.stderr
            assert state() == before
            assert "No active geo-replication sessions" in n1.ok(
                "volume", "geo-replication", "status").out

            # -- with the secondary's token: one command
            r = push(geo_token)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "has been successful" in r.stdout and \
                f"admitted this pool's node certificates ({h1})" in r.stderr, r.stderr
            ca = (ssl2 / "glusterfs.ca").read_text()
            node1_cert = (n1.workdir / "trust" / "node.pem").read_text()
            assert pki.fingerprint_of_pem(node1_cert) in {
                pki.fingerprint(c) for c in pki.load_certs(ca.encode())}
            def ssl_allow():
                return n2.ok("volume", "get", "sv", "auth.ssl-allow").out
            assert f"backup-admin,{h1}" in ssl_allow()
            # again (force): nothing new to add, the names stay as they are
            r = cli(n1, "volume", "geo-replication", "pv", secondary, "create", "push-pem",
                    "force", env={"GLUSTERPY_SECONDARY_TOKEN": geo_token})
            assert r.returncode == 0, r.stderr
            assert (ssl2 / "glusterfs.ca").read_text() == ca

            # -- the session mirrors, over TLS, as the primary node
            n1.ok("volume", "geo-replication", "pv", secondary, "config", "change-interval", "1")
            n1.ok("volume", "geo-replication", "pv", secondary, "start")
            names = [f"f{i}" for i in range(5)]
            in_netns(n1.netns, f"""
                from glusterpy.gfapi import Volume
                with Volume("{h1}", "pv", port={PORT}) as vol:
                    for name in {names!r}:
                        with vol.fopen("/" + name, "wb") as f:
                            f.write(name.encode() * 100)
            """)
            n1.ok("volume", "geo-replication", "pv", secondary, "config", "checkpoint", "now")

            def rows():
                return n1.ok("volume", "geo-replication", "pv", secondary, "status",
                             "--json").json()["rows"]
            try:
                wait_for(lambda: any(r["status"] == "Active" and r["checkpoint_completed"]
                                     for r in rows()), 90, "the checkpoint")
            except AssertionError:
                logs = "".join(p.read_text()[-3000:] for p in
                               (n1.workdir / "logs").rglob("geo-replication/*/*.log"))
                raise AssertionError(json.dumps(rows()) + logs) from None
            for name in names:
                assert (tmp_path / "sb" / name).read_bytes() == name.encode() * 100
            brick_logs = "".join(p.read_text(errors="replace")
                                 for p in (n2.workdir / "logs").rglob("*.log"))
            assert f"certificate CN '{h1}'" in brick_logs

            # -- the attacker: no certificate, or its own under node 1's name
            (tmp_path / "evil").mkdir()
            key = pki.new_key()
            pki.write_private(tmp_path / "evil" / "glusterfs.key", pki.key_pem(key))
            (tmp_path / "evil" / "glusterfs.pem").write_bytes(
                pki.cert_pem(pki.self_signed(h1, key)))
            (tmp_path / "evil" / "glusterfs.ca").write_text(ca)
            (tmp_path / "none").mkdir()
            for cert_dir in ("evil", "none"):
                done = subprocess.run(
                    ["ip", "netns", "exec", attacker_ns, sys.executable, "-c", textwrap.dedent(f"""
                        from glusterpy.gfapi import Volume
                        try:
                            with Volume("{h2}", "sv", port={PORT}) as vol:
                                print("mounted", vol.listdir("/"))
                        except Exception as e:
                            print("refused", type(e).__name__, e)
                    """)], capture_output=True, text=True, timeout=120,
                    env={**os.environ, "GLUSTERPY_SSL_CERT_DIR": str(tmp_path / cert_dir),
                         "GLUSTERPY_SECURE_ACCESS": "0"})
                assert done.stdout.startswith("refused"), (cert_dir, done.stdout, done.stderr)
            # the geo-replication token does nothing else; the route wants a token
            env = {"GLUSTERPY_TOKEN": geo_token, "GLUSTERPY_SECURE_ACCESS": "0"}
            for words in (("volume", "list"), ("--mode=script", "volume", "stop", "sv"),
                          ("volume", "set", "sv", "auth.ssl-allow", "*")):
                r = subprocess.run(["ip", "netns", "exec", attacker_ns, sys.executable, "-m",
                                    "glusterpy.cli.main", "--remote-host", f"{h2}:{PORT}",
                                    *words], capture_output=True, text=True, timeout=120,
                                   env={**os.environ, **env}, stdin=subprocess.DEVNULL)
                assert r.returncode == 1 and "geo-replication token may only" in r.stderr, \
                    (words, r.stderr)
            assert f"backup-admin,{h1}" in ssl_allow()

            # -- delete takes the trust back: node 1, with its own certificate, mounts
            # the secondary volume before and not after; the other names stay
            (tmp_path / "prim").mkdir()
            (tmp_path / "prim" / "glusterfs.pem").write_text(node1_cert)
            (tmp_path / "prim" / "glusterfs.key").write_bytes(
                (n1.workdir / "trust" / "node.key").read_bytes())
            (tmp_path / "prim" / "glusterfs.ca").write_text(ca)

            def mount_from_node1() -> str:
                done = subprocess.run(
                    ["ip", "netns", "exec", n1.netns, sys.executable, "-c", textwrap.dedent(f"""
                        from glusterpy.gfapi import Volume
                        try:
                            with Volume("{h2}", "sv", port={PORT}) as vol:
                                print("mounted", vol.listdir("/"))
                        except Exception as e:
                            print("refused", type(e).__name__, e)
                    """)], capture_output=True, text=True, timeout=120,
                    env={**os.environ, "GLUSTERPY_SSL_CERT_DIR": str(tmp_path / "prim"),
                         "GLUSTERPY_SECURE_ACCESS": "0"})
                return done.stdout + done.stderr
            assert mount_from_node1().startswith("mounted"), mount_from_node1()
            n1.ok("volume", "geo-replication", "pv", secondary, "stop")

            def delete(token: str | None, *extra: str):
                env = {"GLUSTERPY_SECONDARY_TOKEN": token} if token else {}
                return cli(n1, "volume", "geo-replication", "pv", secondary, "delete", *extra,
                           env=env)
            before = state()
            for token, message in ((None, "needs the secondary's token"),
                                   (any_volume_token, "this token did not admit"),
                                   (ro_token, "a read-only token may not change state"),
                                   (other_token, "is not the one")):
                r = delete(token)
                assert r.returncode == 1 and message in r.stderr and \
                    "the session is kept" in r.stderr, (message, r.stderr)
            assert state() == before
            r = delete(geo_token)
            assert r.returncode == 0, r.stdout + r.stderr
            assert f"the secondary withdrew {h1} from sv" in r.stderr, r.stderr
            assert pki.fingerprint_of_pem(node1_cert) not in {
                pki.fingerprint(c) for c in pki.load_certs(
                    (ssl2 / "glusterfs.ca").read_bytes())}
            assert "backup-admin" in ssl_allow() and h1 not in ssl_allow()
            assert mount_from_node1().startswith("refused"), mount_from_node1()
            assert "No active geo-replication sessions" in n1.ok(
                "volume", "geo-replication", "status").out
            # a secondary that refuses: `delete force` deletes and says what stays admitted
            assert push(geo_token).returncode == 0
            r = delete(any_volume_token, "force")
            assert r.returncode == 0 and "deleted anyway (force)" in r.stderr and \
                f"({h1}) are left admitted to sv" in r.stderr, r.stderr
            assert f"backup-admin,{h1}" in ssl_allow()
            assert mount_from_node1().startswith("mounted"), mount_from_node1()
        finally:
            n1.cleanup()
            n2.cleanup()
