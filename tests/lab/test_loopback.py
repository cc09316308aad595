"""hostednat on loopback, no root: a real client through the proxy to a real server.

The media server and hostednat (reverse mode, userspace relay) listen on
127.0.0.1 on free ports; access and core port ranges are free 64-port blocks
below the kernel's ephemeral range.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .checks import FFMPEG_SECONDS, MIN_FFMPEG_VIDEO_FRAMES, assert_both_streams
from .clients import run_ffmpeg
from .processes import BackgroundProcess, free_port, start_hostednat, start_media_server

pytestmark = pytest.mark.loopback

LOOPBACK = "127.0.0.1"
RANGE_SIZE = 64

# Where relay port blocks are drawn from: above the well-known and common
# service ports, below Linux's default ephemeral range (32768-60999).
RANGE_FLOOR = 20000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")

CONFIG_TEMPLATE = """\
[rtsp]
listen = ["tcp:{listen_port}:interface=127.0.0.1"]
mode = "reverse"

[[routes]]
prefix = "/"
upstream = "rtsp://127.0.0.1:{media_port}/"

[nat]
backend = "userspace"
access_address = "127.0.0.1"
core_address = "127.0.0.1"
access_ports = "{access}-{access_end}"
core_ports = "{core}-{core_end}"
"""


def block_is_free(first: int) -> bool:
    """Tell whether every UDP port of a block can be bound on loopback now.

    :param first: the block's first port.
    """
    for port in range(first, first + RANGE_SIZE):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_port_blocks(count: int) -> list[int]:
    """Pick distinct free 64-port blocks below the ephemeral range.

    :param count: how many blocks.
    :returns: the first port of each block.
    """
    ceiling = int(EPHEMERAL_RANGE.read_text().split()[0])
    candidates = list(range(RANGE_FLOOR, ceiling - RANGE_SIZE, RANGE_SIZE))
    random.shuffle(candidates)
    chosen = [first for first in candidates[:100] if block_is_free(first)][:count]
    if len(chosen) < count:
        pytest.fail(f"no {count} free {RANGE_SIZE}-port UDP blocks on loopback")
    return chosen


@pytest.fixture
def loopback_media_server(
    loopback_tools: None,
) -> Iterator[tuple[BackgroundProcess, int]]:
    """The media server on a free loopback port, with that port."""
    server, port = start_media_server(LOOPBACK, 0)
    try:
        yield server, port
    finally:
        server.stop()


def test_ffmpeg_udp_through_hostednat_on_loopback_gets_both_streams(
    loopback_media_server: tuple[BackgroundProcess, int], tmp_path: Path
) -> None:
    """ffmpeg over UDP through hostednat on 127.0.0.1 receives both streams for 5 s."""
    _, media_port = loopback_media_server
    listen_port = free_port()
    access, core = free_port_blocks(2)
    config = CONFIG_TEMPLATE.format(
        listen_port=listen_port,
        media_port=media_port,
        access=access,
        access_end=access + RANGE_SIZE - 1,
        core=core,
        core_end=core + RANGE_SIZE - 1,
    )
    proxy = start_hostednat(config, tmp_path, (LOOPBACK, listen_port))

    try:
        result = run_ffmpeg(
            f"rtsp://{LOOPBACK}:{listen_port}/test", "udp", FFMPEG_SECONDS
        )
    finally:
        proxy.stop()

    assert_both_streams(result, MIN_FFMPEG_VIDEO_FRAMES)
