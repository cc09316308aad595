"""Tests of the sans-IO RTSP codec."""
