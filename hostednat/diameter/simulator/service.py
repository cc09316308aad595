"""The simulator on Twisted: Diameter listener and admin HTTP endpoint.

Admin endpoint (JSON answers):

- ``GET /sessions``: the live sessions with subscriber and bandwidth;
- ``POST /sessions/<Session-Id>/rar?action=4``: send a RAR with that
  Specific-Action (4 = INDICATION_OF_RELEASE_OF_BEARER by default);
- ``POST /sessions/<Session-Id>/asr?cause=0``: send an ASR with that
  Abort-Cause;
- ``POST /subscribers/<address>/asr``: ASR every session of a subscriber.

A POST answers once the AF's RAA or ASA arrived, with its result code.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from twisted.application.service import MultiService
from twisted.application.strports import service as endpoint_service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from hostednat.diameter import log as keys
from hostednat.diameter import messages
from hostednat.diameter.codec import Header
from hostednat.diameter.dictionary import SpecificAction
from hostednat.diameter.messages import Identity
from hostednat.diameter.peer import PeerTimers
from hostednat.diameter.results import DiameterFailure
from hostednat.diameter.simulator.config import SimulatorConfig
from hostednat.diameter.simulator.spdf import SessionRecord, SpdfPolicy
from hostednat.diameter.transport import Answer, DiameterServerFactory, GroupDriver


class Spdf:
    """The simulated SPDF: policy, connections, RAR and ASR."""

    log = Logger()

    def __init__(self, config: SimulatorConfig, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.identity = Identity(
            config.origin_host,
            config.origin_realm,
            config.application_id,
            product_name="hostednat-spdf",
            origin_state_id=int(reactor.seconds()) & 0xFFFFFFFF,
        )
        self.policy = SpdfPolicy(config, self.identity)
        self.drivers: dict[str, GroupDriver] = {}
        self.factory = DiameterServerFactory(
            self.identity,
            reactor,
            self._connected,
            PeerTimers(watchdog=config.watchdog_interval),
        )

    def _connected(self, driver: GroupDriver) -> None:
        name = driver.group.peers[0].name
        self.drivers[name] = driver

        def on_request(peer: str, header: Header, message: Any) -> None:
            answer = self.policy.handle(peer, header, message)
            driver.answer(peer, answer)
            decision = self.policy.last_decision
            if decision is not None:
                self.log.info(
                    "SPDF {command} {session}: {result_code}",
                    command=header.command_code,
                    session=decision.session_id,
                    subscriber=decision.subscriber,
                    result_code=str(decision.result),
                    bandwidth=decision.bandwidth,
                    hostednat_event=keys.SPDF_DECISION,
                )

        driver.on_request = on_request

    def send_rar(
        self,
        session_id: str,
        action: int = SpecificAction.INDICATION_OF_RELEASE_OF_BEARER,
    ) -> Deferred[Answer]:
        """RAR for a live session; fires with the RAA."""
        record, driver = self._route(session_id)
        return driver.request(self.policy.re_auth_request(record, action))

    def send_asr(self, session_id: str, cause: int = 0) -> Deferred[Answer]:
        """ASR for a live session; fires with the ASA."""
        record, driver = self._route(session_id)
        return driver.request(self.policy.abort_session_request(record, cause))

    def _route(self, session_id: str) -> tuple[SessionRecord, GroupDriver]:
        record = self.policy.sessions.get(session_id)
        if record is None:
            raise KeyError(session_id)
        driver = self.drivers.get(record.peer)
        if driver is None or not driver.available:
            raise KeyError(f"no connection for {session_id}")
        return record, driver


class _Admin(Resource):
    isLeaf = True

    def __init__(self, spdf: Spdf) -> None:
        Resource.__init__(self)
        self.spdf = spdf

    def render_GET(self, request: Any) -> bytes:
        sessions = [
            {
                "session_id": r.session_id,
                "subscriber": r.subscriber,
                "bandwidth": r.bandwidth,
                "af": r.origin_host,
            }
            for r in self.spdf.policy.sessions.values()
        ]
        return _json(request, 200, {"sessions": sessions})

    def render_POST(self, request: Any) -> Any:
        parts = [unquote(p.decode()) for p in request.postpath if p]
        args = {k.decode(): v[0].decode() for k, v in request.args.items()}
        try:
            waits = self._start(parts, args)
        except (KeyError, ValueError) as error:
            return _json(request, 404, {"error": str(error)})
        self._finish(request, waits)
        return NOT_DONE_YET

    def _start(self, parts: list[str], args: dict[str, str]) -> list[Deferred[Answer]]:
        if len(parts) == 3 and parts[0] == "sessions" and parts[2] == "rar":
            action = int(args.get("action", "4"))
            return [self.spdf.send_rar(parts[1], action)]
        if len(parts) == 3 and parts[0] == "sessions" and parts[2] == "asr":
            return [self.spdf.send_asr(parts[1], int(args.get("cause", "0")))]
        if len(parts) == 3 and parts[0] == "subscribers" and parts[2] == "asr":
            cause = int(args.get("cause", "0"))
            ids = [
                r.session_id
                for r in self.spdf.policy.sessions.values()
                if r.subscriber == parts[1]
            ]
            return [self.spdf.send_asr(i, cause) for i in ids]
        raise KeyError("/".join(parts))

    def _finish(self, request: Any, waits: list[Deferred[Answer]]) -> None:
        async def collect() -> None:
            results = []
            for wait in waits:
                try:
                    _, message = await wait
                    found = messages.result_of(message.avps)
                    results.append(str(found) if found else None)
                except DiameterFailure as failure:
                    results.append(failure.cause)
            request.write(_json(request, 200, {"results": results}))
            request.finish()

        Deferred.fromCoroutine(collect())


def _json(request: Any, code: int, body: object) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode() + b"\n"


def build_service(config: SimulatorConfig, reactor: Any) -> tuple[MultiService, Spdf]:
    """The simulator's services (Diameter, admin HTTP) and its state."""
    spdf = Spdf(config, reactor)
    top = MultiService()
    diameter = endpoint_service(config.listen, spdf.factory, reactor=reactor)
    diameter.setServiceParent(top)
    if config.admin_listen:
        site = Site(_Admin(spdf))
        endpoint_service(config.admin_listen, site, reactor=reactor).setServiceParent(
            top
        )
    return top, spdf
