"""The Twisted side of the Diameter peers: what they ask of their TCP transport."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from hostednat.diameter.transport import DiameterServerFactory

from .helpers import SPDF, frames


class NoDelayTransport(StringTransport):
    """A StringTransport that records ``setTcpNoDelay``."""

    def __init__(self) -> None:
        super().__init__()
        self.no_delay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


def test_peer_connection_turns_nagle_off() -> None:
    """Each Diameter connection sets TCP_NODELAY when it is made."""
    factory = DiameterServerFactory(SPDF, Clock(), lambda driver: None)
    protocol = factory.buildProtocol(None)
    transport = NoDelayTransport()

    protocol.makeConnection(transport)

    assert transport.no_delay


def test_transport_without_tcp_options_still_connects() -> None:
    """A transport with no setTcpNoDelay (not TCP) is used as it is."""
    drivers = []
    factory = DiameterServerFactory(SPDF, Clock(), drivers.append)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()

    protocol.makeConnection(transport)

    assert drivers and frames(transport.value()) == []
