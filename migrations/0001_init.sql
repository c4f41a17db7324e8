-- Foundation: the audit trail every later feature writes administrative actions to.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created_at_idx ON audit_log (created_at DESC);
