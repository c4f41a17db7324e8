"""Pure functions that turn a scored result into a prompt or an algorithmic analysis."""

from __future__ import annotations

import hashlib
import json


def algorithmic_analysis(prompt_inputs: dict) -> str:
    """A readable analysis built only from the scores and their reasons (the marked fallback)."""
    models = prompt_inputs.get("top_models") or []
    if not models:
        return "We could not build an analysis for this result."
    top = models[0]
    lines = [f"Your strongest fit is {top['name']} ({top['score']}/100)."]
    reasons = top.get("reasons") or []
    if reasons:
        lines.append("What pointed there: " + "; ".join(reasons[:3]) + ".")
    if len(models) > 1:
        others = ", ".join(f"{m['name']} ({m['score']})" for m in models[1:3])
        lines.append(f"Also worth a look: {others}.")
    steps = top.get("first_steps") or []
    if steps:
        lines.append("A first step: " + steps[0])
    return " ".join(lines)


SYSTEM_PROMPT = (
    "You are a pragmatic business coach. In at most 180 words, explain to a quiz-taker why the "
    "business models below fit their answers, what to watch out for, and one concrete first step. "
    "Speak to them directly; do not invent facts about them."
)


def build_messages(prompt_inputs: dict) -> list[dict]:
    """The chat messages for one result: only scores, reasons and answer choices, no personal data."""
    lines = []
    for model in (prompt_inputs.get("top_models") or [])[:3]:
        lines.append(f"- {model.get('name')} ({model.get('score')}/100)")
        for label in ("reasons", "strengths", "risks", "first_steps"):
            values = model.get(label) or []
            if values:
                lines.append(f"  {label.replace('_', ' ')}: " + "; ".join(str(v) for v in values[:4]))
    answers = prompt_inputs.get("answers") or {}
    if answers:
        lines.append("Answers: " + ", ".join(f"{k}={answers[k]}" for k in sorted(answers)))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": "Best-fitting business models:\n" + "\n".join(lines),
        },
    ]


def prompt_fingerprint(prompt_inputs: dict, model: str) -> str:
    """sha256 of the canonical prompt inputs and model: the cache and dedup key."""
    canonical = json.dumps({"model": model, "messages": build_messages(prompt_inputs)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
