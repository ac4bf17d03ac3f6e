"""`probe collect`'s bounds against a real client on loopback: the request rate per
address and per network, the open reports in all and per network, and the limiter's
memory. 127.0.0.0/8 is all loopback, so 127.0.0.2 is a second client of the same /24
and 127.0.1.1 one of another."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from probe.collection import protocol
from probe.collection.client import Collector as Client
from probe.collection.ratelimit import NETWORK_FACTOR, RateLimiter
from probe.collection.store import OpenLimits, Store, TooManyOpen
from tests.test_collect import measurement, meta, running

pytestmark = pytest.mark.timeout(60)
collecting = contextlib.contextmanager(running)


@contextlib.contextmanager
def client_from(url: str, source: str) -> Iterator[httpx.Client]:
    """A client whose connections leave from the loopback address `source`."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=url, transport=transport, timeout=10) as client:
        yield client


def open_from(client: httpx.Client) -> httpx.Response:
    return client.post(protocol.OPEN_PATH, json=protocol.open_body(measurement()))


def flood(client: httpx.Client, most: int) -> list[httpx.Response]:
    """Open reports until the first refusal, at most `most` requests."""
    answers: list[httpx.Response] = []
    while len(answers) < most and (not answers or answers[-1].status_code == 200):
        answers.append(open_from(client))
    return answers


def test_a_flood_from_one_address_gets_429_after_its_burst_and_its_neighbour_is_served(
        tmp_path: Path) -> None:
    with collecting(tmp_path, plain_http=True, rate_limit=2.0, rate_burst=5) as (_, url), \
            client_from(url, "127.0.0.1") as flooder, client_from(url, "127.0.0.2") as other:
        answers = flood(flooder, 20)
        refused = answers[-1]
        assert refused.status_code == 429 and len(answers) >= 6
        assert refused.headers["Retry-After"] == "1"
        assert "too many requests" in refused.json()["error"]
        assert open_from(other).status_code == 200
        time.sleep(0.6)  # half a second refills one token at 2 a second
        assert open_from(flooder).status_code == 200
    lines = [json.loads(x) for x in (tmp_path / "collect.log").read_text().splitlines()]
    limited = [x for x in lines if x["status"] == 429]
    assert limited and limited[0]["path"] == "/report" and "client" not in limited[0]
    assert "127.0.0." not in (tmp_path / "collect.log").read_text()


def test_a_network_is_held_to_a_few_addresses_worth_and_another_network_is_served(
        tmp_path: Path) -> None:
    burst = 2
    with collecting(tmp_path, plain_http=True, rate_limit=0.1, rate_burst=burst) as (_, url):
        served = 0
        for host in range(1, NETWORK_FACTOR + 3):
            with client_from(url, f"127.0.0.{host}") as client:
                served += sum(r.status_code == 200 for r in flood(client, burst + 1))
        assert served == burst * NETWORK_FACTOR
        with client_from(url, "127.0.1.1") as elsewhere:
            assert open_from(elsewhere).status_code == 200


def test_probe_submits_client_waits_as_long_as_retry_after_asks(tmp_path: Path) -> None:
    with collecting(tmp_path, plain_http=True, rate_limit=1.0, rate_burst=1) as (_, url):
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            time.sleep(seconds)

        with Client(url, delays=(0.0,), sleep=sleep) as client:
            client.open(protocol.open_body(measurement()))
            client.open(protocol.open_body(measurement()))  # 429, then served a second later
        assert slept == [1.0]


def test_no_rate_limit_when_it_is_0(tmp_path: Path) -> None:
    with collecting(tmp_path, plain_http=True, rate_limit=0, rate_burst=1) as (collector, url), \
            client_from(url, "127.0.0.1") as client:
        assert collector.limiter is None
        assert all(open_from(client).status_code == 200 for _ in range(5))


def test_the_open_reports_cap_refuses_with_503_until_an_idle_report_is_closed(
        tmp_path: Path) -> None:
    with collecting(tmp_path, plain_http=True, max_open_reports=2,
                    idle_close=1.0) as (collector, url), \
            client_from(url, "127.0.0.1") as client:
        first, second = (open_from(client).json()["report_id"] for _ in range(2))
        refused = open_from(client)
        assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()
        assert refused.json() == {"error": "the collector has too many reports open; "
                                           "retry later"}
        time.sleep(1.2)  # both idle past idle_close: closed before the next is refused
        assert open_from(client).status_code == 200
        assert {meta(collector, r)["close_reason"] for r in (first, second)} == {"idle"}


def test_a_network_may_hold_only_so_many_open_reports_and_closing_one_frees_it(
        tmp_path: Path) -> None:
    with collecting(tmp_path, plain_http=True, max_open_reports_per_client=2) as (_, url), \
            client_from(url, "127.0.0.1") as one, client_from(url, "127.0.0.2") as neighbour, \
            client_from(url, "127.0.1.1") as elsewhere:
        first = open_from(one).json()["report_id"]
        assert open_from(one).status_code == 200
        refused = open_from(neighbour)  # the same /24
        assert refused.status_code == 429 and "Retry-After" in refused.headers
        assert "too many reports open from this network" in refused.json()["error"]
        assert open_from(elsewhere).status_code == 200
        assert one.post(protocol.close_path(first)).status_code == 200
        assert open_from(neighbour).status_code == 200


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limiter_refuses_after_the_burst_says_how_long_to_wait_and_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10.0, burst=3, clock=clock)
    assert [limiter.admit("192.0.2.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.admit("192.0.2.1") == pytest.approx(0.1)
    clock.now += 0.1
    assert limiter.admit("192.0.2.1") == 0.0
    assert limiter.admit("::ffff:192.0.2.1") > 0  # IPv4-mapped is the same address
    assert limiter.admit("192.0.2.2") == 0.0


def test_the_limiter_counts_an_ipv6_slash_64_as_one_network() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    served = sum(limiter.admit(f"2001:db8::{n:x}") == 0 for n in range(1, 20))
    assert served == NETWORK_FACTOR
    assert limiter.admit("2001:db8:0:1::1") == 0.0


def test_the_limiters_memory_is_bounded_and_idle_clients_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10.0, burst=5, max_tracked=10, clock=clock)
    for n in range(1000):
        limiter.admit(f"10.{n // 256}.{n % 256}.1")
        assert len(limiter) <= 10
    clock.now += 5 / 10  # every bucket has refilled: nothing worth keeping
    limiter.admit("192.0.2.1")
    assert len(limiter) == 2  # the newcomer's address and network


def test_the_store_closes_idle_reports_before_refusing_and_counts_per_owner(
        tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path, idle_close=60.0, clock=clock, limits=OpenLimits(3, 2))
    body = protocol.open_body(measurement())
    old = store.open(body, "192.0.2.0/24")
    clock.now += 30
    kept = store.open(body, "192.0.2.0/24")
    with pytest.raises(TooManyOpen) as refused:
        store.open(body, "192.0.2.0/24")
    assert refused.value.per_client
    store.open(body, None)  # a report taken back after a restart: no owner
    with pytest.raises(TooManyOpen) as refused:
        store.open(body, "198.51.100.0/24")
    assert not refused.value.per_client
    clock.now += 31  # `old` idle past the limit, `kept` not yet
    store.open(body, "198.51.100.0/24")
    assert json.loads((store.reports / old / "meta.json").read_text())["close_reason"] == "idle"
    store.check_open(kept)
    store.close(kept)
    store.open(body, "192.0.2.0/24")  # a closed report frees its owner's slot
