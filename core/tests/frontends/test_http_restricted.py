"""--http-restricted-api: every route of a restricted category needs the header, as in
Triton (src/http_server.cc checks health and server metadata too); routes of other
categories are untouched."""

from __future__ import annotations

import pytest

from http_helpers import request
from live_server import serving_http

# (method, path, category) for every HTTP route with a category
ROUTES = [
    ("GET", "/v2", "metadata"),
    ("GET", "/v2/health/live", "health"),
    ("GET", "/v2/health/ready", "health"),
    ("GET", "/v2/models/add", "metadata"),
    ("GET", "/v2/models/add/ready", "health"),
    ("GET", "/v2/models/add/config", "model-config"),
    ("GET", "/v2/models/add/stats", "statistics"),
    ("GET", "/v2/models/stats", "statistics"),
    ("POST", "/v2/models/add/infer", "inference"),
    ("POST", "/v2/repository/index", "model-repository"),
    ("GET", "/v2/systemsharedmemory/status", "shared-memory"),
    ("GET", "/v2/logging", "logging"),
    ("GET", "/v2/trace/setting", "trace"),
]
CATEGORIES = sorted({c for _, _, c in ROUTES})
KEY, VALUE = "x-admin-key", "s3cret"


@pytest.fixture(scope="module")
def restricted_servers(http_server):
    """One front end per category, each restricting only that category."""
    fronts = {c: serving_http(http_server, restricted={c: (KEY, VALUE)}) for c in CATEGORIES}
    addrs = {c: f.__enter__() for c, f in fronts.items()}
    yield addrs
    for f in fronts.values():
        f.__exit__(None, None, None)


def _restricted(status: int, body: bytes) -> bool:
    return status >= 400 and b"This API is restricted, expecting header" in body


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("method,path,route_category", ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_a_restricted_category_needs_the_header_on_every_route(restricted_servers, category,
                                                               method, path, route_category):
    addr = restricted_servers[category]
    body = b"{}" if method == "POST" else None
    status, _, out = request(addr, method, path, body)
    assert _restricted(status, out) == (route_category == category), (status, out)
    if route_category == category:
        status, _, out = request(addr, method, path, body, {KEY: VALUE})
        assert not _restricted(status, out), (status, out)
