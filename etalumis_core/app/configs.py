"""Config files behind the registries: every registered name gets one, even a plugin's that
ships no YAML (a generated ``name`` + empty ``params``), so Hydra never fails on it."""

from __future__ import annotations

import importlib.resources
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable


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
    directory has, or None when every name has its YAML."""
    dirs = config_dirs(["pkg://etalumis_core.conf", *(path for _, path in plugins.config_paths)])
    missing = [(group, name) for group, kind in groups.items()
               for name in plugins.registries[kind].entries
               if not any((d / group / f"{name}.yaml").is_file() for d in dirs)]
    if not missing:
        return None
    root = Path(tempfile.mkdtemp(prefix="etalumis-conf-"))
    for group, name in missing:
        (root / group).mkdir(exist_ok=True)
        entry = plugins.registries[groups[group]].entries[name]
        (root / group / f"{name}.yaml").write_text(
            f"# generated: plugin {entry.plugin!r} registers {name!r} without a config file\n"
            f"name: {name}\nparams: {{}}\n")
    return os.fspath(root)
