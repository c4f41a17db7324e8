"""The operator files: gunicorn.conf.py from env, nginx template (nginx -t, gixy), systemd units."""

import re
import runpy
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from devstack.nginx import NGINX, render_nginx
from devstack.processes import ROOT, VENV_BIN

UNITS = (
    "quizapp@.service",
    "quizapp@.socket",
    "quizapp.target",
    "quizapp-migrate.service",
    "quizapp-mailer.service",
)


def _gunicorn_settings(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_settings_come_from_env(monkeypatch):
    settings = _gunicorn_settings(
        monkeypatch,
        GUNICORN_BIND="127.0.0.1:8003",
        GUNICORN_WORKERS="3",
        GUNICORN_MAX_REQUESTS="500",
        GUNICORN_MAX_REQUESTS_JITTER="50",
        GUNICORN_GRACEFUL_TIMEOUT="12",
    )
    assert settings["bind"] == ["127.0.0.1:8003"]
    from gunicorn.workers.ggevent import GeventWorker

    assert issubclass(settings["worker_class"], GeventWorker)  # gevent (on pywsgi: tests/test_ops_worker.py)
    assert (
        settings["workers"],
        settings["max_requests"],
        settings["max_requests_jitter"],
    ) == (3, 500, 50)
    assert settings["graceful_timeout"] == 12
    assert "rid=%({x-request-id}i)s" in settings["access_log_format"]
    assert "dur_us=%(D)s" in settings["access_log_format"]
    # The control socket would be one shared path in ~/.gunicorn for every instance: off by default.
    assert settings["control_socket_disable"] is True and "control_socket" not in settings


def test_gc_threshold_comes_from_env_and_rejects_bad_values(monkeypatch):
    assert _gunicorn_settings(monkeypatch)["_gc_threshold"] == (700, 10, 100)
    assert _gunicorn_settings(monkeypatch, GUNICORN_GC_THRESHOLD="900,12,50")["_gc_threshold"] == (
        900,
        12,
        50,
    )
    for bad in ("700,10", "700,10,x", "0,10,100", "700,10,100,5"):
        monkeypatch.setenv("GUNICORN_GC_THRESHOLD", bad)
        with pytest.raises(SystemExit, match="GUNICORN_GC_THRESHOLD must be 3 comma-separated integers"):
            runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize(
    ("env", "expected"), [({}, [700, 10, 100]), ({"GUNICORN_GC_THRESHOLD": "900,12,50"}, [900, 12, 50])]
)
def test_a_worker_runs_with_the_gc_threshold_and_its_boot_objects_frozen(env, expected):
    """Set after boot in the worker itself (post_worker_init), not only parsed: the worker reports it."""
    from devstack.servers import Gunicorn

    with Gunicorn("tests.support.sleepapp:app", env={"QUIZAPP_ENV": "test", **env}) as app:
        settings = requests.get(app.url + "/_test/gc", timeout=10).json()
    assert settings["threshold"] == expected
    assert settings["frozen"] > 10_000  # the boot-time objects are out of the collector's sight


def test_keep_alive_answers_stay_in_step_with_and_without_bodies():
    """GET, HEAD (a head, no body), a 404 and a static file on one keep-alive connection to gunicorn."""
    import http.client

    from devstack.servers import Gunicorn

    with Gunicorn("wsgi:app", env={"QUIZAPP_ENV": "test"}) as app:
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
        for method, path, status in [
            ("GET", "/healthz", 200),
            ("HEAD", "/", 200),
            ("GET", "/nope", 404),
            ("GET", "/static/css/site.css", 200),  # sendfile: the head goes out first
            ("HEAD", "/healthz", 200),
            ("GET", "/healthz", 200),
        ]:
            conn.request(method, path)
            response = conn.getresponse()
            body = response.read()
            assert response.status == status, (method, path)
            assert (body == b"") == (method == "HEAD"), (method, path)
        conn.close()


def test_gunicorn_rejects_a_bad_value(monkeypatch):
    monkeypatch.setenv("GUNICORN_WORKERS", "many")
    with pytest.raises(SystemExit, match="GUNICORN_WORKERS must be an integer"):
        runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_checkconfig_accepts_the_file():
    result = subprocess.run(
        [
            str(VENV_BIN / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--check-config",
            "wsgi:app",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def rendered_nginx(tmp_path):
    return render_nginx.write_standalone(tmp_path, [8001, 8002, 8003, 8004], "127.0.0.1:8080")


def test_nginx_accepts_the_rendered_template(rendered_nginx, tmp_path):
    result = subprocess.run(
        [
            NGINX,
            "-t",
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
            "-c",
            str(rendered_nginx),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_gixy_finds_nothing(rendered_nginx, tmp_path):
    site = tmp_path / "site.conf"
    site.write_text(render_nginx.render_site(render_nginx.site_values([8001, 8002], 80)))
    for conf in (rendered_nginx, site):
        result = subprocess.run(
            [str(VENV_BIN / "gixy"), "-f", "json", str(conf)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]", result.stdout


def test_the_door_is_optional_and_checked(tmp_path):
    without = render_nginx.render_site(render_nginx.site_values([8001, 8002], 80))
    assert "quizapp_door" not in without and "proxy_pass http://$" not in without  # exactly as before
    conf = render_nginx.write_standalone(tmp_path, [8001, 8002], "127.0.0.1:8080", door=8000)
    text = conf.read_text()
    door = re.search(r"upstream quizapp_door \{(.*?)\}", text, re.DOTALL).group(1)
    assert re.findall(r"server (127\.0\.0\.1:\d+)( backup)?", door) == [
        ("127.0.0.1:8000", ""),
        ("127.0.0.1:8001", " backup"),
        ("127.0.0.1:8002", " backup"),
    ]
    assert text.count("proxy_pass http://quizapp;") == 2  # /metrics and /api/health/: the pool
    command = [NGINX, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)]
    assert subprocess.run(command, capture_output=True, timeout=30, check=False).returncode == 0
    # $quizapp_pages always names one of the two upstream groups: no DNS, so no resolver needed
    # (gixy cannot follow a map with two values and asks for one).
    gixy = [str(VENV_BIN / "gixy"), "-f", "json", "--skips", "missing_resolver", str(conf)]
    result = subprocess.run(gixy, capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.strip() == "[]", result.stdout


def test_nginx_balances_and_never_replays_posts(rendered_nginx):
    conf = rendered_nginx.read_text()
    upstream = re.search(r"upstream quizapp \{(.*?)\}", conf, re.DOTALL).group(1)
    assert "least_conn;" in upstream and "keepalive 128;" in upstream
    assert re.findall(r"server 127\.0\.0\.1:(\d+)", upstream) == [
        "8001",
        "8002",
        "8003",
        "8004",
    ]
    assert "proxy_next_upstream error timeout;" in conf
    assert "non_idempotent" not in conf.replace('"non_idempotent"', "")
    assert "client_max_body_size 10m;" in conf
    assert "proxy_set_header X-Request-ID $quizapp_request_id;" in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf
    assert "gzip on;" in conf


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is absent on this machine (scripts/sysdeps.sh installs the systemd package)",
)
def test_systemd_units_verify_clean(tmp_path):
    env_file = tmp_path / "quizapp.env"
    env_file.write_text((ROOT / "systemd" / "quizapp.env.example").read_text())
    for unit in UNITS:
        text = (ROOT / "systemd" / unit).read_text()
        # Point the units at this checkout so every ExecStart path exists for the verifier.
        text = text.replace("/opt/quizapp", str(ROOT)).replace("/etc/quizapp/quizapp.env", str(env_file))
        (tmp_path / unit).write_text(text)
    for port in (8000, 8001):  # 8000: the door, with its drop-in (CPUWeight, one worker)
        (tmp_path / f"quizapp@{port}.service").symlink_to("quizapp@.service")
        (tmp_path / f"quizapp@{port}.socket").symlink_to("quizapp@.socket")
    door = (ROOT / "systemd" / "quizapp-door.conf").read_text().replace("/opt/quizapp", str(ROOT))
    assert "CPUWeight=1000" in door and "--workers 1 wsgi:app" in door
    # nginx's and Redis's drop-in: a CPU weight, as the door's (Nice alone ranks within a session)
    edge = (ROOT / "systemd" / "quizapp-edge-priority.conf").read_text()
    assert "[Service]" in edge and "CPUWeight=1000" in edge
    (tmp_path / "quizapp@8000.service.d").mkdir()
    (tmp_path / "quizapp@8000.service.d" / "door.conf").write_text(door)
    targets = [
        "quizapp@8000.service",
        "quizapp@8001.service",
        "quizapp@8001.socket",
        "quizapp.target",
        "quizapp-migrate.service",
        "quizapp-mailer.service",
    ]
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            *[str(tmp_path / t) for t in targets],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_instance_unit_is_hardened_and_stops_after_the_graceful_timeout():
    unit = (ROOT / "systemd" / "quizapp@.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    for name, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "User": "quizapp",
        "KillSignal": "SIGTERM",
        "EnvironmentFile": "/etc/quizapp/quizapp.env",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Requires": "quizapp@%i.socket",
    }.items():
        assert settings[name] == value, name
    graceful = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["graceful_timeout"]
    assert int(settings["TimeoutStopSec"]) > graceful
    assert "GUNICORN_BIND=127.0.0.1:%i" in settings["Environment"]
    assert Path(ROOT / "systemd" / "quizapp@.socket").read_text().count("ListenStream=127.0.0.1:%i") == 1
