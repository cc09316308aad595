"""Choosing the upstream and translating URLs between box and server."""

from __future__ import annotations

import pytest

from hostednat.config import Route
from hostednat.proxy.routing import Router, RouteRefused

ROUTES = [
    Route("/", "rtsp://203.0.113.10:8554/"),
    Route("/live", "rtsp://203.0.113.20/channels"),
]


@pytest.mark.parametrize(
    ("uri", "upstream", "host", "port"),
    [
        (
            "rtsp://198.51.100.1/test",
            "rtsp://203.0.113.10:8554/test",
            "203.0.113.10",
            8554,
        ),
        (
            "rtsp://198.51.100.1/live/1",
            "rtsp://203.0.113.20/channels/1",
            "203.0.113.20",
            554,
        ),
        (
            "rtsp://198.51.100.1/live",
            "rtsp://203.0.113.20/channels",
            "203.0.113.20",
            554,
        ),
        (
            "rtsp://198.51.100.1/lively",
            "rtsp://203.0.113.10:8554/lively",
            "203.0.113.10",
            8554,
        ),
        (
            "RTSP://198.51.100.1:554/live/x?a=1",
            "rtsp://203.0.113.20/channels/x?a=1",
            "203.0.113.20",
            554,
        ),
    ],
)
def test_reverse_routes_by_longest_prefix(
    uri: str, upstream: str, host: str, port: int
) -> None:
    """The longest prefix on a segment boundary picks the upstream."""
    target = Router("reverse", ROUTES).resolve(uri)
    assert target.urls.to_upstream(uri) == upstream
    assert (target.host, target.port) == (host, port)


def test_reverse_maps_server_urls_back_to_the_box_view() -> None:
    """URLs in answers are turned back into what the box used."""
    target = Router("reverse", ROUTES).resolve("rtsp://198.51.100.1:8554/live/1")
    urls = target.urls
    assert (
        urls.to_box("rtsp://203.0.113.20/channels/") == "rtsp://198.51.100.1:8554/live/"
    )
    assert urls.to_box("rtsp://203.0.113.20/channels/1/trackID=2") == (
        "rtsp://198.51.100.1:8554/live/1/trackID=2"
    )
    assert urls.to_box("rtsp://192.0.2.99/other") == "rtsp://192.0.2.99/other"


def test_reverse_without_matching_route_is_forbidden() -> None:
    """A path no route covers is refused with 403."""
    router = Router("reverse", [Route("/live", "rtsp://203.0.113.20/")])
    with pytest.raises(RouteRefused) as caught:
        router.resolve("rtsp://198.51.100.1/vod/1")
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("uri", "status"),
    [
        ("rtsp://203.0.113.10/x", None),
        ("rtsp://203.0.113.10:8554/x", None),
        ("rtsp://203.0.113.11/x", 403),
        ("http://203.0.113.10/x", 400),
        ("junk", 400),
    ],
)
def test_forward_mode_checks_the_allow_list(uri: str, status: int | None) -> None:
    """Forward mode accepts allowed origins unchanged and refuses the rest."""
    router = Router("forward", allow=["203.0.113.10"])
    if status is None:
        target = router.resolve(uri)
        assert target.urls.to_upstream(uri) == uri
        return
    with pytest.raises(RouteRefused) as caught:
        router.resolve(uri)
    assert caught.value.status == status
