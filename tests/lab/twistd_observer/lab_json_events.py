"""A twistd ``--logger`` factory for the lab: every event as JSON on stdout.

twistd imports this module by name (``--logger lab_json_events.observer``)
when the lab starts it with this directory on ``PYTHONPATH``.  Each event is
written by :func:`twisted.logger.jsonFileLogObserver`, one per line after an
ASCII record separator, so that a test can read the structured fields
(``hostednat_event``, ``session``, ``status``...) instead of rendered text.
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def observer() -> ILogObserver:
    """Write events to the standard output twistd was started with."""
    return jsonFileLogObserver(sys.stdout)
