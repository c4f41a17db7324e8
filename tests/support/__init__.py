"""Test-only helpers: small apps the tests serve with gunicorn (launchers and fakes live in devstack/)."""
