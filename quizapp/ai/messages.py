"""Every sentence the reader is shown about their AI analysis, in one place.

The words say what wrote the analysis, plainly; they never show the system's internal state. The
analysis text itself (the algorithmic one) is built in prompts.py.
"""

from __future__ import annotations

WRITTEN_BY_SCORING = "our scoring model wrote this analysis from your answers."
SCORING_ONLY = "Our scoring model wrote this analysis from your answers."

# Why the scoring model wrote it, by fallback reason (the reason is also the job's metrics counter).
FALLBACK_MESSAGES = {
    "deadline": "The AI analysis took too long, so " + WRITTEN_BY_SCORING,
    "queue_full": "Many people are finishing right now, so " + WRITTEN_BY_SCORING,
    "breaker_open": "Our AI writer is not answering right now, so " + WRITTEN_BY_SCORING,
    "upstream_error": "Our AI writer could not answer this time, so " + WRITTEN_BY_SCORING,
    "reset": SCORING_ONLY,
}
# Redis is down: the algorithmic analysis is shown, unpersisted.
UNAVAILABLE_MESSAGE = "Our AI writer is unavailable right now, so " + WRITTEN_BY_SCORING
# No OpenAI key configured: every analysis is the algorithmic one.
OFF_MESSAGE = SCORING_ONLY
REFUSED_MESSAGE = (
    "You already have {cap} AI analyses being written, so our scoring model wrote this one from your "
    "answers. Refresh the page once the others are ready to ask for an AI analysis."
)
RUNNING_MESSAGE = "Your analysis is being prepared now."
BAD_SUBJECT_MESSAGE = "That result id is not valid."
NO_ANALYSIS_MESSAGE = "No analysis is known for that result."


def refused_message(per_user_cap: int) -> str:
    return REFUSED_MESSAGE.format(cap=per_user_cap)
