"""AAR/AAA round trips per second against the SPDF simulator.

Run from the repository root::

    .venv/bin/python benchmarks/diameter_aar.py [--count 20000]
        [--concurrency 200] [--rate 1000] [--seconds 5]
        [--client-cpu 0] [--server-cpu 1]

The simulator runs in a child process pinned to ``--server-cpu``; the AF
client runs in this one, pinned to ``--client-cpu``: one core each.
Reported, in one run:

1. a plain python-diameter loop: ``AaRequest`` built through the library's
   attribute API with the same AVPs, ``as_bytes()``, ``Message.from_bytes``;
2. hostednat's codec alone: encoding the AAR and decoding it;
3. throughput: ``GqAdmission.admit`` (AAR, AAA, result check) with
   ``--concurrency`` requests in flight, ``--count`` in total, with the
   share of the wall time each process spent on its CPU
   (``/proc/PID/schedstat``) and the share of each CPU that went to
   anything else (``/proc/stat``): other work on the machine;
4. latency: ``--rate`` admissions per second for ``--seconds``, p50 and p99
   of the AAR round trip;
5. sustained: the same at ``--sustain`` per second (5,000 by default), to
   show whether one core of AF keeps up, with each process's CPU share.

Phases 4 and 5 are open loop: each admission is issued at its scheduled time
and its latency counts from that time, so a client that falls behind shows
it.  The closed loop of phase 3 runs in lockstep when few requests are in
flight: Twisted reads all that is pending before it writes, so each side
turns a whole batch around while the other waits, and the rate approaches
1 / (client cost + server cost) rather than the slower side's capacity.
The per-admission CPU costs printed for each phase give the capacity of one
core for each side.  Between phases the previous phase's sessions are ended
with STRs (not timed), so that both ends start each phase alike.

Every stream has its own box address and port, as boxes behind different
gateways would, so the encoder's caches of Binding-Information and
Globally-Unique-Address do not flatter the result.  The load average is
printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))


def serve(cpu: int) -> None:
    """Child process: the simulator on 127.0.0.1, port printed on stdout."""
    os.sched_setaffinity(0, {cpu})
    from twisted.internet import reactor

    from hostednat.diameter.simulator.config import SimulatorConfig
    from hostednat.diameter.simulator.service import Spdf

    spdf = Spdf(SimulatorConfig(), reactor)
    port = reactor.listenTCP(0, spdf.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    print(f"READY {port.getHost().port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]


MEDIA = SimpleNamespace(
    index=1, media="video", bandwidth={"AS": 8000, "RR": 20000, "RS": 5000}
)


def stream(number: int) -> Any:
    from hostednat.nat.binding import PortPair
    from hostednat.proxy.admission import StreamDescription

    # 250 boxes in the documentation range, each on 1000 port pairs.
    host = f"203.0.113.{number % 250 + 1}"
    port = 5000 + 2 * (number // 250 % 1000)
    return StreamDescription(
        f"s{number}",
        host,
        PortPair(port, port + 1),
        "UDP",
        "rtsp://198.51.100.80/live/trackID=1",
        MEDIA,
        1,  # type: ignore[arg-type]
    )


def library_loop(count: int) -> float:
    """Encode and decode an equivalent AAR with python-diameter's own API."""
    from diameter.message import Message
    from diameter.message.avp import Avp
    from diameter.message.commands import AaRequest

    from hostednat.diameter import messages
    from hostednat.diameter.af import media_component
    from hostednat.diameter.config import RacsConfig

    config = _config(0)
    extra = _extra_avps(config)
    start = time.perf_counter()
    for index in range(count):
        request = AaRequest()
        request.header.application_id = 16777222
        request.header.is_proxyable = True
        request.session_id = f"af1.iptv.example.net;1;{index}"
        request.auth_application_id = 16777222
        request.origin_host = b"af1.iptv.example.net"
        request.origin_realm = b"iptv.example.net"
        request.destination_realm = b"racs.example.net"
        request.auth_request_type = None
        for avp in extra:
            request.append_avp(Avp.from_avp(avp))
        data = request.as_bytes()
        Message.from_bytes(data)
    del messages, media_component, RacsConfig
    return count / (time.perf_counter() - start)


def _extra_avps(config: Any) -> list[Any]:
    from hostednat.diameter import codec

    data = _admission(config).initial_request("x;1;1", stream(1))
    avps = codec.decode(data).avps
    return [a for a in avps if a.code not in (263, 258, 264, 296, 283)]


def _config(port: int) -> Any:
    from hostednat.diameter.config import RacsConfig

    return RacsConfig.from_mapping(
        {
            "origin_host": "af1.iptv.example.net",
            "origin_realm": "iptv.example.net",
            "destination_realm": "racs.example.net",
            "address_realm": "access.example.net",
            "service_class": "IPTV",
            "request_timeout": 10.0,
            "peers": [{"host": "127.0.0.1", "port": port or 3868}],
        },
        "benchmark",
    )


def _admission(config: Any) -> Any:
    from hostednat.diameter.af import GqAdmission
    from hostednat.diameter.messages import Identity, SessionIdFactory

    identity = Identity(config.origin_host, config.origin_realm, 16777222)
    link: Any = type("NoLink", (), {"on_request": None})()
    return GqAdmission(config, link, identity, SessionIdFactory("af", 1))


def codec_loop(count: int) -> tuple[float, float]:
    """hostednat's encoding of the AAR, and decoding it, separately."""
    from hostednat.diameter import codec, messages

    admission = _admission(_config(0))
    probe = stream(1)
    start = time.perf_counter()
    encoded = [admission.initial_request(f"af;1;{i}", probe) for i in range(count)]
    encode_rate = count / (time.perf_counter() - start)
    start = time.perf_counter()
    for data in encoded:
        message = codec.decode(data)
        messages.binding_lists(message.avps)
    return encode_rate, count / (time.perf_counter() - start)


def _cpu_seconds(pid: int) -> float:
    """Time ``pid`` has spent on a CPU (schedstat, nanosecond resolution)."""
    text = Path(f"/proc/{pid}/schedstat").read_text()
    return int(text.split()[0]) / 1e9


def _cpu_ticks(cpu: int) -> list[int]:
    """The /proc/stat tick counters of ``cpu``."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            return [int(field) for field in line.split()[1:8]]
    return [0] * 7


class CpuShares:
    """CPU used by the two processes, and by everything else on their CPUs."""

    def __init__(self, pids: dict[str, int], cpus: dict[str, int]) -> None:
        self.pids = pids
        self.cpus = cpus
        self.wall = time.perf_counter()
        self.used = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        self.ticks = {name: _cpu_ticks(cpu) for name, cpu in cpus.items()}

    def shares(self) -> dict[str, float]:
        """``<name>_busy`` and ``<name>_cpu_other`` as fractions of the wall."""
        wall = time.perf_counter() - self.wall
        found = {}
        for name, pid in self.pids.items():
            own = (_cpu_seconds(pid) - self.used[name]) / wall
            now = _cpu_ticks(self.cpus[name])
            deltas = [b - a for a, b in zip(self.ticks[name], now, strict=True)]
            busy = 1.0 - (deltas[3] + deltas[4]) / (sum(deltas) or 1)
            found[f"{name}_busy"] = own
            found[f"{name}_cpu_other"] = max(0.0, busy - own)
        return found


def network(
    port: int,
    count: int,
    concurrency: int,
    rate: int,
    sustain: int,
    seconds: float,
    shares: Any,
) -> Any:
    from twisted.internet import reactor, task
    from twisted.internet.defer import Deferred

    from hostednat.diameter.af import make_admission

    admission = make_admission(_config(port), reactor)
    outcome: dict[str, Any] = {}

    async def sleep(delay: float) -> None:
        await task.deferLater(reactor, delay, lambda: None)

    async def throughput() -> None:
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                next_index += 1
                await admission.admit(stream(next_index))

        start = time.perf_counter()
        probe = shares()
        workers = [Deferred.fromCoroutine(worker()) for _ in range(concurrency)]
        for running in workers:
            await running
        wall = time.perf_counter() - start
        outcome["throughput"] = count / wall
        outcome.update(probe.shares())

    async def open_loop(rate: int, first: int, key: str) -> None:
        # Each admission is issued at its scheduled time (in batches when
        # the reactor wakes late) and its latency counts from that time, so
        # a generator or client falling behind shows as latency.
        samples: list[float] = []
        pending: list[Deferred[Any]] = []
        total = int(rate * seconds)
        probe = shares()
        start = time.perf_counter()
        issued = 0
        while issued < total:
            now = time.perf_counter()
            due_count = min(total, int((now - start) * rate) + 1)
            while issued < due_count:
                due = start + issued / rate
                waiting = admission.admit(stream(first + issued))
                waiting.addCallback(
                    lambda _, due=due: samples.append(time.perf_counter() - due)
                )
                pending.append(waiting)
                issued += 1
            next_due = start + issued / rate
            await sleep(max(0.0, next_due - time.perf_counter()))
        for waiting in pending:
            await waiting
        wall = time.perf_counter() - start
        samples.sort()
        outcome[key] = {
            "rate": rate,
            "achieved": total / wall,
            "p50": statistics.median(samples),
            "p99": samples[max(0, int(len(samples) * 0.99) - 1)],
            "max": samples[-1],
            **probe.shares(),
        }

    async def end_sessions(first: int, last: int) -> None:
        # Untimed: STR for every session of the previous phase, so that
        # each phase starts with the same state at both ends.
        for batch in range(first, last, 500):
            ending = [
                admission.session_ended(f"s{index}", "teardown")
                for index in range(batch, min(batch + 500, last))
            ]
            for waiting in ending:
                await waiting

    async def main() -> None:
        while not admission.link.available:
            await sleep(0.05)
        await throughput()
        await end_sessions(1, count + 1)
        first = count + 1
        await open_loop(rate, first, "latency")
        await end_sessions(first, first + int(rate * seconds))
        first += int(rate * seconds)
        await open_loop(sustain, first, "sustained")
        await admission.stop()
        await sleep(0.2)

    done = Deferred.fromCoroutine(main())
    done.addErrback(lambda failure: outcome.setdefault("error", failure))
    done.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--sustain", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--server-cpu", type=int, default=1)
    options = parser.parse_args()
    if options.serve is not None:
        serve(options.serve)
        return

    os.sched_setaffinity(0, {options.client_cpu})
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"python-diameter AaRequest encode+decode: {library_loop(5000):8.0f} /s")
    encode, decode = codec_loop(20000)
    print(f"hostednat AAR encode:                    {encode:8.0f} /s")
    print(f"hostednat AAR decode:                    {decode:8.0f} /s")

    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(options.server_cpu)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline().split()[1])

        def shares() -> CpuShares:
            return CpuShares(
                {"client": os.getpid(), "server": child.pid},
                {"client": options.client_cpu, "server": options.server_cpu},
            )

        outcome = network(
            port,
            options.count,
            options.concurrency,
            options.rate,
            options.sustain,
            options.seconds,
            shares,
        )
    finally:
        child.terminate()
        child.wait()
    if "error" in outcome:
        print(outcome["error"])
        sys.exit(1)
    print(
        f"AAR/AAA round trips (admit, {options.concurrency} in flight): "
        f"{outcome['throughput']:8.0f} /s"
    )
    _print_cpu(outcome, outcome["throughput"])
    for key, title in (("latency", "AAR latency"), ("sustained", "sustained")):
        found = outcome[key]
        print(
            f"{title} at {found['rate']}/s for {options.seconds:g} s"
            f" (achieved {found['achieved']:.0f}/s):"
            f" p50 {found['p50'] * 1000:.2f} ms, p99 {found['p99'] * 1000:.2f} ms,"
            f" max {found['max'] * 1000:.2f} ms"
        )
        _print_cpu(found, found["achieved"])
    print("load average after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


def _print_cpu(shares: dict[str, float], rate: float) -> None:
    for name in ("client", "server"):
        busy = shares[f"{name}_busy"]
        print(
            f"  {name} process busy {busy:.0%} of the time"
            f" ({busy / rate * 1e6:.0f} us CPU per admission);"
            f" other work on its CPU {shares[f'{name}_cpu_other']:.0%}"
        )


if __name__ == "__main__":
    main()
