"""The ``etalumis`` command: Hydra-composed jobs, plus ``etalumis plugins``.

``etalumis [COMMAND] [overrides...]`` where COMMAND is one of ``infer`` (the default),
``simulate``, ``dataset``, ``train``, ``serve`` or ``plugins``. Each job's config is
``conf/COMMAND.yaml`` (shipped inside the package); ``-m`` runs a multirun sweep. The
``@hydra.main`` functions stay thin: they turn the config into plain arguments for
:mod:`etalumis_core.app.jobs`.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Callable

from ..errors import EtalumisError, PluginError
from ..plugins import load_plugins

COMMANDS = ("infer", "simulate", "dataset", "train", "serve")
# Config groups whose options name registered things, and the registry holding them.
GROUPS = {"simulator": "simulators", "engine": "engines", "executor": "executors",
          "proposal": "proposals", "trainer": "trainers"}


def defaults(command: str) -> dict[str, str]:
    """The option each config group of a job selects by default, read from the job's
    packaged ``conf/COMMAND.yaml`` (the one source of the defaults)."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    config = OmegaConf.create((files("etalumis_core.conf") / f"{command}.yaml").read_text())
    chosen = {}
    for entry in config.get("defaults", []):
        if isinstance(entry, str) or not hasattr(entry, "items"):
            continue
        for group, option in entry.items():
            if group in GROUPS:
                chosen[group] = str(option)
    return chosen


def searchpath_override(plugins: Any) -> str:
    """The one bridge from the ``etalumis_config_paths`` hook to Hydra: every registered
    config directory joins the search path, so an installed plugin's options are selectable."""
    paths = [path for _, path in plugins.config_paths]
    return f"hydra.searchpath=[{','.join(paths)}]"


def check_selections(command: str, overrides: list[str], plugins: Any) -> None:
    """Fail early, with the installed options and their plugins, on an unknown name."""
    chosen = defaults(command)
    for arg in overrides:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if sep and key in GROUPS:
            chosen[key] = value
    for group, value in chosen.items():
        registry = plugins.registries[GROUPS[group]]
        for name in value.split(","):
            name = name.strip()
            if name.startswith(("choice(", "range(", "glob(")):
                continue
            try:
                registry.get(name)
            except PluginError as error:
                raise PluginError(f"{group}={name}: {error}") from None


def _job(command: str, plugins: Any) -> Callable[[Any], Any]:
    def run(cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig

        from . import jobs

        output_dir = HydraConfig.get().runtime.output_dir
        logging.getLogger().setLevel(cfg.get("log_level", "INFO"))
        for noisy in ("matplotlib", "distributed"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        result = getattr(jobs, f"{command}_from_config")(cfg, output_dir, plugins)
        if isinstance(result, dict) and result.get("message"):
            print(result["message"])
        return result

    run.__name__ = f"etalumis_{command}"
    return run


def print_plugins() -> int:
    print(json.dumps(load_plugins().describe(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "infer"
    if argv and argv[0] in COMMANDS + ("plugins",):
        command = argv.pop(0)
    if command == "plugins":
        return print_plugins()
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        print(__doc__)
    try:
        plugins = load_plugins()
        check_selections(command, [a for a in argv if not a.startswith("-")], plugins)
    except EtalumisError as error:
        print(f"etalumis {command}: error: {error}", file=sys.stderr)
        return 2

    import hydra

    sys.argv = [f"etalumis {command}", *argv, searchpath_override(plugins)]
    hydra.main(version_base="1.3", config_path="pkg://etalumis_core.conf",
               config_name=command)(_job(command, plugins))()
    return 0


if __name__ == "__main__":
    sys.exit(main())
