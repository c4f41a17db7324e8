"""Data retention: prune daily quota rows, sent mails and old audit entries (python -m quizapp.retention)."""
