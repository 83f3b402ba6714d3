"""Verdicts: the verifier contract and its implementations (pure; no verl or torch)."""

from speciarl_verl.judge.offline import OfflineVerifier, decide_offline
from speciarl_verl.judge.settings import JudgeSettings
from speciarl_verl.judge.verifier import Verdict, VerificationRequest, Verifier

__all__ = ["Verifier", "VerificationRequest", "Verdict", "OfflineVerifier", "decide_offline", "JudgeSettings"]
