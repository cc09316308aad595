"""Control cases: the box talks straight to the media server, no hostednat.

These pin that the lab reproduces the problem hostednat exists for.  The
gateway maps the box's ports at random, and the server sends RTP to the
gateway's public address with the box's *private* ``client_port``, so over
UDP nothing arrives although the session is set up and played; over TCP
interleaved the same server and path deliver media.
"""

from __future__ import annotations

import pytest

from .clients import ClientResult
from .harness import Lab
from .processes import BackgroundProcess

pytestmark = pytest.mark.lab

# Frames of a 5 s ffmpeg run at 15 frames/s, with room for setup jitter.
MIN_VIDEO_FRAMES = 40

# RTP packets of a 6 s GStreamer run: a 320x240 JPEG frame takes several.
MIN_VIDEO_PACKETS = 40


def assert_played_by_gateway(lab: Lab, media_server: BackgroundProcess) -> None:
    """Check that the server accepted SETUP and PLAY from the gateway's WAN."""
    wan = lab.addr["gateway_wan"]
    assert media_server.lines_matching(rf"^EVENT SETUP {wan} "), media_server.output()
    assert media_server.lines_matching(rf"^EVENT PLAY {wan}$"), media_server.output()


def assert_both_streams(result: ClientResult, min_video: int) -> None:
    """Check that video and audio both arrived."""
    assert result.count("video") >= min_video, result.describe()
    assert result.count("audio") > 0, result.describe()


def test_ffmpeg_udp_direct_through_random_masquerade_gets_no_media(
    lab: Lab, media_server: BackgroundProcess
) -> None:
    """ffmpeg over UDP straight through the gateway sets up and plays but gets 0 frames."""
    result = lab.ffmpeg("box", lab.media_url(), "udp")

    assert_played_by_gateway(lab, media_server)
    assert result.total == 0, result.describe()


def test_ffmpeg_tcp_direct_through_gateway_gets_media(
    lab: Lab, media_server: BackgroundProcess
) -> None:
    """ffmpeg over TCP interleaved straight through the gateway gets both streams."""
    result = lab.ffmpeg("box", lab.media_url(), "tcp")

    assert_both_streams(result, MIN_VIDEO_FRAMES)


def test_gst_udp_direct_through_random_masquerade_gets_no_media(
    lab: Lab, media_server: BackgroundProcess
) -> None:
    """GStreamer over UDP straight through the gateway sets up and plays but gets nothing."""
    result = lab.gst("box", lab.media_url(), "udp")

    assert_played_by_gateway(lab, media_server)
    assert result.total == 0, result.describe()


def test_gst_tcp_direct_through_gateway_gets_media(
    lab: Lab, media_server: BackgroundProcess
) -> None:
    """GStreamer over TCP interleaved straight through the gateway gets both streams."""
    result = lab.gst("box", lab.media_url(), "tcp")

    assert_both_streams(result, MIN_VIDEO_PACKETS)
