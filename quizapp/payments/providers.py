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
CURRENCY = "usd"


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


def completed_event(
    session_id: str,
    public_id: str,
    amount_cents: int,
    *,
    currency: str = CURRENCY,
    email: str | None = None,
    payment_status: str = "paid",
    payment_intent: str | None = None,
) -> str:
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
                "payment_status": payment_status,
                "status": "complete",
                "amount_total": amount_cents,
                "currency": currency,
                "payment_intent": payment_intent or "pi_test_" + secrets.token_urlsafe(12),
                "customer_details": {"email": email} if email else None,
            }
        },
    }
    return json.dumps(event, separators=(",", ":"))


class PaymentProvider:
    """Creates checkout sessions and refunds; the webhook tells us when a session is paid."""

    name = "base"

    def create_checkout(
        self, *, public_id, amount_cents, success_url, cancel_url, expires_at, idempotency_key
    ) -> Checkout:
        raise NotImplementedError

    def refund(self, *, payment_intent, idempotency_key) -> str:
        """Refund a whole payment; the provider's refund id."""
        raise NotImplementedError


class StripeProvider(PaymentProvider):
    name = "stripe"

    def __init__(self, api_key: str, api_base: str = ""):
        base = {"api": api_base.rstrip("/")} if api_base else None
        self.client = stripe.StripeClient(api_key, base_addresses=base, max_network_retries=2)

    def create_checkout(
        self, *, public_id, amount_cents, success_url, cancel_url, expires_at, idempotency_key
    ) -> Checkout:
        params = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": CURRENCY,
                        "unit_amount": amount_cents,
                        "product_data": {"name": PRODUCT_NAME},
                    },
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": public_id,
            "metadata": {"public_id": public_id},
            "expires_at": expires_at,
        }
        try:
            # The same key for every click on one attempt: Stripe answers them all with one session.
            created = self.client.v1.checkout.sessions.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            log.warning("payments.stripe_error", extra={"error": type(exc).__name__})
            raise PaymentUnavailable() from exc
        return Checkout(session_id=created.id, url=created.url)

    def refund(self, *, payment_intent, idempotency_key) -> str:
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": payment_intent, "reason": "duplicate"},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            log.warning("payments.stripe_refund_error", extra={"error": type(exc).__name__})
            raise PaymentUnavailable() from exc
        return refund.id


class OfflineProvider(PaymentProvider):
    """Offline checkout for development and tests: our own page plays the provider."""

    name = "test"

    def __init__(self, checkout_url_for, secret_key: str):
        self.checkout_url_for = checkout_url_for
        self.secret_key = secret_key

    def create_checkout(
        self, *, public_id, amount_cents, success_url, cancel_url, expires_at, idempotency_key
    ) -> Checkout:
        # Idempotent like Stripe: one key, one session id.
        mac = hmac.new(self.secret_key.encode(), idempotency_key.encode(), hashlib.sha256)
        session_id = "cs_test_" + mac.hexdigest()[:24]
        return Checkout(session_id=session_id, url=self.checkout_url_for(session_id))

    def refund(self, *, payment_intent, idempotency_key) -> str:
        return "re_test_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def provider_for(config, checkout_url_for) -> PaymentProvider:
    if config["PAYMENT_PROVIDER"] == "stripe":
        return StripeProvider(config["STRIPE_SECRET_KEY"], config.get("STRIPE_API_BASE", ""))
    return OfflineProvider(checkout_url_for, config["SECRET_KEY"])
