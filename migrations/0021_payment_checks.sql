-- Webhook checks: what each checkout was created with, one payment per checkout, refunds.
ALTER TABLE checkout_sessions ADD COLUMN currency text NOT NULL DEFAULT 'usd';
ALTER TABLE checkout_sessions ADD COLUMN url text;
ALTER TABLE checkout_sessions ADD COLUMN expires_at timestamptz;
ALTER TABLE checkout_sessions ADD COLUMN completed_at timestamptz;
CREATE INDEX checkout_sessions_attempt_idx ON checkout_sessions (attempt_id, created_at DESC);

ALTER TABLE payments ADD COLUMN currency text;
ALTER TABLE payments ADD COLUMN payment_intent text;
-- kept: the payment that unlocked; refund_pending / refunded / refund_failed: a second payment.
ALTER TABLE payments ADD COLUMN status text NOT NULL DEFAULT 'kept';
ALTER TABLE payments ADD COLUMN refund_id text;
ALTER TABLE payments ADD COLUMN refund_error text;
-- One payment row per checkout session, whatever the number of events that report it.
CREATE UNIQUE INDEX payments_checkout_session_key ON payments (checkout_session_id);
CREATE INDEX payments_attention_idx ON payments (created_at) WHERE status IN ('refund_pending', 'refund_failed');
CREATE INDEX audit_log_action_idx ON audit_log (action, created_at DESC);
