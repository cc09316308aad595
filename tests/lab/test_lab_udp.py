"""Latching through a random-port NAT holds against a third host.

The box asks the edge (``rtsp://198.51.100.1:554/test``); hostednat latches
the gateway's public mapping from the box's punch packets only.  A host that
sprays every access port first neither latches nor receives media.  The
clients themselves are in ``test_lab_clients.py``; the same clients straight
to the server get nothing (``test_lab_control.py``).
"""

from __future__ import annotations

import pytest

from .checks import (
    FFMPEG_SECONDS,
    MIN_FFMPEG_VIDEO_FRAMES,
    assert_both_streams,
)
from .harness import EDGE_RTSP_PORT, Lab
from .intruder import Sprayer
from .processes import BackgroundProcess, tcp_accepts

pytestmark = pytest.mark.lab


# The [nat].access_ports range of the edge configuration.
ACCESS_PORTS = range(30000, 30064)


def test_intruder_spraying_access_ports_first_neither_latches_nor_receives(
    lab: Lab, media_server: BackgroundProcess, edge_config: str
) -> None:
    """A host spraying all access ports before the box gets nothing; the box does."""
    lab.start_hostednat(edge_config)
    edge_access = lab.addr["edge_access"]
    assert tcp_accepts(edge_access, EDGE_RTSP_PORT, lab.ns("intruder")), (
        "the intruder cannot reach the edge's access address"
    )
    sprayer = Sprayer(lab.socket("intruder"), edge_access, ACCESS_PORTS)

    sprayer.start(lab.addr["intruder"])
    try:
        assert sprayer.wait_rounds(3), "the intruder's spray did not start"
        result = lab.ffmpeg("box", lab.edge_url(), "udp", FFMPEG_SECONDS)
    finally:
        sprayer.stop()

    assert sprayer.sent >= 3 * len(ACCESS_PORTS)
    assert sprayer.received == [], (
        f"the intruder got {len(sprayer.received)} datagrams after sending"
        f" {sprayer.sent}, first from {sprayer.received[0].source}"
    )
    assert_both_streams(result, MIN_FFMPEG_VIDEO_FRAMES)
