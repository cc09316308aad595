"""Wiring: from a :class:`~hostednat.config.Config` to a running service.

:func:`build_service` takes every collaborator it does not build itself
(reactor, binding table, admission hook) so that tests can hand in their own;
``hostednat.tap`` only loads the file and passes the global reactor.

A binding table with a ``start()`` (the kernel backend's: it removes what a
previous run left in the kernel) is started before anything listens, so no
box connects before the data plane is ready.  If it fails nothing listens:
the process stops and exits with status 1 (:func:`exit_after_stop`).
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from hostednat import events
from hostednat.config import Config, ConfigError
from hostednat.nat.binding import Binding, BindingFailed, BindingTable, Endpoint, Leg
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


@runtime_checkable
class StartableTable(Protocol):
    """A binding table that must be started before boxes connect."""

    def start(self) -> Deferred[Any]:
        """Make the table ready; fails if it cannot be."""


def make_binding_table(config: Config, reactor: Any) -> BindingTable:
    """The data plane named by ``[nat] backend``.

    :raises ConfigError: the backend cannot run here (``"kernel"`` without
        CAP_NET_ADMIN), named by its key and the reason.
    """
    nat = config.nat
    if nat.backend == "kernel":
        from hostednat.nat.kernel import KernelBackendUnavailable, build_kernel_table

        try:
            return build_kernel_table(reactor, nat, observer=LatchLog())
        except KernelBackendUnavailable as error:
            raise ConfigError(config.source, "nat.backend", str(error)) from None
    if nat.backend != "userspace":
        raise ConfigError(config.source, "nat.backend", f"{nat.backend!r} is not built")
    from hostednat.nat.userspace import UserspaceBindingTable

    access_pool = PortPool(nat.access_ports.first, nat.access_ports.last)
    core_pool = PortPool(nat.core_ports.first, nat.core_ports.last)
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


def exit_after_stop(reactor: Any, status: int) -> None:
    """Stop the reactor; the process then exits with ``status``.

    twistd exits 0 once its reactor has stopped, whatever stopped it, and
    catches every exception raised while it runs.  So the status is set
    at interpreter exit, after twistd has finished its own cleanup (pid
    file, log files), with the standard streams flushed first.
    """

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    atexit.register(leave)
    if reactor.running:
        reactor.stop()
    else:
        reactor.callWhenRunning(reactor.stop)


class ProxyService(Service):
    """Listens on every configured endpoint; releases everything on stop.

    :param fatal: called with an exit status when the binding table fails
        to start; :func:`exit_after_stop` by default.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        factory: ProxyFactory,
        listen: tuple[str, ...],
        bindings: BindingTable,
        racs: GqAdmission | None = None,
        fatal: Callable[[int], None] | None = None,
    ) -> None:
        self._reactor = reactor
        self._racs = racs
        self.factory = factory
        self._listen = listen
        self._bindings = bindings
        self._fatal = fatal or (lambda status: exit_after_stop(reactor, status))
        self.ports: list[IListeningPort] = []
        self.ready: Deferred[None] = succeed(None)

    def startService(self) -> None:
        """Listen at once, or once the binding table has started.

        :raises Exception: a listener failed and the table needed no start
            (twistd then exits before running).
        """
        super().startService()  # type: ignore[no-untyped-call]
        if not isinstance(self._bindings, StartableTable):
            self._listen_all()
            return
        starting = self._bindings.start()
        starting.addCallback(lambda _: self._listen_all())
        self.ready = starting.addErrback(self._start_failed)

    def _start_failed(self, failure: Failure) -> None:
        # A refusal from the kernel says it all; anything else is a bug,
        # whose traceback goes with the event.
        expected = failure.check(BindingFailed, OSError) is not None
        self.log.critical(
            "hostednat could not start, stopping: {error}",
            hostednat_event=events.SERVICE_START_FAILED,
            error=failure.getErrorMessage(),
            **({} if expected else {"log_failure": failure}),
        )
        self._fatal(1)

    def _listen_all(self) -> None:
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
    fatal: Callable[[int], None] | None = None,
) -> MultiService:
    """Build the hostednat service tree for ``config``.

    :param fatal: what :class:`ProxyService` calls when the binding table
        fails to start (tests); stop and exit by default.
    :raises ConfigError: the data plane cannot run here.
    """
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
    proxy = ProxyService(reactor, factory, rtsp.listen, bindings, racs, fatal)
    proxy.setServiceParent(top)  # type: ignore[no-untyped-call]
    return top
