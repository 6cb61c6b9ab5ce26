"""Hydra configs of the Sherpa adapter (``simulator=sherpa``)."""
