"""RTSP signalling cost of the proxy: added latency and full sessions per second.

Run from a checkout with the project installed in ``.venv``::

    .venv/bin/python benchmarks/rtsp_proxy.py [--seconds 10] [--json out.json]

Three processes on 127.0.0.1 only:

- a canned RTSP *upstream* (asyncio, byte-level; answers OPTIONS, DESCRIBE,
  SETUP, PLAY, TEARDOWN without parsing more than the request line, CSeq,
  Session and ``client_port``), pinned to CPU 1;
- *hostednat* built with :func:`hostednat.proxy.service.build_service` and
  the userspace binding table (real UDP sockets per stream), on the epoll
  reactor, logging every event as text as twistd would, pinned to CPU 0;
- the *client* (this process, asyncio), pinned to CPU 1.

Measured in the same run:

1. **Latency**: one connection, sequential OPTIONS requests, round trip
   straight to the upstream and through the proxy, all three processes on
   one CPU; the proxy's added latency is the difference of the percentiles.
   The proxied round trip is also given with the proxy on its own CPU: on a
   VM it then pays a cross-CPU wake-up per hop, which the direct path does
   not.
2. **Sessions**: concurrent clients each run OPTIONS, DESCRIBE, SETUP x2
   (UDP), PLAY, TEARDOWN on a fresh connection, for ``--seconds``; reported
   as sessions/s achieved and as sessions per CPU-second of the proxy process
   (read from /proc/PID/stat), which is the one-core capacity.  The client
   and upstream share CPU 1, so the achieved rate may be client-bound; the
   CPU-second figure is not.

Each phase is bounded in time; the script stops its children on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=bench\r\nt=0 0\r\n"
    b"m=video 0 RTP/AVP 96\r\nb=AS:4000\r\na=rtpmap:96 H264/90000\r\n"
    b"a=control:stream=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:64\r\n"
    b"a=rtpmap:97 L16/8000\r\na=control:stream=1\r\n"
)


# -- the canned upstream ----------------------------------------------------


def _field(head: bytes, name: bytes) -> bytes:
    start = head.find(b"\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 2
    end = head.find(b"\r\n", start)
    return head[start:end].strip()


def _answer(head: bytes, serial: int) -> bytes:
    method = head[: head.find(b" ")]
    cseq = _field(head, b"CSeq")
    lines = [b"RTSP/1.0 200 OK", b"CSeq: " + cseq]
    body = b""
    if method == b"DESCRIBE":
        lines += [
            b"Content-Type: application/sdp",
            b"Content-Base: " + head.split()[1] + b"/",
        ]
        body = SDP
    elif method == b"SETUP":
        transport = _field(head, b"Transport")
        ports = transport.split(b"client_port=")[1].split(b";")[0]
        lines.append(
            b"Transport: RTP/AVP;unicast;client_port="
            + ports
            + b";server_port=6970-6971"
        )
        lines.append(b"Session: bench%d;timeout=60" % serial)
    elif method == b"OPTIONS":
        lines.append(b"Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN")
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _serve_upstream(port: int) -> None:
    serial = 0

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal serial
        serial += 1
        session = serial
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(_answer(head, session))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, HOST, port, backlog=1024)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


# -- hostednat --------------------------------------------------------------


def _run_proxy(port: int, upstream_port: int) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    # Log every event as text, as twistd would, to a sink that costs no I/O.
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sink)], redirectStandardIO=False
    )

    from hostednat.config import parse
    from hostednat.proxy.service import build_service

    config = parse(
        {
            "rtsp": {"listen": [f"tcp:{port}:interface={HOST}:backlog=1024"]},
            "routes": [{"prefix": "/", "upstream": f"rtsp://{HOST}:{upstream_port}/"}],
            "nat": {"access_ports": "34000-35999", "core_ports": "36000-37999"},
        },
        "<benchmark>",
    )
    service = build_service(config, reactor)
    service.startService()
    print("READY", flush=True)
    reactor.run()  # type: ignore[attr-defined]


# -- the client ---------------------------------------------------------------


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes
) -> bytes:
    writer.write(message)
    head = await reader.readuntil(b"\r\n\r\n")
    length = _field(head, b"Content-Length")
    if length:
        await reader.readexactly(int(length))
    return head


def _request(method: str, url: str, cseq: int, *headers: str) -> bytes:
    lines = [f"{method} {url} RTSP/1.0", f"CSeq: {cseq}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _latencies(port: int, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection(HOST, port)
    url = f"rtsp://{HOST}:{port}/bench"
    samples = []
    for cseq in range(1, count + 1):
        started = time.perf_counter()
        await _exchange(reader, writer, _request("OPTIONS", url, cseq))
        samples.append(time.perf_counter() - started)
    writer.close()
    return samples


async def _session(port: int, client_port: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    url = f"rtsp://{HOST}:{port}/bench"
    await _exchange(reader, writer, _request("OPTIONS", url, 1))
    await _exchange(
        reader, writer, _request("DESCRIBE", url, 2, "Accept: application/sdp")
    )
    session = ""
    for index in range(2):
        transport = (
            "Transport: RTP/AVP/UDP;unicast;"
            f"client_port={client_port + 2 * index}-{client_port + 2 * index + 1}"
        )
        extra = [transport] + ([f"Session: {session}"] if session else [])
        head = await _exchange(
            reader,
            writer,
            _request("SETUP", f"{url}/stream={index}", 3 + index, *extra),
        )
        assert head.startswith(b"RTSP/1.0 200"), head
        session = _field(head, b"Session").split(b";")[0].decode()
    await _exchange(reader, writer, _request("PLAY", url, 5, f"Session: {session}"))
    await _exchange(reader, writer, _request("TEARDOWN", url, 6, f"Session: {session}"))
    writer.close()
    await writer.wait_closed()


async def _sessions(port: int, seconds: float, concurrency: int) -> int:
    deadline = time.monotonic() + seconds
    done = 0

    async def worker(slot: int) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await _session(port, 5000 + 4 * slot)
            done += 1

    await asyncio.gather(*(worker(slot) for slot in range(concurrency)))
    return done


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _spawn(args: list[str], cpu: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "READY":
        process.kill()
        raise SystemExit(f"{args[0]} did not start: {line!r}")
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--role", choices=["upstream", "proxy"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        asyncio.run(_serve_upstream(args.port))
        return
    if args.role == "proxy":
        _run_proxy(args.port, args.upstream_port)
        return

    cpus = sorted(os.sched_getaffinity(0))
    proxy_cpu, other_cpu = cpus[0], cpus[-1]
    os.sched_setaffinity(0, {other_cpu})
    upstream_port, proxy_port = 18600, 18601
    upstream = _spawn(["--role", "upstream", "--port", str(upstream_port)], other_cpu)
    proxy = _spawn(
        [
            "--role",
            "proxy",
            "--port",
            str(proxy_port),
            "--upstream-port",
            str(upstream_port),
        ],
        proxy_cpu,
    )
    try:
        # Latency first with every process on one CPU, so that the figure is
        # the proxy's own work and not the VM's cross-CPU wake-up time, which
        # the direct path would not pay; then with the proxy on its own CPU.
        os.sched_setaffinity(proxy.pid, {other_cpu})
        direct = asyncio.run(_latencies(upstream_port, args.requests))
        proxied = asyncio.run(_latencies(proxy_port, args.requests))
        os.sched_setaffinity(proxy.pid, {proxy_cpu})
        split = asyncio.run(_latencies(proxy_port, args.requests))
        cpu_before = _cpu_seconds(proxy.pid)
        started = time.monotonic()
        count = asyncio.run(_sessions(proxy_port, args.seconds, args.concurrency))
        elapsed = time.monotonic() - started
        cpu = _cpu_seconds(proxy.pid) - cpu_before
    finally:
        for process in (proxy, upstream):
            process.terminate()
            process.wait(timeout=10)

    result = {
        "direct_p50_ms": 1e3 * statistics.median(direct),
        "direct_p99_ms": 1e3 * _percentile(direct, 0.99),
        "proxied_p50_ms": 1e3 * statistics.median(proxied),
        "proxied_p99_ms": 1e3 * _percentile(proxied, 0.99),
        "split_p50_ms": 1e3 * statistics.median(split),
        "split_p99_ms": 1e3 * _percentile(split, 0.99),
        "sessions": count,
        "sessions_per_s": count / elapsed,
        "proxy_cpu_s": cpu,
        "sessions_per_proxy_cpu_s": count / cpu if cpu else float("inf"),
    }
    result["added_p50_ms"] = result["proxied_p50_ms"] - result["direct_p50_ms"]
    result["added_p99_ms"] = result["proxied_p99_ms"] - result["direct_p99_ms"]
    print(f"OPTIONS round trip over {args.requests} requests (ms):")
    for label in ("direct", "proxied", "added"):
        p50, p99 = result[f"{label}_p50_ms"], result[f"{label}_p99_ms"]
        print(f"  {label:8} p50 {p50:.3f}  p99 {p99:.3f}   (all on one CPU)")
    p50, p99 = result["split_p50_ms"], result["split_p99_ms"]
    print(f"  proxied  p50 {p50:.3f}  p99 {p99:.3f}   (proxy on its own CPU)")
    print(
        f"full sessions (OPTIONS, DESCRIBE, 2 SETUP, PLAY, TEARDOWN), "
        f"{args.concurrency} concurrent, {elapsed:.1f} s:"
    )
    print(f"  achieved          {result['sessions_per_s']:.0f} sessions/s")
    print(f"  proxy CPU         {cpu:.2f} s")
    print(f"  per proxy CPU-s   {result['sessions_per_proxy_cpu_s']:.0f} sessions")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
