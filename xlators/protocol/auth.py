"""Client authentication for protocol/server: GlusterFS's auth/addr and
auth/login modules (xlators/protocol/auth/{addr,login}/src) and the way
server-handshake.c / authenticate.c combine them at SETVOLUME.

This is a helper module of protocol/server, not a translator.  The server
hands its `auth.*` options to `AuthConfig.from_options`, and at SETVOLUME
calls `authenticate(config, subvolume, params, peer)`; the answer is
ACCEPT or REJECT and a reason for the log.

The rules, as GlusterFS applies them:

* A module takes part only if the server has options of its kind
  (`auth.addr.*` / `auth.ip.*` for addr, `auth.login.*` for login), as
  server_init builds its module list from the option keys.
* Each module answers ACCEPT, REJECT or DONT_CARE.  One REJECT rejects;
  otherwise one ACCEPT accepts; when every module (or no module) says
  DONT_CARE the client is rejected ("no authentication module is
  interested in accepting remote-client").  So a brick with no auth
  options at all accepts nobody - glusterd always writes
  `auth.addr.<brick>.allow *`.
* addr: the keys are `auth.addr.<subvolume>.allow`,
  `auth.addr.<subvolume>.reject` and the old `auth.ip.<subvolume>.allow`.
  Reject is checked first.  A value is a comma-separated list of entries,
  or the subdirectory form `/dir(addr|addr),/dir2(...)` of which only the
  entries for the mounted directory (`/` unless the client asked for a
  subdir mount) count.  An entry is a host name or address (compared by
  resolving both sides, gf_is_same_address), an address/prefix network,
  or an fnmatch pattern (`192.168.*`, `*`); `!` in front negates a
  network or pattern entry.  If allow or reject is set and
  `rpc-auth-allow-insecure` is off, a client bound to a port >= 1024 is
  rejected.
* login over TLS (login.c with an `ssl-name`): protocol/server puts the
  common name of a TLS client's verified certificate in the SETVOLUME
  params as `ssl-name` (and drops any `ssl-name` a client sends itself).
  With `auth.login.<subvolume>.ssl-allow` (glusterd writes it from
  `auth.ssl-allow`) the name must match one of its fnmatch patterns
  (separated by blanks or commas; `*` is any authenticated client), else
  REJECT; without it, DONT_CARE.  A TLS client's username/password are
  not looked at, and strict-auth-accept does not apply.
* login: `auth.login.<subvolume>.allow` lists user names (fnmatch
  patterns, separated by blanks or commas); a client that sends
  `username` and `password` matching a listed name must have the password
  in `auth.login.<username>.password`, else it is rejected.  A client
  without credentials is DONT_CARE, unless `strict-auth-accept` is on
  (then REJECT); a listed user with no password option is REJECT.

Departures: entries are stripped of surrounding blanks, and `!` negates
only its own entry (GlusterFS's addr.c never resets the flag once set, as
its own comment admits); networks are matched as real prefixes with
`ipaddress` (addr.c's mask arithmetic is only right for whole octets).
"""

from __future__ import annotations

import enum
import fnmatch
import hmac
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Mapping

import trio

from glusterpy.options import OptionError

PRIVILEGED_PORT_CEILING = 1024


class AuthResult(enum.IntEnum):
    """auth_result_t (authenticate.h)."""

    ACCEPT = 0
    REJECT = 1
    DONT_CARE = 2


_ADDR_KEY = re.compile(r"auth\.addr\.(.+)\.(allow|reject)")
_IP_KEY = re.compile(r"auth\.ip\.(.+)\.allow")
_LOGIN_KEY = re.compile(r"auth\.login\.(.+)\.(allow|password)")
_SSL_ALLOW_KEY = re.compile(r"auth\.login\.(.+)\.ssl-allow")
#: the SETVOLUME param protocol/server sets to a TLS client's certificate CN
SSL_NAME = "ssl-name"


def is_auth_key(key: str) -> bool:
    """True for the option keys this module reads (GlusterFS's wildcard
    keys `auth.addr.*.allow`, `auth.login.*.password`, ...)."""
    return bool(_ADDR_KEY.fullmatch(key) or _IP_KEY.fullmatch(key)
                or _LOGIN_KEY.fullmatch(key) or _SSL_ALLOW_KEY.fullmatch(key))


@dataclass
class AuthConfig:
    """The auth options of one protocol/server, by subvolume and user."""

    addr_allow: dict[str, str] = field(default_factory=dict)
    addr_reject: dict[str, str] = field(default_factory=dict)
    ip_allow: dict[str, str] = field(default_factory=dict)
    login_allow: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    ssl_allow: dict[str, str] = field(default_factory=dict)
    strict: bool = False
    allow_insecure: bool = True

    @property
    def uses_addr(self) -> bool:
        return bool(self.addr_allow or self.addr_reject or self.ip_allow)

    @property
    def uses_login(self) -> bool:
        return bool(self.login_allow or self.passwords or self.ssl_allow)

    def has_rules_for(self, subvolume: str) -> bool:
        return any(subvolume in d for d in (self.addr_allow, self.addr_reject,
                                             self.ip_allow, self.login_allow,
                                             self.ssl_allow))

    @classmethod
    def from_options(cls, options: Mapping[str, str], *, strict: bool = False,
                     allow_insecure: bool = True) -> "AuthConfig":
        """Collect the auth.* keys of `options` (others are ignored);
        OptionError for a value that cannot be parsed."""
        cfg = cls(strict=strict, allow_insecure=allow_insecure)
        for key, value in options.items():
            if m := _ADDR_KEY.fullmatch(key):
                (cfg.addr_allow if m.group(2) == "allow" else cfg.addr_reject)[m.group(1)] = value
                _check_addr_value(key, value)
            elif m := _IP_KEY.fullmatch(key):
                cfg.ip_allow[m.group(1)] = value
                _check_addr_value(key, value)
            elif m := _SSL_ALLOW_KEY.fullmatch(key):
                cfg.ssl_allow[m.group(1)] = value
            elif m := _LOGIN_KEY.fullmatch(key):
                if m.group(2) == "allow":
                    cfg.login_allow[m.group(1)] = value
                else:
                    cfg.passwords[m.group(1)] = value
        return cfg


def _check_addr_value(key: str, value: str) -> None:
    if not value.strip():
        raise OptionError(key, f"option '{key}': an address list may not be empty")
    for entry in _addr_entries(value, "/"):
        body = entry.lstrip("!")
        if "/" in body and not body.startswith("/"):
            try:
                ipaddress.ip_network(body, strict=False)
            except ValueError:
                raise OptionError(key, f"option '{key}': {body!r} is not a network "
                                       f"(ADDRESS/PREFIX)") from None


@dataclass(frozen=True)
class Peer:
    """Where a client connects from: its address (no port), port and
    address family (socket.AF_INET, AF_INET6 or AF_UNIX)."""

    host: str
    port: int = 0
    family: int = socket.AF_INET

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" if self.family != socket.AF_UNIX else self.host


async def authenticate(cfg: AuthConfig, subvolume: str, params: Mapping[str, str],
                       peer: Peer) -> tuple[AuthResult, str]:
    """gf_authenticate(): combine the modules' answers; returns ACCEPT or
    REJECT and a reason worth logging."""
    results: list[tuple[str, AuthResult, str]] = []
    if cfg.uses_addr:
        results.append(("addr", *await addr_auth(cfg, subvolume, params, peer)))
    if cfg.uses_login:
        results.append(("login", *login_auth(cfg, subvolume, params)))
    for module, result, why in results:
        if result is AuthResult.REJECT:
            return AuthResult.REJECT, f"auth/{module}: {why}"
    for module, result, why in results:
        if result is AuthResult.ACCEPT:
            return AuthResult.ACCEPT, f"auth/{module}: {why}"
    return AuthResult.REJECT, ("no authentication module is interested in accepting "
                               f"remote-client {peer} (set auth.addr.{subvolume}.allow)")


# -- auth/addr -------------------------------------------------------------------


async def addr_auth(cfg: AuthConfig, subvolume: str, params: Mapping[str, str],
                    peer: Peer) -> tuple[AuthResult, str]:
    allow = cfg.addr_allow.get(subvolume)
    if allow is None:
        allow = cfg.ip_allow.get(subvolume)  # the 1.3-era key, still honoured
    reject = cfg.addr_reject.get(subvolume)
    if allow is None and reject is None:
        return AuthResult.DONT_CARE, f"no address rules for {subvolume}"
    if peer.family in (socket.AF_INET, socket.AF_INET6) and \
            peer.port >= PRIVILEGED_PORT_CEILING and not cfg.allow_insecure:
        return AuthResult.REJECT, (f"client is bound to port {peer.port} which is not "
                                   f"privileged (rpc-auth-allow-insecure is off)")
    subdir = params.get("subdir-mount") or "/"
    if reject is not None and await _matches_any(reject, peer.host, subdir):
        return AuthResult.REJECT, f"{peer.host} is in auth.addr.{subvolume}.reject"
    if allow is not None and await _matches_any(allow, peer.host, subdir):
        return AuthResult.ACCEPT, f"{peer.host} is in auth.addr.{subvolume}.allow"
    return AuthResult.DONT_CARE, f"{peer.host} matches no address rule of {subvolume}"


def _addr_entries(value: str, subdir: str) -> list[str]:
    """The entries of an allow/reject value that apply to `subdir`
    (parse_entries_and_compare)."""
    value = value.strip()
    if not value.startswith("/") and "(" not in value:
        return [e.strip() for e in value.split(",") if e.strip()]
    out: list[str] = []
    for item in value.split(","):
        directory, _, rest = item.strip().partition("(")
        if not directory.startswith("/") or directory != subdir:
            continue
        out.extend(e.strip() for e in rest.rstrip(")").split("|") if e.strip())
    return out


async def _matches_any(value: str, host: str, subdir: str) -> bool:
    for entry in _addr_entries(value, subdir):
        negate = entry.startswith("!")
        body = entry[1:] if negate else entry
        if body and body[0] != "*" and _valid_host_name(body):
            # a name or plain address: compare what both resolve to;
            # addr.c applies no negation here
            if await _same_address(body, host):
                return True
        elif "/" in body:
            if _in_network(body, host) != negate:
                return True
        elif fnmatch.fnmatchcase(host, body) != negate:
            return True
    return False


_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")


def _valid_host_name(name: str) -> bool:
    """common-utils.c valid_host_name(): dot-separated alphanumeric labels
    (hyphens inside); IPv4 addresses qualify, patterns and networks do not."""
    if not 0 < len(name) <= 255 or ".." in name:
        return False
    return all(_LABEL.fullmatch(label) for label in name.strip(".").split("."))


async def _same_address(name: str, host: str) -> bool:
    try:
        mine = await trio.socket.getaddrinfo(name, None)
        theirs = await trio.socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool({a[4][0] for a in mine} & {a[4][0] for a in theirs})


def _in_network(network: str, host: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


# -- auth/login ------------------------------------------------------------------


def login_auth(cfg: AuthConfig, subvolume: str,
               params: Mapping[str, str]) -> tuple[AuthResult, str]:
    ssl_name = params.get(SSL_NAME)
    if ssl_name is not None:
        return ssl_login_auth(cfg, subvolume, ssl_name)
    username = params.get("username")
    password = params.get("password")
    if username is None or password is None:
        if cfg.strict:
            return AuthResult.REJECT, "no username/password and strict-auth-accept is on"
        return AuthResult.DONT_CARE, "client sent no username/password"
    allowed = cfg.login_allow.get(subvolume)
    if allowed is None:
        return AuthResult.DONT_CARE, f"no auth.login.{subvolume}.allow"
    for pattern in re.split(r"[ ,]+", allowed.strip()):
        if pattern and fnmatch.fnmatchcase(username, pattern):
            expected = cfg.passwords.get(username)
            if expected is None:
                return AuthResult.REJECT, f"no password configured for user {username}"
            # in constant time: the time a wrong guess takes tells nothing
            # of how much of it was right
            if not hmac.compare_digest(expected.encode("utf-8", "surrogateescape"),
                                       password.encode("utf-8", "surrogateescape")):
                return AuthResult.REJECT, f"wrong password for user {username}"
            return AuthResult.ACCEPT, f"user {username} logged in"
    if cfg.strict:
        return AuthResult.REJECT, f"user {username} is not allowed and strict-auth-accept is on"
    return AuthResult.DONT_CARE, f"user {username} is not in auth.login.{subvolume}.allow"


def ssl_login_auth(cfg: AuthConfig, subvolume: str,
                   ssl_name: str) -> tuple[AuthResult, str]:
    """login.c for a TLS client: its certificate's CN against ssl-allow."""
    allowed = cfg.ssl_allow.get(subvolume)
    if allowed is None:
        return AuthResult.DONT_CARE, f"no auth.login.{subvolume}.ssl-allow"
    for pattern in re.split(r"[ ,]+", allowed.strip()):
        if pattern and fnmatch.fnmatchcase(ssl_name, pattern):
            return AuthResult.ACCEPT, f"TLS client {ssl_name!r} is in ssl-allow"
    return AuthResult.REJECT, (f"TLS client {ssl_name!r} is not in "
                               f"auth.login.{subvolume}.ssl-allow ({allowed})")


def authenticated_username(cfg: AuthConfig, subvolume: str,
                           params: Mapping[str, str]) -> str | None:
    """auth_set_username_passwd(): the user name a client proved, which
    makes it a trusted client (root-squash then spares its internal pids)."""
    # a password proves a user name whether or not the connection is TLS
    params = {k: v for k, v in params.items() if k != SSL_NAME}
    result, _ = login_auth(cfg, subvolume, params)
    return params.get("username") if result is AuthResult.ACCEPT else None
