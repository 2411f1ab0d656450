"""A study file: its tables (`tables`), its knobs (`knobs`), where the files are (`files`), the
whole file and the flat `Study` it loads into (`schema`), and its one-line errors (`errors`)."""

from harness.study.knobs import KNOBS, Knob
from harness.study.schema import Study, list_studies, load_study
from harness.study.tables import Budget, DataOptions, Objective, Pruner, Retrain, Sampler

__all__ = [
    "KNOBS",
    "Budget",
    "DataOptions",
    "Knob",
    "Objective",
    "Pruner",
    "Retrain",
    "Sampler",
    "Study",
    "list_studies",
    "load_study",
]
