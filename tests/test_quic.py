"""HTTP/3 over QUIC on loopback: real UDP sockets, aioquic at both ends, the test CA.

The probe's QUIC fetch against `probe serve`'s HTTP/3 side: samples and the byte
cap, any SNI, a handshake nobody answers, the server's Alt-Svc and --no-http3,
an upload, and `probe run --http3` (and `http3 = true`) into QUIC rows that OONI's
models parse.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aioquic.asyncio import connect, serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from oonidata.models.dataformats import HTTPTransaction, NetworkEvent, TLSHandshake

from probe import targets
from probe.lab.ca import CertificateAuthority
from probe.measure import quic
from probe.measure.clock import Clock
from probe.measure.keys import TestKeys
from probe.measure.limits import Limits
from probe.records import TlsHandshake, Transfer
from probe.server.app import Server
from probe.server.config import ServerConfig
from tests.ooni_check import ooni_errors
from tests.probe_world import read_csv, run_probe

NAMES = ["pbs.twimg.com", "images.control.test"]


@pytest.fixture(scope="module")
def issued(test_ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory):
    return test_ca.issue(NAMES, out_dir=tmp_path_factory.mktemp("h3-cert"))


@pytest.fixture(scope="module")
def served(issued, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`probe serve` in-process: TLS on a TCP port, HTTP/3 on the same UDP port."""
    log = tmp_path_factory.mktemp("h3-serve") / "server.jsonl"
    server = Server(ServerConfig(listen=[("127.0.0.1", 0)], cert=issued.cert, key=issued.key,
                                 log=log))
    server.start()
    yield server
    server.stop()


def port_of(server: Server) -> int:
    return server.addresses[0][1]


def fetch(server_port: int, ca: Path, path: str, limits: Limits | None = None,
          sni: str | None = None, host: str = "pbs.twimg.com") -> tuple[dict, TestKeys, float]:
    keys = TestKeys()
    started = time.monotonic()
    record = quic.fetch(keys, Clock(), quic.H3Ask(
        url=f"https://{host}:{server_port}{path}", address="127.0.0.1", sni=sni,
        ca_bundle=ca, limits=limits or Limits(), transfer_id="m-1"))
    return record, keys, time.monotonic() - started


def ooni_parses(keys: TestKeys) -> None:
    for h in keys.tls_handshakes:
        TLSHandshake.from_dict(h)
    for r in keys.requests:
        HTTPTransaction.from_dict(r)
    for e in keys.network_events:
        NetworkEvent.from_dict(e)


def test_h3_fetch_samples_the_transfer_and_holds_the_byte_cap(served, ca_bundle) -> None:
    record, keys, _ = fetch(port_of(served), ca_bundle, "/bytes?n=2000000",
                            Limits(max_bytes=300_000))
    assert record["transport"] == "quic" and record["status_code"] == 206
    assert record["bytes"] == 300_000 and record["stopped_by"] == "max_bytes"
    assert record["failure"] is None and record["goodput_kbps"] > 0
    assert record["wire_bytes"] >= 300_000  # UDP payloads: QUIC and HTTP/3 framing too
    counts = [n for _, n in record["samples"]]
    times = [t for t, _ in record["samples"]]
    assert counts == sorted(counts) and times == sorted(times) and counts[-1] == 300_000
    (hs,) = keys.tls_handshakes
    assert hs["network"] == "udp" and hs["transport"] == "quic" and hs["verified"] is True
    assert hs["negotiated_protocol"] == "h3" and hs["tls_version"] == "TLSv1.3"
    assert hs["cipher_suite"].startswith("TLS_") and hs["handshake_ms"] > 0
    assert hs["server_name"] == "pbs.twimg.com" and hs["sni_sent"] is True
    assert "pbs.twimg.com" in hs["certificates"][0]["sans"]
    assert keys.requests[0]["request"]["x_transport"] == "quic"
    assert {e["proto"] for e in keys.network_events} == {"udp"}
    ooni_parses(keys)


def test_a_whole_small_object_completes(served, ca_bundle) -> None:
    record, _, _ = fetch(port_of(served), ca_bundle, "/bytes?n=50000")
    assert record["stopped_by"] == "complete" and record["bytes"] == 50_000
    assert record["status_code"] == 206  # the cap's Range, answered whole


def test_any_sni_is_accepted_and_none_at_all(served, ca_bundle) -> None:
    record, keys, _ = fetch(port_of(served), ca_bundle, "/bytes?n=1000", sni="unknown.test")
    (hs,) = keys.tls_handshakes
    # The server completed the handshake for a name it has no certificate for: the probe
    # saw its chain and refused it, as over TCP.
    assert hs["negotiated_protocol"] == "h3" and hs["peer_certificates"]
    assert hs["failure"] == "ssl_invalid_hostname" and record["failure"] == "ssl_invalid_hostname"
    assert record["status_code"] is None and record["stopped_by"] == "error"
    record, keys, _ = fetch(port_of(served), ca_bundle, "/bytes?n=1000", sni="")
    assert keys.tls_handshakes[0]["sni_sent"] is False
    assert record["bytes"] == 1000 and record["failure"] is None


def test_a_silent_udp_port_is_a_quick_handshake_timeout(ca_bundle) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        record, keys, took = fetch(silent.getsockname()[1], ca_bundle, "/bytes?n=1000",
                                   Limits(connect_timeout=0.5))
    assert took < 3
    assert keys.tls_handshakes[0]["failure"] == "generic_timeout_error"
    assert record["failure"] == "generic_timeout_error" and record["stopped_by"] == "error"
    assert record["duration_s"] is None and record["samples"] == []
    ooni_parses(keys)


@pytest.fixture
def mute_server(issued) -> Iterator[int]:
    """A QUIC server that completes handshakes and then answers nothing: its UDP port."""
    loop = asyncio.new_event_loop()
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    config.load_cert_chain(issued.cert, issued.key)
    held: list = []  # the streams' writers, kept open: nothing ends a request stream
    server = loop.run_until_complete(serve("127.0.0.1", 0, configuration=config,
                                           stream_handler=lambda r, w: held.append(w)))
    port = server._transport.get_extra_info("sockname")[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield port
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_a_silent_connection_after_the_handshake_is_an_idle_timeout(mute_server,
                                                                    ca_bundle) -> None:
    record, keys, took = fetch(mute_server, ca_bundle, "/bytes?n=1000",
                               Limits(read_timeout=0.5))
    assert keys.tls_handshakes[0]["failure"] is None and keys.tls_handshakes[0]["verified"]
    assert record["stopped_by"] == "timeout" and record["failure"] == "generic_timeout_error"
    assert record["status_code"] is None and took < 3
    ooni_parses(keys)


def test_a_stream_ended_without_a_response_is_an_eof(issued, ca_bundle) -> None:
    loop = asyncio.new_event_loop()
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    config.load_cert_chain(issued.cert, issued.key)
    server = loop.run_until_complete(serve(  # every request stream is ended at once, empty
        "127.0.0.1", 0, configuration=config, stream_handler=lambda r, w: w.write_eof()))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        record, _, _ = fetch(server._transport.get_extra_info("sockname")[1], ca_bundle,
                             "/bytes?n=1000")
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert record["stopped_by"] == "error" and record["failure"] == "eof_error"


def test_an_untrusted_chain_is_refused_before_any_request(served, foreign_ca) -> None:
    record, keys, _ = fetch(port_of(served), foreign_ca.cert_path, "/bytes?n=1000")
    assert keys.tls_handshakes[0]["failure"] == "ssl_unknown_authority"
    assert record["status_code"] is None and not keys.requests[0]["response"]


def test_tcp_responses_advertise_http3_on_the_same_port(served, ca_bundle) -> None:
    port = port_of(served)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_bundle))) as client:
        response = client.get(f"https://127.0.0.1:{port}/bytes?n=10",
                              headers={"Host": "pbs.twimg.com"},
                              extensions={"sni_hostname": "pbs.twimg.com"})
    assert response.headers["alt-svc"] == f'h3=":{port}"; ma=86400'


def test_no_http3_serves_no_udp_and_advertises_nothing(issued, ca_bundle, tmp_path) -> None:
    config = ServerConfig(listen=[("127.0.0.1", 0)], cert=issued.cert, key=issued.key,
                          log=tmp_path / "log.jsonl", http3=False)
    with Server(config) as server:
        port = port_of(server)
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_bundle))) as client:
            response = client.get(f"https://127.0.0.1:{port}/bytes?n=10",
                                  extensions={"sni_hostname": "pbs.twimg.com"})
        assert response.status_code == 200 and "alt-svc" not in response.headers
        record, _, _ = fetch(port, ca_bundle, "/bytes?n=10", Limits(connect_timeout=0.5))
    assert record["failure"] == "generic_timeout_error"


class _Uploader(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.status: int | None = None
        self.body = b""
        self.done = asyncio.Event()

    def quic_event_received(self, event) -> None:
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self.status = int(dict(h3_event.headers)[b":status"])
            elif isinstance(h3_event, DataReceived):
                self.body += h3_event.data
                if h3_event.stream_ended:
                    self.done.set()


def test_upload_over_http3_is_counted_and_sunk(served, ca_bundle) -> None:
    payload = b"x" * 200_000

    async def post() -> _Uploader:
        config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                                   server_name="pbs.twimg.com")
        config.load_verify_locations(str(ca_bundle))
        async with connect("127.0.0.1", port_of(served), configuration=config,
                           create_protocol=_Uploader) as client:
            assert isinstance(client, _Uploader)
            stream = client._quic.get_next_available_stream_id()
            client.h3.send_headers(stream, [
                (b":method", b"POST"), (b":scheme", b"https"),
                (b":authority", b"pbs.twimg.com"), (b":path", b"/upload")])
            client.h3.send_data(stream, payload, end_stream=True)
            client.transmit()
            await asyncio.wait_for(client.done.wait(), 10)
            return client

    client = asyncio.run(post())
    answer = json.loads(client.body)
    assert client.status == 200 and answer["bytes"] == len(payload)
    assert answer["tcp_info"] is None and answer["duration_s"] >= 0


TARGETS = """
[[target]]
name = "tw-image"
url = "https://pbs.twimg.com:PORT/bytes?n=200000"
family = "twitter"
kind = "image"
pair = "ctl-image"
HTTP3

[[target]]
name = "ctl-image"
url = "https://images.control.test:PORT/bytes?n=200000"
family = "control"
kind = "image"
"""


def run_against(world: dict, served: Server, tmp_path: Path, body: str,
                *extra: str) -> tuple[Path, list[dict]]:
    targets = tmp_path / "targets.toml"
    targets.write_text(body.replace("PORT", str(port_of(served))))
    res = run_probe(world, targets, tmp_path / "out", "--quiet", *extra)
    assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip().splitlines()[-1])
    lines = [json.loads(x) for x in (folder / "measurements.jsonl").read_text().splitlines()]
    for m in lines:
        assert ooni_errors(m) == [], m["annotations"]
    return folder, lines


def test_run_http3_adds_a_quic_measurement_per_https_target(world, served, tmp_path) -> None:
    folder, lines = run_against(world, served, tmp_path, TARGETS.replace("HTTP3", ""),
                                "--http3")
    assert [(m["test_keys"]["target"]["name"], m["annotations"]["experiment"])
            for m in lines] == [("tw-image", "target"), ("tw-image", "target-h3"),
                                ("ctl-image", "target"), ("ctl-image", "target-h3")]
    transfers = read_csv(folder, "transfers.csv")
    over_quic = [t for t in transfers if t["experiment"] == "target-h3"]
    assert len(over_quic) == 2 and {t["transport"] for t in over_quic} == {"quic"}
    assert all(int(t["bytes"]) == 200_000 and t["failure"] == "" for t in over_quic)
    assert all(float(t["goodput_kbps"]) > 0 for t in over_quic)
    assert {t["transport"] for t in transfers if t["experiment"] == "target"} == {"tcp"}
    # probe serve offers HTTP/3 in its TCP answers (Alt-Svc); QUIC answers have no such cell
    assert {t["alt_svc_h3"] for t in transfers if t["experiment"] == "target"} == {"true"}
    assert {t["alt_svc_h3"] for t in over_quic} == {""}
    tls = read_csv(folder, "tls.csv")
    assert sorted(r["transport"] for r in tls) == ["quic", "quic", "tcp", "tcp"]
    assert {r["alpn"] for r in tls if r["transport"] == "quic"} == {"h3"}
    quic_ids = {t["transfer_id"] for t in over_quic}
    assert {s["transfer_id"] for s in read_csv(folder, "samples.csv")} >= quic_ids
    assert json.loads((folder / "run.json").read_text())["options"]["http3"] is True


def test_http3_true_in_the_list_adds_that_target_only(world, served, tmp_path) -> None:
    _, lines = run_against(world, served, tmp_path, TARGETS.replace("HTTP3", "http3 = true"))
    assert [(m["test_keys"]["target"]["name"], m["annotations"]["experiment"])
            for m in lines] == [("tw-image", "target"), ("tw-image", "target-h3"),
                                ("ctl-image", "target")]


def test_rows_without_a_transport_read_as_tcp() -> None:
    for record in (Transfer, TlsHandshake):
        (cell,) = [c for c in record.csv_columns() if c.name == "transport"]
        assert cell.get({}) == "tcp" and cell.get({"transport": "quic"}) == "quic"


@pytest.mark.parametrize("line,message", [
    ('url = "https://a.test/x"\nhttp3 = "yes"', "http3 must be true or false, not a string"),
    ('url = "http://a.test/x"\nhttp3 = true', "http3 is only meaningful for https URLs"),
])
def test_a_bad_http3_key_names_its_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'[[target]]\nname = "a"\nfamily = "f"\nkind = "image"\n{line}\n')
    with pytest.raises(targets.TargetError) as error:
        targets.load([path])
    assert error.value.line == 6 and error.value.message == message


def test_http3_defaults_to_false(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[[target]]\nname = "a"\nurl = "https://a.test/"\nfamily = "f"\n'
                    'kind = "image"\n')
    assert targets.load([path])[0].http3 is False


def test_the_summary_shows_the_quic_fetch_as_a_row_of_its_own(world, served,
                                                                tmp_path) -> None:
    targets_file = tmp_path / "targets.toml"
    targets_file.write_text(TARGETS.replace("HTTP3", "http3 = true")
                            .replace("PORT", str(port_of(served))))
    res = run_probe(world, targets_file, tmp_path / "out")
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if line.startswith("│ tw-image")]
    assert len(rows) == 2 and sum("(HTTP/3)" in row for row in rows) == 1
    assert all("200,000" in row for row in rows)  # one transfer each, not both summed


def test_run_http3_with_a_server_runs_the_quic_experiments(world, served, tmp_path) -> None:
    """--http3 with --server: sni-h3 and transport join the default experiments, each
    variant a valid OONI measurement, over QUIC where it says so, judged per transport."""
    from analysis.verdicts import verdicts

    server = f"https://images.control.test:{port_of(served)}"
    folder, lines = run_against(world, served, tmp_path, TARGETS.replace("HTTP3", ""),
                                "--http3", "--server", server, "--max-bytes", "200000")
    seen = {(m["annotations"]["experiment"], m["test_keys"]["target"]["name"]) for m in lines}
    assert {e for e, _ in seen} == {"target", "target-h3", "sni", "split", "upload", "sni-h3",
                                    "transport"}
    assert {("transport", "transport-tcp"), ("transport", "transport-quic"),
            ("sni-h3", "sni-h3-pbs.twimg.com"), ("sni-h3", "sni-h3-none")} <= seen
    transfers = read_csv(folder, "transfers.csv")
    by_experiment: dict[str, set[str]] = {}
    for t in transfers:
        by_experiment.setdefault(t["experiment"], set()).add(t["transport"])
        assert t["failure"] == "", t
    assert by_experiment["sni-h3"] == {"quic"} and by_experiment["transport"] == {"tcp", "quic"}
    rows = verdicts([folder]).set_index(["experiment", "target"])
    assert rows.loc[("sni-h3", "sni-h3-pbs.twimg.com"), "transport"] == "quic"
    assert rows.loc[("transport", "transport-quic"), "transport"] == "quic"
    assert ("transport", "transport-tcp") not in rows.index  # the baseline
