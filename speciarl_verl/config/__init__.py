"""Hydra configs shipped with the package (``-cp pkg://speciarl_verl.config``)."""
