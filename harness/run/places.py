"""Where a study run reads and writes: its output folder, the dataset and the two stores."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import BenchError
from harness.system import writable_folder

if TYPE_CHECKING:
    from harness.study.schema import Study


@dataclass(frozen=True)
class RunPlaces:
    """Where a study run reads and writes."""

    out: Path  # logs and job files; the default stores live here too
    data: Path  # the resolved dataset source
    storage_url: str  # Optuna
    tracking_uri: str  # MLflow

    def named(self) -> dict[str, str]:
        """Each place by the name a one-line error gives it (`harness.faults`)."""
        from harness.data.source import cache_root

        return {
            "output folder": str(self.out),
            "Optuna storage": self.storage_url,
            "MLflow tracking store": self.tracking_uri,
            "data cache": str(cache_root()),
        }


def planned_places(
    study: Study, out: Path | None, data: Path, storage: str | None, tracking_uri: str | None
) -> RunPlaces:
    """Where `bench run` would work, every place checked as the run would use it (the output
    folder can be made, each store URL can hold a study), and nothing created."""
    from harness.stores import (
        check_database_answers,
        check_database_url,
        check_folder_place,
        check_reachable,
        check_tracking_uri,
    )

    folder = (out or Path("bench-runs") / study.name).expanduser().resolve()
    check_folder_place(folder, "--out")
    places = _places(folder, data, storage, tracking_uri)
    check_database_url(places.storage_url, "--storage")
    check_tracking_uri(places.tracking_uri)
    check_database_answers(places.storage_url, "--storage")
    check_reachable(places.tracking_uri)  # a tracking server; a database store below
    if "://" in places.tracking_uri and not places.tracking_uri.startswith(("http", "file:")):
        check_database_answers(places.tracking_uri, "--tracking-uri")
    return places


def created_places(places: RunPlaces) -> RunPlaces:
    """The output folder of checked places made, and proven to take files."""
    writable_folder(places.out, "--out")
    return places


def default_places(
    study: Study, out: Path | None, data: Path, storage: str | None, tracking_uri: str | None
) -> RunPlaces:
    """Where `bench run` works: checked, then its output folder created."""
    return created_places(planned_places(study, out, data, storage, tracking_uri))


def existing_places(
    study: Study, out: Path | None, storage: str | None, tracking_uri: str | None
) -> RunPlaces:
    """Where an earlier `bench run` of this study wrote, for `bench report`; nothing created.

    With both stores named (a shared PostgreSQL and tracking server), any folder will do: the
    report creates it once the stores prove to hold a run of the study.
    """
    folder = (out or Path("bench-runs") / study.name).expanduser().resolve()
    if not (storage and tracking_uri) and not folder.is_dir():
        raise BenchError(
            f"--out: expected the folder of an earlier `bench run --study {study.name}`; "
            f"received {str(folder)!r}, which does not exist"
        )
    return _places(folder, Path(), storage, tracking_uri)


def _places(folder: Path, data: Path, storage: str | None, tracking_uri: str | None) -> RunPlaces:
    return RunPlaces(
        out=folder,
        data=data,
        storage_url=storage or f"sqlite:///{folder / 'optuna.db'}",
        tracking_uri=tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{folder / 'mlflow.db'}",
    )
