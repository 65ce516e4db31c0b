"""docs/api.md is generated from the OpenAPI spec (portal.apidoc) and must not be stale."""
from portal.apidoc import DOC, build, main


def test_docs_api_md_is_up_to_date():
    assert DOC.read_text() == build(), "docs/api.md is stale: run python -m portal.apidoc"
    assert main(["--check"]) == 0


def test_every_route_is_documented_with_its_scope(tmp_path):
    text = build()
    for route, scope in (("GET /v1/fleet/groups", "fleet:read"), ("POST /v1/goals", "goals:write"),
                         ("POST /v1/curtailments", "goals:write"), ("GET /v1/audit", "admin"),
                         ("GET /metrics", "metrics:read"), ("GET /health", "none"), ("GET /v1/token", "any token")):
        section = text.split(f"### `{route}`", 1)[1].split("###", 1)[0]
        assert f"Scope: **{scope}**" in section, route
    assert "| `limit_kw` | number | yes | >= 0" in text and "Body `GoalPoint`" in text
    stale = tmp_path / "api.md"
    stale.write_text(text + "edited by hand\n")
    assert main(["--check", "--out", str(stale)]) == 1
