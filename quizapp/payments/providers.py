"""The payment-provider interface and its two implementations: Stripe Checkout and an offline test one."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass

import stripe

from ..errors import ServiceUnavailable

log = logging.getLogger(__name__)

PRODUCT_NAME = "Full business model report"


class PaymentUnavailable(ServiceUnavailable):
    message = "The payment provider is not answering right now. You have not been charged; please try again."


@dataclass(frozen=True)
class Checkout:
    session_id: str
    url: str  # where the browser goes to pay


def webhook_secret(config) -> str:
    """The configured signing secret, or outside production one derived from SECRET_KEY."""
    if config.get("STRIPE_WEBHOOK_SECRET"):
        return config["STRIPE_WEBHOOK_SECRET"]
    digest = hmac.new(config["SECRET_KEY"].encode(), b"stripe-webhook-dev", hashlib.sha256)
    return "whsec_dev_" + digest.hexdigest()


def sign_payload(payload: str, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header value: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<payload>")."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def completed_event(session_id: str, public_id: str, amount_cents: int) -> str:
    """A checkout.session.completed event body shaped like Stripe's."""
    event = {
        "id": "evt_test_" + secrets.token_urlsafe(18),
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": session_id,
                "object": "checkout.session",
                "client_reference_id": public_id,
                "metadata": {"public_id": public_id},
                "payment_status": "paid",
                "status": "complete",
                "amount_total": amount_cents,
                "currency": "usd",
            }
        },
    }
    return json.dumps(event, separators=(",", ":"))


class PaymentProvider:
    """Creates checkout sessions; the webhook tells us when one is paid."""

    name = "base"

    def create_checkout(self, *, public_id, amount_cents, success_url, cancel_url) -> Checkout:
        raise NotImplementedError


class StripeProvider(PaymentProvider):
    name = "stripe"

    def __init__(self, api_key: str, api_base: str = ""):
        base = {"api": api_base.rstrip("/")} if api_base else None
        self.client = stripe.StripeClient(api_key, base_addresses=base, max_network_retries=2)

    def create_checkout(self, *, public_id, amount_cents, success_url, cancel_url) -> Checkout:
        params = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": amount_cents,
                        "product_data": {"name": PRODUCT_NAME},
                    },
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": public_id,
            "metadata": {"public_id": public_id},
        }
        try:
            created = self.client.v1.checkout.sessions.create(params=params)
        except stripe.StripeError as exc:
            log.warning("payments.stripe_error", extra={"error": type(exc).__name__})
            raise PaymentUnavailable() from exc
        return Checkout(session_id=created.id, url=created.url)


class OfflineProvider(PaymentProvider):
    """Offline checkout for development and tests: our own page plays the provider."""

    name = "test"

    def __init__(self, checkout_url_for):
        self.checkout_url_for = checkout_url_for

    def create_checkout(self, *, public_id, amount_cents, success_url, cancel_url) -> Checkout:
        session_id = "cs_test_" + secrets.token_urlsafe(18)
        return Checkout(session_id=session_id, url=self.checkout_url_for(session_id))


def provider_for(config, checkout_url_for) -> PaymentProvider:
    if config["PAYMENT_PROVIDER"] == "stripe":
        return StripeProvider(config["STRIPE_SECRET_KEY"], config.get("STRIPE_API_BASE", ""))
    return OfflineProvider(checkout_url_for)
