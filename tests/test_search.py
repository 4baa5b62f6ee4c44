"""Volume search (glusterpy/search.py): oVirt's grammar, its printer, and the
same query through GET /api/v1/search and `glusterpy volume list --search`.

Hypothesis checks the grammar both ways: every query tree prints to text
that parses back to the same tree, every text that parses prints to a
canonical text that parses back to an equal query selecting the same
volumes, and damaged queries are refused with the position of the damage.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

import pytest
from hypothesis import given, strategies as st

from glusterpy import search
from glusterpy.search import And, Cond, Or, Query, SearchError, parse
from test_glusterd_support import running_daemon

# -- the grammar ---------------------------------------------------------------

names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                max_size=12)
bare = st.from_regex(r"[a-z0-9_.*-]{1,8}", fullmatch=True)


@st.composite
def conds(draw):
    field = draw(st.sampled_from(search.FIELDS))
    if field in search.NUMERIC_FIELDS:
        return Cond(field, draw(st.sampled_from(search.NUMERIC_OPS)),
                    draw(st.integers(-5, 1000)))
    choices = search.STRING_FIELDS[field]
    if choices is None:
        value = draw(st.one_of(names, bare, st.sampled_from(["and", "or", "sortby", "42",
                                                             'a"b', "a\\", "x y", ""])))
    else:
        value = draw(st.one_of(st.sampled_from(choices), st.sampled_from(["*", "re*", "*e"])))
    return Cond(field, draw(st.sampled_from(search.STRING_OPS)), value)


def _tree(leaves):
    def combine(children, cls):
        return st.lists(children, min_size=2, max_size=3).map(
            lambda items: search._flat(cls, items))
    return st.recursive(leaves, lambda kids: st.one_of(combine(kids, And), combine(kids, Or)),
                        max_leaves=6)


queries = st.one_of(
    st.builds(Query, st.one_of(st.none(), _tree(conds()))),
    st.builds(Query, st.one_of(st.none(), _tree(conds())), st.sampled_from(search.FIELDS),
              st.booleans()))


@st.composite
def volumes(draw):
    replica = draw(st.sampled_from([1, 2, 3]))
    stripe = draw(st.sampled_from([1, 2]))
    sets = draw(st.integers(1, 2))
    return {"name": draw(st.from_regex(r"[a-z]{1,3}[0-9]?", fullmatch=True)),
            "status": draw(st.sampled_from(["Created", "Started", "Stopped"])),
            "replica": replica, "stripe": stripe, "transport": "tcp",
            "bricks": [{}] * (replica * stripe * sets)}


@given(queries)
def test_every_query_prints_to_text_that_parses_back_to_it(q):
    assert parse(q.print()) == q


@given(queries, st.lists(volumes(), max_size=6))
def test_printed_query_selects_the_same_volumes(q, vols):
    back = parse(q.print())
    assert [v["name"] for v in back.apply(vols)] == [v["name"] for v in q.apply(vols)]


@given(queries, st.randoms(use_true_random=False))
def test_spacing_and_case_do_not_matter(q, rnd):
    # re-space and re-case the canonical text: the same query
    text = q.print()
    out = []
    for part in re.split(r'("(?:[^"\\]|\\.)*")', text):
        if part.startswith('"'):
            out.append(part)
            continue
        for word in re.split(r"( )", part):
            if word == " ":
                out.append(" " * rnd.randint(1, 3))
            elif word.lower() in ("and", "or", "sortby", "desc", "volumes:") or \
                    word in search.FIELDS:
                out.append("".join(c.upper() if rnd.random() < .5 else c for c in word))
            else:
                out.append(word)
    assert parse("".join(out)) == q


@given(queries, st.data())
def test_a_damaged_query_is_refused_at_the_damage(q, data):
    text = q.print()
    # cut a query after a condition's field or its operator: something must follow
    toks = search._tokens(text)
    spots = [t.pos + len(t.text) for t, after in zip(toks, toks[1:])
             if t.kind == "op" or after.kind == "op"]
    if not spots:
        return
    cut = data.draw(st.sampled_from(spots))
    with pytest.raises(SearchError) as e:
        parse(text[:cut])
    assert e.value.position == cut


@pytest.mark.parametrize("text,position,words", [
    ("Volumes: name < 3", 14, "takes = or != only"),
    ("Volumes: nam = x", 9, "expected a field"),
    ("Hosts: name = x", 0, "only Volumes:"),
    ('Volumes: name = "x', 16, "unterminated"),
    ("Volumes: replica_count = x", 25, "whole number"),
    ("Volumes: type = foo", 16, "type is one of"),
    ("Volumes: name = a b", 18, "expected and, or, sortby"),
    ("Volumes: (name = a", 18, 'expected ")"'),
    ("Volumes: name = a sortby", 24, "expected a field"),
    ("Volumes: name = a sortby name up", 30, "expected the end"),
    ("Volumes: name = a and", 21, "expected a field"),
    ("Volumes: name = %", 16, "unexpected character"),
    ("Volumes: status = and", 18, "expected a value"),
])
def test_bad_queries(text, position, words):
    with pytest.raises(SearchError) as e:
        parse(text)
    assert e.value.position == position and words in str(e.value), str(e.value)


def test_the_issue_example_and_evaluation():
    q = parse("Volumes: name = vm* and type = replicate and status = started sortby name desc")
    assert q == Query(And((Cond("name", "=", "vm*"), Cond("type", "=", "replicate"),
                           Cond("status", "=", "started"))), "name", True)
    vols = [{"name": n, "status": s, "replica": r, "stripe": 1, "transport": "tcp",
             "bricks": [{}] * r} for n, s, r in
            [("vm1", "Started", 3), ("vm2", "Started", 3), ("vm3", "Stopped", 3),
             ("data", "Started", 3), ("vm4", "Started", 1)]]
    assert [v["name"] for v in q.apply(vols)] == ["vm2", "vm1"]
    assert [v["name"] for v in search.search(
        "Volumes: replica_count >= 3 and (status = stopped or name = d*)", vols)] == \
        ["data", "vm3"]
    assert [v["name"] for v in search.search("Volumes: name != vm*", vols)] == ["data"]
    assert [v["name"] for v in search.search("Volumes: sortby replica_count", vols)] == \
        ["vm4", "data", "vm1", "vm2", "vm3"]


@given(queries)
def test_completion_offers_each_next_word_of_a_query(q):
    # at every word of a canonical query but free text and numbers, the
    # completer offers that word for the text before it
    text = q.print()
    toks = search._tokens(text)[:-1]
    for i, t in enumerate(toks):
        word = t.text.lower()
        prev = toks[i - 1].text.lower() if i else None
        value_of = toks[i - 2].text.lower() if i >= 2 and toks[i - 1].kind == "op" else None
        if t.kind not in ("word", "op") or word == ":" or \
                (value_of and search.STRING_FIELDS.get(value_of) is None) or \
                (value_of and "*" in word) or prev in ("(",) and t.kind != "word":
            continue
        offered = [o.lower() for o in search.complete(text[:t.pos])["options"]]
        if i == 0:
            assert "volumes:" in offered
            continue
        assert word in offered, (text, text[:t.pos], offered)
        # and the word typed in part narrows the list to it, among others
        part = search.complete(text[:t.pos] + t.text[:1])
        assert word in [o.lower() for o in part["options"]] and part["start"] == t.pos


def test_completion_walks_the_grammar():
    c = search.complete
    assert c("") == {"start": 0, "options": ["Volumes:"]}
    assert "name" in c("Volumes: ")["options"] and "sortby" in c("Volumes: ")["options"]
    assert c("Volumes: rep") == {"start": 9, "options": ["replica_count"]}
    assert c("Volumes: name ")["options"] == ["=", "!="]
    assert set(c("Volumes: replica_count ")["options"]) == {"<", ">", "<=", ">=", "=", "!="}
    assert c("Volumes: status = st") == {"start": 18, "options": ["started", "stopped"]}
    assert c("Volumes: name = vm* ")["options"] == ["and", "or", "sortby"]
    assert c("Volumes: name = vm* sortby name ")["options"] == ["asc", "desc"]


# -- the API and the CLI ---------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")


@needs_root
def test_search_through_the_api_and_the_cli(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        b = lambda n: f"127.0.0.1:{tmp_path / n}"  # noqa: E731
        d.ok("volume", "create", "vm1", "replica", "3", b("a1"), b("a2"), b("a3"), "force")
        d.ok("volume", "create", "vm2", "replica", "3", b("c1"), b("c2"), b("c3"), "force")
        d.ok("volume", "create", "data", b("d1"))
        d.ok("volume", "start", "vm2")
        token = d.ok("token", "create", "ro", "--role", "read-only").out.splitlines()[1]
        auth = {"Authorization": f"Bearer {token}"}

        q = "Volumes: name = vm* and type = replicate sortby name desc"
        status, doc = d.api_tcp("GET", "/api/v1/search?q=" + quote(q), headers=auth)
        assert status == 200, doc
        assert [v["name"] for v in doc["volumes"]] == ["vm2", "vm1"]
        assert doc["query"] == q
        status, doc = d.api_tcp("GET", "/api/v1/search?q=" + quote("Volumes: status = started"),
                                headers=auth)
        assert [v["name"] for v in doc["volumes"]] == ["vm2"]

        status, doc = d.api_tcp("GET", "/api/v1/search?q=" + quote("Volumes: name ~ x"),
                                headers=auth)
        assert status == 400 and doc["position"] == 14 and "position 14" in doc["error"], doc
        # a search is a read: it needs a token like any other
        status, _ = d.api_tcp("GET", "/api/v1/search?q=" + quote(q))
        assert status == 401

        status, doc = d.api_tcp("GET", "/api/v1/search/complete?q=" + quote("Volumes: status = s"),
                                headers=auth)
        assert status == 200 and doc["options"] == ["started", "stopped"]

        assert d.ok("volume", "list", "--search", q).out.split() == ["vm2", "vm1"]
        assert d.ok("volume", "list", "--search", "Volumes: replica_count = 1").out.split() == \
            ["data"]
        r = d.ok("volume", "list", "--search=Volumes: name = nothing*", "--json").json()
        assert r == {"volumes": []}
        r = d.cli("volume", "list", "--search", "Volumes: type = fast")
        assert r.rc == 1 and "position 16" in r.err and "type is one of" in r.err, r.text
