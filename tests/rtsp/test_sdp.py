"""Tests of the SDP reading and control-URL helpers (RFC 4566, RFC 2326 C)."""

from __future__ import annotations

import pytest

from hostednat.rtsp.sdp import (
    MediaDescription,
    SessionDescription,
    match_media,
    parse_sdp,
    resolve_control,
    rewrite_controls,
)

ABSOLUTE = (
    b"v=0\r\n"
    b"o=- 1 1 IN IP4 192.0.2.1\r\n"
    b"s=Channel 1\r\n"
    b"b=AS:4000\r\n"
    b"t=0 0\r\n"
    b"a=control:rtsp://192.0.2.1:554/live/ch1\r\n"
    b"m=video 0 RTP/AVP 96\r\n"
    b"b=AS:3500\r\n"
    b"b=TIAS:3400000\r\n"
    b"a=rtpmap:96 H264/90000\r\n"
    b"a=control:rtsp://192.0.2.1:554/live/ch1/trackID=1\r\n"
    b"m=audio 0 RTP/AVP 97 0\r\n"
    b"b=RR:800\r\n"
    b"b=RS:0\r\n"
    b"a=rtpmap:97 MPEG4-GENERIC/48000/2\r\n"
    b"a=control:trackID=2\r\n"
)


def test_parse_absolute_controls_and_bandwidth() -> None:
    """Session and media controls, formats, rtpmaps and b= lines are read."""
    sdp = parse_sdp(ABSOLUTE)

    assert sdp.control == "rtsp://192.0.2.1:554/live/ch1"
    assert sdp.bandwidth == {"AS": 4000}
    assert sdp.media == (
        MediaDescription(
            1,
            "video",
            0,
            "RTP/AVP",
            ("96",),
            "rtsp://192.0.2.1:554/live/ch1/trackID=1",
            {"AS": 3500, "TIAS": 3400000},
            ("96 H264/90000",),
        ),
        MediaDescription(
            2,
            "audio",
            0,
            "RTP/AVP",
            ("97", "0"),
            "trackID=2",
            {"RR": 800, "RS": 0},
            ("97 MPEG4-GENERIC/48000/2",),
        ),
    )


def test_parse_tolerates_junk() -> None:
    """Odd lines, bad numbers and unknown modifiers are skipped, not fatal."""
    sdp = parse_sdp(
        b"v=0\n"
        b"garbage line\n"
        b"\n"
        b"b=X-YZ:12\n"
        b"b=AS:lots\n"
        b"m=video x RTP/AVP 33\n"
        b"b=CT:99\n"
        b"\xff\xfe=\n"
        b"m=audio 5000/2 MP2T/H2221/UDP\n"
        b"a=control:track2 \n"
        b"m=\n"
    )

    assert sdp.bandwidth == {}
    assert [(m.index, m.media, m.port, m.proto) for m in sdp.media] == [
        (1, "video", 0, "RTP/AVP"),
        (2, "audio", 5000, "MP2T/H2221/UDP"),
        (3, "", 0, ""),
    ]
    assert sdp.media[1].control == "track2"
    assert sdp.media[1].formats == ()


@pytest.mark.parametrize("body", [b"", b"<html>not sdp</html>", b"\x00\x01\x02"])
def test_not_sdp_parses_to_empty(body: bytes) -> None:
    """A body with no SDP line gives an empty description."""
    assert parse_sdp(body) == SessionDescription(None, (), {})


@pytest.mark.parametrize(
    ("base", "control", "expected"),
    [
        ("rtsp://192.0.2.1/test/", None, "rtsp://192.0.2.1/test/"),
        ("rtsp://192.0.2.1/test/", "*", "rtsp://192.0.2.1/test/"),
        ("rtsp://192.0.2.1/test/", "stream=0", "rtsp://192.0.2.1/test/stream=0"),
        ("rtsp://192.0.2.1/test", "stream=0", "rtsp://192.0.2.1/test/stream=0"),
        (
            "rtsp://192.0.2.1/test",
            "rtsp://198.51.100.2/other/t1",
            "rtsp://198.51.100.2/other/t1",
        ),
        ("rtsp://192.0.2.1/test", "RTSP://192.0.2.1/T", "RTSP://192.0.2.1/T"),
        ("rtsp://192.0.2.1:554/a/b", "/c/track1", "rtsp://192.0.2.1:554/c/track1"),
    ],
)
def test_resolve_control(base: str, control: str | None, expected: str) -> None:
    """``*`` is the base, absolute URLs stay, relative ones join with a slash."""
    assert resolve_control(base, control) == expected


def test_match_media_relative_controls() -> None:
    """SETUP URIs built from Content-Base and stream=N find their media."""
    sdp = parse_sdp(
        b"v=0\r\na=control:*\r\nm=video 0 RTP/AVP 26\r\na=control:stream=0\r\n"
        b"m=audio 0 RTP/AVP 96\r\na=control:stream=1\r\n"
    )
    base = "rtsp://127.0.0.1:8554/test/"

    video = match_media(sdp, base, "rtsp://127.0.0.1:8554/test/stream=0")
    audio = match_media(sdp, base, "rtsp://127.0.0.1:8554/test/stream=1")

    assert video is not None and video.index == 1
    assert audio is not None and audio.index == 2
    assert match_media(sdp, base, "rtsp://127.0.0.1:8554/test/stream=2") is None


def test_match_media_absolute_and_session_base() -> None:
    """Absolute controls match directly; relative ones use the session URL."""
    sdp = parse_sdp(ABSOLUTE)
    base = "rtsp://192.0.2.1:554/ignored/"

    video = match_media(sdp, base, "rtsp://192.0.2.1:554/live/ch1/trackID=1")
    audio = match_media(sdp, base, "rtsp://192.0.2.1:554/live/ch1/trackID=2")

    assert video is not None and video.media == "video"
    assert audio is not None and audio.media == "audio"


def test_match_media_after_host_rewrite() -> None:
    """A relative control matched at the URI's end still finds the media."""
    sdp = parse_sdp(b"v=0\nm=video 0 RTP/AVP 26\na=control:stream=0\n")

    media = match_media(
        sdp, "rtsp://198.51.100.1/test/", "rtsp://203.0.113.1/test/stream=0"
    )

    assert media is not None and media.index == 1


def test_match_media_single_media_without_control() -> None:
    """A lone media with no control is the one any SETUP is for."""
    sdp = parse_sdp(b"v=0\nm=video 0 MP2T/H2221/UDP 33\n")

    media = match_media(sdp, "rtsp://192.0.2.1/film.ts", "rtsp://192.0.2.1/film.ts")

    assert media is not None and media.index == 1


def test_rewrite_controls_changes_only_absolute_urls() -> None:
    """Absolute controls at both levels are rewritten; all else is kept."""

    def to_proxy(url: str) -> str:
        return url.replace("192.0.2.1:554", "203.0.113.1")

    rewritten = rewrite_controls(ABSOLUTE, to_proxy)

    assert rewritten == ABSOLUTE.replace(
        b"a=control:rtsp://192.0.2.1:554/", b"a=control:rtsp://203.0.113.1/"
    )
    assert b"a=control:trackID=2\r\n" in rewritten
    assert b"o=- 1 1 IN IP4 192.0.2.1\r\n" in rewritten


def test_rewrite_controls_without_absolute_urls_is_identity() -> None:
    """A body with only relative controls comes back unchanged."""
    body = b"v=0\na=control:*\nm=video 0 RTP/AVP 26\na=control:stream=0"

    assert rewrite_controls(body, lambda url: "never") == body


def test_rewrite_controls_keeps_bare_lf_and_spacing() -> None:
    """Line ends and spaces around the URL stay as they were."""
    body = b"v=0\na=control: rtsp://192.0.2.1/a \nm=video 0 RTP/AVP 26\n"

    rewritten = rewrite_controls(body, lambda url: url + "/b")

    assert rewritten == b"v=0\na=control: rtsp://192.0.2.1/a/b \nm=video 0 RTP/AVP 26\n"
