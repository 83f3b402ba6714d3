"""Oxford Flowers-102 (``102flowers.tgz`` + ``imagelabels.mat`` + ``setid.mat``).

Layout: ``jpg/image_00001.jpg ...`` beside ``imagelabels.mat`` (variable ``labels``, 1..102,
column ``i`` labelling ``image_{i+1:05d}.jpg``) and ``setid.mat`` (``trnid``, ``valid``,
``tstid``: 1-based image numbers). Splits: ``train`` (trnid), ``val`` (valid), ``test``
(tstid); or the CoOp split with ``split_file=split_zhou_OxfordFlowers.json``. The ``.mat``
files are read without ``squeeze_me`` and flattened, so a split of one image stays a list.

Ground truth: the official files name no class, so names come from the shipped
``flowers102.txt`` (the widely used ``cat_to_name.json`` list), by ``label - 1``, spelled as
there: ``passion flower``, ``colt's foot``, ``barbeton daisy`` (sic). No hierarchy:
``parents`` is empty. ``domain_nouns``: "flower", "plant" and their variants.
``class_id`` is ``label - 1``; ``image_id`` is ``image_00001``. A Hugging Face copy whose
class names are the label numbers themselves (``"1"`` ... ``"102"``, whatever their order)
is read by number, ``"77"`` being ``passion flower`` (``numbered_class_names``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speciarl_verl.data.adapters.base import DatasetAdapter, find_layout_root, relative_name
from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.shipped_lists import class_names
from speciarl_verl.data.source_record import DataSourceError, ProblemLog, SourceRecord

__all__ = ["Flowers102Adapter"]

_SPLIT_VARIABLES = {"train": "trnid", "val": "valid", "test": "tstid"}
_WRAPPERS = ("flowers-102", "oxford_flowers", "flowers102")


def _mat_vector(path: Path, variable: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        content = loadmat(str(path))
    except FileNotFoundError:
        raise DataSourceError(f"missing file: {path}") from None
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DataSourceError(f"{path}: cannot read MATLAB file: {exc}") from exc
    if variable not in content:
        raise DataSourceError(f"{path}: no variable {variable!r} (found {sorted(k for k in content if k[0] != '_')})")
    return np.atleast_1d(np.asarray(content[variable]).ravel()).astype(np.int64)


@register_adapter("flowers102")
class Flowers102Adapter(DatasetAdapter):
    name = "flowers102"
    splits = ("train", "val", "test")
    class_list = "flowers102.txt"
    domain_nouns = ("flower", "flowers", "plant", "flowering plant")
    coop_image_dir = "jpg"
    coop_split_file = "split_zhou_OxfordFlowers.json"
    numbered_class_names = True

    def ground_truth(self, class_name: str) -> str:
        """Names are used as the list spells them (``"colt's foot"``); only whitespace is tidied."""
        return " ".join(class_name.split())

    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        self.check_split(split)
        base = find_layout_root(root, "imagelabels.mat", _WRAPPERS, self.name)
        labels = _mat_vector(base / "imagelabels.mat", "labels")
        variable = _SPLIT_VARIABLES[split]
        numbers = _mat_vector(base / "setid.mat", variable)
        names = class_names(self.class_list)
        classes = {}
        records = []
        for position, number in enumerate(numbers.tolist()):
            origin = f"{base / 'setid.mat'} {variable}[{position}]"
            if not 1 <= number <= len(labels):
                problems.report(
                    f"{origin}: image number {number} has no label in imagelabels.mat ({len(labels)} labels)",
                    slot=position,
                )
                continue
            label = int(labels[number - 1])
            if not 1 <= label <= len(names):
                problems.report(
                    f"{base / 'imagelabels.mat'} labels[{number - 1}]: unknown class id {label} (1..{len(names)})",
                    slot=position,
                )
                continue
            if label not in classes:
                classes[label] = self.class_info(label - 1, names[label - 1])
            path = base / "jpg" / f"image_{number:05d}.jpg"
            records.append(
                SourceRecord(
                    data_source=self.name,
                    split=split,
                    image_id=f"image_{number:05d}",
                    cls=classes[label],
                    source_file=relative_name(path, root),
                    origin=origin,
                    image_path=path,
                    slot=position,
                )
            )
        return records

    def locate(self, root: Path) -> Path:
        return find_layout_root(root, self.coop_image_dir, _WRAPPERS, self.name)
