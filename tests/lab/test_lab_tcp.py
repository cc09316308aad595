"""TCP interleaved media through hostednat (RFC 2326 10.12).

Interleaved media rides the RTSP connection, so it needs no binding; these
pin that the proxy relays ``$``-framed data both ways without loss.
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


def test_ffmpeg_tcp_interleaved_through_hostednat_gets_both_streams(
    lab: Lab, media_server: BackgroundProcess, edge_config: str
) -> None:
    """ffmpeg over TCP interleaved through hostednat receives both streams for 5 s."""
    lab.start_hostednat(edge_config)

    result = lab.ffmpeg("box", lab.edge_url(), "tcp", FFMPEG_SECONDS)

    assert_both_streams(result, MIN_FFMPEG_VIDEO_FRAMES)


def test_gst_tcp_interleaved_through_hostednat_gets_both_streams(
    lab: Lab, media_server: BackgroundProcess, edge_config: str
) -> None:
    """GStreamer over TCP interleaved through hostednat receives both streams."""
    lab.start_hostednat(edge_config)

    result = lab.gst("box", lab.edge_url(), "tcp", GST_SECONDS)

    assert_both_streams(result, MIN_GST_VIDEO_PACKETS)
