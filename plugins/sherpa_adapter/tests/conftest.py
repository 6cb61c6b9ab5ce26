"""Builds the Sherpa-like C++ PPX simulator (tests/cpp/sherpa_like.cpp) once per session.

The build is the PPX tests' own recipe (flatc's C++ bindings of the core's ppx.fbs, g++,
libzmq); a test that needs the binary is skipped with the reason when a tool is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import etalumis_core

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "cpp" / "sherpa_like.cpp"
SCHEMA = Path(etalumis_core.__file__).resolve().parent / "ppx" / "ppx.fbs"


def _missing() -> str | None:
    if shutil.which("g++") is None:
        return "g++"
    if shutil.which("flatc") is None:
        return "flatc (apt: flatbuffers-compiler)"
    for header in ("/usr/include/zmq.h", "/usr/include/flatbuffers/flatbuffers.h"):
        if not Path(header).exists():
            return f"{header} (apt: libzmq3-dev / libflatbuffers-dev)"
    return None


@pytest.fixture(scope="session")
def sherpa_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _missing()
    if missing:
        pytest.skip(f"cannot build the Sherpa-like C++ PPX simulator: {missing} is not installed")
    build = tmp_path_factory.mktemp("sherpa_like")
    subprocess.run(["flatc", "--cpp", "-o", str(build), str(SCHEMA)], check=True)
    binary = build / "sherpa_like"
    subprocess.run(["g++", "-O2", "-std=c++17", "-I", str(build), str(SOURCE), "-o", str(binary),
                    "-lzmq"], check=True)
    return binary


@pytest.fixture(scope="session")
def possible_addresses(sherpa_binary: Path) -> list[str]:
    """Every base address the C++ simulator can send."""
    out = subprocess.run([str(sherpa_binary), "--list-addresses"], check=True,
                         capture_output=True, text=True).stdout
    return out.splitlines()
