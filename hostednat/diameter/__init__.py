"""Diameter Gq' (ETSI TS 183 017) and Rx admission towards the RACS (SPDF).

Layers, bottom up:

- :mod:`~hostednat.diameter.dictionary`: codes, and the ETSI AVPs added to
  python-diameter's dictionary through its public ``register``;
- :mod:`~hostednat.diameter.codec`: framing and fast AVP rendering on top of
  python-diameter; :mod:`~hostednat.diameter.messages`: the commands;
- :mod:`~hostednat.diameter.results`: Result-Codes as exceptions carrying
  their RTSP answer;
- :mod:`~hostednat.diameter.peer` and :mod:`~hostednat.diameter.group`:
  sans-IO peer state machines (they take ``now``);
- :mod:`~hostednat.diameter.transport`: Twisted around them;
- :mod:`~hostednat.diameter.af`: the AF procedure, the proxy's admission
  hook; :mod:`~hostednat.diameter.config`: its ``[racs]`` section;
- :mod:`~hostednat.diameter.simulator`: an SPDF for labs and tests.

Everything below ``transport`` imports no ``twisted.internet``.
"""
