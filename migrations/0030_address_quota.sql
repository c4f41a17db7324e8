-- Daily results per client address (IPv4, or IPv6 /64): a new cookie no longer buys a new quota,
-- while a crowd behind one address gets QUIZ_ADDRESS_DAILY_QUOTA results together.
-- quiz_quota is now per person (HMAC of the session's user key only).
CREATE TABLE quiz_address_quota (
    address_key  text    NOT NULL,   -- HMAC of the address group
    day          date    NOT NULL,
    remaining    integer NOT NULL CHECK (remaining >= 0),
    PRIMARY KEY (address_key, day)
);
