"""colorgrid gateway agent. The core (every module without `paho`, `cpython` or `cli` in its name) is stdlib-only and MicroPython-compatible."""
