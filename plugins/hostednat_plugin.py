"""The ``twistd hostednat`` plugin; everything else loads on demand."""

from twisted.application.service import ServiceMaker

hostednat = ServiceMaker(
    "hostednat",
    "hostednat.tap",
    "Hosted-NAT RTSP proxy with RACS admission",
    "hostednat",
)
