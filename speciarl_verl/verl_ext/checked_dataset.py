"""verl's ``RLHFDataset`` that refuses a parquet file with a bad row before training starts.

Without it a row with no ground truth stops a run at that row's first reward, possibly hours
in, and unreadable image bytes fail somewhere inside verl's processor. verl 0.9.1 builds the
training and validation datasets through ``data.custom_cls`` (``get_dataset_class``), and the
shipped recipes' base config names this class there::

    data:
      custom_cls:
        path: pkg://speciarl_verl.verl_ext.checked_dataset
        name: CheckedRLHFDataset

Every parquet file is checked with :func:`speciarl_verl.data.row_check.check_files` after
verl has made its local copy and before it reads any row; a bad row raises
:class:`~speciarl_verl.data.row_check.BadRowsError` naming the file as configured (not the
local copy), the row and its ``extra_info.index``/``data_source``. The check runs once per
dataset object (not again when a checkpoint restore rereads the files). JSON files verl also
reads are left to verl.
"""

from __future__ import annotations

from verl.utils.dataset.rl_dataset import RLHFDataset

from speciarl_verl.data.row_check import check_files

__all__ = ["CHECKED_DATASET_NAME", "CHECKED_DATASET_PATH", "CheckedRLHFDataset"]

CHECKED_DATASET_PATH = "pkg://speciarl_verl.verl_ext.checked_dataset"
CHECKED_DATASET_NAME = "CheckedRLHFDataset"


class CheckedRLHFDataset(RLHFDataset):
    """``RLHFDataset`` whose files are checked row by row before verl reads them."""

    def _read_files_and_tokenize(self):
        if not getattr(self, "_rows_checked", False):
            pairs = [
                (str(local), str(shown))
                for local, shown in zip(self.data_files, self.original_data_files, strict=True)
                if str(local).endswith(".parquet")
            ]
            check_files(
                [local for local, _ in pairs],
                [shown for _, shown in pairs],
                prompt_key=self.prompt_key,
                image_key=self.image_key,
            )
            self._rows_checked = True
        super()._read_files_and_tokenize()
