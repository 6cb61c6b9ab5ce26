"""Hydra configs of the toy_tau_decay plugin (``simulator/toy_tau_decay.yaml``)."""
