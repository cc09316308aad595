"""The ``twistd hostednat-spdf`` plugin: the SPDF simulator."""

from twisted.application.service import ServiceMaker

hostednat_spdf = ServiceMaker(
    "hostednat-spdf",
    "hostednat.diameter.simulator.tap",
    "SPDF (RACS) simulator for hostednat's Gq' client",
    "hostednat-spdf",
)
