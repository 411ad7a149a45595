"""The edges clients connect to: WebSocket (``websocket.py``) and Server-Sent Events
(``sse.py``, with ``eventstream.py``, an SSE session's numbered events). Each is a
``Transport`` driven through the one ``Gateway`` (``connection.py``): admission, caps,
timers, welcome and catch-up, and the registry of live connections are written there once.
``handshake.py`` reads an opening request the same way for all."""
