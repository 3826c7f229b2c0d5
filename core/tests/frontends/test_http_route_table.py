"""The HTTP route table: it and the shared restricted-API table name the same routes; the
dispatcher checks a route's restriction before its method (Triton's order, http_server.cc);
a path that names no route is 404 whatever is restricted; a literal segment wins over a
model name only where the rest of the path fits it."""

from __future__ import annotations

import pytest

from http_helpers import error_of, request
from live_server import serving_http
from triton_core.frontends.http.app import ROUTES
from triton_core.frontends.restricted import CATEGORIES, http_category

KEY, VALUE = "x-admin-key", "s3cret"


def _concrete(pattern: str) -> list[str]:
    """The pattern's paths with name "add", version 1, region "r"."""
    paths = [pattern.replace("[/versions/{version}]", "")]
    if "[" in pattern:
        paths.append(pattern.replace("[/versions/{version}]", "/versions/1"))
    return [p.replace("{name}", "add").replace("{region}", "r") for p in paths]


PATHS = sorted({(path, http_category(r.pattern)) for r in ROUTES for path in _concrete(r.pattern)})


def test_the_route_table_and_the_categories_name_the_same_routes():
    assert {r.pattern for r in ROUTES} == {p for c in CATEGORIES.values() for p in c.http}


@pytest.fixture(scope="module")
def restricted_servers(http_server):
    """One front end per category, each restricting only that category."""
    fronts = {c: serving_http(http_server, restricted={c: (KEY, VALUE)}) for c in CATEGORIES}
    addrs = {c: f.__enter__() for c, f in fronts.items()}
    yield addrs
    for f in fronts.values():
        f.__exit__(None, None, None)


@pytest.mark.parametrize("path,category", PATHS, ids=[p for p, _ in PATHS])
def test_the_restriction_is_checked_before_the_method(restricted_servers, path, category):
    addr = restricted_servers[category]
    status, _, body = request(addr, "PUT", path, b"{}")
    assert status == 503 and f"This API is restricted, expecting header '{KEY}'" in error_of(body)
    status, _, body = request(addr, "PUT", path, b"{}", {KEY: VALUE})
    assert status == 405 and error_of(body) == "Method Not Allowed"


@pytest.mark.parametrize("path,category", [
    ("/v2/repository/bogus", "model-repository"), ("/v2/trace/other", "trace"),
    ("/v2/systemsharedmemory/region/r", "shared-memory"), ("/v2/health", "health"),
    ("/v2/models/add/versions/1/trace/setting", "trace"), ("/v2/logging/x", "logging"),
])
def test_a_path_without_a_route_is_not_found_even_when_restricted(restricted_servers, path,
                                                                   category):
    status, _, body = request(restricted_servers[category], "GET", path)
    assert status == 404 and error_of(body) == "Not Found"


def test_a_model_named_like_a_route_segment(http_server):
    with serving_http(http_server) as addr:
        assert request(addr, "GET", "/v2/models/stats")[0] == 200  # all models' statistics
        status, _, body = request(addr, "GET", "/v2/models/stats/ready")  # model "stats"
        assert status == 400 and body == b""
        for path in ("/v2/models/stats/versions/1", "/v2/models/stats/config"):
            status, _, body = request(addr, "GET", path)
            assert status == 404 and "stats" in error_of(body), (path, body)
