"""Volume search: oVirt's search grammar for GlusterFS volumes.

    Volumes: name = vm* and type = replicate and status = started sortby name desc

    query     := [ENTITY ":"] [expr] ["sortby" FIELD ["asc" | "desc"]]
    expr      := term ("or" term)*
    term      := factor ("and" factor)*
    factor    := "(" expr ")" | FIELD OP VALUE
    VALUE     := a bare word (letters, digits, _ . - *) | "a quoted string" | an integer

ENTITY is `Volumes` (the only entity glusterpy searches; oVirt had Hosts,
VMs, ... too).  Keywords, field names and enumerated values are
case-insensitive; names are matched as written.  String fields take `=`
and `!=`, where `*` in the value matches any run of characters; numeric
fields take `< > <= >= = !=`.  `and` binds tighter than `or`.

`parse(text) -> Query` raises SearchError with the 0-based `position` of
the offending character, so the API can answer 400 naming it;
`Query.print()` gives the canonical text, which parses back to an equal
Query (tests/test_search.py checks that with hypothesis); `Query.apply(vols)`
filters and sorts the API's volume documents; `complete(text)` says what
may come next (the console's auto-complete: fields, operators, values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

ENTITY = "Volumes"

#: field -> enumerated values (lower case) or None for free text / numbers
STRING_FIELDS: dict[str, tuple[str, ...] | None] = {
    "name": None,
    "type": ("distribute", "replicate", "distributed-replicate", "stripe",
             "distributed-stripe", "striped-replicate", "distributed-striped-replicate"),
    "transport_type": ("tcp", "rdma", "tcp,rdma"),
    "status": ("created", "started", "stopped"),
}
NUMERIC_FIELDS = ("replica_count", "stripe_count")
FIELDS = tuple(STRING_FIELDS) + NUMERIC_FIELDS
STRING_OPS = ("=", "!=")
NUMERIC_OPS = ("<=", ">=", "!=", "<", ">", "=")
KEYWORDS = ("and", "or", "sortby", "asc", "desc")

_BARE = re.compile(r"[A-Za-z0-9_.*,\-]+")
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<op><=|>=|!=|<|>|=)
  | (?P<punct>[():])
  | (?P<string>"(?:[^"\\]|\\.)*"?)
  | (?P<word>[A-Za-z0-9_.*,\-]+)
""", re.X)


class SearchError(ValueError):
    """A query that does not parse: `position` is the 0-based offset of the
    character where it went wrong."""

    def __init__(self, message: str, position: int, text: str = ""):
        self.position = position
        self.reason = message
        where = f" at position {position}"
        if text:
            where += f" ({text[:position]}\u25b8{text[position:]})" if position < len(text) \
                else " (at the end)"
        super().__init__(f"{message}{where}")


@dataclass(frozen=True)
class Cond:
    field: str
    op: str
    value: Union[str, int]

    def print(self) -> str:
        return f"{self.field} {self.op} {_print_value(self.value)}"

    def test(self, rec: dict) -> bool:
        have = rec[self.field]
        if self.field in NUMERIC_FIELDS:
            return {"=": have == self.value, "!=": have != self.value,
                    "<": have < self.value, ">": have > self.value,
                    "<=": have <= self.value, ">=": have >= self.value}[self.op]
        pattern = str(self.value)
        if STRING_FIELDS[self.field] is not None:
            have, pattern = str(have).lower(), pattern.lower()
        hit = re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), str(have),
                           re.S) is not None
        return hit if self.op == "=" else not hit


@dataclass(frozen=True)
class And:
    items: tuple

    def print(self) -> str:
        return " and ".join(f"({i.print()})" if isinstance(i, Or) else i.print()
                            for i in self.items)

    def test(self, rec: dict) -> bool:
        return all(i.test(rec) for i in self.items)


@dataclass(frozen=True)
class Or:
    items: tuple

    def print(self) -> str:
        return " or ".join(i.print() for i in self.items)

    def test(self, rec: dict) -> bool:
        return any(i.test(rec) for i in self.items)


@dataclass(frozen=True)
class Query:
    where: Union[Cond, And, Or, None] = None
    sortby: str | None = None
    desc: bool = False

    def print(self) -> str:
        out = f"{ENTITY}:"
        if self.where is not None:
            out += " " + self.where.print()
        if self.sortby is not None:
            out += f" sortby {self.sortby}" + (" desc" if self.desc else "")
        return out

    def apply(self, volumes: list[dict]) -> list[dict]:
        """The volumes (the API's volume documents) that match, sorted
        (by name unless sortby says otherwise; ties by name)."""
        recs = [(record(v), v) for v in volumes]
        hits = [(r, v) for r, v in recs if self.where is None or self.where.test(r)]
        key = self.sortby or "name"
        hits.sort(key=lambda rv: rv[0]["name"])
        hits.sort(key=lambda rv: rv[0][key], reverse=self.desc)
        return [v for _, v in hits]


def record(vol: dict) -> dict:
    """The searchable fields of a volume document (GET /api/v1/volumes)."""
    from .glusterd import volgen
    return {"name": vol["name"],
            "type": (vol.get("type") or volgen.type_name(
                vol["replica"], vol["stripe"], len(vol["bricks"]))).lower(),
            "transport_type": vol.get("transport", "tcp"),
            "replica_count": int(vol.get("replica", 1)),
            "stripe_count": int(vol.get("stripe", 1)),
            "status": vol["status"].lower()}


def _print_value(value) -> str:
    if isinstance(value, int):
        return str(value)
    if _BARE.fullmatch(value) and value.lower() not in KEYWORDS and \
            not re.fullmatch(r"-?\d+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class _Tok:
    kind: str    # op, punct, string, word, end
    text: str
    pos: int
    value: str = ""


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SearchError(f"unexpected character {text[pos]!r}", pos, text)
        kind = m.lastgroup
        if kind == "string":
            raw = m.group()
            if len(raw) < 2 or not raw.endswith('"') or _unfinished_escape(raw):
                raise SearchError("unterminated quoted string", pos, text)
            out.append(_Tok("string", raw, pos, re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.S)))
        elif kind != "space":
            out.append(_Tok(kind, m.group(), pos, m.group()))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


def _unfinished_escape(raw: str) -> bool:
    # `"abc\"` ends with an escaped quote, not a closing one
    body = raw[1:-1]
    return (len(body) - len(body.rstrip("\\"))) % 2 == 1


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def fail(self, message: str, tok: _Tok | None = None):
        tok = tok or self.tok
        found = f', found "{tok.text}"' if tok.kind != "end" else ", found the end"
        raise SearchError(message + found, tok.pos, self.text)

    def keyword(self, *words: str) -> str | None:
        if self.tok.kind == "word" and self.tok.text.lower() in words:
            word = self.tok.text.lower()
            self.i += 1
            return word
        return None

    def query(self) -> Query:
        if len(self.toks) > 2 and self.toks[1].kind == "punct" and self.toks[1].text == ":":
            if self.tok.kind != "word" or self.tok.text.lower() != ENTITY.lower():
                self.fail(f"only {ENTITY}: can be searched")
            self.i += 2
        where = None
        if self.tok.kind != "end" and not (self.tok.kind == "word" and
                                           self.tok.text.lower() == "sortby"):
            where = self.expr()
        sortby, desc = None, False
        if self.keyword("sortby"):
            sortby = self.field()
            desc = self.keyword("asc", "desc") == "desc"
        if self.tok.kind != "end":
            self.fail("expected and, or, sortby or the end" if sortby is None else
                      "expected the end")
        return Query(where, sortby, desc)

    def expr(self):
        items = [self.term()]
        while self.keyword("or"):
            items.append(self.term())
        return _flat(Or, items)

    def term(self):
        items = [self.factor()]
        while self.keyword("and"):
            items.append(self.factor())
        return _flat(And, items)

    def factor(self):
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.i += 1
            inner = self.expr()
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                self.fail('expected ")"')
            self.i += 1
            return inner
        field = self.field()
        op_tok = self.tok
        if op_tok.kind != "op":
            self.fail("expected an operator (" + " ".join(
                NUMERIC_OPS if field in NUMERIC_FIELDS else STRING_OPS) + ")")
        if field not in NUMERIC_FIELDS and op_tok.text not in STRING_OPS:
            self.fail(f"{field} is text: it takes = or != only", op_tok)
        self.i += 1
        v = self.tok
        if field in NUMERIC_FIELDS:
            if v.kind != "word" or not re.fullmatch(r"-?\d+", v.text):
                self.fail(f"{field} needs a whole number")
            self.i += 1
            return Cond(field, op_tok.text, int(v.text))
        if v.kind not in ("word", "string") or (v.kind == "word" and
                                                v.text.lower() in KEYWORDS):
            self.fail(f"expected a value for {field}")
        value = v.value
        choices = STRING_FIELDS[field]
        if choices is not None:
            value = value.lower()
            if "*" not in value and value not in choices:
                self.fail(f"{field} is one of {', '.join(choices)}")
        self.i += 1
        return Cond(field, op_tok.text, value)

    def field(self) -> str:
        if self.tok.kind == "word" and self.tok.text.lower() in FIELDS:
            name = self.tok.text.lower()
            self.i += 1
            return name
        self.fail("expected a field (" + ", ".join(FIELDS) + ")")


def _flat(cls, items):
    if len(items) == 1:
        return items[0]
    out = []
    for i in items:
        out.extend(i.items if isinstance(i, cls) else (i,))
    return cls(tuple(out))


def parse(text: str) -> Query:
    """The Query `text` says; SearchError (with .position) if it does not."""
    return _Parser(text).query()


def search(text: str, volumes: list[dict]) -> list[dict]:
    return parse(text).apply(volumes)


def complete(text: str) -> dict:
    """What may come next at the end of `text`: {"start": offset of the word
    being typed, "options": [...]}; replacing text[start:] with an option
    (and a space) continues the query."""
    # a lone "!" is the start of "!=", not yet a token
    body = text[:-1] if text.endswith("!") else text
    try:
        toks = _tokens(body)[:-1]
    except SearchError:
        return {"start": len(text), "options": []}
    start = len(text)
    partial = ""
    if body != text:
        partial, start = "!", len(body)
    elif toks and not text[-1:].isspace() and toks[-1].kind in ("word", "op") and \
            toks[-1].pos + len(toks[-1].text) == len(text):
        partial = toks[-1].text
        start = toks[-1].pos
        toks = toks[:-1]
    words = [t.text.lower() for t in toks]
    last = words[-1] if words else None
    if not toks:
        options = [f"{ENTITY}:"]
    elif last in (":", "(", "and", "or"):
        options = list(FIELDS) + (["sortby"] if last == ":" else [])
    elif last == "sortby":
        options = list(FIELDS)
    elif last in FIELDS and len(words) >= 2 and words[-2] == "sortby":
        options = ["asc", "desc"]
    elif last in FIELDS:
        options = list(NUMERIC_OPS if last in NUMERIC_FIELDS else STRING_OPS)
    elif toks[-1].kind == "op" and len(words) >= 2 and words[-2] in STRING_FIELDS:
        options = list(STRING_FIELDS[words[-2]] or ())
    elif toks[-1].kind == "op":
        options = []
    elif last in ("asc", "desc"):
        options = []
    else:
        options = ["and", "or", "sortby"]
    low = partial.lower()
    return {"start": start, "options": [o for o in options if o.lower().startswith(low)]}


__all__ = ["parse", "search", "complete", "Query", "Cond", "And", "Or", "SearchError",
           "FIELDS", "STRING_FIELDS", "NUMERIC_FIELDS", "record"]
