"""No field of a lab run's results contains the client's own address (issue 6).

The run includes a target that names the client's own address, so the address
really reaches the records (TCP connect, transfer) and must be scrubbed there;
the whole result folder is then searched for it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from probe.lab import running_lab
from tests.conftest import needs_root

pytestmark = [pytest.mark.root, pytest.mark.lab]

VENV_PROBE = [str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"), "-m",
              "probe"]
LAB_NETS = ["--allow-net", "203.0.113.0/24", "--allow-net", "198.51.100.0/24",
            "--allow-net", "192.0.2.0/24"]


@needs_root
@pytest.mark.timeout(180)
def test_lab_results_never_contain_the_client_address(tmp_path: Path) -> None:
    with running_lab(tmp_path / "lab", prefix="tpp-") as lab:
        state = lab.state
        client = state["client"]["address"]
        targets = tmp_path / "targets.toml"
        targets.write_text(f"""
[[target]]
name = "tw-image"
url = "https://pbs.twimg.com/media/img/photo.jpg"
family = "twitter"
kind = "image"

[[target]]
name = "own-address"
url = "https://{client}:9/x.jpg"
family = "control"
kind = "image"
""")
        res = lab.exec(VENV_PROBE + ["run", "--yes", "--targets", str(targets), "--ca-bundle",
                                     state["ca"]["cert"], *LAB_NETS, "--out",
                                     str(tmp_path / "out"), "--quiet", "--max-seconds", "3"],
                       timeout=120)
        assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip().splitlines()[-1])
    pattern = re.compile(rf"(?<![0-9.]){re.escape(client)}(?![0-9])")
    texts = {p.name: p.read_text() for p in folder.iterdir() if p.is_file()}
    assert {"run.json", "measurements.jsonl", "transfers.csv", "tcp.csv"} <= set(texts)
    for name, text in texts.items():
        assert not pattern.search(text), f"{name} contains the client address {client}"
    assert "[scrubbed]" in texts["measurements.jsonl"]  # the address did reach the records
    assert "[scrubbed]" in texts["tcp.csv"]


@needs_root
@pytest.mark.timeout(180)
def test_asn_from_a_local_database_without_the_address(tmp_path: Path) -> None:
    db = tmp_path / "ip2asn.tsv"
    db.write_text("# a user's own database, iptoasn.com format\n"
                  "10.0.0.0\t10.255.255.255\t0\tNone\tNot routed\n"
                  "192.0.2.0\t192.0.2.255\t64500\tZZ\tLAB-NET Example\n")
    with running_lab(tmp_path / "lab", prefix="tpq-") as lab:
        state = lab.state
        client = state["client"]["address"]
        targets = tmp_path / "targets.toml"
        targets.write_text('[[target]]\nname = "tw-image"\n'
                           'url = "https://pbs.twimg.com/media/img/photo.jpg"\n'
                           'family = "twitter"\nkind = "image"\n')
        res = lab.exec(VENV_PROBE + ["run", "--yes", "--targets", str(targets), "--ca-bundle",
                                     state["ca"]["cert"], *LAB_NETS, "--asn-db", str(db),
                                     "--out", str(tmp_path / "out"), "--quiet",
                                     "--max-seconds", "3"], timeout=120)
        assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip().splitlines()[-1])
    run = json.loads((folder / "run.json").read_text())
    assert run["asn"] == "AS64500" and run["network"]["cc"] == "ZZ"
    m = json.loads((folder / "measurements.jsonl").read_text().splitlines()[0])
    assert (m["probe_asn"], m["probe_cc"]) == ("AS64500", "ZZ")
    for p in folder.iterdir():
        assert client not in p.read_text(), p.name


def test_bad_asn_database_names_file_and_line(tmp_path: Path) -> None:
    db = tmp_path / "bad.tsv"
    db.write_text("1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\nnot-an-ip\t1.1.1.1\t1\tUS\tX\n")
    targets = tmp_path / "targets.toml"
    targets.write_text('[[target]]\nname = "a"\nurl = "https://a.test/"\nfamily = "twitter"\n'
                       'kind = "image"\n')
    res = subprocess.run(VENV_PROBE + ["run", "--targets", str(targets), "--asn-db", str(db),
                                       "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert f"{db}:2:" in res.stderr
    assert not (tmp_path / "o").exists()


def test_a_corrupt_gzip_asn_database_is_a_clear_error(tmp_path: Path) -> None:
    from probe.operate.netinfo import AsnDb, AsnDbError

    db = tmp_path / "asn.tsv.gz"
    db.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"\xff" * 64)  # a gzip header, then junk
    with pytest.raises(AsnDbError, match="cannot read"):
        AsnDb(db)
