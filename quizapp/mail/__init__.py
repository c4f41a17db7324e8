"""Mail: double opt-in capture, the email outbox, and the mailer process that drains it over SMTP."""
