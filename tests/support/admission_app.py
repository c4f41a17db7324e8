"""The real app plus one route that holds a worker slot, for the admission priority test."""

import gevent
from flask import request

import wsgi

app = wsgi.app


@app.get("/_test/hold")
def hold():
    gevent.sleep(float(request.args.get("seconds", "1")))
    return {"held": True}
