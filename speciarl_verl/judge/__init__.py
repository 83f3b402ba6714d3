"""Verdicts: the verifier contract, the rule tier, the LLM judge and the verdict cache (no verl or torch).

The network-facing verifiers (:class:`TieredVerifier`, :class:`OfflineVerifier`) load on
first access, so importing this package does not import an HTTP client.
"""

from speciarl_verl.judge.offline import decide_offline
from speciarl_verl.judge.settings import CacheSettings, JudgeSettings, LLMSettings
from speciarl_verl.judge.verifier import JudgeError, Verdict, VerificationRequest, Verifier

__all__ = [
    "CacheSettings",
    "JudgeError",
    "JudgeSettings",
    "LLMSettings",
    "OfflineVerifier",
    "TieredVerifier",
    "Verdict",
    "VerificationRequest",
    "Verifier",
    "decide_offline",
]


def __getattr__(name: str):
    if name in ("TieredVerifier", "OfflineVerifier"):
        from speciarl_verl.judge import tiered

        return getattr(tiered, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
