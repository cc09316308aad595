"""Control cases: the box talks straight to the media server, no hostednat.

These pin that the lab reproduces the problem hostednat exists for.  The
gateway maps the box's ports at random, and the server sends RTP to the
gateway's public address with the box's *private* ``client_port``, so over
UDP nothing arrives although the session is set up and played; over TCP
interleaved the same server and path deliver media.
"""

from __future__ import annotations

import pytest

from .checks import (
    FFMPEG_SECONDS,
    GST_SECONDS,
    MIN_FFMPEG_VIDEO_FRAMES,
    MIN_GST_VIDEO_PACKETS,
    assert_both_streams,
    assert_no_media,
)
from .harness import Lab
from .processes import BackgroundProcess

pytestmark = pytest.mark.lab


def assert_played_by_gateway(lab: Lab, media_server: BackgroundProcess) -> None:
    """Check that the server accepted SETUP and PLAY from the gateway's WAN."""
    wan = lab.addr["gateway_wan"]
    assert media_server.lines_matching(rf"^EVENT SETUP {wan} "), media_server.output()
    assert media_server.lines_matching(rf"^EVENT PLAY {wan}$"), media_server.output()


def test_ffmpeg_udp_direct_through_random_masquerade_gets_no_media(
    lab: Lab, media_server: BackgroundProcess
) -> None:
    """ffmpeg over UDP direct through the gateway plays but receives 0 frames."""
    result = lab.ffmpeg("box", lab.media_url(), "udp", FFMPEG_SECONDS)

    assert_played_by_gateway(lab, media_server)
    assert_no_media(result)


def test_ffmpeg_tcp_direct_through_gateway_gets_media(
    lab: Lab, media_server: BackgroundProcess
) -> None:
    """ffmpeg over TCP interleaved direct through the gateway gets both streams."""
    result = lab.ffmpeg("box", lab.media_url(), "tcp", FFMPEG_SECONDS)

    assert_both_streams(result, MIN_FFMPEG_VIDEO_FRAMES)


def test_gst_udp_direct_through_random_masquerade_gets_no_media(
    lab: Lab, media_server: BackgroundProcess
) -> None:
    """GStreamer over UDP direct through the gateway plays but receives nothing."""
    result = lab.gst("box", lab.media_url(), "udp", GST_SECONDS)

    assert_played_by_gateway(lab, media_server)
    assert_no_media(result)


def test_gst_tcp_direct_through_gateway_gets_media(
    lab: Lab, media_server: BackgroundProcess
) -> None:
    """GStreamer over TCP interleaved direct through the gateway gets both streams."""
    result = lab.gst("box", lab.media_url(), "tcp", GST_SECONDS)

    assert_both_streams(result, MIN_GST_VIDEO_PACKETS)
