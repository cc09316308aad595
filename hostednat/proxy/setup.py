"""One SETUP through the proxy: the hosted-NAT step (reference 3, steps 2-8).

A :class:`SetupStep` lives from the box's SETUP to the server's answer:

1. plan the Transport header (:func:`~hostednat.proxy.media.plan_setup`):
   the first UDP unicast alternative gets a binding, TCP alternatives pass,
   third-party destinations are dropped; nothing usable left is 461;
2. allocate a binding (an empty port range is 453) and ask the admission
   hook, which may refuse with its own status; a refusal releases the
   binding and the server never sees the SETUP;
3. forward the SETUP pointing the server at the binding's core side;
4. on a 2xx answer, key the session by the server's id, tell the binding
   where the server sends from, and point the box at the access side; any
   other answer, or a server that chose a TCP alternative, releases the
   binding.

Reference section 8's ordering holds: the SETUP is never forwarded before
admission, and the answer never reaches the box before its Transport is
rewritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from hostednat import events
from hostednat.nat.binding import (
    Binding,
    BindingFailed,
    BindingRequest,
    NoPortsAvailable,
)
from hostednat.proxy.admission import Admission, AdmissionRefused, StreamDescription
from hostednat.proxy.media import SetupPlan, answer_to_box, plan_setup, server_endpoints
from hostednat.proxy.session import RtspSession
from hostednat.rtsp.errors import RtspError
from hostednat.rtsp.message import Request, Response
from hostednat.rtsp.transport import TransportSpec, parse_transport

if TYPE_CHECKING:
    from hostednat.proxy.protocol import BoxConnection, Slot


class SetupStep:
    """A SETUP request on its way to the server and back."""

    log = Logger()

    def __init__(
        self,
        connection: BoxConnection,
        request: Request,
        slot: Slot,
        session: RtspSession | None,
    ) -> None:
        self.connection = connection
        self.request = request
        self.slot = slot
        self.session = session
        self.plan = SetupPlan(())
        self.binding: Binding | None = None
        self.stream: StreamDescription | None = None

    def start(self) -> Deferred[None] | None:
        """Plan, allocate and ask; returns a Deferred while admission waits."""
        connection, request, slot = self.connection, self.request, self.slot
        value = request.headers.get("Transport")
        if value is None:
            connection.send(request, slot)
            return None
        try:
            self.plan = plan = plan_setup(
                parse_transport(value), connection.box_address
            )
        except RtspError as error:
            connection.answer_locally(slot, error.status)
            return None
        if plan.dropped_destination:
            self.log.warn(
                "dropped a third-party destination from {box}",
                hostednat_event=events.REFLECTION_BLOCKED,
                box=connection.box_address,
            )
        if not plan.specs:
            connection.answer_locally(slot, 461)
            return None
        if self.session is None:
            self.session = connection.open_session(request)
        slot.on_answer = self.answered
        if not plan.hosted:
            request.headers.set("Transport", plan.passthrough())
            connection.send(request, slot)
            return None
        return self._hosted(self.session, plan)

    def _hosted(self, session: RtspSession, plan: SetupPlan) -> Deferred[None] | None:
        assert plan.box_ports is not None
        connection = self.connection
        box = connection.box_address
        try:
            binding = connection.proxy.bindings.allocate(
                BindingRequest(box, plan.box_ports, session.key)
            )
        except (NoPortsAvailable, BindingFailed) as error:
            self.log.warn(
                "no free media ports for {box}",
                hostednat_event=events.BINDING_EXHAUSTED,
                box=box,
            )
            connection.answer_locally(self.slot, error.status)
            return None
        self.log.info(
            "binding {binding} allocated: access {access} core {core}",
            hostednat_event=events.BINDING_ALLOCATED,
            binding=binding.binding_id,
            session=session.key,
            access=str(binding.access),
            core=str(binding.core),
        )
        self.binding = binding
        media = connection.media_for(self.request.uri)
        self.stream = StreamDescription(
            session_key=session.key,
            box_address=box,
            box_ports=plan.box_ports,
            lower_transport="UDP",
            control_url=self.request.uri,
            media=media,
            media_index=media.index if media is not None else 0,
            binding=binding,
        )
        admit = connection.proxy.admission.admit
        deciding: Deferred[None] = maybeDeferred(admit, self.stream).addCallbacks(
            self._admitted, self._refused
        )
        return deciding

    def _admitted(self, admission: Admission) -> None:
        assert self.binding is not None
        connection = self.connection
        if not connection.forwarding(self.slot):
            # The connection failed or closed while admission was pending.
            connection.proxy.sessions.release(self.binding, "connection closed")
            if self.slot.answer is None:
                connection.answer_locally(self.slot, 502)
            return
        send_destination = connection.proxy.nat.send_destination
        transport = self.plan.for_server(self.binding, send_destination)
        self.request.headers.set("Transport", transport)
        connection.send(self.request, self.slot)

    def _refused(self, failure: Failure) -> None:
        assert self.binding is not None
        connection = self.connection
        connection.proxy.sessions.release(self.binding, "admission refused")
        if not failure.check(AdmissionRefused):
            self.log.failure("admission failed", failure)
            connection.answer_locally(self.slot, 500)
            return
        error: AdmissionRefused = failure.value  # type: ignore[assignment]
        self.log.info(
            "admission refused {status} for {box}: {cause}",
            hostednat_event=events.ADMISSION_REFUSED,
            status=error.status,
            box=connection.box_address,
            cause=error.cause,
        )
        connection.answer_locally(self.slot, error.status, list(error.headers.items()))

    def answered(self, answer: Response) -> None:
        """The server's answer: keep or release the binding, rewrite Transport."""
        connection, binding = self.connection, self.binding
        sessions = connection.proxy.sessions
        assert self.session is not None
        if not 200 <= answer.status < 300:
            if binding is not None:
                sessions.release(binding, f"setup answered {answer.status}")
            return
        session = self.session
        value = answer.headers.get("Session")
        if value is not None:
            session = connection.identify(session, value)
        url = self.request.uri
        chosen = _chosen_spec(answer)
        if binding is None or chosen is None or chosen.lower_transport != "UDP":
            if binding is not None:
                sessions.release(binding, "server chose another transport")
            sessions.set_stream(session, url, "TCP", None)
            return
        server = server_endpoints(chosen, connection.server_address())
        if server is not None:
            installing = connection.proxy.bindings.install(binding, *server)
            sessions.watch(installing, "binding install")
        answer.headers.set("Transport", answer_to_box(chosen, self.plan, binding))
        sessions.set_stream(session, url, "UDP", binding)
        if self.stream is not None:
            established = connection.proxy.admission.stream_established(
                self.stream, server[0] if server else None
            )
            established.addErrback(self._update_failed)

    def _update_failed(self, failure: Failure) -> None:
        self.log.failure("admission update failed", failure)


def _chosen_spec(answer: Response) -> TransportSpec | None:
    """The one transport-spec a SETUP answer carries (RFC 2326 12.39)."""
    value = answer.headers.get("Transport")
    if value is None:
        return None
    try:
        specs = parse_transport(value)
    except RtspError:
        return None
    return specs[0] if specs else None
