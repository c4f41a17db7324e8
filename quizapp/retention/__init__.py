"""Data retention: prune quota rows, sent mails and old audit entries (python -m quizapp.retention)."""
