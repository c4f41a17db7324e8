"""WSGI entry point: gevent monkey-patching and psycogreen first, then the app."""

from gevent import monkey

monkey.patch_all()

from psycogreen.gevent import patch_psycopg  # noqa: E402

patch_psycopg()

from quizapp import create_app  # noqa: E402

app = create_app()
