"""Pythia 8 tau decays as an etalumis simulator: the native PPX front end, launched and
supervised by the core's :class:`~etalumis_core.PPXSimulator` (launch, handshake, timeouts,
restart of a dead or stalled process, retried traces, no orphans).

Pythia's random numbers arrive with the native call stack as their base address (hundreds of
characters: every ``Pythia8::`` frame, outermost first). Before the engine's controller sees one,
the core's :class:`~etalumis_core.ppx.addresses.AddressDictionary` replaces it by a compact
``a{id}:{alias}`` (``a3:ParticleDataEntry::pickChannel``); share its file between the processes
of a study so that ids agree. The front end's own addresses (``tau_px``, ``calorimeter``) are
short already and pass unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from etalumis_core import ConfigError, PPXSimulator
from etalumis_core.ppx.addresses import (FRONT_END_PREFIXES, AddressDictionary,
                                         CompactingController)

CALORIMETER_SHAPE = (35, 35, 20)
#: GeV per calorimeter deposit (toy_tau_decay's quantum): the counts' energy scale.
QUANTUM = 0.005
SDIST = "pythia8mc-8.318.0"
PLUGIN_ROOT = Path(__file__).resolve().parent.parent
#: Where ``make pythia8`` puts the front end (override with ``$ETALUMIS_PYTHIA8_FRONT_END``).
DEFAULT_FRONT_END = PLUGIN_ROOT / "build" / "pythia8_tau_ppx"
#: Frames an alias skips: the random-number plumbing is never the interesting caller.
SKIP_FRAMES = FRONT_END_PREFIXES + ("Pythia8::Rndm::",)


def front_end_path(front_end: str | os.PathLike | None = None) -> Path:
    """The front-end executable; a clear error when it has not been built."""
    path = Path(front_end or os.environ.get("ETALUMIS_PYTHIA8_FRONT_END") or DEFAULT_FRONT_END)
    if not path.is_file():
        raise ConfigError(f"the Pythia 8 PPX front end {path} is not built: run `make pythia8` in "
                          f"the repository root (it downloads and compiles Pythia, a few minutes), "
                          f"or point simulator.params.front_end at a built one")
    return path


def xmldoc_path(front_end: Path) -> Path:
    return front_end.parent / SDIST / "pythia8318" / "share" / "Pythia8" / "xmldoc"


class Pythia8Tau:
    """What every way of running the tau trace shares (over PPX, :class:`Pythia8TauSimulator`;
    in this process, :class:`~.inprocess.Pythia8TauInProcess`): Pythia's settings, the address
    dictionary, the run result, the decay table and the report. The traces themselves are the
    same, bit for bit: one C++ trace (``native/tau_trace.h``) behind both."""

    def _configure(self, front_end: str | os.PathLike | None, settings: Sequence[str],
                   background: float, address_dictionary: str | os.PathLike | None) -> None:
        self.front_end = front_end_path(front_end)
        self.settings = tuple(str(s) for s in settings)
        if not float(background) > 0.0:
            raise ConfigError(f"simulator.params.background must be positive (a deposit where no "
                              f"shower reaches must stay possible), got {background!r}")
        self.background = float(background)
        self.xmldoc = xmldoc_path(self.front_end)
        self._base_command = [str(self.front_end), "--xmldoc", str(self.xmldoc)]
        for s in self.settings:
            self._base_command += ["--set", s]
        self.addresses = AddressDictionary(address_dictionary, innermost_first=False,
                                           skip_prefixes=SKIP_FRAMES)
        self._compact = self.addresses.compact

    def compact(self, address: str) -> str:
        """The compact form of a native-stack address; the trace's own pass unchanged."""
        return self._compact(address) if address.startswith("Pythia8") else address

    @staticmethod
    def _result(controller: Any, observed: dict, result: Any) -> Any:
        """The run result from the rates the trace returned, and the ``e_calorimeter`` tag."""
        array = np.asarray(result, dtype=np.float64)
        if array.size != int(np.prod(CALORIMETER_SHAPE)):
            return result
        counts = observed.get("calorimeter")
        if counts is not None:  # as toy_tau_decay: the energy of the counts, when known
            controller.tag("tau_summary", float(np.sum(counts)) * QUANTUM, "e_calorimeter")
        return {"calorimeter": counts, "calorimeter_expected": array.reshape(CALORIMETER_SHAPE)}

    def config(self) -> dict[str, Any]:
        return {"front_end": str(self.front_end), "settings": list(self.settings),
                "background": self.background,
                "address_dictionary": str(self.addresses.path) if self.addresses.path else None}

    @cached_property
    def channels(self) -> list[dict]:
        """Pythia's tau decay table (index, branching ratio, products, name)."""
        out = subprocess.run(self._base_command + ["--list-channels"], capture_output=True,
                             text=True, check=True).stdout
        return json.loads(out)

    def run_standalone(self, count: int, seed: int, addressed: bool = False) -> dict:
        """Pythia alone (its own random numbers, no control) on ``count`` taus: decay-mode
        counts and wall time, the baseline of the cost of control. ``addressed``: local random
        numbers that still get their native-stack addresses (the cost of addressing alone)."""
        args = self._base_command + ["--standalone", str(int(count)), "--seed", str(int(seed))]
        args += ["--addressed"] if addressed else []
        done = subprocess.run(args, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    def report(self, posterior: Any, truth: Any, output_dir: str) -> dict:
        from .report import report

        summary = report(posterior, truth, output_dir, self.channels)
        summary["address_dictionary"] = {
            "path": str(self.addresses.path) if self.addresses.path else None,
            "num_addresses": len(self.addresses)}
        return summary


class Pythia8TauSimulator(Pythia8Tau, PPXSimulator):
    """A tau- decayed by Pythia 8 in front of toy_tau_decay's calorimeter, over PPX.

    Random choices, in order: ``px``, ``py``, ``pz`` (uniform, toy_tau_decay's priors), then
    every random number of Pythia's decay (Uniform(0, 1) at native-stack addresses). Tags:
    ``channel`` (index into Pythia's tau decay table, :attr:`channels`), ``random_numbers``,
    ``final_state_pdg``, ``final_state_p4`` and toy_tau_decay's composition and energy tags
    (``e_calorimeter``, 5 MeV times the observed counts, once the observe has a value).
    Observation: ``calorimeter`` (35, 35, 20), the number of 5 MeV deposits per voxel under
    toy_tau_decay's exact likelihood: independent Poisson(rates + ``background``), rates the
    expected counts of the final state (``Calorimeter.expected_counts``), no deposit drawn. The
    result: ``{"calorimeter": counts, "calorimeter_expected": rates + background}``.

    Parameters
    ----------
    front_end:
        The executable ``make pythia8`` builds (default: the plugin's ``build/``).
    settings:
        Extra Pythia settings (``"TauDecays:tauPolarization = -1"``), applied after the defaults
        (``ProcessLevel:all = off``, ``TauDecays:mode = 3``, ``TauDecays:tauPolarization = 0``).
    background:
        Mean number of stray deposits per voxel (toy_tau_decay's default, 1e-4): a deposit
        where no shower reaches stays possible.
    address_dictionary:
        File of the :class:`~etalumis_core.ppx.addresses.AddressDictionary` (created if
        missing); ``None`` keeps it in memory (one process only).
    transport, timeout, startup_timeout, grace, address:
        As for :class:`~etalumis_core.PPXSimulator` (``address``: connect to a front end
        already running instead of launching one).
    """

    def __init__(self, front_end: str | os.PathLike | None = None, settings: Sequence[str] = (),
                 background: float = 1e-4, address_dictionary: str | os.PathLike | None = None,
                 transport: str = "ipc", timeout: float = 60.0, startup_timeout: float = 60.0,
                 grace: float = 2.0, address: str | None = None,
                 name: str = "pythia8_tau") -> None:
        self._configure(front_end, settings, background, address_dictionary)
        command = (None if address is not None else
                   self._base_command + ["--background", repr(self.background), "{address}"])
        super().__init__(address, command, timeout=timeout, startup_timeout=startup_timeout,
                         grace=grace, transport=transport, name=name,
                         observations={"calorimeter": CALORIMETER_SHAPE},
                         stdout=subprocess.DEVNULL)

    def run(self, controller: Any) -> Any:
        compacting = CompactingController(controller, self.compact)
        return self._result(controller, compacting.observed, super().run(compacting))
