"""Pure functions that turn a scored result into a prompt or an algorithmic analysis."""

from __future__ import annotations

import hashlib
import json
import re

# A scoring reason: 'Question text? You answered “Label” (+1.5)' (quiz/scoring.py).
REASON = re.compile(r"^(.*?)\s*You answered “(.*?)” \(([+-])")


def _sentence(text: str) -> str:
    text = str(text).strip().rstrip(".")
    return text[:1].upper() + text[1:] + "." if text else ""


def _join(items: list[str]) -> str:
    items = [str(i).strip().rstrip(".") for i in items if str(i).strip()]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def algorithmic_analysis(prompt_inputs: dict) -> str:
    """A readable analysis written by the scoring model from the scores and their reasons (pure)."""
    models = prompt_inputs.get("top_models") or []
    if not models:
        return "We could not build an analysis for this result."
    top = models[0]
    paragraphs = [f"Your strongest fit is {top['name']}, with {top['score']} out of 100."]
    answered = [m.groups() for m in map(REASON.match, top.get("reasons") or []) if m and m.group(3) == "+"]
    if answered:
        said = _join([f"“{label}” to “{question}”" for question, label, _ in answered[:2]])
        paragraphs.append(f"It ranks first mostly because you answered {said}.")
    strengths = (top.get("strengths") or [])[:2]
    risks = (top.get("risks") or [])[:1]
    if strengths:
        paragraphs.append(
            f"It plays to strengths such as {_join([s[:1].lower() + s[1:] for s in strengths])}."
        )
    if risks:
        paragraphs.append("Keep an eye on one risk: " + risks[0][:1].lower() + _sentence(risks[0])[1:])
    if len(models) > 1:
        others = _join([f"{m['name']} ({m['score']})" for m in models[1:3]])
        verb = "is" if len(models) == 2 else "are"
        paragraphs.append(f"{others} also scored well and {verb} worth a look.")
    steps = top.get("first_steps") or []
    if steps:
        paragraphs.append("A good first step: " + steps[0][:1].lower() + _sentence(steps[0])[1:])
    return " ".join(paragraphs)


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
