"""The real Pythia 8 front end and in-process library, built by ``make pythia8`` (or here, by the
same make, when a test session finds either missing). Tests skip only when they cannot be built:
no compiler or PPX tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from etalumis_core.ppx.native import missing_build_tools
from etalumis_pythia8_adapter.inprocess import LIBRARY_NAME
from etalumis_pythia8_adapter.simulator import DEFAULT_FRONT_END, PLUGIN_ROOT


@pytest.fixture(scope="session")
def front_end() -> Path:
    missing = missing_build_tools()
    if missing:
        pytest.skip(f"cannot build Pythia 8 and its PPX front end: {missing} is not installed")
    if not (DEFAULT_FRONT_END.is_file() and (DEFAULT_FRONT_END.parent / LIBRARY_NAME).is_file()):
        subprocess.run(["make", "-C", str(PLUGIN_ROOT), f"PYTHON={sys.executable}"], check=True,
                       stdout=subprocess.DEVNULL)
    return DEFAULT_FRONT_END
