"""verl discovers the plugin through its entry point, in a fresh interpreter."""

import os
import subprocess
import sys

PROBE = (
    "import sys, verl\n"
    "from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls\n"
    "loaded = 'speciarl_verl.verl_plugin' in sys.modules\n"
    "try:\n"
    "    print(loaded, get_reward_manager_cls('speciarl').__qualname__)\n"
    "except ValueError as error:\n"
    "    print(loaded, error)\n"
)


def run_probe(**env):
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env={**os.environ, **env}, check=True
    )
    return result.stdout.strip().splitlines()[-1]


def test_import_verl_registers_speciarl():
    assert run_probe(VERL_USE_EXTERNAL_PLUGINS="auto") == "True SpeciaRewardManager"


def test_registration_comes_from_the_entry_point():
    assert run_probe(VERL_USE_EXTERNAL_PLUGINS="none") == "False Unknown reward manager: speciarl"


def test_entry_point_is_declared_in_the_installed_metadata():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="verl.plugins") if e.name == "speciarl"]
    assert entry.value == "speciarl_verl.verl_plugin"
