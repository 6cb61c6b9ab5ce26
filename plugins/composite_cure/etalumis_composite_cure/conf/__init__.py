"""Hydra configs of the composite_cure plugin (``pkg://etalumis_composite_cure.conf``)."""
