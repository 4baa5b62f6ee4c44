"""Read and write GlusterFS volfiles.

    volume demo-posix                # comments run to the end of the line
        type storage/posix
        option directory /bricks/b1
        option volume-id "0e2b..."   # quoted values may hold spaces
    end-volume

    volume demo-io-cache
        type performance/io-cache
        subvolumes demo-posix
    end-volume

The last volume defined is the top of the graph, as in GlusterFS.  Keywords,
tokens and quoting follow GlusterFS's lexer (libglusterfs/src/graph.l): a
token is a run of non-blank characters or a double-quoted string with
backslash escapes.  Unlike GlusterFS we accept a subvolume defined later in
the file (a cycle is still an error).  Every error names the file and line.

This module knows nothing of translator types or options: `graph.py` checks
those against the translators' declarations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


class VolfileError(ValueError):
    """A volfile that cannot be loaded; the message starts with FILE:LINE."""

    def __init__(self, filename: str, line: int | None, message: str):
        self.filename = filename
        self.line = line
        self.reason = message
        where = f"{filename}:{line}" if line else filename
        super().__init__(f"{where}: {message}")


@dataclass
class VolumeDef:
    """One `volume ... end-volume` block, with the line of each statement."""

    name: str
    type: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    subvolumes: list[str] = field(default_factory=list)
    line: int = 0
    type_line: int = 0
    option_lines: dict[str, int] = field(default_factory=dict)
    subvolumes_line: int = 0


@dataclass
class Volfile:
    volumes: list[VolumeDef]
    filename: str = "<volfile>"

    @property
    def top(self) -> VolumeDef:
        return self.volumes[-1]

    def __getitem__(self, name: str) -> VolumeDef:
        for v in self.volumes:
            if v.name == name:
                return v
        raise KeyError(name)

    def dumps(self) -> str:
        return dumps(self)

    @property
    def carries_credentials(self) -> bool:
        """Whether a volume holds an auth.login password: a protocol/client's
        `password` or a protocol/server's `auth.login.USER.password` - what
        makes a client trusted, so the volfile is for this node's own
        processes only (written 0600, served by GETSPEC to local callers)."""
        return any(key == "password" or
                   key.startswith("auth.login.") and key.endswith(".password")
                   for v in self.volumes for key in v.options)


#: the volfile-id under which glusterd serves a volume's client graph without
#: its performance translators (`VOL.noperf`)
NOPERF_SUFFIX = ".noperf"
#: the volfile-id of the geo-replication worker's graph of its primary: the
#: noperf graph logged in as the volume's internal user (glusterd/volgen.py)
GSYNCD_SUFFIX = ".gsyncd"

_TOKEN = re.compile(r'"((?:[^"\\\n]|\\.)*)"|([^\s"\\]+)|(\S)')


def _tokens(text: str, filename: str):
    """Yield (token, line, quoted) in order; comments dropped."""
    for lineno, raw in enumerate(text.splitlines(), 1):
        pos = 0
        while pos < len(raw):
            m = _TOKEN.search(raw, pos)
            if not m:
                break
            if m.group(3) is not None:
                if m.group(3) == "#":  # comment to the end of the line
                    break
                if m.group(3) == '"':
                    raise VolfileError(filename, lineno, "unterminated quoted string")
                raise VolfileError(filename, lineno, f"unexpected character {m.group(3)!r}")
            if m.group(1) is not None:
                yield re.sub(r"\\(.)", r"\1", m.group(1)), lineno, True
            else:
                word = m.group(2)
                if word.startswith("#"):
                    break
                if "#" in word:  # `value#comment`: the lexer stops at '#'
                    word = word[: word.index("#")]
                    yield word, lineno, False
                    break
                yield word, lineno, False
            pos = m.end()


def parses(text: str, filename: str = "<volfile>") -> Volfile:
    """Parse volfile text; raise VolfileError naming FILE:LINE on any fault."""
    tokens = list(_tokens(text, filename))
    volumes: list[VolumeDef] = []
    by_name: dict[str, VolumeDef] = {}
    current: VolumeDef | None = None
    i = 0

    def value_after(keyword: str, line: int) -> str:
        nonlocal i
        if i >= len(tokens) or tokens[i][1] != line:
            raise VolfileError(filename, line, f"'{keyword}' needs a value on the same line")
        i += 1
        return tokens[i - 1][0]

    while i < len(tokens):
        token, line, quoted = tokens[i]
        i += 1
        word = None if quoted else token
        if current is None:
            if word != "volume":
                raise VolfileError(filename, line, f"expected 'volume', found {token!r}")
            name = value_after("volume", line)
            if name in by_name:
                raise VolfileError(filename, line, f"volume '{name}' is defined twice "
                                                   f"(first at line {by_name[name].line})")
            current = VolumeDef(name=name, line=line)
        elif word == "type":
            if current.type is not None:
                raise VolfileError(filename, line, f"volume '{current.name}' has two types")
            current.type = value_after("type", line)
            current.type_line = line
        elif word == "option":
            key = value_after("option", line)
            current.options[key] = value_after(f"option {key}", line)
            current.option_lines[key] = line
        elif word in ("subvolumes", "subvolume"):
            names = []
            while i < len(tokens) and tokens[i][1] == line:  # to the end of the line
                names.append(tokens[i][0])
                i += 1
            if not names:
                raise VolfileError(filename, line, "'subvolumes' needs at least one name")
            current.subvolumes.extend(names)
            current.subvolumes_line = line
        elif word == "end-volume":
            if current.type is None:
                raise VolfileError(filename, current.line,
                                   f"volume '{current.name}' has no 'type'")
            volumes.append(current)
            by_name[current.name] = current
            current = None
        elif word == "volume":
            raise VolfileError(filename, line, f"'end-volume' missing for volume "
                                               f"'{current.name}' (opened at line {current.line})")
        else:
            raise VolfileError(filename, line, f"unexpected {token!r} in volume '{current.name}'")
    if current is not None:
        last_line = tokens[-1][1] if tokens else current.line
        raise VolfileError(filename, last_line,
                           f"'end-volume' missing for volume '{current.name}' "
                           f"(opened at line {current.line})")
    if not volumes:
        raise VolfileError(filename, None, "no volume defined")
    _check_references(volumes, by_name, filename)
    return Volfile(volumes, filename)


def _check_references(volumes, by_name, filename):
    for v in volumes:
        seen = set()
        for sub in v.subvolumes:
            if sub not in by_name:
                raise VolfileError(filename, v.subvolumes_line,
                                   f"volume '{v.name}': subvolume '{sub}' is not defined")
            if sub in seen:
                raise VolfileError(filename, v.subvolumes_line,
                                   f"volume '{v.name}': subvolume '{sub}' listed twice")
            seen.add(sub)
    # a cycle: depth-first search with colours
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]):
        state[name] = 1
        for sub in by_name[name].subvolumes:
            if state.get(sub) == 1:
                cycle = path[path.index(sub):] + [sub] if sub in path else [name, sub]
                raise VolfileError(filename, by_name[name].subvolumes_line,
                                   "subvolumes form a cycle: " + " -> ".join(cycle))
            if sub not in state:
                visit(sub, path + [sub])
        state[name] = 2

    for v in volumes:
        if v.name not in state:
            visit(v.name, [v.name])


def load(path: str | Path) -> Volfile:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise VolfileError(str(path), None, e.strerror or str(e)) from None
    return parses(text, str(path))


def _quote(value: str) -> str:
    if value and re.fullmatch(r'[^\s"\\#]+', value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dumps(volfile: Volfile) -> str:
    """Write a volfile in the layout glusterd uses."""
    out = []
    for v in volfile.volumes:
        out.append(f"volume {v.name}")
        out.append(f"    type {v.type}")
        for key, value in v.options.items():
            out.append(f"    option {key} {_quote(value)}")
        if v.subvolumes:
            out.append(f"    subvolumes {' '.join(v.subvolumes)}")
        out.append("end-volume")
        out.append("")
    return "\n".join(out)


def apply_xlator_options(volfile: Volfile, assignments) -> Volfile:
    """Override options as glusterfs's `--xlator-option VOLUME.KEY=VALUE` does.

    VOLUME may be a glob (`*-posix.directory=/b1`); an assignment that
    matches no volume is an error, so a typo cannot pass silently.  VOLUME
    ends at the first dot, as glusterfsd splits it, so keys may hold dots
    (`brick-server.transport.socket.listen-port=49152`).
    """
    import fnmatch

    for item in assignments:
        target, sep, value = item.partition("=")
        volume, dot, key = target.partition(".")
        if not sep or not dot or not volume or not key:
            raise VolfileError(volfile.filename, None,
                               f"--xlator-option {item!r}: expected VOLUME.KEY=VALUE")
        matched = [v for v in volfile.volumes if fnmatch.fnmatchcase(v.name, volume)]
        if not matched:
            raise VolfileError(volfile.filename, None,
                               f"--xlator-option {item!r}: no volume named {volume!r}")
        for v in matched:
            v.options[key] = value
            v.option_lines.setdefault(key, v.line)
    return volfile
