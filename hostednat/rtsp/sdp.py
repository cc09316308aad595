"""The parts of an SDP description (RFC 4566) an RTSP proxy needs.

A DESCRIBE answer carries SDP; the proxy reads it to learn which media a
SETUP is for (the ``a=control:`` URL, RFC 2326 C.1.1, RFC 7826 D.1.1),
what bandwidth to reserve (``b=`` lines, RFC 4566 5.8 and RFC 3556 for
RR/RS, RFC 3890 for TIAS) and the payload formats (``a=rtpmap:``). A
transparent proxy also rewrites absolute control URLs.

Parsing is tolerant: a line that is not ``<letter>=<text>`` is skipped,
an m-line with a bad port counts as a media with port 0, and a bad ``b=``
value is dropped. A body with no SDP line at all parses to an empty
:class:`SessionDescription`. Rewriting touches only the URL of absolute
``a=control:`` lines and keeps every other byte.

Not supported: ``c=`` and ``o=`` address handling, SDP capability
negotiation, and any check of field order.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

__all__ = [
    "BANDWIDTH_MODIFIERS",
    "MediaDescription",
    "SessionDescription",
    "match_media",
    "parse_sdp",
    "resolve_control",
    "rewrite_controls",
]

#: The b= modifiers kept (RFC 4566 5.8, RFC 3556 2, RFC 3890 6.2).
BANDWIDTH_MODIFIERS = frozenset({"AS", "RR", "RS", "TIAS"})

_ABSOLUTE_SCHEMES = ("rtsp://", "rtsps://", "rtspu://")


@attrs.frozen
class MediaDescription:
    """One ``m=`` section.

    :param index: 1-based ordinal of the m-line in the description.
    :param media: ``video``, ``audio``, ``application``...
    :param port: the m-line port; 0 for most RTSP servers.
    :param proto: ``RTP/AVP``, ``MP2T/H2221/UDP``...
    :param formats: the format list, e.g. payload types.
    :param control: the media-level ``a=control:`` value as written.
    :param bandwidth: ``b=`` values by modifier (AS, RR, RS, TIAS).
    :param rtpmaps: the ``a=rtpmap:`` values, e.g. ``96 L16/8000/1``.
    """

    index: int
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    control: str | None
    bandwidth: dict[str, int]
    rtpmaps: tuple[str, ...]


@attrs.frozen
class SessionDescription:
    """A parsed description: session-level control, media and bandwidth."""

    control: str | None
    media: tuple[MediaDescription, ...]
    bandwidth: dict[str, int]


@attrs.define
class _MediaBuilder:
    index: int
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    control: str | None = None
    bandwidth: dict[str, int] = attrs.field(factory=dict)
    rtpmaps: list[str] = attrs.field(factory=list)

    def build(self) -> MediaDescription:
        return MediaDescription(
            self.index,
            self.media,
            self.port,
            self.proto,
            self.formats,
            self.control,
            self.bandwidth,
            tuple(self.rtpmaps),
        )


def _media_line(index: int, value: str) -> _MediaBuilder:
    """RFC 4566 5.14: m=<media> <port>[/<number>] <proto> <fmt> ..."""
    words = value.split()
    media = words[0] if words else ""
    port_text = words[1].partition("/")[0] if len(words) > 1 else ""
    port = int(port_text) if port_text.isascii() and port_text.isdigit() else 0
    proto = words[2] if len(words) > 2 else ""
    return _MediaBuilder(index, media, port, proto, tuple(words[3:]))


def _bandwidth(value: str, into: dict[str, int]) -> None:
    """RFC 4566 5.8: b=<bwtype>:<bandwidth>; unknown or bad ones dropped."""
    modifier, _, number = value.partition(":")
    modifier = modifier.strip().upper()
    number = number.strip()
    if modifier in BANDWIDTH_MODIFIERS and number.isascii() and number.isdigit():
        into[modifier] = int(number)


def parse_sdp(body: bytes) -> SessionDescription:
    """Read control URLs, media and bandwidth from an SDP body.

    Never raises: junk lines are skipped and a body with no SDP at all
    gives an empty description.
    """
    text = body.decode("utf-8", "replace")
    session_control: str | None = None
    session_bandwidth: dict[str, int] = {}
    media: list[_MediaBuilder] = []

    for raw in text.split("\n"):
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        current = media[-1] if media else None
        if kind == "m":
            media.append(_media_line(len(media) + 1, value))
        elif kind == "b":
            _bandwidth(value, current.bandwidth if current else session_bandwidth)
        elif kind == "a":
            name, _, attribute = value.partition(":")
            if name == "control":
                if current is None:
                    session_control = attribute.strip()
                else:
                    current.control = attribute.strip()
            elif name == "rtpmap" and current is not None:
                current.rtpmaps.append(attribute.strip())

    return SessionDescription(
        session_control, tuple(item.build() for item in media), session_bandwidth
    )


def _is_absolute(url: str) -> bool:
    return url.lower().startswith(_ABSOLUTE_SCHEMES)


def resolve_control(base: str, control: str | None) -> str:
    """Return the URL a control attribute names (RFC 2326 C.1.1).

    ``*`` or no control means the base itself; an absolute ``rtsp://`` URL
    is kept; a path starting with ``/`` replaces the base's path; anything
    else is appended to the base with one slash between them, which is
    what deployed clients (ffmpeg, GStreamer) do rather than RFC 3986
    merging.

    :param base: Content-Base, Content-Location or the request URL.
    :param control: the ``a=control:`` value.
    """
    if control is None or control in ("", "*"):
        return base
    if _is_absolute(control):
        return control
    if control.startswith("/"):
        scheme, separator, rest = base.partition("://")
        authority = rest.split("/", 1)[0]
        return f"{scheme}{separator}{authority}{control}"
    if base.endswith("/"):
        return base + control
    return f"{base}/{control}"


def _same_url(left: str, right: str) -> bool:
    return left.rstrip("/") == right.rstrip("/")


def match_media(
    sdp: SessionDescription, content_base: str, setup_uri: str
) -> MediaDescription | None:
    """Find the media a SETUP request URI is for.

    Media controls resolve against an absolute session-level control if
    there is one, else against *content_base*. When no URL matches exactly,
    a relative control matched at the end of the URI is accepted if exactly
    one media matches that way, which covers a request URI whose host was
    rewritten by a proxy. A description with one media and no controls
    matches any URI.

    :returns: the media, or None when the URI names none of them.
    """
    base = content_base
    if sdp.control is not None and _is_absolute(sdp.control):
        base = sdp.control

    for media in sdp.media:
        if media.control is not None and _same_url(
            resolve_control(base, media.control), setup_uri
        ):
            return media

    suffixes = [
        media
        for media in sdp.media
        if media.control
        and not _is_absolute(media.control)
        and setup_uri.rstrip("/").endswith("/" + media.control.strip("/"))
    ]
    if len(suffixes) == 1:
        return suffixes[0]

    if len(sdp.media) == 1 and sdp.media[0].control in (None, "*"):
        return sdp.media[0]
    return None


def rewrite_controls(body: bytes, fn: Callable[[str], str]) -> bytes:
    """Apply *fn* to every absolute ``a=control:`` URL, keep all else.

    Session-level and media-level lines are both rewritten; relative
    controls and ``*`` are left alone. Remember to update Content-Length
    after a body change (RFC 2326 12.14).
    """
    lines = body.split(b"\n")
    changed = False
    for index, line in enumerate(lines):
        if not line.startswith(b"a=control:"):
            continue
        content = line[len(b"a=control:") :]
        ending = b"\r" if content.endswith(b"\r") else b""
        url = content[: len(content) - len(ending)].decode("utf-8", "surrogateescape")
        stripped = url.strip()
        if not _is_absolute(stripped):
            continue
        new = url.replace(stripped, fn(stripped), 1)
        lines[index] = b"a=control:" + new.encode("utf-8", "surrogateescape") + ending
        changed = True
    return b"\n".join(lines) if changed else body
