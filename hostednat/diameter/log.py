"""The structured log events of the Diameter client and the SPDF simulator.

Each is a :mod:`twisted.logger` event whose ``hostednat_event`` field holds
one of these keys (fields in parentheses); they complement
:mod:`hostednat.events`.
"""

from __future__ import annotations

from typing import Final

PEER_OPEN: Final = "diameter.peer.open"
"""A peer finished CER/CEA (or REOPEN) and carries requests (``peer``)."""

PEER_SUSPECT: Final = "diameter.peer.suspect"
"""A peer missed a watchdog answer; its requests fail over (``peer``)."""

PEER_DOWN: Final = "diameter.peer.down"
"""A peer connection closed, failed or was refused (``peer``, ``reason``)."""

PEER_MALFORMED: Final = "diameter.peer.malformed"
"""A peer sent an unusable message, dropped (``peer``, ``reason``)."""

REQUEST_HANDLER_FAILED: Final = "diameter.request.handler_failed"
"""Handling a request from a peer raised; logged with its traceback."""

ADMISSION_REFUSED: Final = "racs.refused"
"""An AAR was refused or failed (``session``, ``result_code``,
``vendor_id``, ``status``, ``cause``)."""

ADMISSION_FAIL_OPEN: Final = "racs.fail_open"
"""The RACS could not answer and ``fail_open`` admitted the stream anyway
(``session``, ``cause``)."""

ADMISSION_GRANTED: Final = "racs.admitted"
"""An AAR was granted (``session``, ``diameter_session``, ``access``)."""

UPDATE_REFUSED: Final = "racs.update_refused"
"""The update AAR with Flow-Descriptions failed (``session``, ``cause``)."""

SESSION_ABORTED: Final = "racs.session_aborted"
"""The SPDF ended a session by RAR or ASR (``session``, ``command``,
``reason``)."""

TERMINATION_FAILED: Final = "racs.termination_failed"
"""An STR got no success answer (``session``, ``cause``)."""


SPDF_DECISION: Final = "spdf.decision"
"""The simulator answered an AAR (``session``, ``subscriber``,
``result_code``, ``bandwidth``)."""
