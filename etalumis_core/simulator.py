"""Simulators: whatever runs one trace at a time, feeding every random choice to a controller."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

from .controller import DEFAULT_MAX_CHOICES, Controller
from .errors import SimulatorError
from .runtime import run_with_handler
from .trace import Trace


class Simulator:
    """A stochastic simulator etalumis can control.

    Subclasses implement :meth:`run`. ``observations`` declares the names the simulator observes
    and their shapes (``()`` for scalars), which the conformance suite and the CLI rely on.
    ``restartable`` simulators (remote processes) may fail a trace with :class:`SimulatorError`
    and be asked to run it again. A trace may make at most ``max_choices`` random choices
    (samples, observes, tags, factors), so that a loop that never ends fails with
    :class:`~etalumis_core.errors.TraceTooLongError` instead of filling the memory.
    """

    name: str = "simulator"
    observations: Mapping[str, tuple] = {}
    restartable: bool = False
    max_choices: int = DEFAULT_MAX_CHOICES

    def run(self, controller: Controller) -> Any:
        """Run one trace, sending every message to ``controller``; return the result."""
        raise NotImplementedError

    def close(self) -> None:
        """Release processes and sockets. Safe to call twice."""

    def report(self, posterior: Any, truth: Trace | None, output_dir: str) -> dict:
        """Domain-specific summaries and plots of a posterior (optional)."""
        return {}

    def moves(self) -> Sequence[Callable[[Mapping[str, Any], Any], Any]]:
        """Metropolis–Hastings proposals that know the model (optional; SMC mixes them with its
        own). ``move(values, rng)`` takes a trace's controlled values by address and returns
        ``(new_values, log_ratio)`` — new values at some of those addresses, and
        log q(x | x') − log q(x' | x) including the Jacobian of a deterministic map — or None
        when it does not apply to this trace (or proposes nothing possible). Each move must be
        its own reverse for a symmetrically drawn auxiliary number (an involution) and keep the
        trace's addresses; proposals that change them are rejected."""
        return ()

    def jumps(self) -> Sequence[Callable[[Mapping[str, Any], Any], Any]]:
        """Metropolis–Hastings proposals between discrete structures (optional; SMC tries one
        per sweep besides :meth:`moves`). ``jump(values, rng)`` returns ``(new_values,
        log_ratio)`` like a move, but ``new_values`` holds a value for every controlled address
        of the new trace (another decay channel's, say) and ``log_ratio`` is the Jacobian's
        alone: the engine takes the whole prior of both traces. Each jump must be its own
        reverse (for a symmetrically drawn auxiliary choice); one that would leave a value of
        the new trace to be drawn is rejected."""
        return ()

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PythonSimulator(Simulator):
    """A plain Python function calling :func:`etalumis_core.sample` and friends."""

    def __init__(self, fn: Callable[..., Any] | None = None, name: str | None = None,
                 observations: Mapping[str, tuple] | None = None, args: tuple = (),
                 kwargs: Mapping[str, Any] | None = None, max_choices: int | None = None) -> None:
        fn = fn if fn is not None else getattr(self, "forward", None)
        if fn is None or not callable(fn):
            raise TypeError("PythonSimulator needs a function, or a subclass with forward()")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(self).__name__)
        if observations is not None:
            self.observations = dict(observations)
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        if max_choices is not None:
            self.max_choices = int(max_choices)

    def run(self, controller: Controller) -> Any:
        return run_with_handler(controller, self.fn, self.args, self.kwargs)

    def __repr__(self) -> str:
        return f"PythonSimulator({self.name!r})"


def as_simulator(simulator: Any) -> Simulator:
    """Accept a Simulator or a plain function."""
    if isinstance(simulator, Simulator):
        return simulator
    if callable(simulator):
        return PythonSimulator(simulator)
    raise TypeError(f"expected a Simulator or a function, got {type(simulator).__name__}")


def run_trace(simulator: Simulator, controller: Controller, retries: int = 0) -> Trace:
    """Run one trace. A restartable simulator that fails is asked again, up to ``retries``
    times, from the same random state, so that a retried trace equals the undisturbed one."""
    controller.max_choices = simulator.max_choices
    if not simulator.restartable:
        controller.start_trace()
        return controller.end_trace(simulator.run(controller))
    state = controller.rng.bit_generator.state
    started = controller.traces_started
    first: SimulatorError | None = None
    for attempt in range(retries + 1):
        controller.start_trace()
        try:
            return controller.end_trace(simulator.run(controller))
        except SimulatorError as error:
            first = first or error
            if attempt == retries:
                raise _first_cause(first, error, attempt + 1, controller) from error
            # The retry is the same trace: same random state, same trace number.
            controller.rng.bit_generator.state = state
            controller.traces_started = started
    raise AssertionError("unreachable")


def _first_cause(first: SimulatorError, last: SimulatorError, attempts: int,
                 controller: Controller) -> SimulatorError:
    """The error of a trace that failed ``attempts`` times: the failure that started it all
    (later ones are often only its echo: a reconnect that failed too), the last failure, and
    where the trace's randomness came from, so that it can be reproduced."""
    text = str(first)
    if attempts > 1:
        text = f"{text} (first of {attempts} failed attempts; the last: {last})"
    text = f"{text} [{controller.describe_trace()}]"
    try:
        return type(first)(text)
    except TypeError:  # an error class with another constructor
        return SimulatorError(text)


def run_traces(simulator: Simulator, controller: Controller, count: int, retries: int = 0,
               report: Callable[[int], None] | None = None) -> Iterator[Trace]:
    """The one trace loop: ``count`` traces with one controller, each retried as
    :func:`run_trace` does, ``report(1)`` after each (a progress bar's update)."""
    for _ in range(count):
        trace = run_trace(simulator, controller, retries)
        if report is not None:
            report(1)
        yield trace


def simulator_name(simulator: Simulator | "SimulatorSpec") -> str:
    return getattr(simulator, "name", type(simulator).__name__)


class SimulatorSpec:
    """A picklable recipe for a simulator, so that worker processes build their own."""

    def __init__(self, factory: Callable[..., Simulator], kwargs: Mapping[str, Any] | None = None,
                 name: str | None = None) -> None:
        self.factory = factory
        self.kwargs = dict(kwargs or {})
        self.name = name or getattr(factory, "__name__", "simulator")

    def build(self) -> Simulator:
        return as_simulator(self.factory(**self.kwargs))

    def __repr__(self) -> str:
        return f"SimulatorSpec({self.name!r}, {self.kwargs!r})"
