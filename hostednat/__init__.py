"""hostednat: a hosted-NAT RTSP proxy with RACS integration."""

__version__ = "0.1.0"
