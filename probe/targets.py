"""Target lists: load and validate `targets/*.toml`.

A target list is the probe's public input (other tools write it), so every
mistake is reported as `file:line: message` pointing at the offending key or
table: a volunteer must be able to fix a list without reading Python. tomllib
parses the values but knows no positions, so `_scan` maps tables and keys to
their lines with a small lexer that understands strings, comments, arrays and
inline tables (it runs only on text tomllib has already accepted).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import tomllib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

KINDS = ("image", "video", "script", "page")
REQUIRED = ("name", "url", "family", "kind")
OPTIONAL = ("sni", "connect_to", "expected_bytes", "pair", "http3")
_STRING_KEYS = frozenset({"name", "url", "family", "kind", "sni", "connect_to", "pair"})
# Names and families end up in CSV columns, file names and plot labels.
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DEFAULT_PORTS = {"https": 443, "http": 80}
_TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"


@dataclass(frozen=True)
class Target:
    """One object the probe fetches; `pair` names the control it is compared with."""

    name: str
    url: str
    family: str
    kind: str
    sni: str | None = None  # TLS server name to send; None = URL host; "" = send no SNI
    connect_to: str | None = None  # IP to connect to instead of resolving the URL host
    expected_bytes: int | None = None
    pair: str | None = None
    http3: bool = False  # also fetched over HTTP/3 (QUIC), as a measurement of its own
    source: str = field(default="", compare=False)  # "path:line" of its [[target]] header

    @property
    def host(self) -> str:
        """The URL's host, lower-case, IPv6 without brackets."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """The URL's explicit port, else the scheme's default."""
        parts = urlsplit(self.url)
        return parts.port or _DEFAULT_PORTS[parts.scheme]


class TargetError(Exception):
    """A target list is wrong; `str(e)` is `path:line: message` (line 0 = the whole file)."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = str(path)
        self.line = line
        self.message = message


def default_paths() -> list[Path]:
    """The lists of the default pack, Twitter and its controls (probe.packs has the others)."""
    return [_TARGETS_DIR / "twitter.toml", _TARGETS_DIR / "controls.toml"]


def shipped_dir() -> Path:
    """The folder of the lists and packs shipped with the probe."""
    return _TARGETS_DIR


def load(paths: Sequence[Path]) -> list[Target]:
    """Load and validate all lists; names are unique and pairs resolve across all files."""
    parsed = [_load_file(Path(p)) for p in paths]
    targets = [t for file_targets in parsed for t, _ in file_targets]
    first: dict[str, Target] = {}
    for file_targets in parsed:
        for target, lines in file_targets:
            if target.name in first:
                raise _error_at(
                    target,
                    lines["name"],
                    f"duplicate target name {target.name!r} "
                    f"(first defined at {first[target.name].source})",
                )
            first[target.name] = target
    for file_targets in parsed:
        for target, lines in file_targets:
            if target.pair is not None and target.pair not in first:
                raise _error_at(
                    target, lines["pair"], f"pair {target.pair!r} names no loaded target"
                )
    return targets


def top_level(path: Path, key: str) -> tuple[Any, int]:
    """A list's top-level value `key` (None if absent) and its line: how probe.packs reads
    the [pack] table with the loader's own errors."""
    text = _read(path)
    return _parse(path, text).get(key), _scan(text).root.get(key, 0)


def interleave(targets: Iterable[Target]) -> list[Target]:
    """Round-robin across families (in order of first appearance), keeping order within each.

    Alternating Twitter and control fetches spreads slow periods of the
    network over both groups, so a difference between them is not a time effect.
    """
    groups: dict[str, deque[Target]] = {}
    for target in targets:
        groups.setdefault(target.family, deque()).append(target)
    ordered: list[Target] = []
    while groups:
        for family in list(groups):
            ordered.append(groups[family].popleft())
            if not groups[family]:
                del groups[family]
    return ordered


def _error_at(target: Target, line: int, message: str) -> TargetError:
    path = target.source.rsplit(":", 1)[0]
    return TargetError(path, line, message)


# --- one file ---------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TargetError(path, 0, "no such file") from None
    except OSError as e:
        raise TargetError(path, 0, f"cannot read file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise TargetError(
            path, line, f"not UTF-8 text (invalid byte 0x{raw[e.start]:02X})"
        ) from None
    return text.removeprefix("\ufeff")  # editors on Windows write a BOM


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        m = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        if m:
            line = int(m.group(1))
            message = f"{message[: m.start()]} (column {m.group(2)})"
        else:  # "(at end of document)"
            line = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
            line = max(line, 1)
        raise TargetError(path, line, f"TOML syntax error: {message}") from None


def _load_file(path: Path) -> list[tuple[Target, dict[str, int]]]:
    """Targets of one file with the line of each of their keys."""
    text = _read(path)
    data = _parse(path, text)
    layout = _scan(text)
    errors: list[TargetError] = []
    for key, line in layout.root.items():
        if key == "pack" and isinstance(data.get("pack"), dict):
            continue  # a pack's own table: probe.packs reads it
        if key == "pack":
            errors.append(TargetError(path, line, "'pack' must be a table: write [pack]"))
        elif key == "target":
            errors.append(
                TargetError(path, line, "'target' must be an array of tables: write [[target]]")
            )
        else:
            errors.append(
                TargetError(path, line,
                            f"unknown top-level key {key!r} (only [pack] and [[target]] tables)")
            )
    tables = data.get("target", []) if "target" not in layout.root else []
    result = []
    for table, table_layout in zip(tables, layout.targets, strict=True):
        target = _build(path, table, table_layout, errors)
        if target is not None:
            result.append((target, table_layout.keys))
    if errors:
        raise min(errors, key=lambda e: e.line)
    return result


def _build(
    path: Path, table: dict[str, Any], layout: _TableLayout, errors: list[TargetError]
) -> Target | None:
    """Validate one [[target]] table; append its errors and return None if there are any."""
    before = len(errors)

    def fail(key: str, message: str) -> None:
        errors.append(TargetError(path, layout.keys[key], message))

    for key, value in table.items():
        if key not in REQUIRED and key not in OPTIONAL:
            allowed = ", ".join(REQUIRED + OPTIONAL)
            fail(key, f"unknown key {key!r} (allowed: {allowed})")
        elif key in _STRING_KEYS and not isinstance(value, str):
            fail(key, f"{key} must be a string, not {_toml_type(value)}")
        elif key == "expected_bytes" and (type(value) is not int):
            fail(key, f"expected_bytes must be an integer, not {_toml_type(value)}")
        elif key == "http3" and type(value) is not bool:
            fail(key, f"http3 must be true or false, not {_toml_type(value)}")
        else:
            problem = _check_value(key, value, table)
            if problem:
                fail(key, problem)
    label = f"target {table['name']!r}" if isinstance(table.get("name"), str) else "target"
    for key in REQUIRED:
        if key not in table:
            errors.append(
                TargetError(path, layout.header, f"{label} is missing required key {key!r}")
            )
    if len(errors) > before:
        return None
    return Target(
        **{k: table[k] for k in REQUIRED + OPTIONAL if k in table},
        source=f"{path}:{layout.header}",
    )


def _check_value(key: str, value: Any, table: dict[str, Any]) -> str | None:
    """What is wrong with a value of the right type, or None."""
    if key in ("name", "family") and not _IDENT.fullmatch(value):
        return (
            f"{key} {value!r} must start with a letter or digit and contain only "
            "letters, digits, '.', '_' and '-'"
        )
    if key == "url":
        return _check_url(value)
    if key == "kind" and value not in KINDS:
        return f"kind {value!r} is not one of: {', '.join(KINDS)}"
    if key == "sni":
        if any(c.isspace() or not c.isprintable() for c in value) or not value.isascii():
            return f"sni {value!r} must be printable ASCII without spaces"
        if value:
            try:
                value.encode("idna")  # what TLS will do with it
            except UnicodeError:
                return f"sni {value!r} is not a valid host name (an empty or over-long label)"
        url = table.get("url")
        if isinstance(url, str) and urlsplit(url).scheme == "http":
            return "sni is only meaningful for https URLs"
    if key == "connect_to":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return f"connect_to {value!r} is not an IP address"
    if key == "http3" and value:
        url = table.get("url")
        if isinstance(url, str) and urlsplit(url).scheme == "http":
            return "http3 is only meaningful for https URLs"
    if key == "expected_bytes" and value <= 0:
        return f"expected_bytes must be positive, not {value}"
    if key == "pair":
        if value == table.get("name"):
            return "pair names the target itself"
        if not value:
            return "pair must not be empty"
    return None


def _check_url(url: str) -> str | None:
    if any(c.isspace() for c in url):
        return f"url {url!r} must not contain whitespace"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. a bracketed host that is not an IPv6 address
        return f"url {url!r} is not a valid URL ({exc})"
    if parts.scheme not in _DEFAULT_PORTS:
        return f"url {url!r} must start with http:// or https://"
    if not parts.hostname:
        return f"url {url!r} has no host"
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return f"url {url!r} has an invalid port"
    return None


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")  # dates and times


# --- positions ----------------------------------------------------------------


@dataclass
class _TableLayout:
    header: int  # line of the [[target]] header
    keys: dict[str, int] = field(default_factory=dict)  # first-level key -> first line


@dataclass
class _Layout:
    root: dict[str, int] = field(default_factory=dict)  # top-level keys/tables -> line
    targets: list[_TableLayout] = field(default_factory=list)


def _scan(text: str) -> _Layout:
    """Lines of the [[target]] headers, their keys, and any other top-level key."""
    layout = _Layout()
    current: _TableLayout | None = None  # the table that keys now belong to, if a target
    in_root = True
    for kind, key, line in _Lexer(text).statements():
        if kind == "key":
            if in_root:
                layout.root.setdefault(key[0], line)
            elif current is not None:
                current.keys.setdefault(key[0], line)
            continue
        in_root, current = False, None
        if key == ["target"] and kind == "array":
            current = _TableLayout(line)
            layout.targets.append(current)
        elif key[0] == "target" and len(key) > 1 and layout.targets:
            layout.targets[-1].keys.setdefault(key[1], line)  # [target.sub]: a key of it
        else:
            layout.root.setdefault(key[0], line)
    return layout


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Lexer:
    """Splits valid TOML into statements: ("key" | "table" | "array", dotted key, line)."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.newlines = [m.start() for m in re.finditer("\n", text)]

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def statements(self) -> Iterable[tuple[str, list[str], int]]:
        s = self.s
        while True:
            self._skip_blank(newlines=True)
            if self.i >= len(s):
                return
            line = self.line(self.i)
            if s[self.i] == "[":
                kind = "array" if s.startswith("[[", self.i) else "table"
                self.i += 2 if kind == "array" else 1
                key = self._key()
                self.i += 2 if kind == "array" else 1
                yield kind, key, line
            else:
                key = self._key()
                self.i += 1  # "="
                self._skip_value()
                yield "key", key, line

    def _skip_blank(self, newlines: bool) -> None:
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                end = s.find("\n", self.i)
                self.i = n if end < 0 else end
            else:
                return

    def _key(self) -> list[str]:
        parts = []
        while True:
            self._skip_blank(newlines=False)
            start = self.i
            if self.s[start] in "\"'":
                self._skip_string()
                raw = self.s[start : self.i]
                parts.append(next(iter(tomllib.loads(f"{raw} = 0"))))
            else:
                m = _BARE_KEY.match(self.s, start)
                self.i = m.end() if m else start + 1
                parts.append(self.s[start : self.i])
            self._skip_blank(newlines=False)
            if self.i < len(self.s) and self.s[self.i] == ".":
                self.i += 1
                continue
            return parts

    def _skip_value(self) -> None:
        """Skip to the end of the value, across multi-line strings and arrays."""
        s, n = self.s, len(self.s)
        depth = 0
        while self.i < n:
            c = s[self.i]
            if c in "\"'":
                self._skip_string()
            elif c == "#":
                self._skip_blank(newlines=False)
            elif c == "\n" and depth == 0:
                return
            else:
                depth += (c in "[{") - (c in "]}")
                self.i += 1

    def _skip_string(self) -> None:
        s, n = self.s, len(self.s)
        quote = s[self.i]
        escapes = quote == '"'
        if s.startswith(quote * 3, self.i):
            self.i += 3
            while self.i < n:
                if escapes and s[self.i] == "\\":
                    self.i += 2
                elif s[self.i] == quote:
                    start = self.i
                    while self.i < n and s[self.i] == quote:
                        self.i += 1
                    if self.i - start >= 3:  # up to two quotes may precede the closing three
                        return
                else:
                    self.i += 1
            return
        self.i += 1
        while self.i < n and s[self.i] != quote:
            self.i += 2 if escapes and s[self.i] == "\\" else 1
        self.i += 1
