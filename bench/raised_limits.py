"""Limits a profiling run raises: left on (their Redis work is part of the cost), out of one client's way."""

UNLIMITED = "100000000/minute"

# One load generator is one person on one address, starting, answering, submitting and polling.
RAISED_LIMITS = {
    "RATELIMIT_DEFAULT": UNLIMITED,
    "RATELIMIT_PERSON_TOTAL": UNLIMITED,
    "RATELIMIT_ADDRESS_PAGES": UNLIMITED,
    "RATELIMIT_VISITOR_PAGES": UNLIMITED,
    "RATELIMIT_NEW_SESSIONS": UNLIMITED,
    "RATELIMIT_SUBMIT": UNLIMITED,
    "RATELIMIT_POLL": UNLIMITED,
    "QUIZ_DAILY_QUOTA": "100000000",
    "QUIZ_ADDRESS_DAILY_QUOTA": "100000000",
}
