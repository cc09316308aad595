"""Tests of the Session, Via and RTP-Info header helpers."""

from __future__ import annotations

import pytest

from hostednat.rtsp.errors import LocalProtocolError, RemoteProtocolError
from hostednat.rtsp.headers import (
    format_via,
    parse_rtp_info,
    parse_session,
    rewrite_rtp_info_urls,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("slXLATMbDZi.qGD2", ("slXLATMbDZi.qGD2", None)),
        ("80341952;timeout=60", ("80341952", 60.0)),
        ("  abc ; timeout = 30 ", ("abc", 30.0)),
        ("abc;TIMEOUT=2.5", ("abc", 2.5)),
        ("abc;x-ext=1;timeout=45", ("abc", 45.0)),
        ("abc;timeout=soon", ("abc", None)),
        ("abc;timeout=0", ("abc", None)),
        ("abc;timeout=-5", ("abc", None)),
        ("abc;timeout=inf", ("abc", None)),
    ],
)
def test_parse_session(value: str, expected: tuple[str, float | None]) -> None:
    """The session id is kept as written and a usable timeout is read."""
    assert parse_session(value) == expected


@pytest.mark.parametrize("value", ["", "  ", ";timeout=60"])
def test_parse_session_empty_id(value: str) -> None:
    """A Session header without an id is a 400."""
    with pytest.raises(RemoteProtocolError) as caught:
        parse_session(value)

    assert caught.value.status == 400


def test_format_via() -> None:
    """The Via entry names the protocol, version and pseudonym."""
    assert format_via("RTSP/1.0", "hostednat") == "RTSP/1.0 hostednat"
    assert format_via("RTSP/2.0", "edge1.example") == "RTSP/2.0 edge1.example"


@pytest.mark.parametrize(
    ("version", "pseudonym"),
    [("RTSP/1.0", "two words"), ("RTSP/1.0", "a,b"), ("", "x"), ("RTSP/1.0", "")],
)
def test_format_via_refuses_separators(version: str, pseudonym: str) -> None:
    """Elements that would break the Via list are refused."""
    with pytest.raises(LocalProtocolError):
        format_via(version, pseudonym)


GST_RTP_INFO = (
    "url=rtsp://127.0.0.1:8554/test/stream=0;seq=21001;rtptime=1192854325, "
    "url=rtsp://127.0.0.1:8554/test/stream=1;seq=4322;rtptime=3858178378"
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            GST_RTP_INFO,
            [
                {
                    "url": "rtsp://127.0.0.1:8554/test/stream=0",
                    "seq": "21001",
                    "rtptime": "1192854325",
                },
                {
                    "url": "rtsp://127.0.0.1:8554/test/stream=1",
                    "seq": "4322",
                    "rtptime": "3858178378",
                },
            ],
            id="gst-1.0",
        ),
        pytest.param(
            "url=rtsp://192.0.2.1/a,b/track1;seq=1,url=rtsp://192.0.2.1/a,b/track2",
            [
                {"url": "rtsp://192.0.2.1/a,b/track1", "seq": "1"},
                {"url": "rtsp://192.0.2.1/a,b/track2"},
            ],
            id="comma-inside-url",
        ),
        pytest.param(
            'url="rtsp://192.0.2.1/foo/audio" ssrc=0A13C760:seq=45102;'
            'rtptime=12345678,url="rtsp://192.0.2.1/foo/video" '
            "ssrc=9A9DE123:seq=30211;rtptime=29567112",
            [
                {
                    "url": "rtsp://192.0.2.1/foo/audio",
                    "ssrc": "0A13C760",
                    "seq": "45102",
                    "rtptime": "12345678",
                },
                {
                    "url": "rtsp://192.0.2.1/foo/video",
                    "ssrc": "9A9DE123",
                    "seq": "30211",
                    "rtptime": "29567112",
                },
            ],
            id="rtsp2-quoted-ssrc",
        ),
        pytest.param("", [], id="empty"),
    ],
)
def test_parse_rtp_info(value: str, expected: list[dict[str, str]]) -> None:
    """RTP-Info entries parse into per-stream dicts, 1.0 and 2.0 forms."""
    assert parse_rtp_info(value) == expected


def test_rewrite_rtp_info_urls_keeps_everything_else() -> None:
    """Only URLs change; separators, spacing and parameters stay."""

    def to_proxy(url: str) -> str:
        return url.replace("127.0.0.1:8554", "203.0.113.1")

    assert rewrite_rtp_info_urls(GST_RTP_INFO, to_proxy) == GST_RTP_INFO.replace(
        "127.0.0.1:8554", "203.0.113.1"
    )


def test_rewrite_rtp_info_urls_keeps_quotes() -> None:
    """Quoted 2.0 URLs stay quoted and the ssrc blocks stay untouched."""
    value = 'url="rtsp://192.0.2.1/a" ssrc=0A13C760:seq=1;rtptime=2'

    rewritten = rewrite_rtp_info_urls(value, lambda url: url + "/x")

    assert rewritten == 'url="rtsp://192.0.2.1/a/x" ssrc=0A13C760:seq=1;rtptime=2'


def test_rewrite_rtp_info_urls_leaves_lookalikes() -> None:
    """A url= inside a URL query is not taken for an entry."""
    value = "url=rtsp://192.0.2.1/a?url=b;seq=1"
    seen: list[str] = []

    def record(url: str) -> str:
        seen.append(url)
        return "rtsp://203.0.113.1/a?url=b"

    assert (
        rewrite_rtp_info_urls(value, record) == "url=rtsp://203.0.113.1/a?url=b;seq=1"
    )
    assert seen == ["rtsp://192.0.2.1/a?url=b"]
