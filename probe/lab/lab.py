"""The lab: build, configure, use and remove the censored network.

Everything the lab creates is either inside a namespace named with its prefix
(links, addresses, routes, rules, qdiscs, processes) or in `/etc/netns/<ns>`,
so `down` can remove it all from the names alone, also after a crash. The
state file (`state.json` in the lab folder) tells other tools where things are.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from probe.results import atomic

from . import media, scenarios, system, topology
from .ca import CertificateAuthority
from .system import LabError
from .targets import targets_toml

DEFAULT_DIR = Path("/run/probe-lab")
CONNTRACK_IDLE = "net.netfilter.nf_conntrack_tcp_timeout_established"
STATE_VERSION = 1


class Lab:
    """One lab instance: a folder (certificates, media, logs, state) and a namespace prefix."""

    def __init__(self, dir: Path | str = DEFAULT_DIR, prefix: str = topology.DEFAULT_PREFIX):
        if not _PREFIX.fullmatch(prefix):
            raise LabError(f"bad namespace prefix {prefix!r}: use 1-32 letters, digits, "
                           "'_', '.' or '-', starting with a letter or digit")
        self.dir = Path(dir).resolve()
        self.names = topology.Names(prefix)
        self.state_path = self.dir / "state.json"
        self.client_state = self.dir / "client-state"  # the lab client's PROBE_STATE_DIR

    # -- public API -----------------------------------------------------------------

    @property
    def state(self) -> dict:
        """The state file's content ({} when the lab is down, or the folder holds the
        state of a lab with another prefix: that one is not ours to touch)."""
        state = self._stored()
        return state if state.get("prefix", self.names.prefix) == self.names.prefix else {}

    def _foreign_state(self) -> str | None:
        """The prefix of another lab whose state this folder holds, if any."""
        prefix = self._stored().get("prefix")
        return prefix if prefix and prefix != self.names.prefix else None

    def _stored(self) -> dict:
        """The folder's state.json, whichever lab wrote it ({} if none or unreadable)."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def up(self) -> dict:
        """Build the lab from scratch (removing any previous one with this prefix)."""
        system.check_prerequisites()
        other = self._foreign_state()
        if other:
            raise LabError(f"{self.dir} holds the lab with prefix {other!r}; give this one "
                           "its own --dir")
        self.down()
        started = time.monotonic()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._build_network()
            state = self._prepare_files()
            self._write_state(state)
            self._start_servers(state)
            state["up_seconds"] = round(time.monotonic() - started, 3)
            self._write_state(state)
            self.scenario("clean")
            return self.state
        except BaseException:
            self.down()
            raise

    def scenario(
        self, name: str, rate_kbps: float = scenarios.DEFAULT_RATE_KBPS,
        hop: int = scenarios.DEFAULT_HOP, link_kbps: float | None = None,
        tuning: scenarios.Tuning | None = None, services: Sequence[str] = ("twitter",),
    ) -> dict:
        """Replace the active interference with scenario `name` at router `hop`; with
        `link_kbps`, also shape all traffic at the access router (scenarios.link_hop),
        so a throttle can be set relative to the network's own speed. `tuning` sets the
        zoo's knobs (burst, buffer, late start, loss); `services` whose names the
        SNI-keyed scenarios act on (Twitter's, YouTube's)."""
        state = self._require_up()
        if name not in scenarios.SCENARIOS:
            raise LabError(f"unknown scenario {name!r}; known: {', '.join(scenarios.SCENARIOS)}")
        if not 1 <= hop <= topology.ROUTERS:
            raise LabError(f"--hop must be 1..{topology.ROUTERS}, got {hop}")
        if not rate_kbps > 0:
            raise LabError(f"--rate must be positive, got {rate_kbps}")
        if link_kbps is not None and not link_kbps > 0:
            raise LabError(f"--link-rate must be positive, got {link_kbps}")
        unknown = sorted(set(services) - set(scenarios.lab_services()))
        if unknown or not services:
            raise LabError(f"--service must be one of {', '.join(scenarios.lab_services())}, "
                           f"got {', '.join(unknown) or 'none'}")
        tuning = tuning or scenarios.Tuning()
        knobs = tuning.resolved(name)
        for knob, value in knobs.items():
            if not value >= 0 or (knob == "loss_pct" and value > 100):
                raise LabError(f"{knob} out of range: {value}")
        self._clear_scenario(state)
        router = self.names.router(hop)
        west = topology.router_addresses(hop)["west"]
        link_hop = scenarios.link_hop(hop)
        try:
            self._apply(state, scenarios.plan(name, rate_kbps, west, tuning, services),
                        router, west)
            if link_kbps is not None:
                system.ns_run(self.names.router(link_hop), ["tc", "-batch", "-"],
                              input="\n".join(scenarios.link(link_kbps)) + "\n")
        except BaseException:
            self._clear_scenario(state)  # never leave half a scenario behind
            raise
        state["scenario"] = (
            {"name": "clean", "rate_kbps": None, "hop": None} if name == "clean"
            else {"name": name, "hop": hop, "router": router, "router_address": west,
                  "rate_kbps": float(rate_kbps) if name in scenarios.RATE_SCENARIOS else None,
                  **knobs}
        )
        if name in scenarios.SERVICE_SCENARIOS:
            state["scenario"]["services"] = list(services)
        if link_kbps is not None:
            state["scenario"].update(link_kbps=float(link_kbps), link_hop=link_hop,
                                     link_router=self.names.router(link_hop))
        self._write_state(state)
        return state

    def _apply(self, state: dict, plan: scenarios.Plan, router: str, west: str) -> None:
        system.ns_run(router, [system.IPTABLES_RESTORE], input=plan.iptables)
        if plan.tc:
            system.ns_run(router, ["tc", "-batch", "-"], input="\n".join(plan.tc) + "\n")
        if plan.poison_dns:
            self._start(state, "poison-dns", router, self._dns_argv(f"{west}:53", "zone-poison"),
                        udp={f"{west}:53"}, scenario=True)
        if plan.mitm:
            listen = f"{west}:{topology.MITM_PORT}"
            self._start(state, "mitm", router, self._serve_argv([listen], "mitm"),
                        tcp={listen}, scenario=True)
        if plan.quic_domains:
            argv = [sys.executable, "-m", "probe.lab.quic_classifier",
                    "--queue", str(scenarios.QUIC_QUEUE), "--mark", scenarios.MARK,
                    "--exempt", scenarios.EXEMPT]
            for domain in plan.quic_domains:
                argv += ["--domain", domain]
            self._start(state, "quic-classifier", router, argv, queue=scenarios.QUIC_QUEUE,
                        scenario=True)

    def exec(
        self, cmd: Sequence[str], timeout: float | None = None, capture: bool = True,
        input: str | None = None, text: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run `cmd` in the client namespace (its resolv.conf points at the lab DNS).

        The lab's client is another machine: a probe run there keeps its consent, run
        lock and data ledger in `<dir>/client-state` (PROBE_STATE_DIR), not in the
        home of the user who runs the lab, unless PROBE_STATE_DIR is set already."""
        self._require_up()
        env = dict(os.environ)
        env.setdefault("PROBE_STATE_DIR", str(self.client_state))
        return subprocess.run(
            system.in_ns(self.names.client, list(cmd)), capture_output=capture, text=text,
            timeout=timeout, input=input, check=False, env=env,
        )

    def status(self) -> dict:
        """Namespaces present, processes (alive or not) and the active scenario."""
        state = self.state
        processes = [
            {**p, "alive": system.alive(p["pid"])} for p in state.get("processes", [])
        ]
        present = self._present()
        return {
            "up": bool(state) and set(self.names.chain) <= set(present),
            "dir": str(self.dir),
            "prefix": self.names.prefix,
            "namespaces": present,
            "processes": processes,
            "scenario": state.get("scenario"),
        }

    def _present(self) -> list[str]:
        """This lab's namespaces that exist: its exact names, never another lab's that
        merely start with the same letters (prefix `tpl-r` must not own `tpl-r1`)."""
        existing = set(system.namespaces(""))
        return [ns for ns in self.names.chain if ns in existing]

    def down(self) -> None:
        """Remove every namespace, process, rule and /etc/netns entry of this lab
        (idempotent; also after a crash, found by their names)."""
        owned = self._present()
        pids = [p for ns in owned for p in system.ns_pids(ns)]
        state = self.state
        pids += [p["pid"] for p in state.get("processes", []) if _is_ours(p)]
        system.kill(sorted(set(pids)))
        with system.netns_turn():
            for ns in owned:
                system.run(["ip", "netns", "del", ns], check=False)
        for ns in self.names.chain:
            shutil.rmtree(system.NETNS_ETC / ns, ignore_errors=True)
        if state:
            self.state_path.unlink(missing_ok=True)
        left = self._present()
        if left:
            raise LabError(f"could not remove namespaces: {', '.join(left)}")

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- building -------------------------------------------------------------------

    def _build_network(self) -> None:
        chain = self.names.chain
        with system.netns_turn():
            for ns in chain:
                system.run(["ip", "netns", "add", ns])
        for link in range(len(chain) - 1):
            west_ns, east_ns = chain[link], chain[link + 1]
            # Created directly inside the namespaces: no name clash in the root namespace.
            # gso_max_segs 1: one wire packet per skb, so tc and string matches see packets.
            system.run([
                "ip", "link", "add", "east", "netns", west_ns, "gso_max_segs", "1",
                "type", "veth", "peer", "name", "west", "netns", east_ns, "gso_max_segs", "1",
            ])
        for i, ns in enumerate(chain):
            cmds = ["link set lo up"]
            if i > 0:
                cmds += [f"addr add {topology.link_address(i - 1, 'east')}/30 dev west",
                         "link set west up"]
            if i < len(chain) - 1:
                cmds += [f"addr add {topology.link_address(i, 'west')}/30 dev east",
                         "link set east up"]
            cmds += self._routes(i)
            if ns == self.names.server:
                hosts = [h.address for h in topology.HOSTS]
                hosts += [topology.DNS_ADDRESS, topology.MEASURE_ADDRESS]
                cmds += [f"addr add {a}/32 dev lo" for a in hosts]
            system.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(cmds) + "\n")
            sysctls = ["net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000"]
            if ns in self.names.routers:
                sysctls += ["net.ipv4.ip_forward=1"]
            system.ns_run(ns, ["sysctl", "-qw", *sysctls])
            if ns in self.names.routers:
                # Idle flows lose their conntrack mark after 10 min, like the 2021 device's state.
                system.ns_run(ns, ["sysctl", "-qw", f"{CONNTRACK_IDLE}=600"], check=False)
        etc = system.NETNS_ETC / self.names.client
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(
            f"# probe lab: the lab DNS server\nnameserver {topology.DNS_ADDRESS}\n"
            "options timeout:2 attempts:2\n"
        )

    def _routes(self, i: int) -> list[str]:
        """Static routes of chain node i: link subnets west/east of it, default eastward."""
        last = topology.ROUTERS + 1
        cmds = []
        if i > 0:
            west_gw = topology.link_address(i - 1, "west")
            cmds += [f"route add {topology.link_subnet(k)} via {west_gw}" for k in range(i - 1)]
        if i < last:
            east_gw = topology.link_address(i, "east")
            cmds += [
                f"route add {topology.link_subnet(k)} via {east_gw}"
                for k in range(i + 1, topology.ROUTERS + 1)
            ]
            cmds.append(f"route add default via {east_gw}")
        return cmds

    def _prepare_files(self) -> dict:
        """CAs, certificates, media, zones and targets; return the state describing them."""
        ca = CertificateAuthority(self.dir / "ca", name="Probe Lab CA")
        foreign = CertificateAuthority(self.dir / "foreign-ca", name="Foreign Interceptor CA")
        names = [h.name for h in topology.HOSTS] + [topology.MEASURE_NAME]
        certs = self.dir / "certs"
        for name in names:
            if not (certs / f"{name}.pem").exists():
                ca.issue([name], out_dir=certs)
        default = ca.issue(names, out_dir=self.dir / "default-cert", stem="lab")
        mitm = self.dir / "mitm-certs"
        for name in topology.TWITTER_NAMES:
            if not (mitm / f"{name}.pem").exists():
                foreign.issue([name], out_dir=mitm)
        foreign_default = foreign.issue(
            list(topology.TWITTER_NAMES), out_dir=self.dir / "mitm-default-cert", stem="mitm"
        )
        sizes = media.generate(self.dir / "media")
        (self.dir / "zone.json").write_text(json.dumps(topology.zone(), indent=1))
        (self.dir / "zone-poison.json").write_text(json.dumps(topology.zone(poison=True), indent=1))
        (self.dir / "targets.toml").write_text(targets_toml())
        (self.dir / "logs").mkdir(exist_ok=True)
        routers = []
        for hop, ns in enumerate(self.names.routers, start=1):
            routers.append({"hop": hop, "ns": ns, **topology.router_addresses(hop)})
        return {
            "version": STATE_VERSION,
            "dir": str(self.dir),
            "prefix": self.names.prefix,
            "iptables": system.IPTABLES,
            "namespaces": {
                "client": self.names.client, "routers": self.names.routers,
                "server": self.names.server,
            },
            "client": {"ns": self.names.client, "address": topology.CLIENT_ADDRESS,
                       "resolv_conf": str(system.NETNS_ETC / self.names.client / "resolv.conf")},
            "routers": routers,
            "server": {"ns": self.names.server, "address": topology.SERVER_LINK_ADDRESS},
            "hosts": {h.name: {"address": h.address, "family": h.family, "role": h.role}
                      for h in topology.HOSTS},
            "twitter_net": topology.TWITTER_NET,
            "allow_nets": [topology.TWITTER_NET, topology.CONTROL_NET, topology.LINK_NET],
            "dns": {"address": topology.DNS_ADDRESS, "port": 53,
                    "zone": str(self.dir / "zone.json"),
                    "poison_zone": str(self.dir / "zone-poison.json"),
                    "poison_address": topology.POISON_ADDRESS},
            "measure": {"name": topology.MEASURE_NAME, "address": topology.MEASURE_ADDRESS,
                        "port": 443, "url": f"https://{topology.MEASURE_NAME}/"},
            "ca": {"cert": str(ca.cert_path), "key": str(ca.key_path)},
            "foreign_ca": {"cert": str(foreign.cert_path), "key": str(foreign.key_path)},
            "certs": {"dir": str(certs), "default_cert": str(default.cert),
                      "default_key": str(default.key), "mitm_dir": str(mitm),
                      "mitm_default_cert": str(foreign_default.cert),
                      "mitm_default_key": str(foreign_default.key)},
            "media": {"dir": str(self.dir / "media"), "objects": sizes},
            "targets": str(self.dir / "targets.toml"),
            "logs": str(self.dir / "logs"),
            "processes": [],
            "scenario": {"name": "clean", "rate_kbps": None, "hop": None},
        }

    def _start_servers(self, state: dict) -> None:
        srv = self.names.server
        self._start(state, "dns", srv, self._dns_argv(f"{topology.DNS_ADDRESS}:53", "zone"),
                    udp={f"{topology.DNS_ADDRESS}:53"})
        origins = [f"{h.address}:{port}" for h in topology.HOSTS for port in (443, 80)]
        self._start(state, "origins", srv, self._serve_argv(origins, "lab"), tcp=set(origins))
        measure = [f"{topology.MEASURE_ADDRESS}:{port}" for port in (443, 80)]
        self._start(state, "measure", srv, self._serve_argv(measure, "lab"), tcp=set(measure))

    def _dns_argv(self, listen: str, zone: str) -> list[str]:
        return [sys.executable, "-m", "probe.lab.dns_server", "--listen", listen,
                "--zone", str(self.dir / f"{zone}.json")]

    def _serve_argv(self, listen: list[str], certs: str) -> list[str]:
        """`probe serve` for lab names ("lab") or as the interceptor ("mitm")."""
        if certs == "lab":
            cert_dir, default = self.dir / "certs", self.dir / "default-cert" / "lab"
        else:
            cert_dir, default = self.dir / "mitm-certs", self.dir / "mitm-default-cert" / "mitm"
        argv = [sys.executable, "-m", "probe.server"]
        for addr in listen:
            argv += ["--listen", addr]
        return argv + [
            "--cert", f"{default}.pem", "--key", f"{default}.key", "--cert-dir", str(cert_dir),
            "--media", str(self.dir / "media"),
        ]

    def _start(
        self, state: dict, name: str, ns: str, argv: list[str], tcp: Collection[str] = (),
        udp: Collection[str] = (), queue: int | None = None, scenario: bool = False,
    ) -> None:
        """Spawn a server, record it in the state at once, then wait until it listens
        (on `tcp`, `udp` addresses, or bound to NFQUEUE `queue`)."""
        logs = self.dir / "logs"
        if "probe.server" in argv:
            argv = [*argv, "--log", str(logs / f"{name}.jsonl")]
        out = logs / f"{name}.out"
        pid = system.spawn(ns, argv, out)
        state["processes"].append(
            {"name": name, "ns": ns, "pid": pid, "argv": argv, "log": str(out),
             "scenario": scenario}
        )
        self._write_state(state)
        if tcp:
            system.wait_listening(ns, "tcp", set(tcp), pid, out)
        if udp:
            system.wait_listening(ns, "udp", set(udp), pid, out)
        if queue is not None:
            system.wait_queue_bound(ns, queue, pid, out)

    def _clear_scenario(self, state: dict) -> None:
        """Remove rules, qdiscs and scenario processes from every router; state says clean."""
        stale = [p for p in state["processes"] if p.get("scenario")]
        system.kill([p["pid"] for p in stale if _is_ours(p)])
        state["processes"] = [p for p in state["processes"] if not p.get("scenario")]
        for ns in self.names.routers:
            system.ns_run(ns, [system.IPTABLES_RESTORE], input=scenarios.ruleset())
            tc = "".join(f"qdisc del dev {dev} root\n" for dev in ("west", "east"))
            system.ns_run(ns, ["tc", "-force", "-batch", "-"], input=tc, check=False)
        state["scenario"] = {"name": "clean", "rate_kbps": None, "hop": None}
        self._write_state(state)

    def _require_up(self) -> dict:
        state = self.state
        if not state:
            raise LabError(f"the lab is not up (no {self.state_path}); run `probe lab up`")
        return state

    def _write_state(self, state: dict) -> None:
        atomic.write_text(self.state_path, json.dumps(state, indent=1))


_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def _is_ours(process: dict) -> bool:
    """True if the recorded pid still runs the recorded command (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{process['pid']}/cmdline").read_bytes().split(b"\0")
    except (OSError, KeyError):
        return False
    return [c.decode(errors="replace") for c in cmdline if c] == process.get("argv")


@contextlib.contextmanager
def running_lab(
    dir: Path | str = DEFAULT_DIR, prefix: str = topology.DEFAULT_PREFIX
) -> Iterator[Lab]:
    """A lab that is up inside the block and always torn down after it (also on errors)."""
    lab = Lab(dir, prefix)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
