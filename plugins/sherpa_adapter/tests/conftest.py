"""Builds the Sherpa-like C++ PPX simulator (tests/cpp/sherpa_like.cpp) once per session.

The build is the core's (:func:`etalumis_core.ppx.native.build_native_simulator`); a test that
needs the binary is skipped with the reason when a tool is missing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from etalumis_core.ppx.native import build_native_simulator, missing_build_tools

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "cpp" / "sherpa_like.cpp"


@pytest.fixture(scope="session")
def sherpa_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = missing_build_tools()
    if missing:
        pytest.skip(f"cannot build the Sherpa-like C++ PPX simulator: {missing} is not installed")
    return build_native_simulator(SOURCE, tmp_path_factory.mktemp("sherpa_like"))


@pytest.fixture(scope="session")
def possible_addresses(sherpa_binary: Path) -> list[str]:
    """Every base address the C++ simulator can send."""
    out = subprocess.run([str(sherpa_binary), "--list-addresses"], check=True,
                         capture_output=True, text=True).stdout
    return out.splitlines()
