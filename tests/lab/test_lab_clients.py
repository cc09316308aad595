"""Real RTSP clients through hostednat, over UDP and over TCP interleaved.

Over UDP the media crosses the edge's bindings, punched through the home
gateway's random-port masquerade; over TCP it rides the RTSP connection as
``$``-framed data (RFC 2326 10.12), which the proxy relays both ways.
"""

from __future__ import annotations

import pytest

from .checks import (
    FFMPEG_SECONDS,
    GST_SECONDS,
    MIN_FFMPEG_VIDEO_FRAMES,
    MIN_GST_VIDEO_PACKETS,
    assert_both_streams,
)
from .harness import Lab
from .processes import BackgroundProcess

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("client", ["ffmpeg", "gst"])
def test_client_through_hostednat_gets_both_streams(
    lab: Lab,
    media_server: BackgroundProcess,
    edge_config: str,
    client: str,
    transport: str,
) -> None:
    """ffmpeg and GStreamer through hostednat receive video and audio."""
    lab.start_hostednat(edge_config)

    if client == "ffmpeg":
        result = lab.ffmpeg("box", lab.edge_url(), transport, FFMPEG_SECONDS)
        assert_both_streams(result, MIN_FFMPEG_VIDEO_FRAMES)
    else:
        result = lab.gst("box", lab.edge_url(), transport, GST_SECONDS)
        assert_both_streams(result, MIN_GST_VIDEO_PACKETS)
