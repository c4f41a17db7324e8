-- The mailer: double opt-in, unsubscribes, and an outbox with retries, backoff and dead letters.
ALTER TABLE email_subscribers ADD COLUMN confirmed_at timestamptz;
ALTER TABLE email_subscribers ADD COLUMN unsubscribed_at timestamptz;

ALTER TABLE email_outbox ADD COLUMN status text NOT NULL DEFAULT 'pending';  -- pending|sent|dead|cancelled
ALTER TABLE email_outbox ADD COLUMN subject text;
ALTER TABLE email_outbox ADD COLUMN body text;                 -- rendered when queued
ALTER TABLE email_outbox ADD COLUMN unsubscribe_url text;
ALTER TABLE email_outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE email_outbox ADD COLUMN last_error text;
ALTER TABLE email_outbox ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE email_outbox ADD COLUMN dedup_key text;
-- A confirmation link clicked twice, or a webhook replayed, queues its mail once.
CREATE UNIQUE INDEX email_outbox_dedup_key ON email_outbox (dedup_key);
DROP INDEX email_outbox_pending_idx;
CREATE INDEX email_outbox_due_idx ON email_outbox (next_attempt_at, id) WHERE status = 'pending';
UPDATE email_outbox SET status = 'cancelled', last_error = 'queued before double opt-in';
