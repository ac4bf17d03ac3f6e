"""Service packs: the shipped ones, `--pack` selection, their errors, `probe targets list`
and `probe targets check` against a loopback origin (never a real host)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from probe import packs, targets
from probe.cli import _load_targets, main
from probe.lab.targets import youtube_pack_toml
from probe.names import SERVICES, is_service_name, service_of
from probe.packs import UnknownPack
from probe.targets import TargetError
from tests.probe_world import targets as world_targets

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"twitter", "youtube", "facebook"}


def test_shipped_packs_and_the_default() -> None:
    found = {p.name: p for p in packs.shipped()}
    assert set(found) == SHIPPED | {"lab-youtube"}
    assert found["twitter"].files == targets.default_paths()  # the default run is unchanged
    assert found["lab-youtube"].lab and not any(found[n].lab for n in SHIPPED)
    assert [p.name for p in packs.select(["all"])] == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED | {"lab-youtube"}))
def test_each_pack_pairs_its_service_with_controls_of_its_own_kind(name: str) -> None:
    (pack,) = packs.select([name])
    _, loaded = packs.load([pack])
    by_name = {t.name: t for t in loaded}
    service = [t for t in loaded if t.family == pack.service]
    assert service and all(service_of(t.host) == pack.service for t in service)
    for t in service:
        control = by_name[t.pair]
        assert control.family == "control" and control.kind == t.kind, t
        assert not is_service_name(control.host), control
    assert all(service_of(n) == pack.service for n in pack.sni_names)


def test_all_packs_load_together() -> None:
    """Names are unique across packs, so `--pack all` is one valid list."""
    files, loaded = packs.load(packs.select(["all", "lab-youtube"]))
    assert len(files) == len(set(files)) == 5
    assert {t.family for t in loaded} >= set(SERVICES) | {"control", "control-tco"}


def test_the_lab_pack_is_generated() -> None:
    path = REPO / "targets" / "lab-youtube.toml"
    regenerate = "python -m probe.lab.targets lab-youtube > targets/lab-youtube.toml"
    assert path.read_text() == youtube_pack_toml(), f"out of date; regenerate: {regenerate}"


def test_select_keeps_order_once_and_names_unknown_packs() -> None:
    assert [p.name for p in packs.select(["youtube", "twitter", "youtube"])] == \
        ["youtube", "twitter"]
    assert [p.name for p in packs.select(["youtube", "all"])] == \
        ["youtube", "facebook", "twitter"]
    with pytest.raises(UnknownPack, match=r"unknown pack 'tiktok'; packs: .*youtube or all"):
        packs.select(["tiktok"])


def _pack(tmp_path: Path, table: str, body: str = "") -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(f"# a pack\n[pack]\n{table}\n{body}")
    return path


@pytest.mark.parametrize(("table", "message"), [
    ('service = "youtube"', "needs 'description'"),
    ('description = "x"\nservice = "tiktok"', "service 'tiktok' has no names in probe/names.py"),
    ('description = "x"\nservice = "youtube"\nsni_names = ["example.com"]',
     "sni_names: 'example.com' is not a YouTube name"),
    ('description = "x"\nservice = "youtube"\ninclude = "controls.toml"',
     "include must be an array of strings"),
    ('description = "x"\nservice = "youtube"\nlab = "yes"', "lab must be true or false"),
    ('description = "x"\nservice = "youtube"\nflavour = 1', "unknown key 'flavour'"),
])
def test_a_bad_pack_table_is_reported_at_its_line(tmp_path: Path, table: str,
                                                  message: str) -> None:
    path = _pack(tmp_path, table)
    with pytest.raises(TargetError, match=message) as info:
        packs.read(path)
    assert (info.value.path, info.value.line) == (str(path), 2)


def test_a_service_target_must_carry_a_name_of_its_service(tmp_path: Path) -> None:
    path = _pack(tmp_path, 'description = "x"\nservice = "youtube"', (
        '[[target]]\nname = "a"\nurl = "https://example.com/a.jpg"\nfamily = "youtube"\n'
        'kind = "image"\n'))
    pack = packs.read(path)
    assert pack is not None and pack.name == "mine"
    with pytest.raises(TargetError, match="names 'example.com', not a YouTube name") as info:
        packs.load([pack])
    assert info.value.line == 5


def test_a_pack_table_loads_as_a_plain_list_and_must_be_a_table(tmp_path: Path) -> None:
    path = _pack(tmp_path, 'description = "x"\nservice = "youtube"', (
        '[[target]]\nname = "a"\nurl = "https://i.ytimg.com/a.jpg"\nfamily = "youtube"\n'
        'kind = "image"\n'))
    assert [t.name for t in targets.load([path])] == ["a"]
    bad = tmp_path / "bad.toml"
    bad.write_text('pack = "youtube"\n')
    with pytest.raises(TargetError, match="'pack' must be a table"):
        targets.load([bad])


def test_run_combines_packs_and_target_files(tmp_path: Path) -> None:
    extra = tmp_path / "extra.toml"
    extra.write_text('[[target]]\nname = "mine"\nurl = "https://x.test/"\nfamily = "lab"\n'
                     'kind = "page"\n')
    files, loaded, chosen = _load_targets(("youtube", "twitter"), (extra,))
    assert [p.name for p in chosen] == ["youtube", "twitter"]
    assert files[-1] == extra and len(files) == 4
    assert {"yt-image-thumb-zoo", "pbs-image-obama", "mine"} <= {t.name for t in loaded}
    files, _, chosen = _load_targets((), (extra,))  # --targets alone: only that file
    assert files == [extra] and chosen == []
    files, _, chosen = _load_targets((), ())
    assert files == targets.default_paths() and [p.name for p in chosen] == ["twitter"]


def test_run_with_an_unknown_pack_exits_2_before_measuring(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["run", "--yes", "--pack", "tiktok", "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code == 2 and "unknown pack 'tiktok'" in res.output
    assert not (tmp_path / "out").exists()


def test_targets_list_shows_packs_targets_and_names() -> None:
    res = CliRunner().invoke(main, ["targets", "list"])
    assert res.exit_code == 0, res.output
    assert "lab-youtube (lab only: not in `all`)" in res.output
    assert "rr1---sn-4g5e6nsz.googlevideo.com" in res.output
    line = next(x for x in res.output.splitlines() if "yt-image-thumb-zoo" in x)
    assert line.split() == ["yt-image-thumb-zoo", "youtube", "image", "i.ytimg.com", "vs",
                            "yt-control-image-thumb"]
    line = next(x for x in res.output.splitlines() if "yt-image-maxres-rick" in x)
    assert line.split()[:4] == ["yt-image-maxres-rick", "youtube", "image", "h3"]
    res = CliRunner().invoke(main, ["targets", "list", "--pack", "nope"])
    assert res.exit_code == 2 and "unknown pack 'nope'" in res.output


CHECKED = """
[pack]
description = "a pack served on loopback"
service = "twitter"

[[target]]
name = "alive"
url = "https://pbs.twimg.com:PORT/bytes/200000"
family = "twitter"
kind = "image"
pair = "ctl"
http3 = true

[[target]]
name = "tiny"
url = "https://pbs.twimg.com:PORT/bytes/300"
family = "twitter"
kind = "image"
pair = "ctl"

[[target]]
name = "gone"
url = "https://pbs.twimg.com:PORT/no/such.jpg"
family = "twitter"
kind = "image"
pair = "ctl"

[[target]]
name = "ctl"
url = "https://images.control.test:PORT/bytes/100000"
family = "control"
kind = "image"

[[target]]
name = "refused"
url = "https://refused.test:CLOSED/x.jpg"
family = "control"
kind = "image"
"""


def test_targets_check_says_what_answered(world: dict) -> None:
    pack = world_targets(world, CHECKED)
    dns = world["dns"]
    res = CliRunner().invoke(main, [
        "targets", "check", "--targets", str(pack), "--no-system-resolver",
        "--resolver", f"{dns.host}:{dns.port}", "--ca-bundle", str(world["ca"]),
        "--allow-net", "127.0.0.0/8", "--dns-timeout", "2", "--max-seconds", "3"])
    lines = {x.split()[1]: x for x in res.output.splitlines() if x.startswith("  ")}
    assert res.exit_code == 1, res.output
    # this origin ignores ranges: what was in flight at the 64 KiB cap arrives as well
    alive = lines["alive"].split()
    assert alive[:4] == ["ok", "alive", "HTTP", "200"] and alive[5] == "B", res.output
    assert 65_536 <= int(alive[4]) <= 200_000, res.output
    # this origin offers no HTTP/3 (no Alt-Svc): the QUIC fetch http3 = true asks for is moot
    assert "no HTTP/3 offer" in lines["alive"] and "HTTP/3" not in lines["ctl"]
    assert lines["ctl"].split()[:4] == ["ok", "ctl", "HTTP", "200"]
    assert "DEAD tiny  HTTP 200  300 B" in lines["tiny"] and "placeholder" in lines["tiny"]
    assert "DEAD gone  HTTP 404" in lines["gone"]
    assert "DEAD refused  connection_refused" in lines["refused"]
    assert res.output.splitlines()[-1] == "2 of 5 URLs usable; not usable: tiny, gone, refused"
    # the origin saw small requests: the cap as a Range
    ranges = [r["headers"].get("range") for r in world["origin"].seen.requests
              if r["path"] == "/bytes/200000"]
    assert ranges and set(ranges) == {"bytes=0-65535"}


def test_targets_check_of_a_bad_list_exits_2_before_fetching(tmp_path: Path) -> None:
    bad = _pack(tmp_path, 'description = "x"\nservice = "tiktok"')
    res = CliRunner().invoke(main, ["targets", "check", "--targets", str(bad)])
    assert res.exit_code == 2 and "service 'tiktok'" in res.output


def test_service_names_are_labels_not_substrings() -> None:
    assert service_of("rr1---sn-4g5e6nsz.googlevideo.com") == "youtube"
    assert service_of("Static.xx.FBCDN.net.") == "facebook"
    assert service_of("t.co") == "twitter"
    assert not any(is_service_name(n) for n in ["notyoutube.com", "youtube.com.example",
                                                 "googlevideo.co", "", None])
