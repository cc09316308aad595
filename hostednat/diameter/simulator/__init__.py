"""An SPDF (RACS) simulator speaking Gq' or Rx, on hostednat's own peer code.

Run it with ``twistd -n hostednat-spdf --config conf/spdf.toml``.  It admits
AARs against per-subscriber and total bandwidth budgets, can force a
Result-Code per subscriber, optionally returns a Binding-Output-List, and
sends RAR or ASR for a live session on request of its admin HTTP endpoint.
"""
