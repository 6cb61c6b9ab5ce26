"""Config files behind the registries: every registered name gets one, even a plugin's that
ships no YAML (a generated ``name`` + empty ``params``), so Hydra never fails on it; and every
simulator gets its own engine config, ``engine/SIMULATOR.yaml``, the jobs' default engine (a
simulator that ships none runs :data:`DEFAULT_ENGINE`)."""

from __future__ import annotations

import atexit
import importlib.resources
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

DEFAULT_ENGINE = "smc"


def config_dirs(config_paths: Iterable[str]) -> list[Path]:
    """The directories behind Hydra search-path entries (``pkg://module`` or a path)."""
    out = []
    for entry in config_paths:
        if entry.startswith("pkg://"):
            try:
                out.append(Path(str(importlib.resources.files(entry[len("pkg://"):]))))
            except (ModuleNotFoundError, TypeError):
                continue
        else:
            out.append(Path(entry.removeprefix("file://")))
    return out


def generated_configs(plugins: Any, groups: dict[str, str]) -> str | None:
    """A directory holding ``GROUP/NAME.yaml`` for every registered name that no config
    directory has, and ``engine/SIMULATOR.yaml`` for every simulator that ships no engine
    config of its own; None when nothing is missing. The directory lasts as long as the
    process (a sweep composes each job's config as it starts it)."""
    dirs = config_dirs(["pkg://etalumis_core.conf", *(path for _, path in plugins.config_paths)])

    def missing(group: str, name: str) -> bool:
        return not any((d / group / f"{name}.yaml").is_file() for d in dirs)

    files = {}
    for group, kind in groups.items():
        for name, entry in plugins.registries[kind].entries.items():
            if missing(group, name):
                files[group, name] = (f"# generated: plugin {entry.plugin!r} registers {name!r} "
                                      f"without a config file\nname: {name}\nparams: {{}}\n")
    for name, entry in plugins.registries["simulators"].entries.items():
        if missing("engine", name):
            files["engine", name] = (f"# generated: simulator {name!r} (plugin {entry.plugin!r}) "
                                     f"ships no engine config; its default engine is "
                                     f"{DEFAULT_ENGINE}\ndefaults:\n  - {DEFAULT_ENGINE}\n"
                                     f"  - _self_\n")
    if not files:
        return None
    root = Path(tempfile.mkdtemp(prefix="etalumis-conf-"))
    owner = os.getpid()   # not a forked worker's exit: the parent may still be composing
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(root, ignore_errors=True))
    for (group, name), text in files.items():
        (root / group).mkdir(exist_ok=True)
        (root / group / f"{name}.yaml").write_text(text)
    return os.fspath(root)
