"""RTSP 1.0 and 2.0 codec: messages, incremental parser, Transport header.

Sans-IO: nothing here imports twisted.internet or touches a socket.
"""
