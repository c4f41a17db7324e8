-- Indexes for the nightly retention job (quizapp/retention): it deletes by these columns in batches.
CREATE INDEX IF NOT EXISTS quiz_quota_day_idx ON quiz_quota (day);
CREATE INDEX IF NOT EXISTS email_outbox_sent_at_idx ON email_outbox (sent_at) WHERE sent_at IS NOT NULL;
