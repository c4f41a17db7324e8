"""scripts/render_nginx.py: the edge pre-filter follows the app's limits (auto), or is set or off."""

import pytest

from devstack.nginx import render_nginx


def test_auto_follows_the_apps_limits():
    assert render_nginx.edge_visitor_limit({}) == 120  # the defaults: 60 + 60 a minute
    raised = {"RATELIMIT_VISITOR_PAGES": "300/minute;3000/hour", "RATELIMIT_NEW_SESSIONS": "10 per 2 seconds"}
    assert render_nginx.edge_visitor_limit(raised) == 600  # 300, and 300 (5 a second)
    assert (
        render_nginx.edge_visitor_limit({"RATELIMIT_VISITOR_PAGES": "600/hour"}) == 660
    )  # an hour's may go in a minute
    assert render_nginx.edge_visitor_limit({"RATELIMIT_ENABLED": "false"}) is None


def test_the_option_and_the_rendered_site():
    assert render_nginx.parse_visitor_limit("off", {}) is None
    assert render_nginx.parse_visitor_limit("90", {}) == 90
    assert render_nginx.parse_visitor_limit("auto", {"RATELIMIT_ENABLED": "off"}) is None
    for bad in ("0", "-5", "lots"):
        with pytest.raises(ValueError):
            render_nginx.parse_visitor_limit(bad, {})
    on = render_nginx.render_site(render_nginx.site_values([8001], "80", visitor_limit=90))
    assert "rate=90r/m;" in on and "limit_req zone=quizapp_visitors burst=90 nodelay;" in on
    off = render_nginx.render_site(render_nginx.site_values([8001], "80"))
    directives = [line for line in off.splitlines() if not line.lstrip().startswith("#")]
    assert not any("limit_req" in line or "${" in line for line in directives)


def test_a_standalone_nginx_is_sized_within_the_open_files_limit_it_can_have(capsys):
    """Above the hard open-files limit nginx's setrlimit fails and it runs with more connections
    than descriptors: both are capped at the limit instead, and the render says so."""
    import resource

    wanted = render_nginx.connection_limits(13_000)
    assert wanted == (26_512, 53_024)
    assert render_nginx.within_open_files_limit(*wanted, hard=20_000) == (19_936, 20_000)
    assert "worker_connections 19936 instead of 26512" in capsys.readouterr().err
    # Only the spare descriptors past the limit: the connections stay, and the warning says which.
    assert render_nginx.within_open_files_limit(*render_nginx.connection_limits(9_000), hard=20_000) == (
        18_512,
        20_000,
    )
    assert "worker_rlimit_nofile 20000 instead of 37024, worker_connections 18512 as sized" in (
        capsys.readouterr().err
    )
    assert render_nginx.within_open_files_limit(*wanted, hard=65_536) == wanted
    assert render_nginx.within_open_files_limit(*wanted, hard=resource.RLIM_INFINITY) == wanted
    assert capsys.readouterr().err == ""
