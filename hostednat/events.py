"""Every structured log event hostednat emits, by its stable key.

Each event is a :mod:`twisted.logger` event whose ``hostednat_event`` field
holds one of these keys; operators alert on the key, never on the rendered
text.  Levels: info for session, binding and peer lifecycle, warn for
malformed input from a peer, error for a dependency that is down.  Nothing is
logged per media packet.
"""

from __future__ import annotations

from typing import Final

LISTENING: Final = "rtsp.listening"
"""A listener is accepting box connections (``endpoint``)."""

MALFORMED: Final = "rtsp.malformed"
"""A peer sent bytes that do not parse (``peer``, ``status``, ``error``)."""

FORBIDDEN: Final = "rtsp.forbidden"
"""A request named an upstream that is not routed or allowed (``uri``)."""

UPSTREAM_UNREACHABLE: Final = "upstream.unreachable"
"""The upstream server could not be reached (``upstream``, ``error``)."""

UPSTREAM_TIMEOUT: Final = "upstream.timeout"
"""The upstream server did not answer in time (``upstream``, ``method``)."""

SESSION_ESTABLISHED: Final = "session.established"
"""A server Session id was first seen (``session``, ``box``, ``timeout``)."""

SESSION_ENDED: Final = "session.ended"
"""A session and its bindings were released (``session``, ``cause``)."""

BINDING_ALLOCATED: Final = "binding.allocated"
"""Ports were reserved for a stream (``binding``, ``access``, ``core``)."""

BINDING_LATCHED: Final = "binding.latched"
"""A leg latched or relatched to the box's public mapping (``source``)."""

BINDING_RELEASED: Final = "binding.released"
"""A binding's ports were given back (``binding``, ``cause``)."""

BINDING_EXHAUSTED: Final = "binding.exhausted"
"""A SETUP was refused with 453 because a port range is empty."""

REFLECTION_BLOCKED: Final = "transport.destination_dropped"
"""A box asked for media to go to an address other than its own."""

ADMISSION_REFUSED: Final = "admission.refused"
"""The admission hook refused a stream (``status``, ``cause``)."""

BINDING_OBSERVER_FAILED: Final = "binding.observer_failed"
"""The binding observer raised on a latch (``binding_id``, ``leg``)."""

KERNEL_RECONCILED: Final = "kernel.reconciled"
"""At start the kernel backend removed what a previous run left behind
(``table``, ``elements``, ``conntrack_deleted``)."""

KERNEL_BINDING_FAILED: Final = "kernel.binding_failed"
"""The kernel refused to install, move or remove a leg, or a counter read
failed (``binding``, ``leg``, ``error``, ``errno``); a leg it refused stays
with the userspace relay."""

KERNEL_BINDING_REMOVED: Final = "kernel.binding_removed"
"""A kernel-backend binding was released, with the packets forwarded for it
by the kernel and by the Python relay (``binding``, ``session``,
``kernel_to_box``, ``kernel_to_server``, ``python_to_box``,
``python_to_server``, and ``latch_datagrams``, the box datagrams that
latched a leg)."""

SERVICE_START_FAILED: Final = "service.start_failed"
"""The data plane did not start, so nothing listens; twistd stops and exits
with status 1 (``error``)."""

ALL: Final = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and name != "ALL"
)
