"""Pure functions that turn a scored result into a prompt or an algorithmic analysis."""

from __future__ import annotations


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
