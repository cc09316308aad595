"""Wiring: from a :class:`~hostednat.config.Config` to a running service.

:func:`build_service` takes every collaborator it does not build itself
(reactor, binding table, admission hook) so that tests can hand in their own;
``hostednat.tap`` only loads the file and passes the global reactor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from hostednat import events
from hostednat.config import Config, ConfigError
from hostednat.nat.binding import Binding, BindingTable, Endpoint, Leg
from hostednat.nat.ports import PortPool
from hostednat.proxy.admission import AdmissionHook, AdmitAll
from hostednat.proxy.protocol import ProxyFactory
from hostednat.proxy.routing import Router
from hostednat.proxy.session import SessionTable

if TYPE_CHECKING:
    from hostednat.diameter.af import GqAdmission


class LatchLog:
    """Reports latches as structured events (the binding observer)."""

    log = Logger()

    def binding_latched(self, binding: Binding, leg: Leg, source: Endpoint) -> None:
        self.log.info(
            "binding {binding} {leg} latched to {source}",
            hostednat_event=events.BINDING_LATCHED,
            binding=binding.binding_id,
            session=binding.request.session_key,
            leg=leg.value,
            source=str(source),
        )


def make_binding_table(config: Config, reactor: Any) -> BindingTable:
    """The data plane named by ``[nat] backend``."""
    nat = config.nat
    access_pool = PortPool(nat.access_ports.first, nat.access_ports.last)
    core_pool = PortPool(nat.core_ports.first, nat.core_ports.last)
    if nat.backend != "userspace":
        raise ConfigError(config.source, "nat.backend", f"{nat.backend!r} is not built")
    from hostednat.nat.userspace import UserspaceBindingTable

    return UserspaceBindingTable(
        reactor,
        access_address=nat.access_address,
        core_address=nat.core_address,
        access_pool=access_pool,
        core_pool=core_pool,
        latch_window=nat.latch_window,
        relatch_after=nat.relatch_after,
        receive_buffer=nat.receive_buffer,
        observer=LatchLog(),
    )


class ProxyService(Service):
    """Listens on every configured endpoint; releases everything on stop."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        factory: ProxyFactory,
        listen: tuple[str, ...],
        bindings: BindingTable,
        racs: GqAdmission | None = None,
    ) -> None:
        self._reactor = reactor
        self._racs = racs
        self.factory = factory
        self._listen = listen
        self._bindings = bindings
        self.ports: list[IListeningPort] = []

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        for description in self._listen:
            endpoint = serverFromString(self._reactor, description)
            listening = endpoint.listen(self.factory)
            listening.addCallback(self._listening, description)
            failures: list[Failure] = []
            listening.addErrback(failures.append)
            if failures:
                failures[0].raiseException()

    def _listening(self, port: IListeningPort, description: str) -> None:
        self.ports.append(port)
        address = port.getHost()
        self.log.info(
            "RTSP listening on {endpoint} ({host}:{port})",
            hostednat_event=events.LISTENING,
            endpoint=description,
            host=getattr(address, "host", ""),
            port=getattr(address, "port", 0),
        )

    def stopService(self) -> Deferred[Any]:
        super().stopService()  # type: ignore[no-untyped-call]
        stopping: list[Deferred[Any]] = []
        for port in self.ports:
            result = port.stopListening()
            if isinstance(result, Deferred):
                stopping.append(result)
        self.ports = []
        for connection in list(self.factory.connections):
            connection.transport.loseConnection()  # type: ignore[union-attr]
        self.factory.sessions.close()
        stopping.append(self._bindings.close())
        if self._racs is not None:
            stopping.append(self._racs.stop())
        return DeferredList(stopping, consumeErrors=True)


def build_service(
    config: Config,
    reactor: Any,
    *,
    bindings: BindingTable | None = None,
    admission: AdmissionHook | None = None,
) -> MultiService:
    """Build the hostednat service tree for ``config``."""
    rtsp = config.rtsp
    bindings = bindings if bindings is not None else make_binding_table(config, reactor)
    racs = None
    if admission is None and config.racs is not None:
        from hostednat.diameter.af import make_admission

        admission = racs = make_admission(config.racs, reactor)
    admission = admission if admission is not None else AdmitAll()
    sessions = SessionTable(
        reactor,
        bindings,
        admission,
        default_timeout=rtsp.default_session_timeout,
        grace=rtsp.session_timeout_grace,
    )
    router = Router(rtsp.mode, config.routes, config.forward_allow)
    factory = ProxyFactory(
        reactor, rtsp, config.nat, router, bindings, sessions, admission
    )
    top = MultiService()
    proxy = ProxyService(reactor, factory, rtsp.listen, bindings, racs)
    proxy.setServiceParent(top)  # type: ignore[no-untyped-call]
    return top
