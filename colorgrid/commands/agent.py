"""`colorgrid agent --config gateway.toml`: run one gateway agent (edge_agent.cli) and write its
results (`--out DIR`: reports.csv, summary.json) — the writing lives here, not in edge_agent (§8)."""
from __future__ import annotations

import logging
import sys

HELP = "run a gateway agent: devices + tier state machines, MQTT session, signed control vectors"


def add_arguments(parser) -> None:
    from colorgrid.args import existing_file, positive_float
    from colorgrid.results import add_out_argument

    parser.add_argument("--config", required=True, metavar="TOML", type=existing_file,
                        help="gateway config (see deploy/gateway.example.toml)")
    parser.add_argument("--broker", default=None, metavar="URL",
                        help="mqtt://host[:port], overrides [broker] url")
    parser.add_argument("--duration-s", type=positive_float, default=None,
                        help="stop (cleanly, with a death message) after this many seconds")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    add_out_argument(parser)


def run(args) -> int:
    from edge_agent import cli

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = cli.load_config(args.config)
        result = cli.run(cfg, args.broker, args.duration_s)
    except cli.ConfigError as exc:
        print(f"colorgrid agent: error: {exc}", file=sys.stderr)
        return 2
    write_results(args.out, result)
    return 0


def write_results(out_dir, result) -> dict:
    """`--out DIR`: reports.csv (one row per round) and summary.json (docs/cli.md); nothing
    without --out. `result` is the `edge_agent.cli.AgentRun` of the finished run."""
    from colorgrid.results import RunOutput

    out = RunOutput(out_dir, "agent", result.params, seed=result.seed)
    out.write_csv("reports.csv", result.columns, result.rows)
    for name, value, unit in result.figures:
        out.figure(name, value, unit)
    return out.finish()
