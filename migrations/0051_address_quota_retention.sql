-- The retention job also prunes quiz_address_quota by day, in batches: index it like quiz_quota.
CREATE INDEX IF NOT EXISTS quiz_address_quota_day_idx ON quiz_address_quota (day);
