"""Paid full reports: payment providers, webhook verification and idempotent unlocks."""
