"""The probabilistic cure model: uncertain process, noisy surface thermocouples.

Latent structure of one trace (names in quotes are the ``name=`` of each random choice):

* "h_top", "h_bottom": heat-transfer coefficients (W/(m² K)), log-normal, median 120 and 70,
  coefficient of variation 12 % by default;
* "rate_factor": multiplies the Arrhenius pre-exponential A, log-normal with median 1;
* the air-temperature cycle, a variable-length sequence of ramp/hold segments from 20 °C: segment
  i (1-based) draws "ramp_rate_i" (°C/min), "hold_temperature_i" (°C), "hold_time_i" (min); after
  segment i < max_segments a Bernoulli "another_segment_i" decides whether another follows; then
  "cool_rate" (°C/min) takes the air back to the end temperature, which it keeps until the end of
  the fixed observation window.  The number of random choices therefore varies between traces.

One ``observe`` of a batched Normal, shape (n_sensors, n_times), carries every thermocouple
reading on the fixed grid t = interval, 2·interval, ..., duration.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np

from etalumis_core import PythonSimulator, observe, sample, tag
from etalumis_core.distributions import Bernoulli, LogNormal, Normal, Uniform

from .cycles import CureCycle, Segment, hexcel_two_hold_cycle, one_hold_cycle
from .solver import CureSolver

log = logging.getLogger(__name__)

#: The SMC settings documented (and calibrated, README "Inference") for the random cycle, used
#: with ``SMC_PARTICLES`` particles: each tempering round keeps 80 % of the particles' ESS
#: (SMC's default keeps 50 %), so the number of segments is settled over more, gentler rounds.
SMC_SETTINGS = {"ess_fraction": 0.8, "moves": 6}
SMC_PARTICLES = 64

#: Named sensor positions; a number is a depth (m) below the laminate's top face.
SENSOR_POSITIONS = ("top", "mid", "interface", "tool_bottom")


def lognormal_from_median_cv(median: float, cv: float) -> LogNormal:
    """Log-normal with the given median and coefficient of variation."""
    if median <= 0 or cv <= 0:
        raise ValueError("a log-normal prior needs median > 0 and cv > 0")
    return LogNormal(math.log(median), math.sqrt(math.log1p(cv * cv)))


class CureSimulator(PythonSimulator):
    """Cure of a laminate on a tool in an autoclave with an uncertain process.

    Parameters are plain numbers so that a Hydra config maps onto them one to one; times in the
    configuration are in minutes, lengths in metres, temperatures in °C.
    """

    def __init__(self, laminate_thickness: float = 0.030, tool_thickness: float = 0.020,
                 n_laminate: int = 20, n_tool: int = 6, dt: float = 60.0,
                 duration: float = 360.0, observation_interval: float = 5.0,
                 sensors: Sequence[str | float] = ("top", "interface"), noise_std: float = 1.0,
                 h_top_median: float = 120.0, h_bottom_median: float = 70.0, h_cv: float = 0.12,
                 rate_factor_cv: float = 0.2, max_segments: int = 3,
                 another_segment_probability: float = 0.5,
                 ramp_rate_range: Sequence[float] = (1.0, 5.0),
                 hold_temperature_range: Sequence[float] = (95.0, 195.0),
                 hold_time_range: Sequence[float] = (10.0, 150.0),
                 cool_rate_range: Sequence[float] = (1.0, 5.0),
                 start_temperature: float = 20.0, end_temperature: float = 20.0,
                 alpha0: float = 0.05, cycle: str | None = None,
                 name: str = "composite_cure") -> None:
        super().__init__(self.forward, name=name)
        if noise_std <= 0:
            raise ValueError("noise_std must be positive")
        if max_segments < 1:
            raise ValueError("max_segments must be at least 1")
        if cycle not in (None, "one_hold", "hexcel"):
            raise ValueError(f"cycle must be null, 'one_hold' or 'hexcel', got {cycle!r}")
        steps_per_obs = observation_interval * 60.0 / dt
        if abs(steps_per_obs - round(steps_per_obs)) > 1e-9 or steps_per_obs < 1:
            raise ValueError("observation_interval must be a whole number of time steps dt")
        n_times = duration / observation_interval
        if abs(n_times - round(n_times)) > 1e-9:
            raise ValueError("duration must be a whole number of observation intervals")
        self.solver = CureSolver(laminate_thickness, tool_thickness, n_laminate, n_tool)
        self.dt = float(dt)
        self.duration = float(duration)
        self.record_every = int(round(steps_per_obs))
        self.n_times = int(round(n_times))
        self.times_minutes = observation_interval * np.arange(1, self.n_times + 1)
        self.sensor_names = [str(s) for s in sensors]
        self.sensor_depths = np.array([self._depth(s) for s in sensors], dtype=float)
        self._sensor_idx, self._sensor_w = self.solver.interpolation(self.sensor_depths)
        self.mid_depth = 0.5 * laminate_thickness
        self.noise_std = float(noise_std)
        self.h_top_prior = lognormal_from_median_cv(h_top_median, h_cv)
        self.h_bottom_prior = lognormal_from_median_cv(h_bottom_median, h_cv)
        self.rate_factor_prior = lognormal_from_median_cv(1.0, rate_factor_cv)
        self.max_segments = int(max_segments)
        self.another_segment_probability = float(another_segment_probability)
        self.ramp_rate_range = tuple(map(float, ramp_rate_range))
        self.hold_temperature_range = tuple(map(float, hold_temperature_range))
        self.hold_time_range = tuple(map(float, hold_time_range))
        self.cool_rate_range = tuple(map(float, cool_rate_range))
        self.start_temperature = float(start_temperature)
        self.end_temperature = float(end_temperature)
        self.alpha0 = float(alpha0)
        self.fixed_cycle = cycle
        self.observations = {"thermocouples": (len(self.sensor_names), self.n_times)}

    def _depth(self, sensor: str | float) -> float:
        if isinstance(sensor, str):
            named = {"top": 0.0, "mid": 0.5 * self.solver.laminate_thickness,
                     "interface": self.solver.laminate_thickness,
                     "tool_bottom": self.solver.total_thickness}
            if sensor in named:
                return named[sensor]
            try:
                sensor = float(sensor)
            except ValueError:
                raise ValueError(f"unknown sensor {sensor!r}: use one of {SENSOR_POSITIONS} or a "
                                 f"depth in metres") from None
        depth = float(sensor)
        if not 0.0 <= depth <= self.solver.total_thickness:
            raise ValueError(f"sensor depth {depth} m is outside the stack")
        return depth

    # ------------------------------------------------------------------ the model
    def sample_cycle(self) -> CureCycle:
        """Draw the air-temperature cycle: a loop of ramp/hold segments, then a cool-down."""
        if self.fixed_cycle == "one_hold":
            return one_hold_cycle()
        if self.fixed_cycle == "hexcel":
            return hexcel_two_hold_cycle()
        segments = []
        i = 1
        while True:
            ramp = sample(Uniform(*self.ramp_rate_range), name=f"ramp_rate_{i}")
            temperature = sample(Uniform(*self.hold_temperature_range), name=f"hold_temperature_{i}")
            hold = sample(Uniform(*self.hold_time_range), name=f"hold_time_{i}")
            segments.append(Segment(ramp, temperature, hold))
            if i >= self.max_segments:
                break
            if not sample(Bernoulli(self.another_segment_probability), name=f"another_segment_{i}"):
                break
            i += 1
        cool = sample(Uniform(*self.cool_rate_range), name="cool_rate")
        return CureCycle.from_segments(segments, cool, self.start_temperature, self.end_temperature)

    def forward(self) -> float:
        h_top = sample(self.h_top_prior, name="h_top")
        h_bottom = sample(self.h_bottom_prior, name="h_bottom")
        rate_factor = sample(self.rate_factor_prior, name="rate_factor")
        cycle = self.sample_cycle()
        tag(len(cycle.knot_times) // 2 - 1, name="num_segments")
        result = self.solver.run(cycle, self.duration * 60.0, dt=self.dt, h_top=h_top,
                                 h_bottom=h_bottom, rate_factor=rate_factor,
                                 T0=self.start_temperature, alpha0=self.alpha0,
                                 record_every=self.record_every)
        T = result.temperature[1:]  # the t = 0 state is known, not measured
        predicted = (T[:, self._sensor_idx] * (1.0 - self._sensor_w)
                     + T[:, self._sensor_idx + 1] * self._sensor_w).T
        mid_temperature = result.at_depth(self.mid_depth)[1:]
        peak = result.peak_at_depth(self.mid_depth)
        tag(mid_temperature, name="mid_temperature")
        tag(result.cure_at_depth(self.mid_depth)[1:], name="mid_cure")
        tag(result.air_temperature[1:], name="air_temperature")
        tag(peak, name="peak_temperature")
        tag(peak - result.peak_air_temperature, name="peak_overshoot")
        tag(float(result.cure_at_depth(self.mid_depth)[-1]), name="final_cure")
        observe(Normal(predicted, self.noise_std), name="thermocouples")
        return peak

    # ------------------------------------------------------------------ analysis
    def report(self, posterior: Any, truth: Any, output_dir: str) -> dict:
        """Posterior bands of the internal temperature, peak exotherm, final cure, parameters."""
        from .analysis import cure_report

        return cure_report(self, posterior, truth, output_dir)


def make_simulator(**params: Any) -> CureSimulator:
    """Factory registered under ``composite_cure``; keyword arguments as in the config file."""
    params = dict(params)
    for key in ("sensors", "ramp_rate_range", "hold_temperature_range", "hold_time_range",
                "cool_rate_range"):
        if key in params and params[key] is not None and not isinstance(params[key], str):
            params[key] = list(params[key])  # OmegaConf ListConfig -> list
    return CureSimulator(**params)
