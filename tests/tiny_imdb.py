"""The handmade IMDB archive the data tests share, and how to write one in Stanford's layout."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

# A handmade archive with exact expectations. Train counts: the 4, cat 2, a/dog/sat/zebra 1 each,
# so ids are the=3, cat=4, then ties alphabetically: a=5, dog=6, sat=7, zebra=8. "unicorn" occurs
# three times in test but never in train, so it is out of vocabulary (2).
TINY = {
    "train/pos": {"1_9": "The cat sat.", "2_8": "the THE dog"},
    "train/neg": {"1_1": "the<br /><br />cat", "5_2": "a zebra"},
    # Numeric order 2 < 10 differs from the archive's name order, which the harness must ignore.
    "test/neg": {"10_3": "cat the the cat", "2_1": "the cat unicorn unicorn unicorn"},
    "test/pos": {"3_8": "", "1_9": "zebra sat dog a cat the"},
    # Unlabelled reviews, as in the canonical tarball: never read, or "unicorn" would rank first.
    "train/unsup": {"0_0": "unicorn " * 20},
}


def make_archive(root: Path, reviews: dict[str, dict[str, str]], *, tarball: bool) -> Path:
    """Write `reviews` ({"train/pos": {"[id]_[rating]": text}}) in Stanford's layout."""
    root.mkdir(parents=True, exist_ok=True)
    files = {"aclImdb/README": "tiny"} | {
        f"aclImdb/{folder}/{name}.txt": text
        for folder, texts in reviews.items()
        for name, text in texts.items()
    }
    if not tarball:
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        return root / "aclImdb"
    path = root / "tiny.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    return path
