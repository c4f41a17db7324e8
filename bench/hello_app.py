"""A bare Flask hello under the same gunicorn settings: the efficiency ratio's reference point."""

from gevent import monkey

monkey.patch_all()

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "Hello, World!"


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
