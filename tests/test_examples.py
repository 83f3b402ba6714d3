import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_python_api_example_scores_the_group():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "score_one_image.py")], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    rows = {line.split()[0]: line.split()[-2:] for line in out[1:]}
    assert rows["737-800"] == ["1.0", "1.0"]
    assert rows["Boeing"] == ["0.0", "0.0"]  # "Boeing 737": less specific, not the group's best
    assert rows["(unparseable)"] == ["-1.0", "-1.0"]
