"""A running hostednat answers bad input cleanly and loses nothing.

hostednat runs under twistd on 127.0.0.1 (no root) in front of an upstream
that refuses connections, so each request ends in an answer the proxy gives
itself.  The process must answer, close the connection, log no traceback,
and hold no more descriptors afterwards than before.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .processes import BackgroundProcess, free_port, start_hostednat

pytestmark = pytest.mark.loopback

LOOPBACK = "127.0.0.1"

CONFIG = """\
[rtsp]
listen = ["tcp:{listen}:interface=127.0.0.1"]
max_header_bytes = 4096
[[routes]]
prefix = "/"
upstream = "rtsp://127.0.0.1:{dead}/"
[nat]
access_ports = "{access}-{access_end}"
core_ports = "{core}-{core_end}"
"""


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[BackgroundProcess, int]]:
    """hostednat whose only upstream is a closed loopback port."""
    listen, dead = free_port(), free_port()
    access = 20000 + 64 * (os.getpid() % 100)
    config = CONFIG.format(
        listen=listen,
        dead=dead,
        access=access,
        access_end=access + 31,
        core=access + 32,
        core_end=access + 63,
    )
    process = start_hostednat(config, tmp_path, (LOOPBACK, listen))
    try:
        yield process, listen
    finally:
        process.stop()


def exchange(port: int, data: bytes) -> tuple[bytes, bool]:
    """Send ``data``; return what came back and whether the proxy closed."""
    with socket.create_connection((LOOPBACK, port), timeout=5) as connection:
        connection.sendall(data)
        received = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                return received, False
            if not chunk:
                return received, True
            received += chunk


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_malformed_request_gets_400_and_a_close(
    proxy: tuple[BackgroundProcess, int],
) -> None:
    """Garbage gets ``400 Bad Request`` and the connection is closed."""
    process, port = proxy
    reply, closed = exchange(port, b"GARBAGE\r\n\r\n")
    assert reply.startswith(b"RTSP/1.0 400 ")
    assert closed
    assert "Traceback" not in process.output()


def test_oversized_header_block_gets_400(proxy: tuple[BackgroundProcess, int]) -> None:
    """A header block over the configured cap is refused before it ends."""
    process, port = proxy
    request = b"OPTIONS rtsp://127.0.0.1/x RTSP/1.0\r\nCSeq: 1\r\nX-Pad: "
    reply, closed = exchange(port, request + b"a" * 8192)
    assert reply.startswith(b"RTSP/1.0 400 ")
    assert closed
    assert "Traceback" not in process.output()


def test_unreachable_upstream_gets_502(proxy: tuple[BackgroundProcess, int]) -> None:
    """A request the upstream cannot take is answered 502 with its CSeq."""
    _, port = proxy
    reply, closed = exchange(
        port, b"OPTIONS rtsp://127.0.0.1/x RTSP/1.0\r\nCSeq: 7\r\n\r\n"
    )
    assert reply.startswith(b"RTSP/1.0 502 ")
    assert b"CSeq: 7\r\n" in reply
    assert closed


def test_bad_input_leaks_no_descriptor(proxy: tuple[BackgroundProcess, int]) -> None:
    """Two hundred bad connections leave the process's descriptor count as it was."""
    process, port = proxy
    exchange(port, b"GARBAGE\r\n\r\n")
    baseline = descriptors(process.pid)
    for index in range(200):
        payload = (b"GARBAGE\r\n\r\n", b"SETUP rtsp://127.0.0.1/x RTSP/1.0\r\n\r\n")[
            index % 2
        ]
        exchange(port, payload)
    deadline = time.monotonic() + 5
    while descriptors(process.pid) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descriptors(process.pid) <= baseline
    assert "Traceback" not in process.output()
