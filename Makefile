# The project's only entry points: run, test, stop, lint (more below for ops and benchmarks).
# `make help` lists every target with the line of `##` help after its name.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
# .venv's interpreter: the distribution's python3.11 when there is one (Debian builds it with PGO and
# LTO, libpython linked in), not whatever `python3` comes first in PATH (a pyenv default build: no
# PGO, a shared libpython, ~25-40% more CPU per page in process). An existing .venv is kept:
# `rm -rf .venv && make venv` moves it. bench/environment.py reports which build a bench ran on.
# Only with its venv module (Debian's python3.11-venv): otherwise `python3 -m venv` as before.
DISTRO_PYTHON := $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' 2>/dev/null && echo /usr/bin/python3.11)
PYTHON ?= $(or $(DISTRO_PYTHON),python3)
APP_HOST ?= 127.0.0.1
# Load var/services.env (local PG/Redis URLs) into every recipe that needs it.
WITH_ENV := set -a; [ -f var/services.env ] && . var/services.env; set +a;

.PHONY: help run test test-pgbouncer stop venv sysdeps services migrate lint clean-var prune deploy-check

help: ## this list
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort -u | \
		awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## the virtualenv .venv from requirements*.txt

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	@touch $@

sysdeps: ## apt-get install the system packages that are missing (scripts/sysdeps.sh)
	@bash scripts/sysdeps.sh

services: sysdeps ## start local Postgres 15 + Redis (AOF) under var/, write var/services.env
	@bash scripts/services.sh start

migrate: venv services ## apply pending migrations/*.sql
	@$(WITH_ENV) $(PY) -m quizapp.migrate

# APP_PORT: given, or the first free port from 8000 + an offset derived from the checkout's path.
run: migrate ## serve the app with gunicorn on a free port (APP_PORT=... to choose), printed
	@mkdir -p var
	@$(WITH_ENV) $(PY) -m quizapp.mail.mailer >>var/mailer.log 2>&1 & echo $$! > var/mailer.pid
	@port=$${APP_PORT:-$$(bash scripts/services.sh app-port)}; \
	bind=$${GUNICORN_BIND:-$(APP_HOST):$$port}; \
	echo "quizapp: serving on http://$$bind/  (Ctrl-C stops it; make stop stops the services)"; \
	$(WITH_ENV) GUNICORN_BIND=$$bind GUNICORN_PIDFILE=$(ROOT)/var/gunicorn.pid \
		exec $(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

# pytest runs under gevent's monkey-patching from the first import, as the app does in gunicorn.
test: venv services ## the whole suite against real services (PYTEST_ARGS="tests/x.py -q" for one file)
	@$(WITH_ENV) export DATABASE_URL=$${TEST_DATABASE_URL:-$$DATABASE_URL} \
		REDIS_URL=$${TEST_REDIS_URL:-$$REDIS_URL} QUIZAPP_ENV=test; \
		$(PY) -m quizapp.migrate && \
		$(PY) -m gevent.monkey --module pytest $(PYTEST_ARGS) && \
		if [ -z "$(PYTEST_ARGS)" ]; then $(MAKE) --no-print-directory test-pgbouncer; fi

# Suite job (issue 15): the quiz, payment and AI tests again, every app and gunicorn going
# through PgBouncer in transaction pooling mode (make test runs it after the full suite).
PGBOUNCER_TESTS ?= tests/test_quiz_flow.py tests/test_payments_webhook.py tests/test_ai_service.py
test-pgbouncer: venv services ## the quiz, payment and AI tests again through PgBouncer
	@$(WITH_ENV) export DATABASE_URL=$${TEST_DATABASE_URL:-$$DATABASE_URL} \
		REDIS_URL=$${TEST_REDIS_URL:-$$REDIS_URL} QUIZAPP_ENV=test; \
		echo "suite job: $(PGBOUNCER_TESTS) through PgBouncer"; \
		$(PY) -m gevent.monkey --module pytest -q --through-pgbouncer $(PGBOUNCER_TESTS)

# The suite again while 2 busy loops saturate both cores (started and stopped by pid): every
# guarantee must hold on a busy machine (issue 13).
.PHONY: test-stressed test-ai-stressed
test-stressed: venv services
	@bash scripts/cpu_hogs.sh $(MAKE) --no-print-directory test PYTEST_ARGS="$(PYTEST_ARGS)"

# The cluster AI test AI_STRESS_RUNS times in a row (default 5) with both cores saturated.
AI_STRESS_RUNS ?= 5
test-ai-stressed: venv services
	@bash scripts/cpu_hogs.sh bash -c 'for run in $$(seq $(AI_STRESS_RUNS)); do \
		echo "== AI cluster test, stressed run $$run of $(AI_STRESS_RUNS)"; \
		$(MAKE) --no-print-directory test PYTEST_ARGS="tests/test_ai_cluster.py -q -s -p no:cacheprovider" \
		|| { echo "== stressed run $$run failed"; exit 1; }; done; echo "== $(AI_STRESS_RUNS)/$(AI_STRESS_RUNS) stressed runs passed"'

stop: ## stop gunicorn and the mailer from make run, and the local services
	@if [ -f var/mailer.pid ] && kill -0 $$(cat var/mailer.pid) 2>/dev/null; then \
		kill $$(cat var/mailer.pid); echo "stopped mailer"; fi; rm -f var/mailer.pid
	@if [ -f var/gunicorn.pid ] && kill -0 $$(cat var/gunicorn.pid) 2>/dev/null; then \
		kill $$(cat var/gunicorn.pid); echo "stopped gunicorn"; fi; rm -f var/gunicorn.pid
	@bash scripts/services.sh stop

lint: venv ## ruff, bandit, nginx -t, gixy, systemd-analyze
	$(VENV)/bin/ruff check quizapp devstack tests bench scripts wsgi.py gunicorn.conf.py
	$(VENV)/bin/ruff format --check quizapp devstack tests bench scripts wsgi.py gunicorn.conf.py
	$(VENV)/bin/bandit -q -ll -r quizapp

# docs/deploy.md, tested: the env example filled in, the units rendered, one production instance.
deploy-check: migrate ## render the env example + systemd units, run them in production mode locally
	@$(WITH_ENV) $(PY) scripts/deploy_check.py

# Data lifecycle: the same job the systemd timer (systemd/quizapp-retention.timer) runs nightly.
prune: migrate ## delete quota rows, sent mail, audit entries older than RETENTION_DAYS / _AUDIT_DAYS
	@$(WITH_ENV) $(PY) -m quizapp.retention

clean-var: stop ## stop, then delete var/ and the cluster it links to under /var/tmp
	@[ -L var/pg ] && rm -rf "$$(readlink var/pg)" || true
	rm -rf var

# --- Operations (issue 7): the whole topology locally, and config checks ---
# One gunicorn instance per core: on the 2-core bench box 2 instances beat 4 (docs/benchmarks.md).
STACK_INSTANCES ?= $(shell nproc)
.PHONY: stack stack-stop stack-status lint-ops

# nginx (STACK_PORT, default 8080) -> STACK_INSTANCES gunicorn instances (STACK_BASE_PORT..)
stack: migrate ## nginx -> STACK_INSTANCES gunicorn instances, local (make stack-stop)
	@$(WITH_ENV) STACK_INSTANCES=$(STACK_INSTANCES) $(PY) scripts/stack.py start

stack-stop: ## stop make stack
	@$(PY) scripts/stack.py stop

stack-status: ## what make stack runs
	@$(PY) scripts/stack.py status

# nginx -t and gixy on the rendered template, systemd-analyze verify on the units.
lint-ops: venv ## nginx -t + gixy on the template, systemd-analyze verify on the units
	@d=$$(mktemp -d) && $(PY) scripts/render_nginx.py --ports 8001-8004 --listen 127.0.0.1:8080 \
		--standalone $$d >/dev/null && nginx -q -t -p $$d -e $$d/error.log -c $$d/nginx.conf && \
		$(VENV)/bin/gixy $$d/nginx.conf >$$d/gixy.out 2>&1 || { cat $$d/gixy.out; exit 1; }; \
		rm -rf $$d; echo "nginx: nginx -t and gixy clean"
	@# With the door: proxy_pass names an upstream group through a map, so gixy's resolver check is moot.
	@d=$$(mktemp -d) && $(PY) scripts/render_nginx.py --ports 8001-8004 --door 8000 --listen 127.0.0.1:8080 \
		--standalone $$d >/dev/null && nginx -q -t -p $$d -e $$d/error.log -c $$d/nginx.conf && \
		$(VENV)/bin/gixy --skips missing_resolver $$d/nginx.conf >$$d/gixy.out 2>&1 || { cat $$d/gixy.out; exit 1; }; \
		rm -rf $$d; echo "nginx with the door: nginx -t and gixy clean"
	@d=$$(mktemp -d) && for f in systemd/*.service systemd/*.socket systemd/*.target systemd/*.timer; do \
		sed "s#/opt/quizapp#$(ROOT)#g; s#/etc/quizapp/quizapp.env#$$d/quizapp.env#" $$f > $$d/$${f#systemd/}; \
		done && touch $$d/quizapp.env && ln -s quizapp@.service $$d/quizapp@8001.service && \
		ln -s quizapp@.socket $$d/quizapp@8001.socket && mkdir $$d/quizapp@8000.service.d && \
		sed "s#/opt/quizapp#$(ROOT)#g" systemd/quizapp-door.conf > $$d/quizapp@8000.service.d/door.conf && \
		ln -s quizapp@.service $$d/quizapp@8000.service && ln -s quizapp@.socket $$d/quizapp@8000.socket && \
		systemd-analyze verify --man=no $$d/quizapp@8000.service $$d/quizapp@8000.socket \
		$$d/quizapp@8001.service $$d/quizapp@8001.socket $$d/quizapp.target $$d/quizapp-migrate.service \
		$$d/quizapp-retention.service $$d/quizapp-retention.timer $$d/quizapp-mailer.service \
		&& rm -rf $$d && echo "systemd: systemd-analyze verify clean"

lint: lint-ops

# --- Benchmarks (issue 8): load ramps, chaos, published tables in docs/benchmarks.md ---
.PHONY: bench bench-smoke chaos benchdeps

benchdeps:
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends wrk >/dev/null; }

# The plateau (bench/plateau.py): the no-I/O twin's knee, the app's knee, 2x/4x the knee with the waiting
# room, a classroom step; 100 s windows, about 25 minutes. BENCH_QUICK=1: two short steps, under 5 minutes.
bench: migrate benchdeps ## the plateau into docs/benchmarks.md (BENCH_QUICK=1: under 5 min)
	@$(WITH_ENV) $(PY) bench/run.py

# 20 s of zero-think-time quiz traffic; fails on any 5xx or integrity mismatch (also run by make test).
bench-smoke: migrate ## 20 s of quiz traffic, fails on any 5xx
	@$(WITH_ENV) $(PY) bench/run.py --smoke

# Under steady load: kill -9 a worker, kill an instance, restart Postgres/Redis, pause Redis,
# fake OpenAI 429/500/hang, HUP reload; writes the chaos table into docs/benchmarks.md.
chaos: migrate ## kill/restart things under load, chaos table into docs/benchmarks.md
	@$(WITH_ENV) $(PY) bench/chaos.py
