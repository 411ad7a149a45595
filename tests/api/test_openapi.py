"""The OpenAPI document against the routes: each request body is the struct the handler
decodes, generated from it (one source)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from typing import Any

import msgspec

from tidings.api import API_APP_KEY

from ..conftest import Harness

# The module, not the route handler of the same name that tidings.api exports.
doc_module = importlib.import_module("tidings.api.openapi")


def _decoded_struct(handler: Any) -> type[msgspec.Struct] | None:
    """The struct a handler passes to ``read_body``, read from its source."""
    source = textwrap.dedent(inspect.getsource(handler))
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "read_body"
        ):
            arg = node.args[1]
            assert isinstance(arg, ast.Name)
            struct = handler.__globals__[arg.id]
            assert issubclass(struct, msgspec.Struct)
            return struct
    return None


def _doc_path(canonical: str) -> str:
    """``/api/users/{user_id}/send`` as the document writes it (``{userId}``)."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), canonical)


async def test_every_request_body_is_the_struct_its_handler_decodes(harness: Harness) -> None:
    """For every API route: the document's request body is a component generated from the
    very struct the handler decodes (and a route that decodes nothing documents no body)."""
    document = doc_module.openapi_document()
    schemas = document["components"]["schemas"]
    api_app = harness.server.app[API_APP_KEY]
    checked = 0
    for route in api_app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*") or route.resource is None:
            continue
        path = _doc_path(route.resource.canonical)
        op = document["paths"][path][route.method.lower()]
        struct = _decoded_struct(route.handler)
        if struct is None:
            assert "requestBody" not in op, (route.method, path)
            continue
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        generated = {**doc_module.REQUEST_BODIES, **doc_module.RESPONSE_BODIES}
        assert generated.get(name) is struct, (route.method, path, name, struct)
        assert schemas[name]["title"] == struct.__name__
        assert set(schemas[name]["properties"]) == set(struct.__struct_fields__)
        checked += 1
    assert checked >= 15  # the body routes were found, not skipped


def test_struct_answers_are_generated_from_the_protocol_types() -> None:
    """Answers that are protocol structs (a notification, a page, a room message) are
    documented from those structs."""
    schemas = doc_module.openapi_document()["components"]["schemas"]
    for name, struct in doc_module.RESPONSE_BODIES.items():
        assert set(schemas[name]["properties"]) == set(struct.__struct_fields__), name
