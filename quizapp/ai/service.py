"""The AI analysis use cases the rest of the app calls (the contract other packages rely on).

Contract (kept stable for quiz/, admin/ and health/):
- request_analysis(subject_id, prompt_inputs, user_key, paid=False) -> AnalysisStatus
    Called when a results page renders. Never blocks on the upstream API. Idempotent per subject_id.
    prompt_inputs holds no personal data: {"top_models": [{"id", "name", "score", "reasons",
    "description", "strengths", "risks", "first_steps"}...], "answers": {question_id: choice}}.
- analysis_status(subject_id) -> AnalysisStatus | None   (for the poll endpoint)
- metrics_snapshot() -> dict   (queue length, waits, calls, retries, fallbacks, breaker state)
- reset_queue() / force_close_breaker()   (admin actions, cluster-wide)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import prompts


@dataclass
class AnalysisStatus:
    state: str  # off | queued | running | done | fallback | refused
    text: str | None = None
    position: int | None = None
    eta_seconds: float | None = None
    fallback: bool = False
    message: str = ""

    @property
    def pending(self) -> bool:
        return self.state in ("queued", "running")

    def as_dict(self) -> dict:
        return {**asdict(self), "pending": self.pending}


def request_analysis(subject_id: str, prompt_inputs: dict, user_key: str, paid: bool = False):
    """AI is not wired yet: every result gets the marked algorithmic analysis."""
    return AnalysisStatus(
        state="off",
        text=prompts.algorithmic_analysis(prompt_inputs),
        fallback=True,
        message="AI analysis is switched off; this is the algorithmic analysis.",
    )


def analysis_status(subject_id: str):
    return None


def metrics_snapshot() -> dict:
    return {"enabled": False, "queue_length": 0, "breaker_state": "CLOSED"}


def reset_queue() -> int:
    return 0


def force_close_breaker() -> None:
    return None
