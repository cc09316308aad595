"""Structured RTSP header values the proxy reads or rewrites.

- Session (RFC 2326 12.37, RFC 7826 18.49): ``session-id [;timeout=N]``.
- Via (RFC 2326 12.43 by reference to RFC 2616 14.45, RFC 7826 18.57):
  the received-by entry a proxy adds.
- RTP-Info (RFC 2326 12.33, RFC 7826 18.45): per-stream ``url=`` entries
  whose URLs a transparent proxy rewrites.

Rewriting functions change only the part they are about and leave every
other character where it was. Not supported: RTSP 2.0 RTP-Info entries
with several ``ssrc=`` blocks are read with the last block's values.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable

from hostednat.rtsp.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_SESSION_TIMEOUT",
    "format_via",
    "parse_rtp_info",
    "parse_session",
    "rewrite_rtp_info_urls",
]

#: RFC 2326 12.37, RFC 7826 18.49: timeout when the server names none.
DEFAULT_SESSION_TIMEOUT = 60.0


def parse_session(value: str) -> tuple[str, float | None]:
    """Split a Session value into the session id and its timeout.

    RFC 2326 12.37::

        Session = "Session" ":" session-id [ ";" "timeout" "=" delta-seconds ]

    :param value: the header value.
    :returns: the id as written and the timeout in seconds, None when it
        is absent or not a positive number (the caller then applies
        :data:`DEFAULT_SESSION_TIMEOUT`).
    :raises RemoteProtocolError: when the session id is empty.
    """
    session_id, _, rest = value.partition(";")
    session_id = session_id.strip()
    if not session_id:
        raise RemoteProtocolError(f"empty session id in {value!r}")
    timeout: float | None = None
    for parameter in rest.split(";"):
        name, _, number = parameter.partition("=")
        if name.strip().lower() != "timeout":
            continue
        try:
            seconds = float(number.strip())
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds > 0:
            timeout = seconds
    return session_id, timeout


@functools.lru_cache(maxsize=64)
def format_via(version: str, pseudonym: str) -> str:
    """Return the Via entry a proxy adds, e.g. ``RTSP/1.0 hostednat``.

    RFC 2326 12.43 (RFC 2616 14.45): received-protocol SP received-by; the
    protocol name stays explicit because RTSP is not HTTP.

    :param version: the version of the hop, e.g. ``RTSP/1.0``.
    :param pseudonym: the proxy's host name or pseudonym.
    :raises LocalProtocolError: if either part holds a separator.
    """
    for part in (version, pseudonym):
        if not part or any(char in part for char in " \t\r\n,;"):
            raise LocalProtocolError(f"illegal Via element {part!r}")
    return f"{version} {pseudonym}"


# RFC 2326 12.33:  RTP-Info = "RTP-Info" ":" 1#stream-url 1*parameter
#                  stream-url = "url" "=" url
#                  parameter = ";" "seq" "=" 1*DIGIT | ";" "rtptime" "=" 1*DIGIT
# RFC 7826 18.45:  rtsp-info-spec = stream-url 1*ssrc-parameter
#                  stream-url = "url" EQUAL DQUOTE URI DQUOTE
#                  ssrc-parameter = LWS "ssrc" EQUAL ssrc HCOLON ri-parameter
#                                   *(SEMI ri-parameter)
# An unquoted 1.0 URL ends at ";", whitespace, or a comma that starts the
# next url= entry; a comma inside the URL is kept.
_URL_ENTRY = re.compile(
    r"""(?:^|,)\s*url\s*=\s*
        ( "[^"]*"
        | [^;,\s]*(?:,(?!\s*url\s*=)[^;,\s]*)* )""",
    re.IGNORECASE | re.VERBOSE,
)


def parse_rtp_info(value: str) -> list[dict[str, str]]:
    """Parse RTP-Info into one dict per stream.

    Keys are lower-case parameter names (``url``, ``seq``, ``rtptime``, and
    ``ssrc`` in 2.0); the URL is unquoted.
    """
    matches = list(_URL_ENTRY.finditer(value))
    entries: list[dict[str, str]] = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(value)
        entry = {"url": match[1].strip('"')}
        rest = value[match.end() : end].replace(" ", ";").replace("\t", ";")
        for parameter in rest.split(";"):
            name, _, item = parameter.partition("=")
            name = name.strip().lower()
            if not name:
                continue
            if name == "ssrc" and ":" in item:
                # RFC 7826: ssrc=0A13C760:seq=45102
                item, _, tail = item.partition(":")
                tail_name, _, tail_value = tail.partition("=")
                entry[tail_name.strip().lower()] = tail_value.strip()
            entry[name] = item.strip()
        entries.append(entry)
    return entries


def rewrite_rtp_info_urls(value: str, fn: Callable[[str], str]) -> str:
    """Apply *fn* to each stream URL of an RTP-Info value.

    Quotes stay around quoted URLs; every other character is kept.

    :param value: the header value.
    :param fn: maps an old URL to the new one.
    """

    def replace(match: re.Match[str]) -> str:
        url = match[1]
        quoted = url.startswith('"')
        new = fn(url[1:-1] if quoted else url)
        if quoted:
            new = f'"{new}"'
        offset = match.start()
        whole = match[0]
        return whole[: match.start(1) - offset] + new + whole[match.end(1) - offset :]

    return _URL_ENTRY.sub(replace, value)
