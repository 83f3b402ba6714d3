"""Importing the evaluator (and building its CLI) stays light: heavy libraries load only when a step runs."""


def test_importing_the_evaluator_loads_no_plotting_ml_or_gpu_library():
    import subprocess
    import sys

    code = (
        "import sys, speciarl_verl.evaluation, speciarl_verl.evaluation.cli; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    )
    assert not loaded & {"matplotlib", "sklearn", "scipy", "vllm", "torch", "verl", "pyarrow"}
