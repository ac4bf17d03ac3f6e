"""Service packs: one target list per throttled service, chosen with `probe run --pack`.

A pack is a file of `targets/` with a `[pack]` table; its name is the file's name
without `.toml`. It holds the service's targets and the controls they are compared
with (or names the files that hold them in `include`), so a volunteer measures the
next throttled service by its name, without writing a list. Media that only exists
behind signed, expiring URLs (YouTube playback) cannot be listed; such hosts go in
`sni_names`, sent by the `sni` experiment to the measurement server: the throttle
keys on the name, and the server is ours, so the request is neutral and of a fixed
size (docs/targets.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from probe import targets
from probe.names import SERVICES, label, service_of
from probe.targets import Target, TargetError

ALL = "all"
DEFAULT = "twitter"
_KEYS = ("description", "service", "include", "sni_names", "lab")


@dataclass(frozen=True)
class Pack:
    """One service's pack: where it is, what it measures and what it brings along."""

    name: str
    path: Path
    description: str
    service: str  # the family of the service's targets, a key of probe.names.SERVICES
    include: tuple[Path, ...] = ()  # other lists loaded with it (its controls)
    sni_names: tuple[str, ...] = ()  # service names the `sni` experiment sends (with --server)
    lab: bool = False  # its URLs exist only in the probe lab: never in `all`

    @property
    def files(self) -> list[Path]:
        return [self.path, *self.include]


class UnknownPack(ValueError):
    """`--pack` named no pack; the message lists the known ones."""


def read(path: Path) -> Pack | None:
    """The pack declared by a list's `[pack]` table (None: a plain list); a bad table
    raises TargetError at its header line."""
    table, line = targets.top_level(path, "pack")
    if table is None:
        return None

    def fail(message: str) -> TargetError:
        return TargetError(path, line, f"[pack] {message}")

    if not isinstance(table, dict):
        raise fail("must be a table: write [pack]")
    for key in table:
        if key not in _KEYS:
            raise fail(f"unknown key {key!r} (allowed: {', '.join(_KEYS)})")
    for key in ("description", "service"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise fail(f"needs {key!r}, a non-empty string")
    service = table["service"]
    if service not in SERVICES:
        raise fail(f"service {service!r} has no names in probe/names.py "
                   f"(known: {', '.join(sorted(SERVICES))})")
    include, sni_names = table.get("include", []), table.get("sni_names", [])
    for key, value in (("include", include), ("sni_names", sni_names)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"{key} must be an array of strings")
    for name in sni_names:
        if service_of(name) != service:
            raise fail(f"sni_names: {name!r} is not a {label(service)} name "
                       f"({', '.join(SERVICES[service])}, or under them)")
    if not isinstance(table.get("lab", False), bool):
        raise fail("lab must be true or false")
    return Pack(name=path.stem, path=path, description=table["description"].strip(),
                service=service, include=tuple(path.parent / f for f in include),
                sni_names=tuple(n.lower() for n in sni_names), lab=table.get("lab", False))


def shipped(folder: Path | None = None) -> list[Pack]:
    """Every pack of the folder (default: the shipped `targets/`), by name."""
    found = (read(p) for p in sorted((folder or targets.shipped_dir()).glob("*.toml")))
    return [p for p in found if p is not None]


def select(names: Sequence[str], folder: Path | None = None) -> list[Pack]:
    """The packs `--pack` names, in that order, each once; `all` is every pack but the
    lab's. Unknown names raise UnknownPack."""
    known = {p.name: p for p in shipped(folder)}
    chosen: dict[str, Pack] = {}
    for name in names:
        if name == ALL:
            chosen.update((p.name, p) for p in known.values() if not p.lab and p.name not in chosen)
        elif name in known:
            chosen.setdefault(name, known[name])
        else:
            raise UnknownPack(f"unknown pack {name!r}; packs: {', '.join(known)} or {ALL} "
                              "(probe targets list)")
    return list(chosen.values())


def files(packs: Sequence[Pack], extra: Sequence[Path] = ()) -> list[Path]:
    """The lists to load for the packs and any other files, each once, in order."""
    out: list[Path] = []
    seen: set[Path] = set()
    for path in [f for p in packs for f in p.files] + list(extra):
        key = Path(path).resolve()
        if key not in seen:
            seen.add(key)
            out.append(Path(path))
    return out


def load(packs: Sequence[Pack], extra: Sequence[Path] = ()) -> tuple[list[Path], list[Target]]:
    """The files and targets of the packs (with `extra` lists); a service target whose name
    is not its service's is an error: the analysis would not see it as the service."""
    paths = files(packs, extra)
    loaded = targets.load(paths)
    for pack in packs:
        for t in loaded:
            own_file = Path(t.source.rsplit(":", 1)[0]).resolve() == pack.path.resolve()
            name = t.host if t.sni is None else t.sni
            if own_file and t.family == pack.service and service_of(name) != pack.service:
                path, line = t.source.rsplit(":", 1)
                raise TargetError(path, int(line), f"target {t.name!r} of family "
                                  f"{t.family!r} names {name!r}, not a {label(t.family)} name")
    return paths, loaded


def sni_names(packs: Sequence[Pack]) -> list[str]:
    """The packs' extra names for the `sni` experiment, each once."""
    return list(dict.fromkeys(n for p in packs for n in p.sni_names))
