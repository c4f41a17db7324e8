"""The real app plus diagnostic routes, for tests only: a slow query (gevent concurrency) and the
worker's garbage-collector settings (gunicorn.conf.py)."""

import gc

import wsgi
from quizapp.db import transaction

app = wsgi.app


@app.get("/_test/pg-sleep")
def pg_sleep():
    with transaction() as cur:
        cur.execute("SELECT pg_sleep(1)")
    return {"slept": 1}


@app.get("/_test/gc")
def gc_settings():
    return {"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}
