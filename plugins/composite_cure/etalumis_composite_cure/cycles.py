"""Autoclave air-temperature cure cycles as piecewise-linear functions of time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Segment:
    """Ramp at ``ramp_rate`` (°C/min, magnitude) to ``hold_temperature`` (°C), hold ``hold_time`` (min)."""

    ramp_rate: float
    hold_temperature: float
    hold_time: float


@dataclass(frozen=True)
class CureCycle:
    """Air temperature through knots (minutes, °C), constant after the last knot."""

    knot_times: tuple[float, ...]  # min
    knot_temperatures: tuple[float, ...]  # °C

    def __post_init__(self) -> None:
        t = np.asarray(self.knot_times, dtype=float)
        if len(t) != len(self.knot_temperatures) or len(t) < 1:
            raise ValueError("knot times and temperatures must have the same non-zero length")
        if np.any(np.diff(t) < 0) or t[0] != 0.0:
            raise ValueError("knot times must start at 0 and not decrease")

    def __call__(self, t_seconds: np.ndarray | float) -> np.ndarray:
        """Air temperature (°C) at time(s) in seconds."""
        return np.interp(np.asarray(t_seconds, dtype=float) / 60.0, self.knot_times,
                         self.knot_temperatures)

    @property
    def end_time(self) -> float:
        """Time of the last knot (min)."""
        return float(self.knot_times[-1])

    @property
    def peak(self) -> float:
        return float(max(self.knot_temperatures))

    @classmethod
    def from_segments(cls, segments: Iterable[Segment], cool_rate: float,
                      start_temperature: float = 20.0, end_temperature: float = 20.0) -> "CureCycle":
        """Ramp/hold segments from ``start_temperature``, then cool at ``cool_rate`` (°C/min)."""
        times, temps = [0.0], [float(start_temperature)]
        for seg in segments:
            if seg.ramp_rate <= 0 or seg.hold_time < 0:
                raise ValueError(f"invalid segment {seg}")
            t = times[-1] + abs(seg.hold_temperature - temps[-1]) / seg.ramp_rate
            times += [t, t + seg.hold_time]
            temps += [float(seg.hold_temperature)] * 2
        if cool_rate <= 0:
            raise ValueError("cool_rate must be positive")
        times.append(times[-1] + abs(temps[-1] - end_temperature) / cool_rate)
        temps.append(float(end_temperature))
        return cls(tuple(times), tuple(temps))


def one_hold_cycle() -> CureCycle:
    """Published benchmark: 20 → 180 °C by 52 min, hold to 172 min, cool to 20 °C at 222 min."""
    return CureCycle((0.0, 52.0, 172.0, 222.0), (20.0, 180.0, 180.0, 20.0))


def hexcel_two_hold_cycle(ramp_rate: float = 2.0, first_hold: float = 60.0,
                          second_hold: float = 120.0, cool_rate: float = 2.0) -> CureCycle:
    """Hexcel 8552 manufacturer cycle: 107 °C hold, 177 °C hold, cool (to 20 °C here)."""
    return CureCycle.from_segments(
        [Segment(ramp_rate, 107.0, first_hold), Segment(ramp_rate, 177.0, second_hold)],
        cool_rate=cool_rate)


def segments_of(cycle_segments: Sequence[dict]) -> list[Segment]:
    """Segments from dicts with keys ramp_rate, hold_temperature, hold_time."""
    return [Segment(float(s["ramp_rate"]), float(s["hold_temperature"]), float(s["hold_time"]))
            for s in cycle_segments]
