"""Build a native (C++) PPX simulator against etalumis's schema.

For adapter authors and for the tests that prove wire compatibility with native front ends:
``flatc --cpp`` generates the bindings of ``ppx.fbs``, g++ compiles the simulator and links
ZeroMQ. On Debian: ``apt-get install g++ flatbuffers-compiler libflatbuffers-dev libzmq3-dev``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from ..errors import EtalumisError

__all__ = ["build_native_simulator", "missing_build_tools", "SCHEMA"]

SCHEMA = Path(__file__).resolve().with_name("ppx.fbs")
HEADERS = ("/usr/include/zmq.h", "/usr/include/flatbuffers/flatbuffers.h")


def missing_build_tools() -> str | None:
    """What is missing to build a native PPX simulator (None when everything is there)."""
    if shutil.which("g++") is None:
        return "g++"
    if shutil.which("flatc") is None:
        return "flatc (apt: flatbuffers-compiler)"
    for header in HEADERS:
        if not Path(header).exists():
            return f"{header} (apt: libzmq3-dev / libflatbuffers-dev)"
    return None


def build_native_simulator(source: str | Path, output_dir: str | Path,
                           name: str | None = None, flags: Sequence[str] = ("-O2",),
                           libraries: Sequence[str] = ("zmq",)) -> Path:
    """Compile ``source`` with the generated ``ppx_generated.h`` on its include path; returns
    the executable. Errors name the missing tool or show the compiler's message."""
    missing = missing_build_tools()
    if missing:
        raise EtalumisError(f"cannot build {source}: {missing} is not installed")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "ppx_generated.h").exists():
        _run(["flatc", "--cpp", "-o", str(out), str(SCHEMA)], "flatc")
    binary = out / (name or Path(source).stem)
    _run(["g++", *flags, "-std=c++17", "-I", str(out), str(source), "-o", str(binary),
          *(f"-l{lib}" for lib in libraries)], "g++")
    return binary


def _run(command: list[str], tool: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise EtalumisError(f"{tool} failed (exit code {done.returncode}):\n{done.stderr[-4000:]}")
