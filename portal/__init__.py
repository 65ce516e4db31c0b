"""portal — the stakeholder portal: HTTP API (FastAPI), scoped revocable tokens, audit log.

Sits on the controller's service (ARCHITECTURE §8): reads the controller's registry and results
as files, publishes signed goal schedules through `cloud.dispatch`, reads market results as files
and the settlement ledger through `market.settlement`. Nothing below imports it; only the
`colorgrid` command, benches and tests do. See portal/README.md and docs/portal.md.
"""
