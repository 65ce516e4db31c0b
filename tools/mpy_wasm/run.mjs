// Run one MicroPython test script under real MicroPython (WebAssembly build, 1.27) in Node.
//
// usage: node tools/mpy_wasm/run.mjs [--root REPO] [--heap 16m] SCRIPT.py [ARG ...]
//
// The repo's edge_agent *core* modules (every edge_agent/*.py whose name contains none of
// "paho", "cpython", "cli", "__main__") are copied into MicroPython's in-memory filesystem under
// /lib/edge_agent/, the script's own folder under /mpytests/ (so helper modules next to it can be
// imported), and the script runs as __main__ with sys.argv = [SCRIPT, ARG ...].
// Exit code: 0 when the script ends normally (or sys.exit(0)), the SystemExit code when it calls
// sys.exit(n), 1 on any uncaught exception (AssertionError included; the traceback goes to stderr),
// 2 when the runner itself fails (bad arguments, missing files, MicroPython failed to load).
// The package's own CLI always exits 0, which is why this runner exists.
import fs from "node:fs";
import path from "node:path";
import url from "node:url";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const HERE = path.dirname(url.fileURLToPath(import.meta.url));
const CPYTHON_ONLY = ["paho", "cpython", "cli", "__main__"];

function usage(msg) {
  process.stderr.write(`run.mjs: ${msg}\nusage: node run.mjs [--root REPO] [--heap 16m] SCRIPT.py [ARG ...]\n`);
  process.exit(2);
}

function parseSize(text) {
  const m = /^(\d+)([kKmM]?)$/.exec(text);
  if (!m) usage(`--heap: expected a size such as 16m, got ${text}`);
  const unit = { "": 1, k: 1024, m: 1048576 }[m[2].toLowerCase()];
  return parseInt(m[1], 10) * unit;
}

function parseArgs(argv) {
  const opts = { root: path.resolve(HERE, "..", ".."), heap: 16 * 1048576, script: null, args: [] };
  let i = 0;
  for (; i < argv.length; i++) {
    if (argv[i] === "--root" && i + 1 < argv.length) opts.root = path.resolve(argv[++i]);
    else if (argv[i] === "--heap" && i + 1 < argv.length) opts.heap = parseSize(argv[++i]);
    else break;
  }
  if (i >= argv.length) usage("missing SCRIPT");
  opts.script = path.resolve(argv[i]);
  opts.args = argv.slice(i + 1);
  return opts;
}

function isCoreModule(name) {
  return name.endsWith(".py") && !CPYTHON_ONLY.some((bad) => name.includes(bad));
}

function mkdirs(FS, dir) {
  let cur = "";
  for (const part of dir.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}

function copyDir(FS, hostDir, mpDir, keep) {
  mkdirs(FS, mpDir);
  const names = fs.readdirSync(hostDir).filter(keep).sort();
  for (const name of names) {
    FS.writeFile(`${mpDir}/${name}`, fs.readFileSync(path.join(hostDir, name)));
  }
  return names;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const pkgDir = path.join(opts.root, "edge_agent");
  if (!fs.existsSync(pkgDir)) usage(`no edge_agent package under ${opts.root}`);
  if (!fs.existsSync(opts.script)) usage(`no such script: ${opts.script}`);

  const out = (data) => process.stdout.write(data);
  const err = (data) => process.stderr.write(data);
  const mp = await loadMicroPython({ heapsize: opts.heap, stdout: out, stderr: err, linebuffer: false });

  copyDir(mp.FS, pkgDir, "/lib/edge_agent", isCoreModule);
  const scriptDir = path.dirname(opts.script);
  copyDir(mp.FS, scriptDir, "/mpytests", (n) => n.endsWith(".py"));
  const mpScript = `/mpytests/${path.basename(opts.script)}`;

  mp.globals.set("_runner_argv", JSON.stringify([opts.script, ...opts.args]));
  mp.globals.set("_runner_script", mpScript);
  // The wrapper catches everything inside MicroPython so the exit code is decided here, not by
  // how the JS proxy happens to surface a Python exception.
  const wrapper = [
    "import sys, json",
    "sys.path.insert(0, '/mpytests')",
    "sys.argv[:] = json.loads(_runner_argv)",
    "_runner_rc = 0",
    "try:",
    "    with open(_runner_script) as _f:",
    "        _src = _f.read()",
    "    exec(compile(_src, _runner_script, 'exec'), {'__name__': '__main__', '__file__': _runner_script})",
    "except SystemExit as _e:",
    "    _code = _e.args[0] if _e.args else 0",
    "    _runner_rc = _code if isinstance(_code, int) else 1",
    "    if not isinstance(_code, int): print(_code, file=sys.stderr)",
    "except BaseException as _e:",
    "    sys.print_exception(_e, sys.stderr)",
    "    _runner_rc = 1",
  ].join("\n");
  try {
    mp.runPython(wrapper);
  } catch (e) {
    err(`run.mjs: MicroPython raised outside the script: ${e && e.message ? e.message : e}\n`);
    process.exit(2);
  }
  const rc = mp.globals.get("_runner_rc");
  process.exitCode = Number.isInteger(rc) ? rc : 2;
}

main().catch((e) => {
  process.stderr.write(`run.mjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});
