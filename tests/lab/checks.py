"""What "media arrived" means in the end-to-end tests, in one place."""

from __future__ import annotations

from .clients import ClientResult

# ffmpeg -t 5 at 15 frames/s yields about 75 video frames; 40 leaves room
# for session setup and a slow first keyframe.
FFMPEG_SECONDS = 5
MIN_FFMPEG_VIDEO_FRAMES = 40

# A 6 s GStreamer run, setup included; a 320x240 JPEG frame spans several
# RTP packets, so 40 packets is a fraction of a second of video.
GST_SECONDS = 6
MIN_GST_VIDEO_PACKETS = 40

# Presentation-time span each stream must cover: media kept flowing for
# most of the run, not one burst at its start.
MIN_MEDIA_SPAN = 4.0


def assert_both_streams(result: ClientResult, min_video: int) -> None:
    """Check that video and audio both arrived throughout the run.

    :param result: a client run.
    :param min_video: the fewest video units (frames or RTP packets) accepted.
    :raises AssertionError: with the client's summary and standard error.
    """
    assert result.count("video") >= min_video, result.describe()
    assert result.count("audio") > 0, result.describe()
    assert result.span("video") >= MIN_MEDIA_SPAN, result.describe()
    assert result.span("audio") >= MIN_MEDIA_SPAN, result.describe()


def assert_no_media(result: ClientResult) -> None:
    """Check that nothing at all arrived on any stream.

    :param result: a client run.
    :raises AssertionError: with the client's summary and standard error.
    """
    assert result.total == 0, result.describe()
