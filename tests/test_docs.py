"""Documentation that can be followed literally: every ```python block of README.md and
docs/*.md runs as written. A page's blocks run in order in one fresh directory (a later block
may use what an earlier one wrote); a block preceded by ``<!-- not run: reason -->`` is a
fragment shown for reading only."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!--\s*not run:[^>]*-->\s*\n)?```python\n(.*?)```", re.S)


def python_blocks(page: Path) -> list[str]:
    return [code for skip, code in BLOCK.findall(page.read_text()) if not skip]


def test_pages_have_python_blocks():
    assert python_blocks(ROOT / "README.md")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_python_block_runs(page, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    for number, code in enumerate(python_blocks(page), 1):
        script = tmp_path / f"block{number}.py"
        script.write_text(code)
        out = subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True,
                             text=True, timeout=540, env=env)
        assert out.returncode == 0, (f"{page.name}, python block {number} failed:\n{code}\n"
                                     f"{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
