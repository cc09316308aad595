"""RTSP sessions as the proxy sees them, and the bindings they hold.

A session starts with the first SETUP on a box connection and is named by the
server's ``Session`` id once the answer brings one (RFC 2326 12.37).  Each
SETUP'd stream (keyed by its control URL) may hold one hosted-NAT binding.
Bindings are released when:

- the TEARDOWN answer arrives (the whole session, or the one stream its URL
  names);
- the box re-SETUPs a stream over TCP, or re-SETUPs it at all (the new
  binding replaces the old one);
- nothing was heard from the box for the session timeout (the server's
  ``;timeout=``, else 60 s per RFC 2326 12.37) plus a grace period;
- the box or the upstream connection closes (decision D12: servers end
  sessions with the connection, so the proxy mirrors that);
- the admission hook ends the session (an SPDF's RAR or ASR).

Every timer runs on the clock handed in.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from hostednat import events
from hostednat.nat.binding import Binding, BindingTable
from hostednat.proxy.admission import AdmissionHook


class SessionOwner(Protocol):
    """The connection a session lives on."""

    def session_aborted(self, session: RtspSession, cause: str) -> None:
        """The session was ended from outside; drop the connection's state."""


@attrs.define(eq=False)
class Stream:
    """One SETUP'd stream of a session."""

    control_url: str
    lower_transport: str
    binding: Binding | None = None


@attrs.define(eq=False)
class RtspSession:
    """Proxy state for one RTSP session (reference section 8)."""

    key: str
    box_address: str
    owner: SessionOwner
    session_id: str | None = None
    timeout: float = 60.0
    streams: dict[str, Stream] = attrs.field(factory=dict)
    timer: IDelayedCall | None = None
    ended: bool = False
    merged_keys: list[str] = attrs.field(factory=list)
    """Keys of sessions the server joined into this one; the admission hook
    knows their streams by those keys."""

    def bindings(self) -> Iterator[Binding]:
        for stream in self.streams.values():
            if stream.binding is not None:
                yield stream.binding


class SessionTable:
    """All live sessions, their timers, and the release of their bindings."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        bindings: BindingTable,
        admission: AdmissionHook,
        *,
        default_timeout: float = 60.0,
        grace: float = 10.0,
    ) -> None:
        self._clock = clock
        self._bindings = bindings
        self._admission = admission
        self._default_timeout = default_timeout
        self._grace = grace
        self._by_key: dict[str, RtspSession] = {}
        self._by_id: dict[str, RtspSession] = {}
        self._serial = itertools.count(1)
        admission.attach(self.terminate)

    def __len__(self) -> int:
        return len(self._live())

    def __iter__(self) -> Iterator[RtspSession]:
        return iter(self._live())

    def _live(self) -> list[RtspSession]:
        """Each live session once (a joined session is keyed twice)."""
        return list(dict.fromkeys(self._by_key.values()))

    def open(self, box_address: str, owner: SessionOwner) -> RtspSession:
        """Start a session that has no server id yet."""
        key = f"s{next(self._serial)}"
        session = RtspSession(key, box_address, owner, timeout=self._default_timeout)
        self._by_key[key] = session
        return session

    def by_id(self, session_id: str) -> RtspSession | None:
        return self._by_id.get(session_id)

    def identify(
        self, session: RtspSession, session_id: str, timeout: float | None
    ) -> None:
        """Record the server's id (and timeout) for ``session``."""
        if session.session_id is None:
            session.session_id = session_id
            self._by_id[session_id] = session
            self.log.info(
                "session {session} established for {box} (timeout {timeout}s)",
                hostednat_event=events.SESSION_ESTABLISHED,
                session=session_id,
                key=session.key,
                box=session.box_address,
                timeout=timeout or self._default_timeout,
            )
        if timeout is not None:
            session.timeout = timeout
        self.touch(session)

    def touch(self, session: RtspSession) -> None:
        """The box was heard from; push the session's expiry back."""
        if session.ended:
            return
        delay = session.timeout + self._grace
        if session.timer is not None and session.timer.active():
            session.timer.reset(delay)
        else:
            session.timer = self._clock.callLater(delay, self._expire, session)

    def set_stream(
        self,
        session: RtspSession,
        url: str,
        lower_transport: str,
        binding: Binding | None,
    ) -> None:
        """Record the stream at ``url``, releasing whatever it held before."""
        if session.ended:
            if binding is not None:
                self.release(binding, "session already ended")
            return
        previous = session.streams.get(url)
        session.streams[url] = Stream(url, lower_transport, binding)
        if previous is not None and previous.binding is not None:
            self.release(previous.binding, "re-setup")

    def merge(self, into: RtspSession, other: RtspSession) -> None:
        """Move ``other``'s streams into ``into`` (the server joined them)."""
        into.streams.update(other.streams)
        into.merged_keys += [other.key, *other.merged_keys]
        other.streams.clear()
        other.ended = True
        if other.timer is not None and other.timer.active():
            other.timer.cancel()
        for key in (other.key, *other.merged_keys):
            self._by_key[key] = into

    def drop_stream(self, session: RtspSession, url: str, cause: str) -> None:
        stream = session.streams.pop(url, None)
        if stream is not None and stream.binding is not None:
            self.release(stream.binding, cause)
        if not session.streams:
            self.end(session, cause)

    def end(self, session: RtspSession, cause: str) -> None:
        """Release everything ``session`` holds; idempotent."""
        if session.ended:
            return
        session.ended = True
        if session.timer is not None and session.timer.active():
            session.timer.cancel()
        keys = (session.key, *session.merged_keys)
        for key in keys:
            self._by_key.pop(key, None)
        if session.session_id is not None:
            self._by_id.pop(session.session_id, None)
        for stream in session.streams.values():
            if stream.binding is not None:
                self.release(stream.binding, cause)
                stream.binding = None
        self.log.info(
            "session {session} ended: {cause}",
            hostednat_event=events.SESSION_ENDED,
            session=session.session_id or session.key,
            key=session.key,
            cause=cause,
        )
        for key in keys:
            self.watch(self._admission.session_ended(key, cause), "admission")

    def release(self, binding: Binding, cause: str) -> None:
        """Give a binding back to its table."""
        self.log.info(
            "binding {binding} released: {cause}",
            hostednat_event=events.BINDING_RELEASED,
            binding=binding.binding_id,
            cause=cause,
        )
        self.watch(self._bindings.remove(binding), "binding removal")

    def terminate(self, key: str, cause: str) -> None:
        """End the session ``key`` on behalf of the policy side."""
        session = self._by_key.get(key)
        if session is None:
            return
        self.end(session, cause)
        session.owner.session_aborted(session, cause)

    def close(self) -> None:
        """End every session (service shutdown)."""
        for session in self._live():
            self.end(session, "shutdown")

    def _expire(self, session: RtspSession) -> None:
        session.timer = None
        self.end(session, "timeout")

    def watch(self, deferred: Deferred[None], what: str) -> None:
        """Log a failure of ``deferred`` instead of dropping it."""

        def report(failure: Failure) -> None:
            self.log.failure("{what} failed", failure, what=what)

        deferred.addErrback(report)
