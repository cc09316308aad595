"""Unpredictable allocation of UDP ports from a configured range.

The range is cut into *slots*: every even port ``p`` with ``p + 1`` also in
the range.  A slot serves either an RTP/RTCP pair (``p`` for RTP, ``p + 1``
for RTCP; RFC 3550 11) or a single-port transport, which takes the whole
slot and leaves ``p + 1`` unused.  Wasting that odd port keeps the pool a
single free list, so pairs never become unavailable because single ports
fragmented the range.

Allocation draws a slot uniformly at random among the free ones, so the next
port cannot be guessed from the last one: whoever sends first to a guessed
access port could latch the stream (RFC 7604 4.4), hence random ports in the
hosted-NAT enforcement rules (reference 7.2 rule 6).  The free list is a
Python list with swap-remove, so allocating and releasing are O(1) whatever
the size of the range.

Not supported: reserving ports that other software holds.  A caller that
fails to bind an allocated port keeps it out of the pool until it has found
a usable one (see :mod:`hostednat.nat.userspace`).
"""

from __future__ import annotations

import random

from hostednat.nat.binding import NoPortsAvailable

__all__ = ["PortPool"]

# The UDP port space; port 0 means "any" to bind() and is never handed out.
_LOWEST_PORT = 1
_HIGHEST_PORT = 65535


class PortPool:
    """Free and allocated even port slots of one inclusive port range.

    :param first: lowest port of the range.
    :param last: highest port of the range.
    :param rng: source of randomness; a :class:`random.SystemRandom` by
        default, so an outsider cannot replay the generator's state.  Tests
        pass a seeded :class:`random.Random`.
    :raises ValueError: the range is out of the UDP port space or holds no
        even/odd pair.
    """

    def __init__(self, first: int, last: int, rng: random.Random | None = None) -> None:
        if not _LOWEST_PORT <= first <= last <= _HIGHEST_PORT:
            raise ValueError(f"bad port range {first}-{last}")
        base = first + (first % 2)
        if base + 1 > last:
            raise ValueError(f"port range {first}-{last} holds no even/odd pair")

        self.first = first
        self.last = last
        self._rng = rng if rng is not None else random.SystemRandom()
        self._free: list[int] = list(range(base, last, 2))
        self._allocated: set[int] = set()
        self._size = len(self._free)

    @property
    def size(self) -> int:
        """How many slots (pairs) the range holds."""
        return self._size

    @property
    def free_pairs(self) -> int:
        """How many slots are free; each can serve a pair or a single port."""
        return len(self._free)

    def allocate_pair(self) -> int:
        """Take a random free slot for an RTP/RTCP pair.

        :returns: the even RTP port; the RTCP port is the next one.
        :raises NoPortsAvailable: every slot is taken.
        """
        return self._take()

    def allocate_single(self) -> int:
        """Take a random free slot for a single-port transport.

        The slot's odd port stays unused until :meth:`release`.

        :returns: the (even) port.
        :raises NoPortsAvailable: every slot is taken.
        """
        return self._take()

    def release(self, port: int) -> None:
        """Give back the slot that :meth:`allocate_pair` or
        :meth:`allocate_single` returned as ``port``.

        :raises ValueError: ``port`` is not currently allocated from this pool.
        """
        if port not in self._allocated:
            raise ValueError(f"port {port} is not allocated from this pool")
        self._allocated.remove(port)
        self._free.append(port)

    def __contains__(self, port: object) -> bool:
        """Whether ``port`` is an allocated slot of this pool."""
        return port in self._allocated

    def _take(self) -> int:
        free = self._free
        if not free:
            raise NoPortsAvailable(f"no free port pair in {self.first}-{self.last}")

        # Swap the drawn slot with the last one and pop: O(1).
        index = self._rng.randrange(len(free))
        port = free[index]
        free[index] = free[-1]
        free.pop()

        self._allocated.add(port)
        return port
