"""Where a box's request goes, and how URLs are translated on the way.

Two modes (RFC 2326 1.3 "proxy"; reference 6.7):

*forward*
    The box is configured with hostednat as its proxy and sends absolute
    Request-URIs naming the origin server.  The URI passes unchanged; its
    host must be on the allow-list, else 403.

*reverse*
    The box's URL points at hostednat itself.  A path prefix selects the
    upstream server; the Request-URI is rewritten to the upstream URL, and
    every URL the server sends back (``Content-Base``, ``Content-Location``,
    ``RTP-Info`` urls, ``Location``, absolute ``a=control`` in SDP) is
    rewritten the other way, so that the box keeps talking to hostednat.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import attrs

from hostednat.config import Route

DEFAULT_RTSP_PORT = 554
"""RFC 2326 3.2: the default port of the rtsp scheme."""

_RESOLVED_CACHE = 4096
"""Request-URIs whose route is remembered; the cache starts over when full."""


class RouteRefused(Exception):
    """The Request-URI names nothing this proxy may reach."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


@attrs.frozen
class UrlMap:
    """Translates URLs between the box's view and the server's view.

    :param box_base: ``rtsp://authority/prefix`` as the box wrote it.
    :param upstream_base: the route's upstream URL.
    """

    box_base: str = ""
    upstream_base: str = ""

    @property
    def identity(self) -> bool:
        return self.box_base == self.upstream_base

    def to_upstream(self, url: str) -> str:
        return _swap_base(url, self.box_base, self.upstream_base)

    def to_box(self, url: str) -> str:
        return _swap_base(url, self.upstream_base, self.box_base)


IDENTITY = UrlMap()


@attrs.frozen
class Target:
    """An upstream server and how to address it."""

    host: str
    port: int
    urls: UrlMap

    @property
    def authority(self) -> tuple[str, int]:
        return (self.host, self.port)


class Router:
    """Picks the :class:`Target` for a Request-URI."""

    def __init__(
        self, mode: str, routes: Sequence[Route] = (), allow: Sequence[str] = ()
    ) -> None:
        self._mode = mode
        self._routes = sorted(routes, key=lambda route: len(route.prefix), reverse=True)
        self._allow = {entry.lower() for entry in allow}
        self._resolved: dict[str, Target] = {}

    def resolve(self, uri: str) -> Target:
        """Return the target for ``uri``.

        Boxes repeat the same few URLs; answers are remembered (a bounded
        number of them) since they depend only on the configuration.

        :raises RouteRefused: 400 for a URI that is not an rtsp URL, 403 for
            one that no route or allow-list entry covers.
        """
        target = self._resolved.get(uri)
        if target is None:
            target = self._resolve(uri)
            if len(self._resolved) >= _RESOLVED_CACHE:
                self._resolved.clear()
            self._resolved[uri] = target
        return target

    def _resolve(self, uri: str) -> Target:
        if uri == "*":
            if self._mode == "reverse" and len(self._routes) == 1:
                return self._reverse_target(self._routes[0], "")
            raise RouteRefused(400, "Bad Request")
        parts = urlsplit(uri)
        if parts.scheme.lower() not in ("rtsp", "rtspu") or not parts.hostname:
            raise RouteRefused(400, "Bad Request")
        if self._mode == "forward":
            return self._forward_target(uri)
        path = parts.path or "/"
        for route in self._routes:
            if _under(path, route.prefix):
                box_base = f"{parts.scheme}://{parts.netloc}{route.prefix}"
                return self._reverse_target(route, box_base)
        raise RouteRefused(403, "Forbidden")

    def _forward_target(self, uri: str) -> Target:
        parts = urlsplit(uri)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or DEFAULT_RTSP_PORT
        except ValueError:
            raise RouteRefused(400, "Bad Request") from None
        if host not in self._allow and f"{host}:{port}" not in self._allow:
            raise RouteRefused(403, "Forbidden")
        return Target(host, port, IDENTITY)

    def _reverse_target(self, route: Route, box_base: str) -> Target:
        upstream = urlsplit(route.upstream)
        host = upstream.hostname or ""
        port = upstream.port or DEFAULT_RTSP_PORT
        return Target(host, port, UrlMap(box_base, route.upstream))


def _under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it, on a segment boundary."""
    if prefix.endswith("/"):
        return path.startswith(prefix) or path + "/" == prefix
    return path == prefix or path.startswith(prefix + "/")


def _swap_base(url: str, old: str, new: str) -> str:
    if not old or not _startswith_ci(url, old):
        return url
    rest = url[len(old) :]
    if new.endswith("/") and rest.startswith("/"):
        rest = rest[1:]
    elif rest and not new.endswith("/") and not rest.startswith(("/", "?")):
        rest = "/" + rest
    return new + rest


def _startswith_ci(url: str, base: str) -> bool:
    """Prefix test that ignores case in scheme and authority only."""
    if len(url) < len(base):
        return url + "/" == base
    head, tail = url[: len(base)], base
    scheme_end = tail.find("://")
    authority_end = tail.find("/", scheme_end + 3) if scheme_end >= 0 else -1
    if authority_end < 0:
        authority_end = len(tail)
    return (
        head[:authority_end].lower() == tail[:authority_end].lower()
        and head[authority_end:] == tail[authority_end:]
    )
