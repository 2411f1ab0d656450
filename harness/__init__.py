"""rnnbench's core: data, model specification, training, metrics and the command line.

The harness never imports a deep-learning framework; only the backend chosen by name does.
"""

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it from here
