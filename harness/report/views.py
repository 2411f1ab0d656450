"""Which figures tell each task's story, so that collecting and rendering agree on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.study.schema import Study


@dataclass(frozen=True)
class TaskView:
    """The quality metrics shown as mean ± std over the re-train seeds (metric, label), the one
    compared across backends, and the throughput."""

    tests: tuple[tuple[str, str], ...]
    cross: tuple[str, str]
    throughput: tuple[str, str]


VIEWS = {
    "classification": TaskView(
        tests=(
            ("test_accuracy", "test accuracy"),
            # The final epoch's, where the study tests the best validation epoch's weights.
            ("final_test_accuracy", "test accuracy, final epoch"),
            ("test_f1", "test F1"),
            ("test_roc_auc", "test ROC-AUC"),
            ("test_perplexity", "test perplexity"),
        ),
        cross=("test_accuracy", "accuracy"),
        throughput=("samples_per_second", "samples/s"),
    ),
    "language_model": TaskView(
        tests=(
            ("test_perplexity", "test perplexity"),
            ("test_accuracy", "test top-1 accuracy"),
            ("unigram_test_perplexity", "unigram baseline perplexity"),
        ),
        cross=("test_perplexity", "perplexity"),
        throughput=("tokens_per_second", "tokens/s"),
    ),
}


def view_of(study: Study) -> TaskView:
    return VIEWS[getattr(study, "task", "classification")]


def quality_title(view: TaskView) -> str:
    name = view.cross[1]
    return (
        f"quality: test split, mean ± std over re-train seeds; cross {name} a→b: a's best "
        "configuration re-trained on b"
    )
