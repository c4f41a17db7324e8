-- The full report belongs to its buyer: the owning visitor, and mailed links that can be revoked.
ALTER TABLE quiz_attempts ADD COLUMN owner_key text;                 -- HMAC of the owner's session key
ALTER TABLE quiz_attempts ADD COLUMN link_version integer NOT NULL DEFAULT 1;  -- bump: mailed links die
