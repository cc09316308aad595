"""RTSP 1.0 and 2.0 codec: messages, incremental parser, Transport header.

Sans-IO: nothing here imports twisted or touches a socket.

- :mod:`~hostednat.rtsp.errors`: error classes that carry their status.
- :mod:`~hostednat.rtsp.message`: requests, responses, interleaved frames,
  header fields that re-serialize byte for byte.
- :mod:`~hostednat.rtsp.parser`: the incremental parser.
- :mod:`~hostednat.rtsp.transport`: the Transport header model.
- :mod:`~hostednat.rtsp.headers`: Session, Via and RTP-Info helpers.
- :mod:`~hostednat.rtsp.sdp`: control URLs and bandwidth from SDP.
"""
