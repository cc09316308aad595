"""A host on the access segment that tries to latch media meant for the box.

The intruder does not learn the box's ports: it sprays every port of the
edge's configured access range, round after round, from one socket, and
records whatever comes back to it.  The rounds cycle through what real
clients send as punch packets (RFC 3550 section 5.1 and 6.4.2 headers as
ffmpeg sends them, and GStreamer's 200 random bytes), so a relay that latches
on "anything" or on "anything that looks like RTP" is both tried.

Every datagram goes to an address inside the lab; the number of rounds is
capped so that the spray stays bounded even if the test hangs.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

# ffmpeg's punch packets: an empty RTP header (V=2, PT 0, seq 0, ts 0,
# SSRC 0) and an empty RTCP receiver report (V=2, RC 0, PT 201, length 1).
RTP_PUNCH = bytes([0x80, 0x00]) + bytes(10)
RTCP_PUNCH = bytes([0x80, 0xC9, 0x00, 0x01]) + bytes(4)

# GStreamer rtspsrc punches with datagrams of this many random bytes.
GST_PUNCH_SIZE = 200

# Seconds between rounds, and the most rounds one spray sends.
ROUND_INTERVAL = 0.1
MAX_ROUNDS = 200


@dataclass
class Received:
    """One datagram that reached the intruder."""

    source: tuple[str, int]
    size: int


@dataclass
class Sprayer:
    """Sprays UDP at a port range from one socket, on a background thread.

    :ivar sock: a UDP socket opened in the intruder's namespace.
    :ivar target: the edge's access address.
    :ivar ports: the ports to spray, every round.
    :ivar sent: datagrams sent so far.
    :ivar rounds: rounds completed so far.
    :ivar received: datagrams that came back.
    """

    sock: socket.socket
    target: str
    ports: Sequence[int]
    sent: int = 0
    rounds: int = 0
    received: list[Received] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _round_done: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def start(self, bind_address: str) -> None:
        """Bind the socket and start spraying.

        :param bind_address: the intruder's own address.
        """
        self.sock.bind((bind_address, 0))
        self.sock.setblocking(False)
        self._thread = threading.Thread(
            target=self._spray, name="intruder", daemon=True
        )
        self._thread.start()

    def wait_rounds(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` rounds went out.

        :param count: how many rounds.
        :param timeout: seconds to wait.
        :returns: whether they did.
        """
        with self._round_done:
            return self._round_done.wait_for(lambda: self.rounds >= count, timeout)

    def stop(self, linger: float = 0.5) -> None:
        """Stop spraying, then keep listening a little for late answers.

        :param linger: seconds to keep receiving after the last round.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._stop.clear()
        self._drain(linger)

    def _payload(self) -> bytes:
        """What this round sends: the three punch styles in turn."""
        kind = self.rounds % 3
        if kind == 0:
            return RTP_PUNCH
        if kind == 1:
            return RTCP_PUNCH
        return os.urandom(GST_PUNCH_SIZE)

    def _spray(self) -> None:
        while not self._stop.is_set() and self.rounds < MAX_ROUNDS:
            payload = self._payload()
            for port in self.ports:
                try:
                    self.sock.sendto(payload, (self.target, port))
                    self.sent += 1
                except BlockingIOError:
                    pass
            with self._round_done:
                self.rounds += 1
                self._round_done.notify_all()
            self._drain(ROUND_INTERVAL)

    def _drain(self, seconds: float) -> None:
        """Receive everything that arrives for a while."""
        expires = time.monotonic() + seconds
        while (remaining := expires - time.monotonic()) > 0:
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                continue
            try:
                data, source = self.sock.recvfrom(65535)
            except (BlockingIOError, ConnectionRefusedError):
                # ConnectionRefusedError: a queued ICMP error, not a datagram.
                continue
            self.received.append(Received(source=source, size=len(data)))
