"""Two app hosts behind one nginx, sharing PgBouncer and Sentinel: quizzes cross hosts, one host dies."""

from __future__ import annotations

import re
import time

import gevent
import pytest
import requests

from devstack.nginx import Nginx
from devstack.pgbouncer import PgBouncer
from devstack.processes import free_port, free_port_block
from devstack.redis_ha import RedisHA
from tests.support.hosts import HostGunicorn, Hosts, log_dir
from tests.support.quiz_load import HostHopper, QuizLoad, lost_writes

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def hosts(request):
    built = Hosts(count=2).up()
    if built.namespaces is None:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(
            f"\nnetwork namespaces not allowed ({built.why}): hosts are loopback addresses instead"
        )
    try:
        yield built
    finally:
        built.down()
        assert built.leftovers() == ""  # no namespace, interface or address of this run is left


@pytest.fixture
def shared_services(hosts, tmp_path, migrated_database):
    """PgBouncer and Redis primary/replica/Sentinels on the services address every host reaches."""
    address = hosts.services_address
    bouncer = PgBouncer(migrated_database, free_port(address), listen=address, pool_size=10).start()
    ha = RedisHA(tmp_path / "redis-ha", free_port_block(5, address), service=f"h{hosts.name}", host=address)
    try:
        ha.start()
        yield bouncer, ha
    finally:
        ha.stop()
        bouncer.stop()


def app_env(hosts: Hosts, bouncer: PgBouncer, ha: RedisHA) -> dict:
    return {
        "DATABASE_URL": bouncer.url(),
        "REDIS_SENTINELS": ha.sentinels,
        "REDIS_SENTINEL_SERVICE": ha.service,
        "REDIS_URL": f"redis://{ha.host}:{ha.base_port}/0",
        "REDIS_WAIT_REPLICAS": "1",
        "RATELIMIT_ENABLED": "false",  # every simulated user comes from one address
        "QUIZ_DAILY_QUOTA": "1000000",
        "QUIZ_ADDRESS_DAILY_QUOTA": "1000000",
        "OPENAI_API_KEY": "",
        "HEARTBEAT_SECONDS": "0.5",
        "GUNICORN_ACCESS_LOG": "",
        "GUNICORN_FORWARDED_ALLOW_IPS": ",".join(sorted(set(hosts.gateways))),
    }


def test_quizzes_walk_across_both_hosts_and_one_host_dies(
    hosts, shared_services, tmp_path, migrated_database
):
    bouncer, ha = shared_services
    env = app_env(hosts, bouncer, ha)
    apps = [
        HostGunicorn(
            workers=2,
            env={**env, "INSTANCE_NAME": f"host{i + 1}"},
            port=free_port(hosts.addresses[i]) if hosts.namespaces is None else 8000 + i,
            log_dir=log_dir(tmp_path),
            address=hosts.addresses[i],
            namespace=hosts.namespaces[i] if hosts.namespaces else None,
        )
        for i in range(2)
    ]
    nginx = Nginx([f"{app.address}:{app.port}" for app in apps], tmp_path / "nginx", app_env=env)
    try:
        gevent.joinall([gevent.spawn(app.start) for app in apps], raise_error=True)
        nginx.start()
        hopper = HostHopper([app.url for app in apps])
        with requests.Session() as http:
            crossed_quiz = hopper.walk(http)
        load = QuizLoad(nginx.url, clients=8).start()
        gevent.sleep(5)
        killed_at = time.monotonic()
        apps[0].kill_host()
        confirmed_before_kill = len(load.confirmed)
        gevent.sleep(8)
        load.stop()
    finally:
        nginx.stop()
        for app in apps:
            app.stop()
    served = re.findall(r"up=([0-9.]+):", nginx.access_log())
    after_kill = {s for sent, _, _, s in load.records if sent >= killed_at + 3}
    report = {
        "namespaces": bool(hosts.namespaces),
        "served_by": {address: served.count(address) for address in hosts.addresses},
        "statuses": load.statuses(),
        "confirmed_writes": len(load.confirmed),
        "confirmed_after_kill": len(load.confirmed) - confirmed_before_kill,
        "in_progress_at_kill_and_confirmed": sum(start < killed_at < end for start, end in load.spans),
        "hopper": {"hosts": len(set(hopper.hosts_used)), "statuses": hopper.statuses()},
    }
    print("hosts:", report)
    assert all(report["served_by"][address] > 10 for address in hosts.addresses), report
    # One quiz, every request on the other host than the one before: the state is shared.
    assert crossed_quiz and report["hopper"]["hosts"] == 2, report
    assert set(report["hopper"]["statuses"]) <= {200, 303}, report
    assert lost_writes(migrated_database, [*load.confirmed, crossed_quiz]) == 0, report
    assert report["in_progress_at_kill_and_confirmed"] > 0, report  # quizzes outlived their host
    assert report["confirmed_after_kill"] > 0, report  # the other host carried the quizzes on
    assert after_kill <= {200, 303}, report  # once nginx knows, the dead host costs nothing
    # Only requests in flight on the dead host may fail: nginx does not resend a POST it sent
    # (502), and a response cut off mid-way reaches the client as a dropped connection (0).
    assert set(report["statuses"]) <= {200, 303, 502, 0}, report
