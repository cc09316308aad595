"""Latching rules for one leg of a binding, without sockets or clocks.

The access side of a binding learns where the box's media goes from the
first datagram the box sends to it: the source address of that datagram is
the home gateway's public mapping (RFC 7604 4.4-4.6).  :class:`LatchGuard`
decides, datagram by datagram, whether a source may become or stay the
latched one.  The caller passes the time as ``now`` (seconds, any epoch, the
same clock throughout) and acts on the returned :class:`LatchDecision`.

Rules (hosted-NAT reference 7.2):

- only the box's own address may latch (rule 1); every other IP is foreign
  and never latches, not even after the latched source goes silent;
- latching is allowed only while a window is open: from the SETUP answer for
  ``window`` seconds, and again after an explicit relatch (rule 2, 3a); the
  first acceptable datagram latches and closes the window ("latch once");
  a datagram from the endpoint already latched also closes it, since it
  shows that the box's mapping has not changed;
- any datagram latches, whatever its payload (reference 6.10: ffmpeg sends
  an RTP header and an empty RTCP RR, GStreamer 200 random bytes, live555
  four bytes), so the guard never sees payloads;
- outside a window, a different port of the latched IP relatches only once
  the latched source has been silent for ``relatch_after`` seconds: a NAT
  rebinding rather than a second sender (rule 3b); a change of IP needs a
  window, that is the proxy's say-so;
- RTP and RTCP each have their own guard, since a NAPT may map the two box
  ports to unrelated public ports (rule 4).

Not supported: operator lists of several allowed IPs for CG-NAT pools that
are not "paired" (RFC 4787 REQ-2), and the nonce-based latching of RFC 7604
4.6, which legacy boxes cannot do.
"""

from __future__ import annotations

import enum
import ipaddress

from hostednat.nat.binding import Endpoint

__all__ = ["LatchDecision", "LatchGuard"]


class LatchDecision(enum.Enum):
    """What to do with one datagram that reached a leg's access port."""

    #: First acceptable datagram: its source is now the latched endpoint.
    LATCHED = "latched"
    #: The latched endpoint changed (NAT rebinding or explicit relatch).
    RELATCHED = "relatched"
    #: From the latched endpoint; it refreshed the endpoint's liveness.
    ACCEPTED = "accepted"
    #: From an IP other than the box's; drop it.
    DROPPED_FOREIGN = "dropped_foreign"
    #: From the box's IP, but it may not latch now; drop it.
    DROPPED_WINDOW = "dropped_window"

    @property
    def latches(self) -> bool:
        """Whether the datagram set a new latched endpoint."""
        return self is LatchDecision.LATCHED or self is LatchDecision.RELATCHED

    @property
    def accepted(self) -> bool:
        """Whether the datagram comes from the (possibly new) latched endpoint."""
        return not (
            self is LatchDecision.DROPPED_FOREIGN
            or self is LatchDecision.DROPPED_WINDOW
        )


class LatchGuard:
    """The latching state of one leg.

    :param allowed_ip: the only IP that may latch: the source of the box's
        RTSP connection, the gateway's public address (rule 1).
    :param window: seconds a latch window stays open (rule 2 suggests 30).
    :param relatch_after: seconds of silence from the latched endpoint after
        which another port of the same IP may take over (rule 3b suggests 10).
    :raises ValueError: ``allowed_ip`` is not an IP address, or a duration is
        negative.
    """

    def __init__(self, allowed_ip: str, window: float, relatch_after: float) -> None:
        if window < 0 or relatch_after < 0:
            raise ValueError("latch durations must not be negative")

        # The canonical text, as recvfrom() reports a source address; an
        # IPv4 box reaching a dual-stack socket shows as ::ffff:a.b.c.d.
        address = ipaddress.ip_address(allowed_ip)
        self.allowed_ip = address.compressed
        hosts = {address.compressed}
        if address.version == 4:
            hosts.add(f"::ffff:{address.compressed}")
        self._allowed_hosts = frozenset(hosts)
        self.window = window
        self.relatch_after = relatch_after
        self._window_ends: float | None = None
        self._latched: Endpoint | None = None
        self._last_seen = 0.0

    @property
    def latched(self) -> Endpoint | None:
        """The endpoint media goes to, or ``None`` before the first latch."""
        return self._latched

    @property
    def last_seen(self) -> float | None:
        """When the latched endpoint last sent something, if latched."""
        return None if self._latched is None else self._last_seen

    def window_open(self, now: float) -> bool:
        """Whether a datagram from the allowed IP may latch at ``now``."""
        return self._window_ends is not None and now < self._window_ends

    def open_window(self, now: float) -> None:
        """Allow the next datagram from the allowed IP to (re)latch.

        Called when the SETUP answer goes to the box, and for an explicit
        relatch (RTSP re-PLAY, RELATCH from the policy function).  The window
        lasts ``window`` seconds from ``now`` or until something latches.
        """
        self._window_ends = now + self.window

    def latch(self, source: Endpoint, now: float) -> None:
        """Latch ``source`` because the controlling side says so.

        No rule is checked: the caller (the proxy, on the policy function's
        word) is trusted.  Any open window closes.
        """
        self._latched = source
        self._last_seen = now
        self._window_ends = None

    def refresh(self, now: float) -> None:
        """The latched endpoint was heard from at ``now`` on another path.

        Only its liveness changes (rule 3b): unlike a datagram through
        :meth:`offer`, this leaves an open window open, since what was
        heard may predate the window.  Nothing happens before the first
        latch, nor for a ``now`` earlier than the last datagram seen.
        """
        if self._latched is not None:
            self._last_seen = max(self._last_seen, now)

    def offer(self, source: Endpoint, now: float) -> LatchDecision:
        """Judge one datagram from ``source`` received at ``now``."""
        latched = self._latched
        if source == latched:
            self._last_seen = now
            self._window_ends = None
            return LatchDecision.ACCEPTED

        if source.host not in self._allowed_hosts:
            return LatchDecision.DROPPED_FOREIGN

        if self.window_open(now):
            self.latch(source, now)
            if latched is None:
                return LatchDecision.LATCHED
            return LatchDecision.RELATCHED

        # Rule 3b: same IP, new port, and the old mapping has gone quiet.
        if (
            latched is not None
            and source.host == latched.host
            and now - self._last_seen >= self.relatch_after
        ):
            self.latch(source, now)
            return LatchDecision.RELATCHED

        return LatchDecision.DROPPED_WINDOW
