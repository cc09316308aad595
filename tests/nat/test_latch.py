"""LatchGuard: the latching rules of reference 7.2, with explicit times.

Each scenario is a list of steps run against a fresh guard for the box at
198.51.100.7 with a 30 s window and a 10 s relatch delay:

- ``("open", now)``: open a latch window;
- ``("latch", now, source)``: explicit latch by the controlling side;
- ``("offer", now, source, decision)``: a datagram, and the expected verdict.

``latched`` is the endpoint the guard holds after the last step.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from hostednat.nat.binding import Endpoint
from hostednat.nat.latch import LatchDecision, LatchGuard

BOX_IP = "198.51.100.7"
BOX = Endpoint(BOX_IP, 40000)
BOX_REBOUND = Endpoint(BOX_IP, 40002)
FOREIGN = Endpoint("203.0.113.9", 40000)

LATCHED = LatchDecision.LATCHED
RELATCHED = LatchDecision.RELATCHED
ACCEPTED = LatchDecision.ACCEPTED
DROPPED_FOREIGN = LatchDecision.DROPPED_FOREIGN
DROPPED_WINDOW = LatchDecision.DROPPED_WINDOW

SCENARIOS: dict[str, tuple[list[tuple[Any, ...]], Endpoint | None]] = {
    "first datagram from the box latches": (
        [("open", 100.0), ("offer", 100.5, BOX, LATCHED)],
        BOX,
    ),
    "datagram at the window's last instant latches": (
        [("open", 100.0), ("offer", 129.999, BOX, LATCHED)],
        BOX,
    ),
    "window closes after its duration": (
        [("open", 100.0), ("offer", 130.0, BOX, DROPPED_WINDOW)],
        None,
    ),
    "no window opened, nothing latches": (
        [("offer", 100.0, BOX, DROPPED_WINDOW)],
        None,
    ),
    "foreign IP never latches, even in the window": (
        [
            ("open", 100.0),
            ("offer", 100.1, FOREIGN, DROPPED_FOREIGN),
            ("offer", 100.2, BOX, LATCHED),
        ],
        BOX,
    ),
    "later datagrams from the latched source are accepted": (
        [
            ("open", 100.0),
            ("offer", 100.0, BOX, LATCHED),
            ("offer", 100.1, BOX, ACCEPTED),
            ("offer", 500.0, BOX, ACCEPTED),
        ],
        BOX,
    ),
    "the window is spent by the first latch": (
        [
            ("open", 100.0),
            ("offer", 100.0, BOX, LATCHED),
            ("offer", 101.0, BOX_REBOUND, DROPPED_WINDOW),
        ],
        BOX,
    ),
    "new port of the box's IP relatches after 10 s of silence": (
        [
            ("open", 100.0),
            ("offer", 100.0, BOX, LATCHED),
            ("offer", 109.999, BOX_REBOUND, DROPPED_WINDOW),
            ("offer", 110.0, BOX_REBOUND, RELATCHED),
        ],
        BOX_REBOUND,
    ),
    "accepted datagrams keep the latched source live": (
        [
            ("open", 100.0),
            ("offer", 100.0, BOX, LATCHED),
            ("offer", 108.0, BOX, ACCEPTED),
            ("offer", 115.0, BOX_REBOUND, DROPPED_WINDOW),
            ("offer", 118.0, BOX_REBOUND, RELATCHED),
        ],
        BOX_REBOUND,
    ),
    "the old mapping is refused once relatched": (
        [
            ("open", 100.0),
            ("offer", 100.0, BOX, LATCHED),
            ("offer", 120.0, BOX_REBOUND, RELATCHED),
            ("offer", 121.0, BOX, DROPPED_WINDOW),
        ],
        BOX_REBOUND,
    ),
    "foreign IP never relatches, however long the silence": (
        [
            ("open", 100.0),
            ("offer", 100.0, BOX, LATCHED),
            ("offer", 1000.0, FOREIGN, DROPPED_FOREIGN),
        ],
        BOX,
    ),
    "explicit relatch window lets a new port take over at once": (
        [
            ("open", 100.0),
            ("offer", 100.0, BOX, LATCHED),
            ("offer", 199.0, BOX, ACCEPTED),
            ("open", 200.0),
            ("offer", 200.5, BOX_REBOUND, RELATCHED),
            ("offer", 201.0, BOX, DROPPED_WINDOW),
        ],
        BOX_REBOUND,
    ),
    "relatch window is closed by the latched source itself": (
        [
            ("open", 100.0),
            ("offer", 100.0, BOX, LATCHED),
            ("open", 200.0),
            ("offer", 200.1, BOX, ACCEPTED),
            ("offer", 200.2, BOX_REBOUND, DROPPED_WINDOW),
        ],
        BOX,
    ),
    "relatch window still refuses a foreign IP": (
        [
            ("open", 100.0),
            ("offer", 100.0, BOX, LATCHED),
            ("open", 200.0),
            ("offer", 200.1, FOREIGN, DROPPED_FOREIGN),
        ],
        BOX,
    ),
    "explicit latch closes the window": (
        [
            ("open", 100.0),
            ("latch", 100.5, BOX_REBOUND),
            ("offer", 101.0, BOX, DROPPED_WINDOW),
            ("offer", 101.5, BOX_REBOUND, ACCEPTED),
        ],
        BOX_REBOUND,
    ),
    "explicit latch may name another IP, which is then accepted": (
        [
            ("latch", 100.0, FOREIGN),
            ("offer", 100.5, FOREIGN, ACCEPTED),
            ("offer", 101.0, BOX, DROPPED_WINDOW),
        ],
        FOREIGN,
    ),
    "silence never moves the latch to another IP, even the box's": (
        [
            ("latch", 100.0, FOREIGN),
            ("offer", 500.0, BOX, DROPPED_WINDOW),
            ("open", 600.0),
            ("offer", 600.5, BOX, RELATCHED),
        ],
        BOX,
    ),
}


@pytest.mark.parametrize(
    ("steps", "latched"), list(SCENARIOS.values()), ids=list(SCENARIOS)
)
def test_latching_rules(steps: list[tuple[Any, ...]], latched: Endpoint | None) -> None:
    """Each datagram gets the decision reference 7.2 prescribes."""
    guard = LatchGuard(BOX_IP, window=30.0, relatch_after=10.0)

    for index, step in enumerate(steps):
        action, now = step[0], step[1]
        if action == "open":
            guard.open_window(now)
        elif action == "latch":
            guard.latch(step[2], now)
        else:
            assert guard.offer(step[2], now) is step[3], f"step {index}: {step}"

    assert guard.latched == latched


@pytest.mark.parametrize(
    ("decision", "latches", "accepted"),
    [
        (LATCHED, True, True),
        (RELATCHED, True, True),
        (ACCEPTED, False, True),
        (DROPPED_FOREIGN, False, False),
        (DROPPED_WINDOW, False, False),
    ],
)
def test_decision_properties(
    decision: LatchDecision, latches: bool, accepted: bool
) -> None:
    """``latches`` and ``accepted`` classify every decision."""
    assert decision.latches is latches
    assert decision.accepted is accepted


def test_allowed_ip_is_compared_in_canonical_form() -> None:
    """An IPv6 allowed address matches however it was spelled."""
    guard = LatchGuard("2001:db8:0:0::7", window=30.0, relatch_after=10.0)
    guard.open_window(0.0)

    assert guard.offer(Endpoint("2001:db8::7", 5000), 1.0) is LATCHED


def test_ipv4_box_seen_through_a_dual_stack_socket_latches() -> None:
    """The IPv4-mapped form of the box's address counts as the box's address."""
    guard = LatchGuard(BOX_IP, window=30.0, relatch_after=10.0)
    guard.open_window(0.0)

    assert guard.offer(Endpoint(f"::ffff:{BOX_IP}", 5000), 1.0) is LATCHED


def test_last_seen_tracks_the_latched_source() -> None:
    """``last_seen`` is unset before a latch and follows accepted datagrams."""
    guard = LatchGuard(BOX_IP, window=30.0, relatch_after=10.0)
    guard.open_window(0.0)
    assert guard.last_seen is None

    guard.offer(BOX, 1.0)
    guard.offer(BOX, 4.0)
    guard.offer(FOREIGN, 6.0)

    assert guard.last_seen == 4.0


@pytest.mark.parametrize(
    ("allowed_ip", "window", "relatch_after"),
    [("box.example", 30.0, 10.0), (BOX_IP, -1.0, 10.0), (BOX_IP, 30.0, -1.0)],
)
def test_bad_arguments_raise_value_error(
    allowed_ip: str, window: float, relatch_after: float
) -> None:
    """A host name or a negative duration is refused at construction."""
    with pytest.raises(ValueError):
        LatchGuard(allowed_ip, window, relatch_after)


def test_window_driven_by_a_clock() -> None:
    """The window opened at the SETUP answer closes 30 s later on the clock."""
    clock = Clock()
    guard = LatchGuard(BOX_IP, window=30.0, relatch_after=10.0)
    guard.open_window(clock.seconds())

    clock.advance(29.0)
    assert guard.window_open(clock.seconds())
    clock.advance(1.0)

    assert not guard.window_open(clock.seconds())
    assert guard.offer(BOX, clock.seconds()) is DROPPED_WINDOW


def test_rebinding_driven_by_a_clock() -> None:
    """A NAT rebinding is followed once the old mapping is 10 s silent."""
    clock = Clock()
    guard = LatchGuard(BOX_IP, window=30.0, relatch_after=10.0)
    guard.open_window(clock.seconds())
    guard.offer(BOX, clock.seconds())

    clock.advance(5.0)
    assert guard.offer(BOX_REBOUND, clock.seconds()) is DROPPED_WINDOW
    clock.advance(5.0)

    assert guard.offer(BOX_REBOUND, clock.seconds()) is RELATCHED
    assert guard.latched == BOX_REBOUND


def test_refresh_keeps_the_mapping_alive_and_the_window_open() -> None:
    """A refresh counts as hearing the latched endpoint, but unlike a
    datagram it does not close a window opened for a relatch."""
    guard = LatchGuard(BOX_IP, window=30.0, relatch_after=10.0)
    guard.refresh(1.0)
    assert guard.last_seen is None
    guard.open_window(0.0)
    guard.offer(BOX, 1.0)

    guard.refresh(9.0)
    guard.refresh(5.0)
    assert guard.last_seen == 9.0
    assert guard.offer(BOX_REBOUND, 18.0) is DROPPED_WINDOW

    guard.open_window(20.0)
    guard.refresh(21.0)
    assert guard.offer(BOX_REBOUND, 22.0) is RELATCHED
