"""Hydra configs of the cnn3d_lstm plugin (``proposal/cnn3d_lstm.yaml``, ``trainer/distributed.yaml``)."""
