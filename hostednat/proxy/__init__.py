"""Twisted glue: the RTSP proxy protocols, session table and service."""
