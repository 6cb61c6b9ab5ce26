"""The one bridge between etalumis plugins and Hydra's config search path.

Hydra discovers this SearchPathPlugin in the ``hydra_plugins`` namespace; it appends every path
that a plugin registered through the ``etalumis_config_paths`` hook, so installing a plugin is
enough to make its options (``simulator=toy_tau_decay``) selectable.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class EtalumisSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from etalumis_core.plugins import load_plugins

        for plugin, path in load_plugins().config_paths:
            search_path.append(provider=f"etalumis:{plugin}", path=path)
