"""Kernel bindings: install/remove rate, and forwarding rate against routing.

Run as root from the repository root (about 20 s; it stops by itself and
removes the three namespaces it creates, also on failure)::

    .venv/bin/python benchmarks/kernel_bindings.py [--bindings 5000] \
        [--packets 1000000] [--senders 4]

1. Bindings installed and removed per second: ``--bindings`` two-leg
   bindings are installed, then removed, through one :class:`KernelNat`,
   all requested at once so that the worker coalesces them; each install
   and removal includes the exact-tuple conntrack deletes.
2. Packets per second through the edge, sender namespace to receiver
   namespace over the same two veth pairs: once routed (to the receiver's
   own address), once through a latched kernel binding (to the edge's core
   port).  ``--senders`` processes send ``--packets`` 172-byte datagrams in
   all, as fast as they can, all from port 6000 (SO_REUSEPORT) as a server
   sends one leg from one port; the receiver's input chain counts what
   arrives.  The ratio is NAT rate over routed rate.
3. This process's CPU time while the NAT run crosses the binding: the
   kernel forwards, so it should be about nothing.

Topology: sender 203.0.113.10 -- (core0) edge (acc0) -- 198.51.100.2 receiver.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from hostednat.nat.binding import Endpoint
from hostednat.nat.kernel_nat import KernelNat
from hostednat.nat.nftables import LegFlow, NatTable

SENDER, CORE, ACCESS, RECEIVER = (
    "203.0.113.10",
    "203.0.113.1",
    "198.51.100.1",
    ("198.51.100.2"),
)
RECEIVER_PORT = 9000

SEND = """
import socket, sys
count, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("0.0.0.0", 6000))
payload, target, send = bytes(172), (host, port), s.sendto
for _ in range(count):
    try:
        send(payload, target)
    except OSError:
        pass
"""


class Pump:
    """Stands in for the reactor: runs ``callFromThread`` calls on demand."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]]
        self.calls = queue.SimpleQueue()

    def callFromThread(self, function: Callable[..., Any], *args: Any) -> None:
        self.calls.put((function, args))

    def wait(self, deferred: Deferred[Any]) -> Any:
        outcome: list[Any] = []
        deferred.addBoth(outcome.append)
        while not outcome:
            function, args = self.calls.get(timeout=60)
            function(*args)
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        return outcome[0]


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, check=True, timeout=30
    ).stdout


def names(prefix: str) -> dict[str, str]:
    return {role: f"{prefix}-{role}" for role in ("sender", "edge", "receiver")}


def build(ns: dict[str, str]) -> None:
    script = "".join(f"netns add {name}\n" for name in ns.values())
    veth = "link add {} netns {} type veth peer name {} netns {}\n"
    script += veth.format("eth0", ns["sender"], "core0", ns["edge"])
    script += veth.format("acc0", ns["edge"], "eth0", ns["receiver"])
    sh("ip", "-batch", "-", stdin=script)
    configure = {
        "sender": [
            f"addr add {SENDER}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {CORE}",
        ],
        "edge": [
            f"addr add {CORE}/24 dev core0",
            f"addr add {ACCESS}/24 dev acc0",
            "link set core0 up",
            "link set acc0 up",
        ],
        "receiver": [
            f"addr add {RECEIVER}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {ACCESS}",
        ],
    }
    for role, lines in configure.items():
        body = "link set lo up\n" + "".join(f"{line}\n" for line in lines)
        sh("ip", "-n", ns[role], "-batch", "-", stdin=body)
    sh("ip", "netns", "exec", ns["edge"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
    counting = "table ip bench {\n chain input {\n"
    counting += (
        f"  type filter hook input priority 0\n  udp dport {RECEIVER_PORT} counter\n"
    )
    counting += " }\n}\n"
    sh("ip", "netns", "exec", ns["receiver"], "nft", "-f", "-", stdin=counting)


def arrived(ns: dict[str, str]) -> int:
    listing = sh(
        "ip", "netns", "exec", ns["receiver"], "nft", "list", "table", "ip", "bench"
    )
    return int(re.search(r"counter packets (\d+)", listing)[1])  # type: ignore[index]


def blast(
    ns: dict[str, str], host: str, port: int, packets: int, senders: int
) -> tuple[float, int, float]:
    """Send ``packets`` from the sender namespace; (pps arrived, arrived,
    this process's CPU seconds meanwhile)."""
    before = arrived(ns)
    cpu = time.process_time()
    start = time.monotonic()
    children = [
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns["sender"],
                sys.executable,
                "-c",
                SEND,
                str(packets // senders),
                host,
                str(port),
            ]
        )
        for _ in range(senders)
    ]
    for child in children:
        child.wait(timeout=120)
    elapsed = time.monotonic() - start
    time.sleep(0.2)
    count = arrived(ns) - before
    return count / elapsed, count, time.process_time() - cpu


def flow(index: int) -> LegFlow:
    return LegFlow(
        server=Endpoint(SENDER, 6000 + index % 2),
        core=Endpoint(CORE, 10000 + index),
        access=Endpoint(ACCESS, 40000 + index % 20000),
        public=Endpoint("192.0.2.1", 1024 + index),
    )


def binding_rate(
    nat: KernelNat, pump: Pump, bindings: int, label: str, **options: bool
) -> None:
    """Install then remove ``bindings`` two-leg bindings, all requested at
    once; print the rates."""
    flows = [flow(index) for index in range(2 * bindings)]
    install = {"delete_conntrack": options.get("delete_conntrack", True)}
    remove = {"read_counts": options.get("read_counts", True)}
    start = time.monotonic()
    for deferred in [nat.install(f, **install) for f in flows]:
        pump.wait(deferred)
    installed = time.monotonic()
    for deferred in [nat.remove(f, **remove) for f in flows]:
        pump.wait(deferred)
    done = time.monotonic()
    left = pump.wait(nat.elements())
    assert not any(left.values()), "elements left behind"
    both = bindings / (done - start)
    print(
        f"{label}: install {bindings / (installed - start):,.0f}/s,"
        f" remove {bindings / (done - installed):,.0f}/s,"
        f" install+remove {both:,.0f} bindings/s ({2 * both:,.0f} legs/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindings", type=int, default=5000)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, nftables)")

    ns = names(f"hnb{os.getpid()}")
    pump = Pump()
    nat = KernelNat(pump, NatTable("hostednat", ACCESS, CORE), netns=ns["edge"])
    try:
        build(ns)
        pump.wait(nat.start())
        binding_rate(nat, pump, options.bindings, "full (conntrack deletes, counts)")
        binding_rate(
            nat, pump, options.bindings, "without final counts", read_counts=False
        )
        binding_rate(
            nat,
            pump,
            options.bindings,
            "elements only",
            read_counts=False,
            delete_conntrack=False,
        )

        leg = LegFlow(
            Endpoint(SENDER, 6000),
            Endpoint(CORE, 31000),
            Endpoint(ACCESS, 30000),
            Endpoint(RECEIVER, RECEIVER_PORT),
        )
        pump.wait(nat.install(leg))
        # Alternate the two paths and keep each one's best run: other load
        # on the machine then penalises both alike.
        routed_runs, natted_runs = [], []
        for _round in range(options.rounds):
            routed_runs.append(
                blast(ns, RECEIVER, RECEIVER_PORT, options.packets, options.senders)
            )
            natted_runs.append(blast(ns, CORE, 31000, options.packets, options.senders))
        counts = pump.wait(nat.remove(leg))
        routed, routed_count, _cpu = max(routed_runs)
        natted, natted_count, cpu = max(natted_runs)
        print(f"routed:      {routed:,.0f} pps ({routed_count} arrived)")
        print(
            f"kernel NAT:  {natted:,.0f} pps ({natted_count} arrived;"
            f" kernel counted {counts.packets_to_box} over all rounds)"
        )
        print(f"ratio NAT/routed: {natted / routed:.2f}")
        print(f"this process's CPU during the NAT run: {cpu * 1000:.0f} ms")
        pump.wait(nat.stop())
    finally:
        sh(
            "ip",
            "-force",
            "-batch",
            "-",
            stdin="".join(f"netns delete {name}\n" for name in ns.values()),
        )


if __name__ == "__main__":
    main()
