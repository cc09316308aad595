"""RTSP errors that carry the status code of the answer they call for.

Two families, after h11: :class:`RemoteProtocolError` and its subclasses
mean the peer sent something we cannot accept, and the adapter answers
with the error's :attr:`~RtspError.status` before closing;
:class:`LocalProtocolError` means our own code asked for something the
protocol forbids (a header value with a line break, say).

:data:`REASONS` holds the reason phrases of RFC 2326 7.1.1 and RFC 7826
17; where the two differ the RTSP 1.0 phrase is kept, since most boxes in
the field speak 1.0.
"""

from __future__ import annotations

__all__ = [
    "REASONS",
    "BadTransport",
    "BodyTooLarge",
    "HeaderTooLarge",
    "LocalProtocolError",
    "RemoteProtocolError",
    "RtspError",
    "UnsupportedVersion",
]

# RFC 2326 7.1.1 (RTSP 1.0) and RFC 7826 17 (RTSP 2.0).
REASONS: dict[int, str] = {
    100: "Continue",
    200: "OK",
    201: "Created",
    250: "Low on Storage Space",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Time-out",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    415: "Unsupported Media Type",
    451: "Parameter Not Understood",
    452: "Conference Not Found",
    453: "Not Enough Bandwidth",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    456: "Header Field Not Valid for Resource",
    457: "Invalid Range",
    458: "Parameter Is Read-Only",
    459: "Aggregate Operation Not Allowed",
    460: "Only Aggregate Operation Allowed",
    461: "Unsupported Transport",
    462: "Destination Unreachable",
    463: "Destination Prohibited",
    464: "Data Transport Not Ready Yet",
    465: "Notification Reason Unknown",
    466: "Key Management Error",
    470: "Connection Authorization Required",
    471: "Connection Credentials Not Accepted",
    472: "Failure to Establish Secure Connection",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
    505: "RTSP Version Not Supported",
    551: "Option Not Supported",
    553: "Proxy Unavailable",
}


class RtspError(Exception):
    """Base of every RTSP codec error.

    :attr:`status` and :attr:`reason` are the answer the adapter should send
    when the error ends a request; subclasses set their own defaults.
    """

    status: int = 500
    reason: str = REASONS[500]

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
            self.reason = REASONS.get(status, self.reason)


class LocalProtocolError(RtspError):
    """Our own code tried to build a message the protocol does not allow."""

    status = 500
    reason = REASONS[500]


class RemoteProtocolError(RtspError):
    """The peer sent bytes that are not a valid RTSP message.

    :param message: what was wrong, for the log.
    :param status: the status to answer with; 400 unless a subclass or the
        caller knows better.
    """

    status = 400
    reason = REASONS[400]

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status)


class HeaderTooLarge(RemoteProtocolError):
    """The header block grew past the parser's cap before it ended.

    Answered with 400: RTSP has no 431, and RFC 2326 has no header-size code.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status)


class BodyTooLarge(RemoteProtocolError):
    """Content-Length announces a body larger than the parser accepts."""

    status = 413
    reason = REASONS[413]

    def __init__(self, message: str, status: int = 413) -> None:
        super().__init__(message, status)


class UnsupportedVersion(RemoteProtocolError):
    """The start line names a version other than RTSP/1.0 or RTSP/2.0."""

    status = 505
    reason = REASONS[505]

    def __init__(self, message: str, status: int = 505) -> None:
        super().__init__(message, status)


class BadTransport(RemoteProtocolError):
    """A Transport header (RFC 2326 12.39, RFC 7826 18.54) does not parse."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status)
