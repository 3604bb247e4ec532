"""The console's files are served without a token and hold no data; every other route
still needs one. No broker runs: the bootstrap address is a closed loopback port."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from orchestrator.http import ApiOptions, build_app
from orchestrator.status import WorkflowStatus
from tests.integration.http_helpers import ADMIN_TOKEN, READ_TOKEN, TOKENS, bearer, running_api
from tests.unit.http_api.test_http_unavailable import closed_port

CONSOLE = Path(__file__).parents[3] / "orchestrator" / "http" / "console"


async def test_page_and_files_need_no_token_and_carry_a_strict_policy() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    async with (
        running_api(config, "console", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        r = await http.get("/")
        assert (r.status_code, r.headers["Location"]) == (302, "/console/")
        page = await http.get("/console/")
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert '<script type="module" src="app.js">' in page.text
        for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
            r = await http.get(f"/console/{name}")
            assert r.status_code == 200
            assert r.headers["Content-Type"].startswith(kind)
        assert (await http.get("/console/nothing.js")).status_code == 404
        assert (await http.get("/console/..%2Fapp.py")).status_code == 404
        # the console's files are open to GET only
        assert (await http.post("/console/app.js")).status_code == 401


async def test_every_data_route_needs_a_token() -> None:
    app = build_app(ApiOptions(kafka_config={}, tokens=TOKENS))
    open_paths = {"/healthz", "/", "/console", "/console/", "/console/{name}"}
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    async with (
        running_api(config, "console", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        for resource in app.router.resources():
            path = resource.canonical
            if path in open_paths:
                continue
            concrete = path.replace("{workflow_id}", "w-1").replace("{name}", "n")
            for route in resource:
                r = await http.request(route.method, concrete)
                assert r.status_code == 401, (route.method, path, r.status_code)


async def test_dead_letter_routes_check_roles_and_input() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    async with (
        running_api(config, "console", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        body = {"from_offset": 0, "to_offset": 1}
        r = await http.post("/v1/dead-letters/redrive", json=body, headers=bearer(READ_TOKEN))
        assert r.status_code == 403
        bad = {"from_offset": 3, "to_offset": 3}
        r = await http.post("/v1/dead-letters/redrive", json=bad, headers=bearer(ADMIN_TOKEN))
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        r = await http.get("/v1/dead-letters?limit=0", headers=bearer(READ_TOKEN))
        assert r.status_code == 400
        r = await http.get("/v1/workflows?started_after=yesterday", headers=bearer(READ_TOKEN))
        assert r.status_code == 400
        assert "ISO 8601" in r.json()["message"]


async def test_whoami_tells_the_console_what_a_token_may_do() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}"}
    async with (
        running_api(config, "console", healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        assert (await http.get("/v1/whoami")).status_code == 401
        r = await http.get("/v1/whoami", headers=bearer(ADMIN_TOKEN))
        assert (r.status_code, r.json()) == (200, {"role": "admin"})
        r = await http.get("/v1/whoami", headers=bearer(READ_TOKEN))
        assert (r.status_code, r.json()) == (200, {"role": "read"})
        assert ADMIN_TOKEN not in r.text and READ_TOKEN not in r.text
        r = await http.get("/v1/whoami?token=x", headers=bearer(READ_TOKEN))
        assert r.status_code == 400
    async with (
        running_api(config, "console", tokens=None, healthy=False) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        # no token configured: every route is open, so the console may offer everything
        assert (await http.get("/v1/whoami")).json() == {"role": "admin"}


def test_the_console_offers_every_status() -> None:
    listed = re.search(r"STATUSES = \[(.*?)\]", (CONSOLE / "runs.js").read_text(), re.S)
    assert listed is not None
    assert set(re.findall(r'"([A-Z_]+)"', listed.group(1))) == {s.name for s in WorkflowStatus}


def test_the_console_loads_nothing_from_elsewhere() -> None:
    for path in CONSOLE.iterdir():
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path.name
        assert "innerHTML" not in text, path.name  # values are set as text only
        assert "localStorage" not in text, path.name  # the token lives in sessionStorage
