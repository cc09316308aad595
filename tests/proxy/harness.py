"""A box, a proxy and a server wired through StringTransports and a Clock."""

from __future__ import annotations

import tomllib
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from hostednat.config import Config, parse
from hostednat.proxy.admission import AdmissionHook, AdmitAll
from hostednat.proxy.protocol import BoxConnection, ProxyFactory, UpstreamConnection
from hostednat.proxy.routing import Router, Target
from hostednat.proxy.session import SessionTable

from .fakes import RecordingBindingTable

BOX_ADDRESS = "192.0.2.7"
SERVER_ADDRESS = "203.0.113.10"

REVERSE = """
[rtsp]
listen = ["tcp:8554"]
response_timeout = 5.0
max_header_bytes = 2048
[[routes]]
prefix = "/"
upstream = "rtsp://203.0.113.10:8554/"
[nat]
access_address = "198.51.100.1"
core_address = "203.0.113.1"
"""


class ScriptedFactory(ProxyFactory):
    """Connects upstream to a StringTransport instead of the network."""

    refuse = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.targets: list[Target] = []
        self.upstreams: list[UpstreamConnection] = []

    def connect_upstream(
        self, target: Target, box: BoxConnection
    ) -> Deferred[UpstreamConnection]:
        self.targets.append(target)
        if self.refuse:
            return fail(ConnectionRefusedError())
        upstream = UpstreamConnection(box)
        address = IPv4Address("TCP", SERVER_ADDRESS, target.port)
        upstream.makeConnection(StringTransport(peerAddress=address))
        self.upstreams.append(upstream)
        return succeed(upstream)


class Harness:
    """One box connection through the proxy to one scripted server."""

    def __init__(
        self,
        config_text: str = REVERSE,
        admission: AdmissionHook | None = None,
        capacity: int = 100,
    ) -> None:
        self.config: Config = parse(tomllib.loads(config_text), "test.toml")
        self.clock = Clock()
        self.bindings = RecordingBindingTable(capacity)
        self.admission = admission if admission is not None else AdmitAll()
        rtsp = self.config.rtsp
        self.sessions = SessionTable(
            self.clock,
            self.bindings,
            self.admission,
            default_timeout=rtsp.default_session_timeout,
            grace=rtsp.session_timeout_grace,
        )
        router = Router(rtsp.mode, self.config.routes, self.config.forward_allow)
        self.factory = ScriptedFactory(
            self.clock,
            rtsp,
            self.config.nat,
            router,
            self.bindings,
            self.sessions,
            self.admission,
        )
        self.box = self.factory.buildProtocol(None)
        self.box_transport = StringTransport(
            peerAddress=IPv4Address("TCP", BOX_ADDRESS, 40000)
        )
        self.box.makeConnection(self.box_transport)

    @property
    def upstream(self) -> UpstreamConnection:
        return self.factory.upstreams[-1]

    @property
    def server_transport(self) -> StringTransport:
        transport = self.upstream.transport
        assert isinstance(transport, StringTransport)
        return transport

    def box_sends(self, data: bytes) -> None:
        self.box.dataReceived(data)

    def server_sends(self, data: bytes) -> None:
        self.upstream.dataReceived(data)

    def server_sees(self) -> bytes:
        if not self.factory.upstreams:
            return b""
        data: bytes = self.server_transport.value()
        self.server_transport.clear()
        return data

    def box_sees(self) -> bytes:
        data: bytes = self.box_transport.value()
        self.box_transport.clear()
        return data

    def server_closes(self) -> None:
        self.upstream.connectionLost(Failure(ConnectionLost()))

    def box_closes(self) -> None:
        self.box.connectionLost(Failure(ConnectionLost()))


def request(
    method: str, uri: str, cseq: int, *headers: str, body: bytes = b""
) -> bytes:
    """An RTSP/1.0 request as a box would write it."""
    lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {cseq}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answer(status: int, cseq: int, *headers: str, body: bytes = b"") -> bytes:
    """An RTSP/1.0 answer as a server would write it."""
    reason = {200: "OK", 454: "Session Not Found", 461: "Unsupported transport"}
    lines = [f"RTSP/1.0 {status} {reason.get(status, 'Error')}", f"CSeq: {cseq}"]
    lines.extend(headers)
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


__all__ = ["AdmitAll", "Harness", "answer", "request"]
