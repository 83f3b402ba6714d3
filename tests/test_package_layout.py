"""The pure core stays pure, and importing the package does nothing but define things."""

import subprocess
import sys

HEAVY = ("verl", "torch", "ray", "transformers", "httpx", "openai", "transfer_queue")


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_top_level_and_core_import_no_heavy_or_network_module():
    modules = imported_after(
        "import speciarl_verl, speciarl_verl.core, speciarl_verl.judge, speciarl_verl.reward_settings, "
        "speciarl_verl.core.rollout_record"
    )
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_public_api_names_from_the_issue():
    import speciarl_verl

    for name in ("Category", "parse_answer", "normalize_label", "group_rewards", "static_reward"):
        assert callable(getattr(speciarl_verl, name)), name
