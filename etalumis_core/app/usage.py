"""What ``etalumis --help`` prints: the commands, and every installed option with its plugin."""

from __future__ import annotations

from typing import Any

# Each command, what it does (README's table says the same).
COMMANDS = {
    "infer": "infer the posterior of an observation (the default command); with no "
             "observation= file, simulate one event with truth_seed and compare with its truth",
    "simulate": "draw traces from the prior; writes observation.h5 (with its truth) and prior.h5",
    "dataset": "generate an HDF5 trace dataset for training (resumable shards)",
    "train": "train an inference network online or from a dataset (engine=ic uses it)",
    "calibrate": "infer many events drawn from the prior and measure how often the truth lands "
                 "where the posterior says (coverage, ranks, top-1 accuracy, cost)",
    "serve": "serve a simulator over PPX to another engine (address=tcp://127.0.0.1:5555)",
    "plugins": "print the installed plugins, their versions and what each registered (JSON)",
}

COMMON_KEYS = {
    "seed": "all randomness of the run (same seed, same result, bit for bit)",
    "num_traces": "traces kept (SMC: particles; MCMC: draws over all chains); default: the "
                  "engine config's, else 1000",
    "observation": "an observation file written by `etalumis simulate`",
    "truth_seed": "simulate the observation with this seed when no file is given",
    "plots": "write plots (true/false)",
    "progress": "show progress bars (true/false)",
    "log_level": "DEBUG shows tracebacks of ordinary errors (so does --verbose)",
}


def help_text(plugins: Any, groups: dict[str, str], available: list[str]) -> str:
    """The help page: ``groups`` maps a config group to the registry that names its options;
    ``available`` lists the commands this installation offers."""
    lines = ["etalumis: infer what a simulator did from what it produced.", "",
             "usage: etalumis [COMMAND] [GROUP=NAME] [KEY=VALUE ...] [-m] [--verbose]", "",
             "commands:"]
    width = max(map(len, available))
    lines += [f"  {name:<{width}}  {COMMANDS.get(name, '')}" for name in available]
    lines += ["", "options (GROUP=NAME; each option's settings go under GROUP.params.KEY=VALUE):"]
    for group, kind in groups.items():
        lines.append(f"  {group}=")
        entries = plugins.registries[kind].entries
        width = max((len(n) for n in entries), default=0)
        for name, entry in sorted(entries.items()):
            lines.append(f"    {name:<{width}}  {entry.description}  [{entry.plugin}]")
        if group == "engine":
            lines.append("    (default: the simulator's own engine config, engine/SIMULATOR.yaml, "
                         "else smc)")
    lines += ["", "common keys:"]
    width = max(map(len, COMMON_KEYS))
    lines += [f"  {key:<{width}}  {text}" for key, text in COMMON_KEYS.items()]
    lines += ["", "  -m, --multirun  sweep: seed=0,1 num_traces=100,1000 runs every combination",
              "  --verbose       full tracebacks for ordinary errors",
              "  --cfg job       print the composed config of a command and exit",
              "  --hydra-help    Hydra's own options (launchers, sweepers, output directories)",
              "", "examples:", "  etalumis", "  etalumis simulator=gaussian num_traces=5000",
              "  etalumis simulate simulator=toy_tau_decay seed=7",
              "  etalumis -m simulator=gaussian seed=0,1,2"]
    return "\n".join(lines)
