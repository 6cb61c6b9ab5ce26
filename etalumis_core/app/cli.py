"""The ``etalumis`` command: Hydra-composed jobs, plus ``etalumis plugins``.

Each job's config is ``conf/COMMAND.yaml`` (shipped inside the package); ``-m`` runs a multirun
sweep. The ``@hydra.main`` functions stay thin: they turn the config into plain arguments for
:mod:`etalumis_core.app.jobs`. Ordinary mistakes (a bad value, a missing file) print one line
and exit 2; their traceback goes to the run's log file (``--verbose`` prints it).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Callable

from ..errors import ConfigError, EtalumisError, ObservationError, PluginError
from ..plugins import load_plugins
from .configs import generated_configs
from .usage import help_text

COMMANDS = ("infer", "simulate", "dataset", "train", "serve", "calibrate")
# Mistakes in what the user asked for: one line and exit status 2. Other errors a run meets
# (a simulator that died, a port in use) print one line and exit 1; anything else is a bug and
# keeps its traceback.
USAGE_ERRORS = (ConfigError, ObservationError, PluginError, ValueError, TypeError,
                FileNotFoundError)
RUN_ERRORS = (EtalumisError, OSError)
VERBOSE_FLAGS = ("--verbose", "-v")
# Config groups whose options name registered things, and the registry holding them.
GROUPS = {"simulator": "simulators", "engine": "engines", "executor": "executors",
          "proposal": "proposals", "trainer": "trainers"}


def defaults(command: str) -> dict[str, str]:
    """The option each config group of a job selects by default, read from the job's
    packaged ``conf/COMMAND.yaml`` (the one source of the defaults); an interpolated choice
    stays as written (``engine: ${simulator}``)."""
    from importlib.resources import files

    import yaml

    config = yaml.safe_load((files("etalumis_core.conf") / f"{command}.yaml").read_text())
    chosen = {}
    for entry in config.get("defaults", []):
        if isinstance(entry, dict):
            chosen.update({group: str(option) for group, option in entry.items()
                           if group in GROUPS})
    return chosen


def searchpath_override(plugins: Any) -> str:
    """The one bridge from the ``etalumis_config_paths`` hook to Hydra: every registered
    config directory joins the search path, so an installed plugin's options are selectable
    (and a generated one for names registered without a YAML file)."""
    paths = [path for _, path in plugins.config_paths]
    generated = generated_configs(plugins, GROUPS)
    if generated:
        paths.append(f"file://{generated}")
    return f"hydra.searchpath=[{','.join(paths)}]"


def with_override(argv: list[str], override: str) -> list[str]:
    """``argv`` with ``override`` beside the user's last override: Hydra reads the overrides
    as one run of words, so one appended after a flag (``a=b --cfg job``) would be refused."""
    last = max((i for i, arg in enumerate(argv) if "=" in arg and not arg.startswith("-")),
               default=len(argv) - 1)
    return [*argv[:last + 1], override, *argv[last + 1:]]


def check_selections(command: str, overrides: list[str], plugins: Any) -> None:
    """Fail early, with the installed options and their plugins, on an unknown name. An engine
    may also be named after a simulator: that simulator's own engine config."""
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
            if name.startswith(("choice(", "range(", "glob(", "${")):
                continue
            if group == "engine" and name in plugins.simulators.entries:
                continue
            try:
                registry.get(name)
            except PluginError as error:
                raise PluginError(f"{group}={name}: {error}") from None


def _log_traceback(error: BaseException) -> str | None:
    """Write the error's traceback to the run's log files only (not the console); returns
    the first log file's path."""
    record = logging.LogRecord("etalumis", logging.ERROR, __file__, 0, "%s failed", ("run",),
                               (type(error), error, error.__traceback__))
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for handler in files:
        handler.handle(record)
    return files[0].baseFilename if files else None


def _job(command: str, plugins: Any, verbose: bool) -> Callable[[Any], Any]:
    def run(cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig

        from . import jobs

        output_dir = HydraConfig.get().runtime.output_dir
        level = str(cfg.get("log_level", "INFO")).upper()
        logging.getLogger().setLevel(level)
        for noisy in ("matplotlib", "distributed"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            result = getattr(jobs, f"{command}_from_config")(cfg, output_dir, plugins)
        except USAGE_ERRORS + RUN_ERRORS as error:
            if verbose or level == "DEBUG":
                raise
            log_file = _log_traceback(error)
            where = f" (traceback in {log_file})" if log_file else ""
            print(f"etalumis {command}: error: {error}{where}", file=sys.stderr)
            raise SystemExit(2 if isinstance(error, USAGE_ERRORS) else 1) from None
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
    verbose = any(flag in argv for flag in VERBOSE_FLAGS)
    argv = [a for a in argv if a not in VERBOSE_FLAGS]
    try:
        plugins = load_plugins()
        if any(a in ("-h", "--help") for a in argv):
            print(help_text(plugins, GROUPS, [*COMMANDS, "plugins"]))
            return 0
        check_selections(command, [a for a in argv if not a.startswith("-")], plugins)
    except EtalumisError as error:
        print(f"etalumis {command}: error: {error}", file=sys.stderr)
        return 2

    import hydra

    sys.argv = [f"etalumis {command}", *with_override(argv, searchpath_override(plugins))]
    try:
        hydra.main(version_base="1.3", config_path="pkg://etalumis_core.conf",
                   config_name=command)(_job(command, plugins, verbose))()
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
