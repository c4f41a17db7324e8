"""docs/deploy.md works as written: the env example, the units, nginx with TLS, the whole checklist."""

import os
import re
import subprocess
import sys

import requests
import urllib3
from gevent.pywsgi import WSGIServer

from devstack.nginx import NGINX, render_nginx
from devstack.processes import ROOT, free_port, wait_port
from quizapp.config import Config, ConfigError

GUIDE = (ROOT / "docs" / "deploy.md").read_text()
EXAMPLE = ROOT / "systemd" / "quizapp.env.example"


def _example_env() -> dict:
    sys.path.insert(0, str(ROOT / "scripts"))
    import deploy_check

    return deploy_check.read_env_file(EXAMPLE)


def test_the_example_as_copied_is_refused_naming_the_placeholder(tmp_path):
    env = {**_example_env(), "QUIZAPP_VAR_DIR": str(tmp_path)}
    try:
        Config.from_env(env)
    except ConfigError as exc:
        assert "SECRET_KEY" in str(exc) and "placeholder" in str(exc)
    else:
        raise AssertionError("the env example with its placeholders must not start")


def test_the_guide_covers_every_variable_unit_and_step():
    for name in _example_env():
        assert f"`{name}`" in GUIDE or name in GUIDE, name
    for unit in os.listdir(ROOT / "systemd"):
        if unit.startswith("quizapp") and not unit.endswith(".example"):
            assert unit in GUIDE, unit
    for must in (
        "appendfsync everysec",
        "maxmemory-policy volatile-lru",
        "pg_dump",
        "pg_restore",
        "max_connections",
        "certbot",
        "301",
        "/pay/webhook",
        "quizapp-mailer.service",
        "SMTP_URL",
        "Rollback",
        "systemctl reload quizapp.target",
        "postgresql:///quizapp?host=/var/run/postgresql",
        "PASSWORD",
        "CPUAffinity=",
    ):
        assert must in GUIDE, must
    readme = (ROOT / "README.md").read_text()
    assert "docs/deploy.md" in readme


def test_make_deploy_check_runs_the_units_in_production_mode():
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "scripts" / "deploy_check.py")],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("GEVENT")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    out = result.stdout
    assert "migrate: migrations:" in out and "production mode, /readyz 200" in out
    assert re.search(r"stopped by SIGTERM, exit 0", out) and "deploy-check: OK" in out
    assert "quizapp-mailer: up 3 s with the env file, SIGTERM, exit 0" in out


def test_tls_site_redirects_http_and_serves_https(tmp_path, make_app):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(  # noqa: S603,S607
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    https_port, http_port = free_port(), free_port()
    # The app in this (gevent) process behind the real nginx: HSTS comes from the app.
    app = WSGIServer(("127.0.0.1", 0), make_app(TRUSTED_PROXY_HOPS=1), log=None)
    app.start()
    try:
        tls = {"cert": str(cert), "key": str(key), "http_listen": f"127.0.0.1:{http_port}"}
        tls["acme_root"] = str(tmp_path)
        conf = render_nginx.write_standalone(
            tmp_path, [app.server_port], f"127.0.0.1:{https_port} ssl", tls=tls
        )
        proc = subprocess.Popen(  # noqa: S603
            [NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(https_port, timeout=30, proc=proc)
            plain = requests.get(f"http://127.0.0.1:{http_port}/q/1?x=1", allow_redirects=False, timeout=10)
            assert plain.status_code == 301
            assert plain.headers["Location"] == "https://127.0.0.1/q/1?x=1"
            with urllib3.warnings.catch_warnings():
                urllib3.warnings.simplefilter("ignore")
                secure = requests.get(f"https://127.0.0.1:{https_port}/healthz", verify=False, timeout=10)  # noqa: S501
            assert secure.status_code == 200 and secure.json() == {"status": "ok"}
            assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    finally:
        app.stop()
