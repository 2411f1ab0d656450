"""The study files shipped with rnnbench, one TOML file each (see `bench studies`).

This folder is the package `harness.studies` (pyproject.toml maps it there), so that an installed
wheel carries the studies too; `harness.study.files` reads them through importlib.resources.
"""
