#!/usr/bin/env bash
# The README's test command: installs whatever is missing (system packages too), then runs the
# whole suite. Safe to run repeatedly; CI runs it through .ci/run on a clean checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto mosquitto-clients)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
# Debian chromium: the portal dashboard's headless-browser test (playwright drives /usr/bin/chromium;
# never `playwright install`, it downloads a browser of its own).
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

"$PY" -m pip install -q -e '.[test,evm,openadr]'
# the OpenADR VEN tests run against a real openleadr VTN: with the extra installed, require it
export COLORGRID_REQUIRE_OPENADR=1

# MicroPython (WebAssembly build) used to execute the edge_agent core's tests under real MicroPython.
if [ -f tools/mpy_wasm/package.json ]; then
  (cd tools/mpy_wasm && { npm ci --no-audit --no-fund --silent || npm install --no-audit --no-fund --silent; })
fi

# anvil (local Ethereum node, shipped as an npm package) for the ledger's optional anchor tests.
if [ -f tests/market/settlement/anvil/package.json ]; then
  (cd tests/market/settlement/anvil && { npm ci --no-audit --no-fund --silent || npm install --no-audit --no-fund --silent; })
fi

# PostgreSQL (ledger store option): this machine kind starts it; start it if it is installed but down.
if command -v pg_ctlcluster >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

exec "$PY" -m pytest -q -p no:cacheprovider "$@"
