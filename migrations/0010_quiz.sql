-- The quiz: attempts (idempotent per attempt key), daily quotas, email capture and its outbox.
CREATE TABLE quiz_attempts (
    id            bigserial PRIMARY KEY,
    attempt_key   text        NOT NULL UNIQUE,   -- held in the session; a double submit hits it
    public_id     text        NOT NULL UNIQUE,   -- secrets.token_urlsafe, the shareable id
    answers       jsonb       NOT NULL,
    scores        jsonb       NOT NULL,
    top_model     text        NOT NULL,
    started_at    timestamptz,
    completed_at  timestamptz NOT NULL DEFAULT now(),
    paid_at       timestamptz
);
CREATE INDEX quiz_attempts_completed_at_idx ON quiz_attempts (completed_at DESC);

CREATE TABLE quiz_quota (
    client_key  text    NOT NULL,   -- HMAC of the session's user key and the client IP
    day         date    NOT NULL,
    remaining   integer NOT NULL CHECK (remaining >= 0),
    PRIMARY KEY (client_key, day)
);

CREATE TABLE email_subscribers (
    id               bigserial PRIMARY KEY,
    email            text        NOT NULL,
    last_attempt_id  bigint      REFERENCES quiz_attempts (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX email_subscribers_email_key ON email_subscribers (lower(email));

CREATE TABLE email_outbox (
    id             bigserial PRIMARY KEY,
    subscriber_id  bigint      NOT NULL REFERENCES email_subscribers (id) ON DELETE CASCADE,
    attempt_id     bigint      REFERENCES quiz_attempts (id) ON DELETE SET NULL,
    kind           text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz
);
CREATE INDEX email_outbox_pending_idx ON email_outbox (created_at) WHERE sent_at IS NULL;
