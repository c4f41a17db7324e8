"""The real app plus one diagnostic route, for the gevent concurrency test only."""

import wsgi
from quizapp.db import transaction

app = wsgi.app


@app.get("/_test/pg-sleep")
def pg_sleep():
    with transaction() as cur:
        cur.execute("SELECT pg_sleep(1)")
    return {"slept": 1}
