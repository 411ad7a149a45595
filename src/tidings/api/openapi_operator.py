"""The operator's read routes in the OpenAPI document (``api/openapi.py`` merges them): a
channel's history and the connection event log. Their answers' schemas are generated
from the structs in ``api/channels.py`` and ``api/events.py``
(``openapi_schemas.RESPONSE_BODIES``)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_KEY: list[dict[str, list[str]]] = [{"apiKey": []}]


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def operator_paths() -> dict[str, Any]:
    """``/api/channels/{channel}/history``, ``/api/events`` and ``/api/events/stream``."""
    after = _query(
        "after",
        {"type": "string"},
        "scope=instance: an event's seq (one higher than the instance's newest reads as "
        "0); scope=cluster: `<instance>:<seq>` per instance, comma separated (`positions`)",
    )
    scope = _query(
        "scope",
        {"type": "string", "enum": ["instance", "cluster"], "default": "instance"},
        "this instance's log, or every live instance's (over the cluster's control path)",
    )
    return {
        "/api/channels/{channel}/history": {
            "get": {
                "summary": "A channel's kept publications, oldest first, as subscribers "
                "received them; without sinceOffset/sinceEpoch the newest `limit`",
                "security": _KEY,
                "parameters": [
                    {
                        "name": "channel",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "default": 50},
                        "1 to the namespace's history_size (default: 50, or history_size if less)",
                    ),
                    _query(
                        "sinceOffset",
                        {"type": "integer", "minimum": 0},
                        "with sinceEpoch: the publications after this position",
                    ),
                    _query("sinceEpoch", {"type": "string"}, "the stream's epoch"),
                ],
                "responses": {
                    "200": {
                        "description": "the kept publications",
                        "content": _json("ChannelHistory"),
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": {
                        "description": "the channel's namespace keeps no history",
                        "content": _json("Error"),
                    },
                    "422": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/api/events": {
            "get": {
                "summary": "Recent connects and disconnects (with close codes), oldest first; "
                "without `after`, the newest `limit` (per instance)",
                "security": _KEY,
                "parameters": [
                    scope,
                    after,
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        "the most events to return",
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "a page of events: EventsPage for scope=instance, "
                        "ClusterEventsPage for scope=cluster",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/EventsPage"},
                                        {"$ref": "#/components/schemas/ClusterEventsPage"},
                                    ]
                                }
                            }
                        },
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "503": {
                        "description": "scope=cluster and the cluster is unreachable",
                        "content": _json("Error"),
                    },
                },
            }
        },
        "/api/events/stream": {
            "get": {
                "summary": "The same events live, as Server-Sent Events (`id`: the position "
                "after the event, `event: connect|disconnect|gap`, `data: <ConnectionEvent>`); "
                "it starts with the newest 100 (per instance), or after `after` / "
                "Last-Event-ID; scope=cluster asks every instance each second",
                "security": _KEY,
                "parameters": [
                    scope,
                    after,
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "the event stream, until the server stops",
                        "content": {
                            "text/event-stream": {
                                "schema": {
                                    "type": "string",
                                    "description": "each event's data is a ConnectionEvent "
                                    "(#/components/schemas/ConnectionEvent)",
                                }
                            }
                        },
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "503": {
                        "description": "scope=cluster and the cluster is unreachable",
                        "content": _json("Error"),
                    },
                },
            }
        },
    }
