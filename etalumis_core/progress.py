"""Progress bars for long work (tqdm), silent when disabled or not on a terminal."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Progress"]


class Progress:
    """A thin tqdm wrapper: ``update(n)`` and ``show(**stats)`` for rate, ESS, acceptance."""

    def __init__(self, total: int, desc: str, enabled: bool | None = None, unit: str = "trace") -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True,
                         disable=not enabled, smoothing=0.1)

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    @property
    def done(self) -> float:
        return self._bar.n

    def set_total(self, total: float) -> None:
        """A new estimate of the whole work's size (work whose extent shows as it goes), so
        the bar keeps a fraction and an ETA."""
        self._bar.total = max(int(round(total)), int(self._bar.n))
        self._bar.refresh()

    def show(self, **stats: Any) -> None:
        self._bar.set_postfix({k: (f"{v:.3g}" if isinstance(v, float) else v)
                               for k, v in stats.items()}, refresh=False)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
