"""Hydra configs of the Pythia 8 adapter (``simulator=pythia8_tau``)."""
