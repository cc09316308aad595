"""Shared builders for the Diameter tests."""

from __future__ import annotations

import random
from typing import Any

import attrs

from hostednat.diameter import codec
from hostednat.diameter.dictionary import APPLICATION_GQ
from hostednat.diameter.messages import Identity
from hostednat.diameter.peer import PeerMachine, PeerTimers, Role

AF = Identity("af.iptv.example.net", "iptv.example.net", APPLICATION_GQ)
SPDF = Identity("spdf.racs.example.net", "racs.example.net", APPLICATION_GQ)


@attrs.frozen
class Media:
    """Stand-in with the fields of ``hostednat.rtsp.sdp.MediaDescription``."""

    index: int
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    control: str | None
    bandwidth: dict[str, int]
    rtpmaps: tuple[str, ...] = ()


def machine(
    name: str = "spdf1", role: Role = Role.INITIATOR, seed: int = 1
) -> PeerMachine:
    """A peer machine with a seeded random source."""
    identity = AF if role is Role.INITIATOR else SPDF
    return PeerMachine(
        name,
        identity,
        role=role,
        timers=PeerTimers(),
        rng=random.Random(seed),
        host_addresses=("192.0.2.10",),
    )


def drain(source: Any) -> list[Any]:
    """Every event queued on a machine or group."""
    events = []
    while (event := source.next_event()) is not None:
        events.append(event)
    return events


def frames(data: bytes) -> list[codec.Header]:
    """Headers of the messages in ``data``."""
    return [codec.parse_header(f) for f in codec.Framer().feed(data)]


def link(initiator: PeerMachine, responder: PeerMachine, now: float) -> None:
    """Carry bytes both ways until neither side has anything to send."""
    while True:
        forward = initiator.data_to_send()
        backward = responder.data_to_send()
        if not forward and not backward:
            return
        if forward:
            responder.receive_data(forward, now)
        if backward:
            initiator.receive_data(backward, now)


def open_pair(now: float = 0.0) -> tuple[PeerMachine, PeerMachine]:
    """An initiator and a responder that completed CER/CEA at ``now``."""
    af = machine()
    spdf = machine("af", Role.RESPONDER, seed=2)
    af.start(now)
    af.connection_made(now)
    spdf.connection_made(now)
    link(af, spdf, now)
    drain(af)
    drain(spdf)
    return af, spdf
