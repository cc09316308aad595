"""The simulated SPDF's policy decision, without I/O.

:class:`SpdfPolicy` answers AAR and STR from the AF.  Admission (ES 283 026
6.3.2 codes, reference 4.9):

- a subscriber with a forced ``result_code`` gets it, always;
- the downlink bandwidth of the session's components, summed with what the
  subscriber (its Globally-Unique-Address) already holds, must fit the
  subscriber budget, else 4046 ACCESS_PROFILE_FAILURE;
- the total over every session must fit ``total_bandwidth``, else 4041
  INSUFFICIENT_RESOURCES;
- a budget of 0 means unlimited.

An update AAR (same Session-Id) replaces the bandwidth of the components it
names and keeps the others (TS 29.209 update semantics).  With
``[binding_output]`` configured, each AAR with a Binding-Input-List gets a
Binding-Output-List of as many pairs, from consecutive even ports.
"""

from __future__ import annotations

from typing import Any

import attrs

from hostednat.diameter import messages
from hostednat.diameter.codec import Header
from hostednat.diameter.dictionary import Command
from hostednat.diameter.messages import Identity, TransportAddress
from hostednat.diameter.results import (
    DIAMETER_SUCCESS,
    DIAMETER_UNKNOWN_SESSION_ID,
    VENDOR_ETSI,
    Result,
)
from hostednat.diameter.simulator.config import SimulatorConfig

INSUFFICIENT_RESOURCES = Result(VENDOR_ETSI, 4041)
ACCESS_PROFILE_FAILURE = Result(VENDOR_ETSI, 4046)
COMMAND_UNSUPPORTED = 3001


@attrs.define
class SessionRecord:
    """One admitted Gq' session.

    :param peer: the connection it came on, where RAR and ASR go.
    :param origin_host: the AF, for Destination-Host.
    """

    session_id: str
    subscriber: str | None
    peer: str
    origin_host: str
    origin_realm: str
    components: dict[int, int] = attrs.field(factory=dict)

    @property
    def bandwidth(self) -> int:
        """Downlink bit/s the session holds."""
        return sum(self.components.values())


@attrs.frozen
class Decision:
    """What the policy did with one request, for logs and tests."""

    command: int
    session_id: str | None
    subscriber: str | None
    result: Result
    bandwidth: int = 0


class SpdfPolicy:
    """Sessions and budgets of the simulated SPDF."""

    def __init__(self, config: SimulatorConfig, identity: Identity) -> None:
        self.config = config
        self.identity = identity
        self.sessions: dict[str, SessionRecord] = {}
        self._next_port = (
            config.binding_output.first_port if config.binding_output else 0
        )
        self.decisions: list[Decision] = []
        self.last_decision: Decision | None = None
        self._usage: dict[str, int] = {}
        self._total = 0

    def used(self, subscriber: str | None = None) -> int:
        """Downlink bit/s held by ``subscriber``, or by everyone."""
        if subscriber is None:
            return self._total
        return self._usage.get(subscriber, 0)

    def _account(self, record: SessionRecord, change: int) -> None:
        key = record.subscriber or ""
        self._usage[key] = self._usage.get(key, 0) + change
        self._total += change

    def handle(self, peer: str, header: Header, message: Any) -> bytes:
        """The answer to a request the AF sent on connection ``peer``.

        :attr:`last_decision` then holds the decision on an AAR or STR, and
        ``None`` after any other request.
        """
        self.last_decision = None
        session_id = messages.session_id_of(message.avps)
        if header.command_code == Command.AA:
            return self._aa(peer, header, message, session_id or "")
        if header.command_code == Command.SESSION_TERMINATION:
            record = self.sessions.pop(session_id or "", None)
            if record is not None:
                self._account(record, -record.bandwidth)
            code = DIAMETER_SUCCESS if record else DIAMETER_UNKNOWN_SESSION_ID
            self._decided(header, session_id, record, Result(0, code))
            return messages.answer(header, self.identity, code, session_id)
        return messages.answer(header, self.identity, COMMAND_UNSUPPORTED, session_id)

    def _aa(self, peer: str, header: Header, message: Any, session_id: str) -> bytes:
        avps = message.avps
        record = self.sessions.get(session_id)
        subscriber = messages.subscriber_address(avps)
        if record is not None and subscriber is None:
            subscriber = record.subscriber
        requested = messages.requested_downlink(avps)
        result = self._decide(subscriber, record, requested)
        output: tuple[TransportAddress, ...] = ()
        binding_input: tuple[TransportAddress, ...] = ()
        if result.is_success:
            if record is None:
                record = SessionRecord(
                    session_id,
                    subscriber,
                    peer,
                    messages.origin_host(avps) or "",
                    messages.origin_realm(avps) or "",
                )
                self.sessions[session_id] = record
            before = record.bandwidth
            record.components.update(requested)
            self._account(record, record.bandwidth - before)
            if self.config.binding_output is not None:
                binding_input, _ = messages.binding_lists(avps)
                output = self._allocate(binding_input)
        self._decided(header, session_id, record, result, subscriber)
        return messages.aa_answer(
            header, self.identity, session_id, result, binding_input, output
        )

    def _decide(
        self,
        subscriber: str | None,
        record: SessionRecord | None,
        requested: dict[int, int],
    ) -> Result:
        entry = self.config.subscriber(subscriber)
        if entry is not None and entry.result_code is not None:
            return Result(entry.vendor_id, entry.result_code)
        previous = 0
        if record is not None:
            previous = sum(record.components.get(n, 0) for n in requested)
        extra = sum(requested.values()) - previous
        budget = self.config.subscriber_bandwidth
        if entry is not None and entry.bandwidth is not None:
            budget = entry.bandwidth
        if budget and self.used(subscriber or "") + extra > budget:
            return ACCESS_PROFILE_FAILURE
        total = self.config.total_bandwidth
        if total and self.used() + extra > total:
            return INSUFFICIENT_RESOURCES
        return Result(0, DIAMETER_SUCCESS)

    def _allocate(
        self, binding_input: tuple[TransportAddress, ...]
    ) -> tuple[TransportAddress, ...]:
        output = self.config.binding_output
        if output is None or not binding_input:
            return ()
        pairs = []
        for _ in range(len(binding_input) // 2):
            port = self._next_port
            self._next_port += 2
            if self._next_port > output.last_port:
                self._next_port = output.first_port
            pairs += [
                TransportAddress(output.access_address, port),
                TransportAddress(output.core_address, port),
            ]
        return tuple(pairs)

    def _decided(
        self,
        header: Header,
        session_id: str | None,
        record: SessionRecord | None,
        result: Result,
        subscriber: str | None = None,
    ) -> None:
        if record is not None:
            subscriber = record.subscriber
        self.last_decision = Decision(
            header.command_code,
            session_id,
            subscriber,
            result,
            record.bandwidth if record else 0,
        )
        self.decisions.append(self.last_decision)
        if len(self.decisions) > 2000:
            del self.decisions[:-1000]

    def re_auth_request(self, record: SessionRecord, action: int) -> bytes:
        """A RAR reporting ``action`` for ``record``."""
        return messages.re_auth_request(
            self.identity,
            record.session_id,
            record.origin_realm,
            record.origin_host,
            specific_actions=(action,),
        )

    def abort_session_request(self, record: SessionRecord, cause: int) -> bytes:
        """An ASR with Abort-Cause ``cause`` for ``record``."""
        return messages.abort_session_request(
            self.identity,
            record.session_id,
            record.origin_realm,
            record.origin_host,
            cause,
        )
