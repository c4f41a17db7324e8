-- Paid full reports: checkout sessions and payments recorded once per provider event.
CREATE TABLE checkout_sessions (
    id          text        PRIMARY KEY,   -- provider's checkout session id
    attempt_id  bigint      NOT NULL REFERENCES quiz_attempts (id) ON DELETE CASCADE,
    provider    text        NOT NULL,
    amount_cents integer    NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payments (
    id                   bigserial PRIMARY KEY,
    event_id             text        NOT NULL UNIQUE,   -- webhook replays conflict here
    attempt_id           bigint      NOT NULL REFERENCES quiz_attempts (id) ON DELETE CASCADE,
    checkout_session_id  text,
    provider             text        NOT NULL,
    amount_cents         integer,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_attempt_idx ON payments (attempt_id);
