"""Every API test runs twice: on the HTTP front (``http_fast_path``, the default), which
serves the hot routes itself, and without it (aiohttp serves every request)."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import Harness, ServerFactory


@pytest.fixture(params=[True, False], ids=["front", "nofront"])
def make_server(make_server: ServerFactory, request: pytest.FixtureRequest) -> ServerFactory:
    async def factory(**overrides: Any) -> Harness:
        overrides.setdefault("http_fast_path", request.param)
        return await make_server(**overrides)

    return factory
