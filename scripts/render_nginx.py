#!/usr/bin/env python3
"""Render nginx/quizapp.conf.template: a site file for a server, or a standalone nginx.conf.

scripts/render_nginx.py --ports 8001-8004 --listen 80 --server-name quiz.example.org > quizapp.conf
scripts/render_nginx.py --ports 8001,8002 --listen 127.0.0.1:8080 --standalone DIR  # writes DIR/nginx.conf
scripts/render_nginx.py --ports 8001-8004 --door 8000 --listen 80 > quizapp.conf   # with a door
scripts/render_nginx.py --ports 8001-8004 --server-name quiz.example.org \
    --tls-cert /etc/letsencrypt/live/quiz.example.org/fullchain.pem \
    --tls-key /etc/letsencrypt/live/quiz.example.org/privkey.pem > quizapp.conf   # 443 + 80 -> 443
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "nginx" / "quizapp.conf.template"
NAMES = (
    "QUIZAPP_UPSTREAM_SERVERS",
    "QUIZAPP_LISTEN",
    "QUIZAPP_SERVER_NAME",
    "QUIZAPP_STATIC_ROOT",
    "QUIZAPP_ACCESS_LOG",
    "QUIZAPP_DOOR",
    "QUIZAPP_PAGES_UPSTREAM",
    "QUIZAPP_VISITOR_ZONE",
    "QUIZAPP_VISITOR_LIMIT",
)

STANDALONE = """\
# Written by scripts/render_nginx.py for a local, unprivileged-path nginx (make stack, tests).
{user}worker_processes 1;
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
daemon off;

events {{
    worker_connections {connections};
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

{site}
}}
"""


DEFAULT_EXPECTED_USERS = 1000


def connection_limits(expected_users: int, worker_processes: int = 1) -> tuple[int, int]:
    """(worker_connections, worker_rlimit_nofile) for a crowd of expected_users.

    Each visitor holds one client connection and, while a request is in flight, one upstream
    connection: two per user, spread over the workers, plus headroom for bursts and keepalive.
    Every connection is a file descriptor, and a worker may also open static files: twice that.
    """
    connections = max(1024, (2 * expected_users) // max(worker_processes, 1) + 512)
    return connections, 2 * connections


def within_open_files_limit(connections: int, nofile: int, hard: int | None = None) -> tuple[int, int]:
    """A standalone nginx started from here inherits this process's hard open-files limit, and an
    unprivileged (or sandboxed) master cannot raise it: nginx then only logs "setrlimit(RLIMIT_NOFILE,
    N) failed" and runs its workers at the old limit, with more worker_connections than descriptors
    (accept() fails once they run out). Cap both at the hard limit, say so, and keep each connection
    its descriptor (64 spare for logs and static files)."""
    if hard is None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or nofile <= hard:
        return connections, nofile
    capped = min(connections, max(hard - 64, 512))
    # Only the spare descriptors may be what is cut: then the connections stay as sized.
    cut = (
        f"worker_connections {capped} instead of {connections}"
        if capped < connections
        else f"worker_rlimit_nofile {hard} instead of {nofile}, worker_connections {connections} as sized"
    )
    print(
        f"render_nginx: the open-files hard limit ({hard}) is below the {nofile} the expected users need: "
        f"{cut} (raise it: ulimit -Hn, or LimitNOFILE)",
        file=sys.stderr,
    )
    return capped, hard


def parse_ports(spec: str) -> list[int]:
    """'8001-8004' or '8001,8003' -> [8001, ...]."""
    ports: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            low, high = (int(p) for p in part.split("-", 1))
            ports.extend(range(low, high + 1))
        elif part:
            ports.append(int(part))
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise ValueError(f"bad port list {spec!r}")
    return ports


def upstream_servers(ports: list, host: str = "127.0.0.1") -> str:
    """One server line per instance: a port on `host`, an "address:port" on another host, or a
    "unix:/path.sock" of a gunicorn on this host (no loopback TCP on the proxied leg)."""
    addresses = [port if ":" in str(port) else f"{host}:{port}" for port in ports]
    return "\n    ".join(f"server {address} max_fails=1 fail_timeout=2s;" for address in addresses)


# Visitors without an admission pass reach the quiz pages through the door: one small instance of
# the same app kept nearly idle, so the waiting room answers at once while the pool is busy.
DOOR = """
# The door: visitors holding no admission pass (no cookie, or a waiting-room ticket) are answered
# by this instance: the waiting room, or their first page once admitted. The pool is its backup.
upstream quizapp_door {{
    {door}
    {backups}
    keepalive 16;
    keepalive_timeout 4s;
    keepalive_requests 1000;
}}

# A pass in the admission cookie qa.adm ("p." admitted, "s." quiz started; itsdangerous-signed,
# checked by the app): the pool. Anyone else ("w." waiting ticket, no cookie): the door.
map $http_cookie $quizapp_pages_by_pass {{
    default quizapp_door;
    '~(^|;\\s*)qa\\.adm="?[ps]\\.' quizapp;
}}

# The operator's and the payment provider's paths never go through the door (CRITICAL_PATHS).
map $uri $quizapp_pages {{
    default $quizapp_pages_by_pass;
    ~^/(api/)?admin quizapp;
    /pay/webhook quizapp;
    /healthz quizapp;
    /readyz quizapp;
}}
"""


def door_upstream(door, ports: list, host: str = "127.0.0.1") -> str:
    """The door's upstream block and routing maps; every pool instance stands by as a backup."""
    address = door if ":" in str(door) else f"{host}:{door}"
    backups = [port if ":" in str(port) else f"{host}:{port}" for port in ports]
    servers = {"door": f"server {address} max_fails=1 fail_timeout=2s;"}
    servers["backups"] = "\n    ".join(f"server {b} backup;" for b in backups)
    return DOOR.format(**servers).rstrip("\n")


# TLS 1.2 with forward-secret AEAD suites only (TLS 1.3 suites are not configurable here).
CIPHERS = ":".join(
    f"ECDHE-{kind}-{suite}"
    for suite in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305")
    for kind in ("ECDSA", "RSA")
)
TLS_LINES = """\
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {ciphers};
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:quizapp_tls:10m;
    ssl_session_timeout 1d;
    # HSTS comes from the app (X-Forwarded-Proto https, TRUSTED_PROXY_HOPS=1), on every response.
"""

# Plain HTTP only redirects (and answers certbot's HTTP-01 challenge from ACME_ROOT).
REDIRECT = """\
server {{
    listen {http_listen};
    server_name {server_name};
    server_tokens off;
    location /.well-known/acme-challenge/ {{
        root {acme_root};
    }}
    location / {{
        return 301 https://$host$request_uri;
    }}
}}

"""


# Edge pre-filter: requests without a session cookie, per address, refused by nginx itself (a
# static 429 page, location @quizapp_visitor_limit) before they cost a worker a request.
VISITOR_ZONE = """\
# Edge pre-filter for visitors without a session cookie (bizmodel.sid), per address: a flood of
# cookieless requests is refused here, for almost nothing, before it costs a worker a request. The
# app's own limits stay the authority (cluster-wide in Redis, per /64 for IPv6, per person); this is
# rendered from them and never stricter: {per_minute} a minute, a burst of as many, is the sum of
# RATELIMIT_VISITOR_PAGES and RATELIMIT_NEW_SESSIONS a minute. Requests with a session cookie
# (people mid-quiz, a classroom behind one NAT) have an empty key: nginx does not count them.
map $http_cookie $quizapp_visitor_key {{
    default $binary_remote_addr;
    "~(^|;)\\s*bizmodel\\.sid=" "";
}}
limit_req_zone $quizapp_visitor_key zone=quizapp_visitors:10m rate={per_minute}r/m;"""
VISITOR_LIMIT = """\
limit_req zone=quizapp_visitors burst={per_minute} nodelay;
        limit_req_status 429;
        # Each refusal is in the access log (429, up=-); at nginx's default level (error) it would
        # also write an error-log line, one per refused request: a flood would fill the disk.
        limit_req_log_level info;
        error_page 429 @quizapp_visitor_limit;"""
APP_DEFAULTS = {  # the app's defaults (quizapp/config.py), for settings the environment leaves out
    "RATELIMIT_VISITOR_PAGES": "60/minute;600/hour",
    "RATELIMIT_NEW_SESSIONS": "60/minute;600/hour",
}
SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
RATE_ITEM = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d*)\s*(second|minute|hour|day)s?\s*$")


def per_minute(limit: str) -> int:
    """The most a limit string ("60/minute;600/hour", "10 per 2 minutes") lets through in one minute:
    every item applies, so the tightest; an item longer than a minute may be spent within one."""
    most = []
    for item in limit.replace(",", ";").split(";"):
        match = RATE_ITEM.match(item.lower())
        if not match:
            raise ValueError(f"cannot read the rate limit {limit!r}")
        amount, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
        seconds = multiple * SECONDS[unit]
        most.append(amount if seconds >= 60 else -(-amount * 60 // seconds))
    return min(most)


def edge_visitor_limit(env) -> int | None:
    """Requests a minute the edge lets through per address without a session cookie, from the app's
    settings in `env` (None: the app's limits are off, so is the edge's)."""
    if str(env.get("RATELIMIT_ENABLED", "true")).strip().lower() in ("0", "false", "no", "off"):
        return None
    return sum(per_minute(env.get(name) or default) for name, default in APP_DEFAULTS.items())


def parse_visitor_limit(value: str, env) -> int | None:
    """--visitor-limit: "auto" (from the app's RATELIMIT_* settings in `env`), "off", or N a minute."""
    text = value.strip().lower()
    if text == "auto":
        return edge_visitor_limit(env)
    if text == "off":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--visitor-limit must be auto, off or a whole number a minute, not {value!r}")
    return int(text)


def render_site(values: dict[str, str], tls: dict[str, str] | None = None) -> str:
    """The site; with tls={"cert", "key", "http_listen", "acme_root"} it serves HTTPS and
    a second server block redirects plain HTTP to it."""
    text = TEMPLATE.read_text()
    for name in ("QUIZAPP_DOOR", "QUIZAPP_VISITOR_ZONE", "QUIZAPP_VISITOR_LIMIT"):
        if not values[name]:  # switched off: the lines go, not just the name
            text = re.sub(r"[ ]*\$\{" + name + r"\}\n", "", text)
    for name in NAMES:
        text = text.replace("${" + name + "}", values[name])
    if tls:
        server_line = f"    server_name {values['QUIZAPP_SERVER_NAME']};\n"
        text = text.replace(server_line, server_line + TLS_LINES.format(ciphers=CIPHERS, **tls), 1)
        head, sep, rest = text.partition("server {")
        text = head + REDIRECT.format(server_name=values["QUIZAPP_SERVER_NAME"], **tls) + sep + rest
    return text


def site_values(
    ports, listen, server_name="_", static_root=None, access_log="off", door=None, visitor_limit=None
) -> dict:
    """The template's values; `door` (a port, "address:port" or "unix:/path.sock") adds the door,
    `visitor_limit` (requests a minute per address without a session cookie) the edge pre-filter."""
    return {
        "QUIZAPP_UPSTREAM_SERVERS": upstream_servers(ports),
        "QUIZAPP_LISTEN": str(listen),
        "QUIZAPP_SERVER_NAME": server_name,
        "QUIZAPP_STATIC_ROOT": str(static_root or ROOT / "quizapp" / "static"),
        "QUIZAPP_ACCESS_LOG": access_log,
        "QUIZAPP_DOOR": door_upstream(door, ports) if door else "",
        "QUIZAPP_PAGES_UPSTREAM": "$quizapp_pages" if door else "quizapp",
        "QUIZAPP_VISITOR_ZONE": VISITOR_ZONE.format(per_minute=visitor_limit) if visitor_limit else "",
        "QUIZAPP_VISITOR_LIMIT": VISITOR_LIMIT.format(per_minute=visitor_limit) if visitor_limit else "",
    }


def write_standalone(
    prefix: Path,
    ports,
    listen,
    server_name="_",
    static_root=None,
    tls=None,
    expected_users: int = DEFAULT_EXPECTED_USERS,
    door=None,
    visitor_limit=None,
) -> Path:
    """Write prefix/nginx.conf (pid, logs and temp files under prefix) and return its path."""
    prefix = Path(prefix).resolve()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    access_log = str(prefix / "access.log")
    values = site_values(
        ports, listen, server_name, static_root, access_log, door=door, visitor_limit=visitor_limit
    )
    site = render_site(values, tls)
    # As root, the workers would run as "nobody"; run them as the invoking user instead so they
    # can read the checkout and the temp dirs this script created.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    indented = "\n".join(("    " + line) if line else line for line in site.splitlines())
    connections, nofile = within_open_files_limit(*connection_limits(expected_users))
    conf.write_text(
        STANDALONE.format(user=user, prefix=prefix, site=indented, connections=connections, nofile=nofile)
    )
    return conf


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", default=os.environ.get("QUIZAPP_PORTS", "8001-8004"))
    parser.add_argument("--listen", default=os.environ.get("QUIZAPP_LISTEN", "80"))
    parser.add_argument("--server-name", default=os.environ.get("QUIZAPP_SERVER_NAME", "_"))
    parser.add_argument("--static-root", default=os.environ.get("QUIZAPP_STATIC_ROOT"))
    parser.add_argument("--access-log", default="/var/log/nginx/quizapp.access.log")
    parser.add_argument("--standalone", metavar="DIR", help="write DIR/nginx.conf instead")
    parser.add_argument(
        "--expected-users",
        type=int,
        default=int(os.environ.get("NGINX_EXPECTED_USERS", DEFAULT_EXPECTED_USERS)),
        help="size worker_connections and worker_rlimit_nofile for this many concurrent users",
    )
    parser.add_argument(
        "--door",
        default=os.environ.get("QUIZAPP_DOOR_PORT", ""),
        help="the door instance's port (or unix:/path.sock): visitors without a pass go there",
    )
    parser.add_argument(
        "--visitor-limit",
        default=os.environ.get("QUIZAPP_VISITOR_LIMIT", "auto"),
        help="requests a minute per address without a session cookie that nginx lets through: auto "
        "(from RATELIMIT_ENABLED, RATELIMIT_VISITOR_PAGES, RATELIMIT_NEW_SESSIONS in the environment, "
        "as the app reads them), off, or a number",
    )
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (fullchain.pem)")
    parser.add_argument("--tls-key", help="... and this key; plain HTTP then redirects to HTTPS")
    parser.add_argument("--http-listen", default="80", help="with TLS: where the redirect listens")
    parser.add_argument("--acme-root", default="/var/www/letsencrypt", help="certbot --webroot path")
    args = parser.parse_args(argv)
    ports = parse_ports(args.ports)
    try:
        visitor_limit = parse_visitor_limit(args.visitor_limit, os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            parser.error("--tls-cert and --tls-key go together")
        tls = {"cert": args.tls_cert, "key": args.tls_key, "http_listen": args.http_listen}
        tls["acme_root"] = args.acme_root
        if args.listen == "80":
            args.listen = "443 ssl"
    if args.standalone:
        print(
            write_standalone(
                Path(args.standalone),
                ports,
                args.listen,
                args.server_name,
                args.static_root,
                tls,
                expected_users=args.expected_users,
                door=args.door or None,
                visitor_limit=visitor_limit,
            )
        )
        return 0
    values = site_values(
        ports,
        args.listen,
        args.server_name,
        args.static_root,
        args.access_log,
        door=args.door or None,
        visitor_limit=visitor_limit,
    )
    sys.stdout.write(render_site(values, tls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
