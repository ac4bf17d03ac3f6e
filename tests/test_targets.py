"""Target lists: every validation error names the right file:line; shipped lists load."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.targets import KINDS, Target, TargetError, default_paths, interleave, load

pytestmark = pytest.mark.timeout(60)

VALID = """\
[[target]]
name = "a"
url = "https://pbs.twimg.com/media/x.jpg"
family = "twitter"
kind = "image"
"""


def write(directory: Path, text: str | bytes, name: str = "t.toml") -> Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def error_of(paths: list[Path]) -> TargetError:
    with pytest.raises(TargetError) as info:
        load(paths)
    return info.value


def assert_error(path: Path, text: str, line: int, fragment: str) -> None:
    """Loading `text` fails at exactly `path:line` with `fragment` in the message."""
    write(path.parent, text, path.name)
    err = error_of([path])
    assert (err.path, err.line) == (str(path), line), str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    assert fragment in err.message, str(err)


# --- valid input ---------------------------------------------------------------


def test_valid_target_with_every_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        VALID
        + """
[[target]]  # the control
name = "b.control_1"
url = "http://[2001:db8::1]:8080/p?q=1"
family = "control"
kind = "video"
connect_to = "192.0.2.7"
expected_bytes = 1_000
pair = "a"

[[target]]
name = "c"
url = "https://198.51.100.9/"
family = "lab"
kind = "page"
sni = ""
""",
    )
    a, b, c = load([path])
    assert a == Target("a", "https://pbs.twimg.com/media/x.jpg", "twitter", "image")
    assert a.source == f"{path}:1"
    assert (a.host, a.port, a.sni) == ("pbs.twimg.com", 443, None)
    assert b == Target(
        "b.control_1",
        "http://[2001:db8::1]:8080/p?q=1",
        "control",
        "video",
        connect_to="192.0.2.7",
        expected_bytes=1000,
        pair="a",
    )
    assert (b.source, b.host, b.port) == (f"{path}:7", "2001:db8::1", 8080)
    assert (c.sni, c.host, c.port, c.source) == ("", "198.51.100.9", 443, f"{path}:16")


def test_http_default_port_and_host_case(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("https://pbs.twimg.com", "http://PBS.Twimg.com"))
    (target,) = load([path])
    assert (target.host, target.port) == ("pbs.twimg.com", 80)


def test_empty_file_and_bom(tmp_path: Path) -> None:
    assert load([write(tmp_path, "# nothing yet\n", "empty.toml")]) == []
    (target,) = load([write(tmp_path, b"\xef\xbb\xbf" + VALID.encode(), "bom.toml")])
    assert target.name == "a"


# --- every validation error, at its exact line ----------------------------------


def test_syntax_error_line(tmp_path: Path) -> None:
    text = VALID + 'bad value = "x"\n'
    assert_error(tmp_path / "t.toml", text, 6, "TOML syntax error")


def test_syntax_error_at_end_of_document(tmp_path: Path) -> None:
    text = VALID + 'sni = """never closed\n\n'
    assert_error(tmp_path / "t.toml", text, 7, "Unterminated string")


def test_syntax_error_duplicate_key(tmp_path: Path) -> None:
    assert_error(tmp_path / "t.toml", VALID + 'kind = "page"\n', 6, "TOML syntax error")


def test_unknown_key(tmp_path: Path) -> None:
    text = VALID.replace('kind = "image"\n', 'kind = "image"\nport = 8443\n')
    assert_error(tmp_path / "t.toml", text, 6, "unknown key 'port'")


def test_unknown_dotted_key_and_subtable(tmp_path: Path) -> None:
    text = VALID + "tls.version = 3\ntls.cipher = 'x'\n"
    assert_error(tmp_path / "t.toml", text, 6, "unknown key 'tls'")
    text = VALID + "\n[target.headers]\naccept = '*'\n"
    assert_error(tmp_path / "t.toml", text, 7, "unknown key 'headers'")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert_error(tmp_path / "t.toml", "version = 2\n\n" + VALID, 1, "unknown top-level key")
    text = VALID + "\n[meta]  # a table\nauthor = 'x'\n"
    assert_error(tmp_path / "t.toml", text, 7, "unknown top-level key 'meta'")


def test_target_not_an_array_of_tables(tmp_path: Path) -> None:
    text = "# a\n" + VALID.replace("[[target]]", "[target]")
    assert_error(tmp_path / "t.toml", text, 2, "write [[target]]")
    text = '\ntarget = [{ name = "a", url = "https://x.example/", family = "f", kind = "page" }]\n'
    assert_error(tmp_path / "t.toml", text, 2, "write [[target]]")


@pytest.mark.parametrize("missing", ["name", "url", "family", "kind"])
def test_missing_required_key(tmp_path: Path, missing: str) -> None:
    second = VALID.replace('"a"', '"b"')
    second = "\n".join(line for line in second.splitlines() if not line.startswith(missing))
    text = "\n\n" + VALID + "\n" + second + "\n"  # the second target's header is line 9
    label = "target" if missing == "name" else "target 'b'"
    assert_error(tmp_path / "t.toml", text, 9, f"{label} is missing required key {missing!r}")


@pytest.mark.parametrize(
    ("line_text", "fragment"),
    [
        ("name = 7", "name must be a string, not an integer"),
        ("url = ['https://a.example/']", "url must be a string, not an array"),
        ("family = { a = 1 }", "family must be a string, not a table"),
        ("kind = true", "kind must be a string, not a boolean"),
        ("sni = 1.5", "sni must be a string, not a float"),
        ("connect_to = 1979-05-27", "connect_to must be a string, not a date"),
        ("expected_bytes = '100'", "expected_bytes must be an integer, not a string"),
        ("expected_bytes = true", "expected_bytes must be an integer, not a boolean"),
        ("pair = 1", "pair must be a string"),
    ],
)
def test_wrong_type(tmp_path: Path, line_text: str, fragment: str) -> None:
    key = line_text.split(" ")[0]
    lines = [line for line in VALID.splitlines() if not line.startswith(key + " ")]
    text = "\n".join(lines[:2] + ["# comment", line_text] + lines[2:]) + "\n"
    assert_error(tmp_path / "t.toml", text, 4, fragment)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://pbs.twimg.com/x.jpg", "must start with http:// or https://"),
        ("pbs.twimg.com/x.jpg", "must start with http:// or https://"),
        ("https:///x.jpg", "has no host"),
        ("https://pbs.twimg.com:99999/", "invalid port"),
        ("https://pbs.twimg.com:https/", "invalid port"),
        ("https://[[target]]abs.twimg.com/x.js", "is not a valid URL"),
        ("https://pbs.twimg.com/a b.jpg", "whitespace"),
    ],
)
def test_bad_url(tmp_path: Path, url: str, fragment: str) -> None:
    text = VALID.replace("https://pbs.twimg.com/media/x.jpg", url)
    assert_error(tmp_path / "t.toml", text, 3, fragment)


def test_bad_kind(tmp_path: Path) -> None:
    text = VALID.replace('kind = "image"', 'kind = "photo"')
    assert_error(tmp_path / "t.toml", text, 5, "kind 'photo' is not one of")


@pytest.mark.parametrize("value", ["192.0.2.256", "pbs.twimg.com", "[2001:db8::1]", ""])
def test_bad_connect_to(tmp_path: Path, value: str) -> None:
    text = VALID + f'connect_to = "{value}"\n'
    assert_error(tmp_path / "t.toml", text, 6, "is not an IP address")


@pytest.mark.parametrize("value", ["0", "-5"])
def test_non_positive_expected_bytes(tmp_path: Path, value: str) -> None:
    text = VALID + f"expected_bytes = {value}\n"
    assert_error(tmp_path / "t.toml", text, 6, "expected_bytes must be positive")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("name", "", "must start with a letter or digit"),
        ("name", "a b", "must start with a letter or digit"),
        ("family", "-x", "must start with a letter or digit"),
    ],
)
def test_bad_identifier(tmp_path: Path, key: str, value: str, fragment: str) -> None:
    lines = VALID.splitlines()
    line = next(i for i, text in enumerate(lines) if text.startswith(key))
    lines[line] = f'{key} = "{value}"'
    assert_error(tmp_path / "t.toml", "\n".join(lines) + "\n", line + 1, fragment)


def test_bad_sni(tmp_path: Path) -> None:
    assert_error(tmp_path / "t.toml", VALID + 'sni = "a b"\n', 6, "without spaces")
    text = VALID.replace("https://", "http://") + 'sni = "twitter.com"\n'
    assert_error(tmp_path / "t.toml", text, 6, "only meaningful for https")
    for name in (".twitter.com", "a..b", "a" * 64 + ".com"):  # TLS could not send these
        assert_error(tmp_path / "t.toml", VALID + f'sni = "{name}"\n', 6, "not a valid host")


def test_duplicate_name_in_one_file(tmp_path: Path) -> None:
    text = VALID + "\n" + VALID.replace('"a"', "'a'  # again")
    assert_error(
        tmp_path / "t.toml",
        text,
        8,
        f"duplicate target name 'a' (first defined at {tmp_path / 't.toml'}:1)",
    )


def test_duplicate_name_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, VALID, "first.toml")
    second = write(tmp_path, "# other list\n\n" + VALID, "second.toml")
    err = error_of([first, second])
    assert (err.path, err.line) == (str(second), 4)
    assert f"first defined at {first}:1" in err.message


def test_pair_naming_no_target(tmp_path: Path) -> None:
    text = VALID.replace('kind = "image"', 'kind = "image"\npair = "ctrl"')
    assert_error(tmp_path / "t.toml", text, 6, "pair 'ctrl' names no loaded target")


def test_pair_resolves_across_files_in_either_order(tmp_path: Path) -> None:
    twitter = write(tmp_path, VALID + 'pair = "b"\n', "twitter.toml")
    control = write(tmp_path, VALID.replace('"a"', '"b"'), "control.toml")
    assert [t.name for t in load([control, twitter])] == ["b", "a"]
    err = error_of([twitter])
    assert (err.path, err.line) == (str(twitter), 6)


def test_pair_naming_itself(tmp_path: Path) -> None:
    assert_error(tmp_path / "t.toml", VALID + 'pair = "a"\n', 6, "pair names the target itself")


def test_missing_file(tmp_path: Path) -> None:
    err = error_of([tmp_path / "nope.toml"])
    assert str(err) == f"{tmp_path / 'nope.toml'}:0: no such file"


def test_unreadable_file(tmp_path: Path) -> None:
    err = error_of([tmp_path])  # a directory cannot be read as a file
    assert (err.path, err.line) == (str(tmp_path), 0)
    assert err.message.startswith("cannot read file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_file_without_permission(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    path.chmod(0)
    assert error_of([path]).message.startswith("cannot read file")


def test_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.encode() + b'sni = "caf\xe9"\n')
    err = error_of([path])
    assert (err.path, err.line) == (str(path), 6)
    assert "not UTF-8" in err.message and "0xE9" in err.message


def test_earliest_error_is_reported(tmp_path: Path) -> None:
    text = VALID + 'kind2 = 1\n\n[[target]]\nname = "b"\n' + "extra = 1\n" + "\nlate = 1\n"
    text = text.replace('family = "twitter"', 'family = "twitter"\nweird = 0')
    assert_error(tmp_path / "t.toml", text, 5, "unknown key 'weird'")


def test_lines_survive_tricky_toml(tmp_path: Path) -> None:
    """Comments, multi-line strings and arrays that look like keys and headers."""
    text = '''\
# [[target]]
# name = "fake"
[[target]]   # real
"name" = "a"  # name = "b"
url = """\\
    https://pbs.twimg.com/x.jpg"""
family = 'twitter'
kind = \'\'\'image\'\'\'
sni = """q\\"""[[target]]"""
[[ 'target' ]]
name = "b"
url = "https://x.example/"
family = "control"
kind = "page"
expected_bytes = 5
notes = [ "]", # ] [[target]]
  """
name = 1
""", { x = '[' } ]
'''
    assert_error(tmp_path / "t.toml", text, 16, "unknown key 'notes'")
    text = text.replace("notes", "# notes").replace('  """\nname = 1\n""", { x = \'[\' } ]\n', "")
    a, b = load([write(tmp_path, text)])
    assert (a.source.rsplit(":", 1)[1], b.source.rsplit(":", 1)[1]) == ("3", "10")
    assert a.url == "https://pbs.twimg.com/x.jpg" and a.sni == 'q"""[[target]]'


# --- property tests: generated files round-trip and errors point at the key ----

NAME = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True)


@dataclass
class Spec:
    target: Target
    order: list[str]  # key order in the file


@st.composite
def target_specs(draw: st.DrawFn) -> list[Spec]:
    names = draw(st.lists(NAME, min_size=1, max_size=5, unique=True))
    specs = []
    for name in names:
        scheme = draw(st.sampled_from(["http", "https"]))
        kwargs: dict[str, object] = {}
        if scheme == "https" and draw(st.booleans()):
            # quotes and backslashes exercise the lexer's string handling
            sni = st.sampled_from(["", "t.co", 'q"[[target]]', "a\\b", 'end"', 'x"""y'])
            kwargs["sni"] = draw(sni)
        if draw(st.booleans()):
            kwargs["connect_to"] = draw(st.sampled_from(["192.0.2.1", "2001:db8::5"]))
        if draw(st.booleans()):
            kwargs["expected_bytes"] = draw(st.integers(1, 10**12))
        others = [n for n in names if n != name]
        if others and draw(st.booleans()):
            kwargs["pair"] = draw(st.sampled_from(others))
        port = draw(st.sampled_from(["", ":8443"]))
        target = Target(
            name=name,
            url=f"{scheme}://{name.strip('.-_') or 'h'}.example{port}/p",
            family=draw(st.sampled_from(["twitter", "control", "control-tco", "lab"])),
            kind=draw(st.sampled_from(KINDS)),
            **kwargs,  # type: ignore[arg-type]
        )
        keys = ["name", "url", "family", "kind", *kwargs]
        specs.append(Spec(target, draw(st.permutations(keys))))
    return specs


DECOYS = ["# [[target]]", '# name = "decoy"', "", "   # kind = 'x'"]


def render_value(value: object, style: int) -> list[str]:
    """A value in one of several TOML spellings; may span lines."""
    if isinstance(value, int):
        return [f"{value:_}" if style % 2 else str(value)]
    text = str(value)
    backslashed = text.replace("\\", "\\\\")
    basic = backslashed.replace('"', '\\"')
    multi_line = backslashed.replace('"""', '\\"""')  # lone and paired quotes stay bare
    return [
        [f'"{basic}"'],
        [f"'{text}'"],
        [f"'''{text}'''"],
        ["'''", f"{text}'''"],  # the newline right after the opening quotes is dropped
        ['"""\\', f"   {multi_line}" + '"""'],  # line-ending backslash: spans two lines
    ][style % 5]


def render_key(key: str, style: int) -> str:
    return [key, f'"{key}"', f"'{key}'", f"  {key}  "][style % 4]


@dataclass
class Rendered:
    specs: list[Spec]
    lines: list[str]
    headers: list[int]  # line of each target's header
    key_lines: list[dict[str, int]]  # line of each key of each target
    ends: list[list[int]]  # lines of each target after which a new line may go


@st.composite
def rendered(draw: st.DrawFn) -> Rendered:
    """A generated target file, with the positions the loader must report."""
    specs = draw(target_specs())
    out = Rendered(specs, [], [], [], [])
    lines = out.lines
    for spec in specs:
        lines += draw(st.lists(st.sampled_from(DECOYS), max_size=2))
        lines.append(draw(st.sampled_from(["[[target]]", "[[ target ]]", '[["target"]]'])))
        out.headers.append(len(lines))
        keys: dict[str, int] = {}
        ends = [len(lines)]
        for key in spec.order:
            lines += draw(st.lists(st.sampled_from(DECOYS), max_size=1))
            value = render_value(getattr(spec.target, key), draw(st.integers(0, 4)))
            comment = draw(st.sampled_from(["", "  # url = 'x'"]))
            lines.append(f"{render_key(key, draw(st.integers(0, 3)))} = {value[0]}")
            keys[key] = len(lines)
            lines += value[1:]
            lines[-1] += comment
            ends.append(len(lines))
        out.key_lines.append(keys)
        out.ends.append(ends)
    return out


FAULTS = [
    ("bogus = 1", "unknown key 'bogus'"),
    ('bogus = """\n[[target]]\nname = "z"\n"""', "unknown key 'bogus'"),
    ("bogus = [ # ]\n  '[[target]]',\n]", "unknown key 'bogus'"),
    ("bogus = { a = [\n1, 2] }", "unknown key 'bogus'"),
]

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(rendered())
def test_property_valid_files_round_trip(case: Rendered) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "\n".join(case.lines) + "\n")
        loaded = load([path])
    assert loaded == [spec.target for spec in case.specs]
    assert [t.source for t in loaded] == [f"{path}:{line}" for line in case.headers]


@PROPERTY
@given(rendered(), st.data())
def test_property_unknown_key_line(case: Rendered, data: st.DataObject) -> None:
    which = data.draw(st.integers(0, len(case.specs) - 1))
    after = data.draw(st.sampled_from(case.ends[which]))
    fault, fragment = data.draw(st.sampled_from(FAULTS))
    lines = case.lines[:after] + fault.split("\n") + case.lines[after:]
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "\n".join(lines) + "\n")
        err = error_of([path])
    assert err.line == after + 1, str(err)
    assert fragment in err.message


@PROPERTY
@given(rendered(), st.data())
def test_property_bad_value_line(case: Rendered, data: st.DataObject) -> None:
    which = data.draw(st.integers(0, len(case.specs) - 1))
    key = data.draw(st.sampled_from(["url", "kind", "name"]))
    line = case.key_lines[which][key]
    bad = {"url": "ftp://x.example/", "kind": "photo", "name": "bad name"}[key]
    lines = list(case.lines)
    prefix = lines[line - 1].split("=", 1)[0]
    end = min(e for e in case.ends[which] if e >= line)
    for rest in range(line, end):  # the old value's further lines become comments
        lines[rest] = "# " + lines[rest]
    lines[line - 1] = f'{prefix}= "{bad}"'
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "\n".join(lines) + "\n")
        err = error_of([path])
    assert err.line == line, str(err)
    assert key in err.message


# --- interleave ------------------------------------------------------------------


def make(name: str, family: str) -> Target:
    return Target(name, f"https://{name}.example/", family, "image")


def test_interleave_alternates_families_stably() -> None:
    targets = [make(f"t{i}", "twitter") for i in range(3)]
    targets += [make(f"c{i}", "control") for i in range(4)] + [make("x0", "control-tco")]
    names = [t.name for t in interleave(targets)]
    assert names == ["t0", "c0", "x0", "t1", "c1", "t2", "c2", "c3"]


def test_interleave_starts_with_first_family_seen() -> None:
    targets = [make("c0", "control"), make("t0", "twitter"), make("c1", "control")]
    assert [t.name for t in interleave(targets)] == ["c0", "t0", "c1"]
    assert interleave([]) == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["twitter", "control", "control-tco"]), max_size=30))
def test_property_interleave(families: list[str]) -> None:
    targets = [make(f"n{i}", family) for i, family in enumerate(families)]
    out = interleave(targets)
    assert sorted(out, key=lambda t: t.name) == sorted(targets, key=lambda t: t.name)
    for family in set(families):  # stable within each family
        assert [t for t in out if t.family == family] == [t for t in targets if t.family == family]
    # no family repeats while another one still has targets left
    for i in range(1, len(out)):
        if out[i].family == out[i - 1].family:
            assert {t.family for t in out[i:]} == {out[i].family}


# --- the shipped lists -----------------------------------------------------------


def test_shipped_lists_load() -> None:
    paths = default_paths()
    assert [p.name for p in paths] == ["twitter.toml", "controls.toml"]
    targets = load(paths)
    by_name = {t.name: t for t in targets}
    twitter = [t for t in targets if t.family == "twitter"]
    hosts = {t.host for t in twitter}
    assert {"pbs.twimg.com", "video.twimg.com", "abs.twimg.com", "twitter.com", "t.co"} <= hosts
    assert {t.kind for t in twitter} == set(KINDS)
    video_paths = [t.url.split("?")[0] for t in twitter if t.kind == "video"]
    assert any(p.endswith(".m3u8") for p in video_paths)
    assert any(p.endswith(".mp4") for p in video_paths)
    for target in twitter:
        assert target.pair is not None, target.name
        control = by_name[target.pair]
        assert control.family == "control" and control.kind == target.kind, target.name
        assert "twimg" not in control.host and "twitter" not in control.host
    tco = [t for t in targets if t.family == "control-tco"]
    assert tco and all("t.co" in t.host for t in tco)
    assert all("t.co" not in t.host for t in targets if t.family == "control")
    for target in targets:
        assert target.url.startswith("https://")
        assert target.sni is None and target.connect_to is None  # real DNS, real SNI
        assert target.source.startswith(str(Path(target.source.rsplit(":", 1)[0])))
