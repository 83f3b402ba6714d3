"""Session fixtures for CPU runs of verl: the synthetic shapes parquets and the tiny supervised policy.

Both are built once per session and shared by every test under ``tests/cpu_debug/`` (the
rollout backend's tests train ``tiny_policy_dir`` on ``synthetic_parquets``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: Supervision of the session's policy: about as little as lets tests/cpu_debug/test_tiny_policy.py pass with a
#: margin (a third of the examples of ``build_tiny_policy``'s default: it reads colour reliably, shape less so).
TINY_POLICY_TEST_STEPS = 200
TINY_POLICY_TEST_BATCH = 8

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
def tiny_policy_dir(tmp_path_factory) -> Path:
    """A tiny Qwen2.5-VL supervised on synthetic shapes (seed 0), as an HF folder; built once per session."""
    from speciarl_verl.cpu_debug.tiny_policy import build_tiny_policy

    return build_tiny_policy(
        tmp_path_factory.mktemp("tiny-policy"),
        seed=0,
        steps=TINY_POLICY_TEST_STEPS,
        batch_size=TINY_POLICY_TEST_BATCH,
        progress=False,
    )
