"""Which runs count: the one selection behind both the report table and the verdicts.

Runs are rows of `Tracker.runs_frame`. Only FINISHED runs count, and only those of one
configuration (its `config_hash`, which covers the whole run configuration but the seed and the
backend): a longer search can find a new best configuration, whose re-trains then sit beside the
old ones and must not be averaged with them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column of the runs table, or NaN where no run has it."""
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index, dtype=object)


def finished(
    runs: pd.DataFrame, arch: str, backend: str, role: str, config_from: str | None = None
) -> pd.DataFrame:
    """The FINISHED runs of one role on one (architecture, backend); for cross runs, of the
    configuration found by `config_from`'s search."""
    mask = (
        (column(runs, "status") == "FINISHED")
        & (column(runs, "tags.role") == role)
        & (column(runs, "tags.architecture") == arch)
        & (column(runs, "tags.backend") == backend)
    )
    if config_from is not None:
        mask &= column(runs, "tags.config_from") == config_from
    return runs[mask]


def newest_config(runs: pd.DataFrame) -> str | None:
    """The config hash of the newest of `runs` that records one."""
    hashes = column(runs.sort_values("start_time"), "tags.config_hash").dropna()
    return str(hashes.iloc[-1]) if len(hashes) else None


def of_config(runs: pd.DataFrame, config: str | None) -> pd.DataFrame:
    """The runs of one configuration (none for None)."""
    return runs[column(runs, "tags.config_hash") == config]


def of_newest_config(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the newest configuration; all of them in a store from before config hashes."""
    config = newest_config(runs)
    return runs if config is None else of_config(runs, config)


def compared_runs(
    runs: pd.DataFrame, arch: str, backend: str, baseline: str, config: str | None
) -> pd.DataFrame:
    """One finished run per seed of `config` on `backend`, newest first.

    The baseline's are its re-trains. A contender's are its runs of the baseline's
    configuration: cross runs (config_from = baseline) where there are any, else its own
    re-trains of the same configuration (both searches found the same best). Never both: the
    same seed would then count twice.
    """
    chosen = pd.DataFrame()
    if backend != baseline:
        chosen = of_config(finished(runs, arch, backend, "cross", config_from=baseline), config)
    if chosen.empty:
        chosen = of_config(finished(runs, arch, backend, "retrain"), config)
    return one_per_seed(chosen)


def one_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest run of each seed (a re-run of a seed replaces it, never counts twice)."""
    runs = runs.sort_values("start_time", ascending=False)
    return runs.drop_duplicates("tags.seed") if "tags.seed" in runs else runs


def baseline_config(runs: pd.DataFrame, arch: str, baseline: str) -> str | None:
    """The config hash of the baseline's newest re-trained best configuration."""
    return newest_config(finished(runs, arch, baseline, "retrain"))
