"""The edges clients connect to: WebSocket (``websocket.py``) and Server-Sent Events
(``sse.py``, with ``eventstream.py``, an SSE session's numbered events). Both drive the
same ``Session``."""
