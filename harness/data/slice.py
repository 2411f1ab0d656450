"""A small, fixed slice of the IMDB archive in Stanford's layout: what the tests and the
equivalence drift table (docs/scripts/equivalence_drift.py) train on, so both measure the same
reviews without reading all 50,000."""

from __future__ import annotations

import heapq
import io
import re
import tarfile
from collections import defaultdict
from pathlib import Path

SLICE_PER_FOLDER = 150  # reviews kept from each of train/pos, train/neg, test/pos, test/neg
_REVIEW = re.compile(r"^(?:\./)?aclImdb/(train|test)/(neg|pos)/(\d+)_(\d+)\.txt$")


def cut_slice(archive: Path, dest: Path, per_folder: int = SLICE_PER_FOLDER) -> Path:
    """A tarball in Stanford's layout with README and the `per_folder` lowest-id reviews of each
    labelled folder, cut in one streaming pass: "lowest" in the harness's order (numeric review
    id), so the slice is the same on every run."""
    # Per folder, a max-heap (ids negated) of the lowest ids seen so far, with their bytes.
    kept: defaultdict[str, list[tuple[tuple[int, int], str, bytes]]] = defaultdict(list)
    readme = b""
    with tarfile.open(archive, "r|gz") as source:
        for member in source:
            if member.name.endswith("aclImdb/README") and member.isfile():
                readme = _data(source, member)
                continue
            match = _REVIEW.match(member.name)
            if not (match and member.isfile()):
                continue
            split, label, review_id, rating = match.groups()
            key = (-int(review_id), -int(rating))
            heap = kept[f"{split}/{label}"]
            if len(heap) < per_folder:
                heapq.heappush(heap, (key, member.name, _data(source, member)))
            elif key > heap[0][0]:
                heapq.heapreplace(heap, (key, member.name, _data(source, member)))
    with tarfile.open(dest, "w:gz", compresslevel=1) as out:
        _add(out, "aclImdb/README", readme)
        for folder in sorted(kept):
            for _key, name, data in sorted(kept[folder], reverse=True):
                _add(out, name, data)
    return dest


def _data(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    data = archive.extractfile(member)
    assert data is not None
    return data.read()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))
