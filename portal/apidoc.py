"""docs/api.md generated from the API's OpenAPI spec: a short guide, then every route with its
scope, parameters, request body fields and answers.

    python -m portal.apidoc              # rewrite docs/api.md
    python -m portal.apidoc --check      # exit 1 when docs/api.md is stale (tests/portal/test_apidoc.py)

The scope of a route is read from its bearer-token dependency (`required_scope`, set by
`portal.api`); everything else from `app.openapi()`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"

GUIDE = """\
# colorgrid HTTP API (generated)

This page is generated from the OpenAPI spec of `colorgrid serve` by `python -m portal.apidoc`
(a test fails when it is stale): do not edit it by hand. The same spec is served live at
`/openapi.json` and as Swagger UI at `/docs`. Concepts, token lifecycle, goal schedules and
metrics: [docs/portal.md](portal.md).

## Guide

1. **Start it.** `colorgrid serve --demo` starts a broker, the controller and a simulated fleet and
   prints the URL and two tokens; against a real controller:
   `colorgrid serve --registry registry.db --results out --db portal.db --port 8080`
   (`--db postgresql://…` for PostgreSQL).
2. **Get a token.** `colorgrid token create --stakeholder dso --scope fleet:read --group 671.1 --ttl 86400`
   prints it once, as its last line. Send it on every call:
   `Authorization: Bearer cgp_…`. No token → 401; expired or revoked → 401
   `error="invalid_token"`; a missing scope → 403 `error="insufficient_scope"`.
3. **Read.** `curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/v1/fleet/groups`
4. **Write.** A goal schedule or a curtailment becomes a signed `DispatchGoal` published to the
   broker; every write, accepted or refused, is in the audit log:

   ```bash
   curl -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
        http://127.0.0.1:8080/v1/goals \\
        -d '{"group": "671.1", "points": [{"ts_ms": 1767225600000, "goal_kw": 40}], "valid_until_ts_ms": 1767229200000}'
   ```
5. **Errors** are JSON `{"error": "<field>: <reason>"}`; a 422 adds `errors`, one line per field.
   Times are UTC epoch ms (`*_ts_ms`), powers kW.

## Routes
"""


def _type(schema: dict, components: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s, components) for s in schema["anyOf"] if s.get("type") != "null")
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}), components)}"
    return schema.get("type", "any")


def _bounds(schema: dict) -> str:
    if "anyOf" in schema:
        schema = next((s for s in schema["anyOf"] if s.get("type") != "null"), {})
    parts = []
    for key, text in (("minimum", ">= {}"), ("exclusiveMinimum", "> {}"), ("maximum", "<= {}"),
                      ("minLength", "length >= {}"), ("maxLength", "length <= {}"), ("minItems", ">= {} items"),
                      ("maxItems", "<= {} items"), ("pattern", "pattern `{}`")):
        if key in schema:
            parts.append(text.format(schema[key]))
    return ", ".join(parts)


def _scopes(app) -> dict[tuple[str, str], str]:
    out = {}
    for route in app.routes:
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        scope = "none"
        for dep in dependant.dependencies:
            scope = getattr(dep.call, "required_scope", scope)
        for method in getattr(route, "methods", ()):
            out[(method.lower(), route.path)] = scope
    return out


def _model(name: str, components: dict) -> list[str]:
    schema = components.get(name, {})
    lines = [f"Body `{name}`{': ' + schema['description'] if schema.get('description') else ''}", "",
             "| field | type | required | constraints | meaning |", "|---|---|---|---|---|"]
    required = set(schema.get("required", []))
    for field, spec in schema.get("properties", {}).items():
        lines.append(f"| `{field}` | {_type(spec, components)} | {'yes' if field in required else 'no'} | "
                     f"{_bounds(spec)} | {spec.get('description', '')} |")
    return lines + [""]


def render(spec: dict, scopes: dict[tuple[str, str], str]) -> str:
    components = spec.get("components", {}).get("schemas", {})
    out = [GUIDE]
    models: list[str] = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            out.append(f"### `{method.upper()} {path}`\n")
            summary, scope = op.get("summary", ""), scopes.get((method, path), "none")
            out.append(f"{summary[:1].upper()}{summary[1:]}. Scope: **{scope}**.\n")
            params = op.get("parameters", [])
            if params:
                out += ["| parameter | in | type | required | constraints |", "|---|---|---|---|---|"]
                for p in params:
                    out.append(f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}), components)} | "
                               f"{'yes' if p.get('required') else 'no'} | {_bounds(p.get('schema', {}))} |")
                out.append("")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                name = _type(body, components)
                out.append(f"Request body: `{name}` (below).\n")
                if name not in models:
                    models.append(name)
            codes = ", ".join(sorted(op.get("responses", {})))
            note = "" if scope == "none" else " (and 401/403 for a missing or insufficient token)"
            out.append(f"Answers: {codes}{note}.\n")
    out.append("## Request bodies\n")
    seen = list(models)
    for name in models:                         # nested models (GoalPoint inside GoalSubmit)
        for spec_ in components.get(name, {}).get("properties", {}).values():
            inner = _type(spec_, components).removeprefix("list of ")
            if inner in components and inner not in seen:
                seen.append(inner)
    for name in seen:
        out += _model(name, components)
    return "\n".join(out).rstrip() + "\n"


def build() -> str:
    from portal.api import create_app
    from portal.store import FakePortalStore
    from portal.tokens import FakeTokenStore

    app = create_app(FakeTokenStore(), FakePortalStore(), dashboard=True)
    return render(app.openapi(), _scopes(app))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portal.apidoc", description="write docs/api.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/api.md is not up to date")
    parser.add_argument("--out", default=str(DOC), help=f"where (default {DOC})")
    args = parser.parse_args(argv)
    text = build()
    path = Path(args.out)
    if args.check:
        if not path.is_file() or path.read_text() != text:
            print(f"{path} is stale: run python -m portal.apidoc", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
