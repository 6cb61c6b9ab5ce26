"""Drive the Sherpa event generator over PPX with etalumis.

* :class:`SherpaSimulator` -- a PPX-enabled Sherpa process (launched from a command line, run
  card, environment and working directory; health-checked; restarted when it dies) whose long
  native-stack addresses reach traces as compact, stable ``a{id}:{alias}`` addresses.
* :class:`AddressDictionary` -- the persistent map between the two forms (from the core's
  :mod:`etalumis_core.ppx.addresses`: any native simulator with long stack addresses uses it).
* :func:`make_simulator` -- the registered factory (``simulator=sherpa``).
"""

from etalumis_core.ppx.addresses import AddressDictionary, make_alias, split_frames

from .simulator import (CALORIMETER_SHAPE, SherpaSimulator, as_calorimeter, decode_result,
                        sherpa_command)

__all__ = ["SherpaSimulator", "AddressDictionary", "make_simulator", "make_alias",
           "split_frames", "sherpa_command", "as_calorimeter", "decode_result",
           "CALORIMETER_SHAPE"]


def make_simulator(**params):
    """Build a :class:`SherpaSimulator` (see :func:`etalumis_sherpa_adapter.plugin.make_simulator`)."""
    from .plugin import make_simulator as factory

    return factory(**params)
