"""Session fixtures for CPU runs of verl: the synthetic shapes parquets and the tiny supervised policy.

The parquets are built once per session; the policy is the one the package ships, the same bits on
every machine (a policy trained here would differ from CPU to CPU).
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: Rows per split of the session's parquets (drawn with seed 0 from the adapter's splits).
SYNTHETIC_ROWS = {"train": 48, "val": 12, "test_ood": 12}


@pytest.fixture(scope="session")
def synthetic_parquets(tmp_path_factory) -> dict[str, Path]:
    """``{"train": path, "val": path, "test_ood": path}``: synthetic shapes parquets built by our data builder."""
    from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet

    folder = tmp_path_factory.mktemp("synthetic-shapes")
    return {
        split: build_parquet(
            SourceSpec("synthetic_shapes", ".", split, subset=rows),
            folder / f"{split}.parquet",
            BuildOptions(seed=0, progress=False),
        ).parquet
        for split, rows in SYNTHETIC_ROWS.items()
    }


@pytest.fixture(scope="session")
def tiny_policy_dir() -> Path:
    """The shipped tiny Qwen2.5-VL policy of synthetic shapes, as an HF folder inside the package."""
    from speciarl_verl.cpu_debug.tiny_policy import shipped_policy_dir

    return shipped_policy_dir()
