"""Packets per second through the userspace relay, against a bare Python loop.

Run from the repository root (needs CPUs 0 and 1, no privileges; all traffic
stays on 127.0.0.1)::

    .venv/bin/python benchmarks/relay_pps.py [--json results.json]

Options: ``--relays bare,table,protocol`` (which relays, default all),
``--rates 10000,20000,...`` (the paced steps), ``--step-seconds 0.5``,
``--batch 256`` (the table's read batch).  The default run takes about
90 seconds and stops by itself.

Three relays receive media on a "core" UDP socket and send it from an
"access" socket to a sink (the box), each in its own process:

- ``bare``: a blocking ``recvfrom``/``sendto`` loop, the reference;
- ``table``: :class:`~hostednat.nat.userspace.UserspaceBindingTable` under the
  default reactor (epoll on Linux), with one binding latched by a punch from
  the sink, as a box would;
- ``protocol``: two plain Twisted ``DatagramProtocol`` ports, to show what
  the table's design is worth.

Each relay is pinned to CPU 0; the generator (this process) and the sink
process are pinned to CPU 1.  Every socket gets a 4 MiB ``SO_RCVBUF`` and
``SO_SNDBUF``.  For 172-byte and 1316-byte datagrams (an RTP header with a
160-byte G.711 frame; seven 188-byte MPEG-TS packets) it measures:

- *loss-free*: the generator paces bounded steps of rising rates, each
  ``--step-seconds`` long; the result is the highest rate such that it and
  every step below it delivered all datagrams.  A lossy step is tried up to
  three times, and the relays take each step in turn, so that a passing
  disturbance of the machine hits them alike.  ``+`` marks a ramp that ended
  because the generator could not pace the next step (the knee is higher),
  ``*`` one that ran out of its time budget;
- *flood*: datagrams delivered per second while the generator sends flat out
  (best of three 1.5 s floods, read at the sink over the middle 0.8 s), the
  rate the generator reached (*offered*), and the relay's CPU time per
  delivered datagram (``/proc/PID/schedstat``), also given as *per-cpu-s*,
  datagrams delivered per second of relay CPU time, which stays meaningful
  when other work on the machine takes CPU 0 from the relay;
- *other*: the share of CPU 0 that went to anything but the relay (other
  processes, deferred softirqs), at the first lossy step and during the
  flood; a high value means that result measured the machine, not the relay.

It prints one row per relay and size, then each relay's ratio to ``bare``,
and writes every step and trial as JSON with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from ctypes import c_int64
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LOOPBACK = "127.0.0.1"
RELAY_CPU = 0
LOAD_CPU = 1
BUFFER_BYTES = 4 << 20
SIZES = (172, 1316)
DEFAULT_RATES = (
    *range(10_000, 100_000, 10_000),
    *range(100_000, 400_001, 25_000),
)
KINDS = ("bare", "table", "protocol")

# How long the sink must stay quiet before a step counts as drained, and the
# longest a step may take to drain.
QUIET_SECONDS = 0.05
DRAIN_SECONDS = 1.0

# The flood: the rate is read at the sink between these two offsets.
FLOOD_SECONDS = 1.5
FLOOD_WINDOW = (0.5, 1.3)
FLOOD_TRIALS = 3
STEP_ATTEMPTS = 3

# Longest ramp per packet size, so that the whole run stays under three
# minutes even when many steps need retries.
RAMP_SECONDS = 50.0

_context = multiprocessing.get_context("fork")
Shared = Any  # a multiprocessing.RawArray of c_int64: [packets, stop]


def _pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def _udp_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER_BYTES)
    sock.bind((LOOPBACK, port))
    return sock


def _run_sink(sock: socket.socket, shared: Shared) -> None:
    """Count datagrams on ``sock`` into ``shared[0]`` until ``shared[1]``."""
    _pin(LOAD_CPU)
    sock.settimeout(0.02)
    recv_into = sock.recv_into
    buffer = bytearray(65535)
    count = 0
    while not shared[1]:
        try:
            recv_into(buffer)
        except TimeoutError:
            shared[0] = count
            continue
        count += 1
        if not count & 31:
            shared[0] = count


def _run_bare(conn: multiprocessing.connection.Connection, sink: int) -> None:
    """Relay from a core socket to the sink with recvfrom/sendto."""
    _pin(RELAY_CPU)
    core = _udp_socket()
    access = _udp_socket()
    conn.send(core.getsockname()[1])
    recvfrom = core.recvfrom
    sendto = access.sendto
    destination = (LOOPBACK, sink)
    while True:
        data, _ = recvfrom(2048)
        sendto(data, destination)


def _run_table(conn: multiprocessing.connection.Connection, batch: int) -> None:
    """Relay through a UserspaceBindingTable under the default reactor."""
    _pin(RELAY_CPU)
    from twisted.internet import reactor

    from hostednat.nat.binding import (
        Binding,
        BindingRequest,
        Endpoint,
        Leg,
        PortPair,
    )
    from hostednat.nat.ports import PortPool
    from hostednat.nat.userspace import UserspaceBindingTable

    class Observer:
        def binding_latched(self, binding: Binding, leg: Leg, source: Endpoint) -> None:
            conn.send(("latched", leg.value, str(source)))

    table = UserspaceBindingTable(
        reactor,
        access_address=LOOPBACK,
        core_address=LOOPBACK,
        access_pool=PortPool(40000, 40999),
        core_pool=PortPool(41000, 41999),
        latch_window=60.0,
        relatch_after=10.0,
        receive_buffer=BUFFER_BYTES,
        observer=Observer(),
        read_batch=batch,
    )
    binding = table.allocate(BindingRequest(LOOPBACK, PortPair(5000, 5001)))
    conn.send((binding.core.rtp, binding.access.rtp))
    reactor.run()


def _run_protocol(conn: multiprocessing.connection.Connection, sink: int) -> None:
    """Relay with two plain Twisted DatagramProtocol ports, for comparison."""
    _pin(RELAY_CPU)
    from twisted.internet import reactor
    from twisted.internet.protocol import DatagramProtocol

    destination = (LOOPBACK, sink)

    class Relay(DatagramProtocol):
        def datagramReceived(self, datagram: bytes, addr: Any) -> None:
            access.write(datagram, destination)

    # Any: the ports' sockets and write() are outside IListeningPort.
    listen: Any = reactor.listenUDP  # type: ignore[attr-defined]
    core = listen(0, Relay(), interface=LOOPBACK)
    access = listen(0, DatagramProtocol(), interface=LOOPBACK)
    for port in (core, access):
        port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_BYTES)
        port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER_BYTES)
    conn.send(core.getHost().port)
    reactor.run()


def _cpu_seconds(pid: int) -> float:
    """Time ``pid`` has spent on a CPU (schedstat, nanosecond resolution)."""
    text = Path(f"/proc/{pid}/schedstat").read_text()
    return int(text.split()[0]) / 1e9


def _udp_drops(port: int) -> int:
    """Datagrams the kernel dropped on the local socket bound to ``port``."""
    wanted = f"{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].split(":")[1] == wanted:
            return int(fields[-1])
    return 0


def _cpu_times(cpu: int) -> list[int]:
    """The /proc/stat tick counters of ``cpu``."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            return [int(field) for field in line.split()[1:]]
    return []


class CpuProbe:
    """The relay's CPU time, and CPU 0's busy time, from creation to now.

    ``other_cpu0_share`` is the share of CPU 0 that went to anything but the
    relay process (other work on the machine, deferred softirqs): when it is
    high, the relay was starved and its result says little about it.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.wall = time.perf_counter()
        self.relay = _cpu_seconds(pid)
        self.ticks = _cpu_times(RELAY_CPU)

    def shares(self) -> tuple[float, float, float]:
        """Relay CPU seconds, relay share of the wall time, other share."""
        wall = time.perf_counter() - self.wall
        relay = _cpu_seconds(self.pid) - self.relay
        deltas = [b - a for a, b in zip(self.ticks, _cpu_times(RELAY_CPU), strict=True)]
        idle = deltas[3] + deltas[4]
        busy = 1.0 - idle / (sum(deltas[:8]) or 1)
        return relay, relay / wall, max(0.0, busy - relay / wall)


class Rig:
    """A relay process, the sink process and the generator socket."""

    def __init__(self, kind: str, batch: int) -> None:
        self.kind = kind
        self.shared = _context.RawArray(c_int64, 2)
        self.sink_socket = _udp_socket()
        self.sink_port = self.sink_socket.getsockname()[1]
        self.generator = _udp_socket()
        parent, child = _context.Pipe()
        self._conn = parent

        target: Callable[..., None]
        args: tuple[Any, ...] = (child, self.sink_port)
        if kind == "bare":
            target = _run_bare
        elif kind == "protocol":
            target = _run_protocol
        else:
            target, args = _run_table, (child, batch)
        self.relay = _context.Process(target=target, args=args, daemon=True)
        self.relay.start()
        self.core_port = self._receive()
        if kind == "table":
            self.core_port, access_port = self.core_port
            self._punch(access_port)

        self.sink = _context.Process(
            target=_run_sink, args=(self.sink_socket, self.shared), daemon=True
        )
        self.sink.start()

    def _receive(self) -> Any:
        if not self._conn.poll(10.0):
            raise RuntimeError(f"{self.kind} relay did not start")
        return self._conn.recv()

    def _punch(self, access_port: int) -> None:
        """Latch the binding the way a box does: one datagram to the port."""
        self.sink_socket.sendto(b"\xce\xfa\xed\xfe", (LOOPBACK, access_port))
        message = self._receive()
        if message[0] != "latched":
            raise RuntimeError(f"unexpected message from the relay: {message}")

    @property
    def delivered(self) -> int:
        return int(self.shared[0])

    def wait_drained(self, expected: int) -> int:
        """Wait until the sink has ``expected`` datagrams or stays quiet."""
        deadline = time.perf_counter() + DRAIN_SECONDS
        last, last_change = self.delivered, time.perf_counter()
        while time.perf_counter() < deadline:
            time.sleep(0.01)
            now_count = self.delivered
            if now_count >= expected:
                return now_count
            if now_count != last:
                last, last_change = now_count, time.perf_counter()
            elif time.perf_counter() - last_change > QUIET_SECONDS:
                break
        return self.delivered

    def close(self) -> None:
        self.shared[1] = 1
        self.sink.join(2.0)
        self.relay.terminate()
        self.relay.join(2.0)
        self.sink_socket.close()
        self.generator.close()
        self._conn.close()


def _paced(rig: Rig, payload: bytes, rate: int, count: int) -> float:
    """Send ``count`` datagrams at ``rate`` per second, in short bursts.

    :returns: the rate actually achieved.
    """
    sendto = rig.generator.sendto
    destination = (LOOPBACK, rig.core_port)
    clock = time.perf_counter
    start = clock()
    sent = 0
    while sent < count:
        due = min(count, int((clock() - start) * rate) + 1)
        while sent < due:
            sendto(payload, destination)
            sent += 1
        delay = sent / rate - (clock() - start)
        if delay > 0:
            time.sleep(delay)
    return count / (clock() - start)


def _step(rig: Rig, payload: bytes, rate: int, step_seconds: float) -> dict[str, Any]:
    """One paced step: how many datagrams were lost, and where."""
    count = int(rate * step_seconds)
    before = rig.delivered
    relay_drops = _udp_drops(rig.core_port)
    sink_drops = _udp_drops(rig.sink_port)
    probe = CpuProbe(rig.relay.pid or 0)
    achieved = _paced(rig, payload, rate, count)
    _, relay_share, other_share = probe.shares()
    delivered = rig.wait_drained(before + count) - before
    return {
        "rate": rate,
        "achieved": round(achieved),
        "sent": count,
        "lost": count - delivered,
        "relay_rcvbuf_drops": _udp_drops(rig.core_port) - relay_drops,
        "sink_rcvbuf_drops": _udp_drops(rig.sink_port) - sink_drops,
        "relay_cpu_share": round(relay_share, 2),
        "other_cpu0_share": round(other_share, 2),
    }


def loss_free_rates(
    rigs: dict[str, Rig], size: int, rates: Sequence[int], step_seconds: float
) -> dict[str, dict[str, Any]]:
    """Step every relay up the paced rates, interleaved, until each loses.

    At each rate the relays take their step one after the other, so that
    interference from other work on the machine hits them alike.  A step
    passes if one of ``STEP_ATTEMPTS`` attempts delivers every datagram.  A
    relay's ramp also ends when the generator cannot pace a step within 5%
    of its rate (``generator_limited``: the knee lies higher), and every
    ramp ends after ``RAMP_SECONDS`` (``out_of_time``).
    """
    payload = bytes(size)
    results: dict[str, dict[str, Any]] = {
        kind: {
            "loss_free_pps": 0,
            "generator_limited": False,
            "out_of_time": False,
            "knee_other_cpu0_share": 0.0,
            "steps": [],
        }
        for kind in rigs
    }
    running = set(rigs)
    deadline = time.perf_counter() + RAMP_SECONDS
    for rate in rates:
        if time.perf_counter() > deadline:
            for kind in running:
                results[kind]["out_of_time"] = True
            break
        for kind in [kind for kind in rigs if kind in running]:
            result = results[kind]
            for _attempt in range(STEP_ATTEMPTS):
                step = _step(rigs[kind], payload, rate, step_seconds)
                result["steps"].append(step)
                if step["lost"] <= 0 or step["achieved"] < 0.95 * rate:
                    break
            if step["achieved"] < 0.95 * rate:
                result["generator_limited"] = True
                running.discard(kind)
            elif step["lost"] > 0:
                result["knee_other_cpu0_share"] = step["other_cpu0_share"]
                running.discard(kind)
            else:
                result["loss_free_pps"] = rate
        if not running:
            break
    return results


def _flood_once(rig: Rig, payload: bytes) -> dict[str, Any]:
    """Send flat out for ``FLOOD_SECONDS``; measure over ``FLOOD_WINDOW``."""
    sendto = rig.generator.sendto
    destination = (LOOPBACK, rig.core_port)
    relay_drops = _udp_drops(rig.core_port)
    sink_drops = _udp_drops(rig.sink_port)
    clock = time.perf_counter
    start = clock()
    window_start, window_end = (start + offset for offset in FLOOD_WINDOW)
    stop = start + FLOOD_SECONDS
    sent = 0
    probe: CpuProbe | None = None
    marks: list[tuple[float, int, int]] = []

    while True:
        for _ in range(64):
            sendto(payload, destination)
        sent += 64
        now = clock()
        if not marks and now >= window_start:
            probe = CpuProbe(rig.relay.pid or 0)
            marks.append((now, sent, rig.delivered))
        elif len(marks) == 1 and now >= window_end and probe is not None:
            relay_cpu, relay_share, other_share = probe.shares()
            marks.append((now, sent, rig.delivered))
        if now >= stop:
            break

    (t0, s0, n0), (t1, s1, n1) = marks
    delivered = n1 - n0
    rig.wait_drained(rig.delivered + 1)
    return {
        "delivered_pps": round(delivered / (t1 - t0)),
        "offered_pps": round((s1 - s0) / (t1 - t0)),
        "capacity_pps": round(delivered / relay_cpu) if relay_cpu else 0,
        "relay_cpu_us_per_packet": round(relay_cpu / max(delivered, 1) * 1e6, 2),
        "relay_cpu_share": round(relay_share, 2),
        "other_cpu0_share": round(other_share, 2),
        "relay_rcvbuf_drops": _udp_drops(rig.core_port) - relay_drops,
        "sink_rcvbuf_drops": _udp_drops(rig.sink_port) - sink_drops,
    }


def flood_rates(rigs: dict[str, Rig], size: int) -> dict[str, dict[str, Any]]:
    """Flood every relay ``FLOOD_TRIALS`` times, interleaved; keep the best.

    The best trial is the relay's capacity with the least interference; the
    JSON keeps every trial's delivered rate.
    """
    payload = bytes(size)
    trials: dict[str, list[dict[str, Any]]] = {kind: [] for kind in rigs}
    for _trial in range(FLOOD_TRIALS):
        for kind, rig in rigs.items():
            trials[kind].append(_flood_once(rig, payload))

    results = {}
    for kind, runs in trials.items():
        best = dict(max(runs, key=lambda trial: int(trial["delivered_pps"])))
        best["trials"] = [trial["delivered_pps"] for trial in runs]
        results[kind] = best
    return results


def run(
    kinds: Sequence[str], rates: Sequence[int], step_seconds: float, batch: int
) -> dict[str, Any]:
    """Measure every relay for every size; returns the JSON document."""
    _pin(LOAD_CPU)
    results: dict[str, dict[str, Any]] = {kind: {} for kind in kinds}
    for size in SIZES:
        with contextlib.ExitStack() as stack:
            rigs = {}
            for kind in kinds:
                rigs[kind] = Rig(kind, batch)
                stack.callback(rigs[kind].close)
            ramps = loss_free_rates(rigs, size, rates, step_seconds)
            floods = flood_rates(rigs, size)
        for kind in kinds:
            results[kind][str(size)] = {**ramps[kind], **floods[kind]}

    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for kind in kinds:
        if kind == "bare" or "bare" not in results:
            continue
        ratios[kind] = {}
        for size in SIZES:
            bare, other = results["bare"][str(size)], results[kind][str(size)]
            ratios[kind][str(size)] = {
                "loss_free": _ratio(other["loss_free_pps"], bare["loss_free_pps"]),
                "flood": _ratio(other["delivered_pps"], bare["delivered_pps"]),
                "capacity": _ratio(other["capacity_pps"], bare["capacity_pps"]),
            }
    return {
        "config": {
            "rates": list(rates),
            "step_seconds": step_seconds,
            "step_attempts": STEP_ATTEMPTS,
            "read_batch": batch,
            "buffer_bytes": BUFFER_BYTES,
            "flood_seconds": FLOOD_SECONDS,
            "flood_trials": FLOOD_TRIALS,
            "python": sys.version.split()[0],
        },
        "results": results,
        "ratios": ratios,
    }


def _ratio(value: float, reference: float) -> float:
    return round(value / reference, 2) if reference else 0.0


def _print_table(document: dict[str, Any]) -> None:
    header = (
        f"{'relay':<8} {'bytes':>5} {'loss-free':>10} {'other':>6} "
        f"{'flood':>8} {'offered':>8} {'other':>6} {'per-cpu-s':>9} {'us/pkt':>7}"
    )
    print(header)
    print("-" * len(header))
    for kind, by_size in document["results"].items():
        for size, result in by_size.items():
            mark = "+" if result["generator_limited"] else ""
            mark += "*" if result["out_of_time"] else ""
            loss_free = f"{result['loss_free_pps']}{mark}"
            print(
                f"{kind:<8} {size:>5} {loss_free:>10} "
                f"{result['knee_other_cpu0_share']:>6.0%} "
                f"{result['delivered_pps']:>8} {result['offered_pps']:>8} "
                f"{result['other_cpu0_share']:>6.0%} {result['capacity_pps']:>9} "
                f"{result['relay_cpu_us_per_packet']:>7}"
            )
    print(
        "loss-free: highest paced rate without loss (+: the generator could not\n"
        "pace the next step, *: the ramp ran out of time); flood: delivered/s\n"
        f"when flooded, best of {FLOOD_TRIALS}; per-cpu-s: delivered per second "
        "of relay CPU;\nother: share of CPU 0 not used by the relay, at the "
        "first lossy step\nand during the flood."
    )
    print()
    for kind, by_size in document["ratios"].items():
        for size, ratio in by_size.items():
            print(
                f"{kind}/bare {size:>4} bytes: loss-free {ratio['loss_free']:.2f}, "
                f"flood {ratio['flood']:.2f}, per-cpu-s {ratio['capacity']:.2f}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run, print, and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write results here")
    parser.add_argument(
        "--rates",
        type=lambda text: [int(rate) for rate in text.split(",")],
        default=list(DEFAULT_RATES),
        help="comma-separated paced rates in datagrams/s (default 10k..100k)",
    )
    parser.add_argument("--step-seconds", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=256, help="relay read batch")
    parser.add_argument(
        "--relays",
        type=lambda text: text.split(","),
        default=list(KINDS),
        help="comma-separated relays among bare,table,protocol (default all)",
    )
    options = parser.parse_args(argv)

    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs CPUs 0 and 1")
    document = run(options.relays, options.rates, options.step_seconds, options.batch)
    _print_table(document)
    if options.json is not None:
        options.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
