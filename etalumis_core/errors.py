"""Errors users see. Each message says what was wrong, where, and how to fix it."""

from __future__ import annotations

__all__ = ["EtalumisError", "ObservationError", "NonFiniteLogProbError", "SimulatorError",
           "TraceTooLongError", "ProtocolError", "SimulatorProtocolError", "PluginError",
           "ConfigError"]


class EtalumisError(Exception):
    """Base class of every error etalumis raises on purpose."""


class ObservationError(EtalumisError, ValueError):
    """An observation given to an engine does not fit the simulator."""


class NonFiniteLogProbError(EtalumisError, ValueError):
    """A log-probability came out NaN or +inf."""


class SimulatorError(EtalumisError, RuntimeError):
    """A simulator failed, died or stalled."""


class TraceTooLongError(EtalumisError, RuntimeError):
    """A trace made more random choices than its simulator's ``max_choices`` allows."""


class ProtocolError(EtalumisError, ValueError):
    """A PPX message was malformed, unexpected or out of step."""


class SimulatorProtocolError(ProtocolError, SimulatorError):
    """A simulator broke the PPX protocol during a trace (a Reset, a message out of turn, a
    buffer that does not decode). Being a :class:`SimulatorError` too, it makes
    :func:`~etalumis_core.simulator.run_trace` restart the simulator and rerun the trace."""


class PluginError(EtalumisError, LookupError):
    """A plugin, or a name a plugin should have registered, is missing or clashes."""


class ConfigError(EtalumisError, ValueError):
    """A configuration value is invalid."""
