"""hostednat's AF client run once against a peer, for the interop test.

Usage: ``af_client.py HOST PORT``.  Connects, waits for the peer to open,
sends an AAR, an update AAR and an STR, stays idle long enough for a
watchdog exchange in both directions (Tw = 6 s +/- 2 s), then leaves with
DPR.  Prints one JSON object with what happened and exits 0 when every
request got a success answer.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred

from hostednat.diameter.af import make_admission
from hostednat.diameter.config import RacsConfig
from hostednat.diameter.peer import PeerState
from hostednat.nat.binding import Binding, BindingRequest, Endpoint, PortPair
from hostednat.proxy.admission import AdmissionRefused, StreamDescription

MEDIA = SimpleNamespace(
    index=1, media="video", bandwidth={"AS": 8000, "RR": 20000, "RS": 5000}
)


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def main(host: str, port: int) -> dict[str, Any]:
    config = RacsConfig.from_mapping(
        {
            "origin_host": "af1.iptv.example.net",
            "origin_realm": "iptv.example.net",
            "destination_realm": "racs.example.net",
            "address_realm": "access.example.net",
            "service_class": "IPTV",
            "reservation_priority": 1,
            "watchdog_interval": 6.0,
            "peers": [{"host": host, "port": port}],
        },
        "af_client",
    )
    admission = make_admission(config, reactor)
    link: Any = admission.link
    report: dict[str, Any] = {}
    for _ in range(100):
        if link.available:
            break
        await sleep(0.1)
    report["opened"] = link.available
    binding = Binding(
        "b1",
        BindingRequest("203.0.113.7", PortPair(5000, 5001), "s1"),
        "192.0.2.50",
        "198.51.100.20",
        PortPair(30000, 30001),
        PortPair(40000, 40001),
    )
    stream = StreamDescription(
        "s1",
        "203.0.113.7",
        PortPair(5000, 5001),
        "UDP",
        "rtsp://198.51.100.80/live/trackID=1",
        MEDIA,
        1,
        binding,  # type: ignore[arg-type]
    )
    try:
        await admission.admit(stream)
        report["aar"] = "admitted"
    except AdmissionRefused as refused:
        report["aar"] = f"refused {refused.status} {refused.cause}"
    await admission.stream_established(stream, Endpoint("198.51.100.80", 6970))
    await admission.session_ended("s1", "teardown")
    report["str"] = "sent"
    await sleep(9.0)
    await admission.stop()
    peer = link.group.peers[0]
    for _ in range(50):
        if peer.state is PeerState.STOPPED:
            break
        await sleep(0.1)
    report["stopped"] = peer.state is PeerState.STOPPED
    return report


def run() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    outcome: dict[str, Any] = {}

    def done(report: dict[str, Any]) -> None:
        outcome.update(report)

    def failed(failure: Any) -> None:
        outcome["error"] = failure.getTraceback()

    finished: Deferred[Any] = Deferred.fromCoroutine(main(host, port))
    finished.addCallbacks(done, failed)
    finished.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    print(json.dumps(outcome))
    good = outcome.get("aar") == "admitted" and outcome.get("stopped")
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    run()
