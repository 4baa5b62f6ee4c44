"""Volfile syntax: GlusterFS's own files parse, ours round-trip, and every
fault is reported with its file and line."""

from pathlib import Path

import pytest
from hypothesis import given, strategies as s

from glusterpy import volfile
from glusterpy.volfile import VolfileError

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "glusterfs10-samples" / "volfiles"


def sample_volfiles():
    return sorted(SAMPLES.glob("*.vol"))


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"samples not found at {SAMPLES}")
@pytest.mark.parametrize("path", sample_volfiles(), ids=lambda p: p.name)
def test_every_glusterfs10_volfile_parses_and_round_trips(path):
    parsed = volfile.load(path)
    text = path.read_text()
    # every volume glusterd wrote is there, in order, and the last is the top
    names = [line.split()[1] for line in text.splitlines() if line.startswith("volume ")]
    assert [v.name for v in parsed.volumes] == names
    assert parsed.top.name == names[-1]
    again = volfile.parses(parsed.dumps(), "again")
    assert [(v.name, v.type, v.options, v.subvolumes) for v in again.volumes] == \
        [(v.name, v.type, v.options, v.subvolumes) for v in parsed.volumes]


def test_brick_volfile_fields():
    path = SAMPLES / "test.vm.srv-t1.vol"
    if not path.exists():
        pytest.skip("sample missing")
    vf = volfile.load(path)
    posix = next(v for v in vf.volumes if v.type == "storage/posix")
    assert "directory" in posix.options
    server = vf.top
    assert server.type == "protocol/server"
    assert any(k.startswith("auth.") for k in server.options)


def test_quoting_comments_and_lines():
    vf = volfile.parses(
        '# leading comment\n'
        'volume a   # trailing comment\n'
        '  type storage/posix\n'
        '  option directory "/srv/with space/b1"\n'
        '  option weird "a\\"b\\\\c"\n'
        'end-volume\n'
        '\n'
        'volume top\n'
        '  type performance/io-cache\n'
        '  subvolumes a\n'
        'end-volume\n', "q.vol")
    a = vf["a"]
    assert a.options == {"directory": "/srv/with space/b1", "weird": 'a"b\\c'}
    assert (a.line, a.type_line, a.option_lines["directory"]) == (2, 3, 4)
    assert vf.top.name == "top" and vf.top.subvolumes == ["a"]
    assert volfile.parses(vf.dumps())["a"].options == a.options


def test_forward_reference_is_accepted():
    vf = volfile.parses("volume top\n type x/y\n subvolumes leaf\nend-volume\n"
                        "volume leaf\n type x/z\nend-volume\n")
    # the last defined volume is the top, as in GlusterFS
    assert vf.top.name == "leaf"


BAD = [
    ("volume a\n type storage/posix\n", 2, "'end-volume' missing"),
    ("volume a\n type storage/posix\nvolume b\n type x/y\nend-volume\n", 3, "'end-volume' missing"),
    ("volume a\n type x/y\nend-volume\nvolume a\n type x/y\nend-volume\n", 4, "defined twice"),
    ("volume a\n type x/y\n subvolumes nope\nend-volume\n", 3, "'nope' is not defined"),
    ("volume a\n type x/y\n subvolumes b\nend-volume\nvolume b\n type x/y\n subvolumes a\nend-volume\n",
     None, "cycle"),
    ("volume a\n type x/y\n subvolumes a\nend-volume\n", 3, "cycle"),
    ("volume a\n option k v\nend-volume\n", 1, "has no 'type'"),
    ("volume a\n type x/y\n option onlykey\nend-volume\n", 3, "needs a value"),
    ("type x/y\n", 1, "expected 'volume'"),
    ("volume a\n type x/y\n bogus here\nend-volume\n", 3, "unexpected 'bogus'"),
    ("volume a\n type x/y\n type x/z\nend-volume\n", 3, "two types"),
    ('volume a\n type x/y\n option k "open\nend-volume\n', 3, "unterminated"),
    ("", None, "no volume"),
    ("volume a\n type x/y\n subvolumes\nend-volume\n", 3, "at least one"),
]


@pytest.mark.parametrize("text,line,message", BAD, ids=[b[2] for b in BAD])
def test_errors_name_file_and_line(text, line, message):
    with pytest.raises(VolfileError) as info:
        volfile.parses(text, "bad.vol")
    err = info.value
    assert message in str(err)
    assert err.filename == "bad.vol"
    if line is not None:
        assert err.line == line
        assert str(err).startswith(f"bad.vol:{line}: ")


def test_missing_file_is_a_volfile_error(tmp_path):
    with pytest.raises(VolfileError, match="No such file"):
        volfile.load(tmp_path / "absent.vol")


_word = s.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
_value = s.text(alphabet=s.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@given(s.lists(s.tuples(_word, s.dictionaries(_word, _value, max_size=4)),
               min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_dump_then_parse_is_identity(volumes):
    vf = volfile.Volfile([volfile.VolumeDef(name=n, type="cat/type", options=o)
                          for n, o in volumes])
    again = volfile.parses(vf.dumps())
    assert [(v.name, v.options) for v in again.volumes] == [(n, o) for n, o in volumes]


@given(s.text(max_size=200))
def test_garbage_raises_only_volfile_error(text):
    try:
        volfile.parses(text, "fuzz.vol")
    except VolfileError:
        pass


def test_xlator_option_splits_at_the_first_dot():
    """glusterfsd's --xlator-option VOLUME.KEY=VALUE: the volume name ends at
    the first dot, so dotted keys can be set."""
    vol = volfile.parses("volume b-server\n type protocol/server\nend-volume\n")
    volfile.apply_xlator_options(vol, ["b-server.transport.socket.listen-port=49152",
                                       "b-*.auth.addr./srv/b.allow=*"])
    assert vol["b-server"].options == {"transport.socket.listen-port": "49152",
                                       "auth.addr./srv/b.allow": "*"}
