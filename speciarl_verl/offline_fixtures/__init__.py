"""Offline stand-ins for what a real run downloads or serves, each built in seconds on a CPU.

A tiny Qwen2.5-VL checkpoint and its byte-level tokenizer, a tiny sentence encoder, a fault-injecting
OpenAI-compatible judge server, a local Ray + TransferQueue cluster, verl-layout rollout writers and the
recorded rollouts of the demo: they let ``speciarl demo``, ``recipes/run_speciarl_tiny_cpu.sh`` (through
``+cpu_debug=tiny_cpu``), the benchmarks and the tests run without the Hugging Face hub or a GPU.

Example: ``load_recorded_groups()`` (from :mod:`speciarl_verl.offline_fixtures.recorded_rollouts`) gives
the demo's recorded GRPO groups, one per image.
"""
