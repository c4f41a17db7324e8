"""Config is read from env, validated, and names the bad variable."""

from dataclasses import MISSING, fields

import pytest

from quizapp.config import Config, ConfigError

BASE = {"DATABASE_URL": "postgresql://u@127.0.0.1:5432/db", "REDIS_URL": "redis://127.0.0.1:6379/0"}


def test_defaults_are_the_documented_ones(tmp_path):
    cfg = Config.from_env({**BASE, "QUIZAPP_VAR_DIR": str(tmp_path)})
    assert (cfg.DB_POOL_MIN, cfg.DB_POOL_MAX, cfg.DB_POOL_TIMEOUT) == (2, 20, 15.0)
    assert cfg.DB_STATEMENT_TIMEOUT_MS == 30000
    assert cfg.SESSION_LIFETIME_HOURS == 24
    assert cfg.AI_RPM == 10 and cfg.AI_MAX_IN_FLIGHT == 8
    assert (cfg.RATELIMIT_DEFAULT, cfg.RATELIMIT_PERSON_TOTAL) == ("60/minute", "1000/hour")
    assert (cfg.RATELIMIT_ADDRESS_PAGES, cfg.RATELIMIT_IPV6_PREFIX) == ("3000/minute", 64)
    assert cfg.RATELIMIT_VISITOR_PAGES == cfg.RATELIMIT_NEW_SESSIONS == "60/minute;600/hour"
    assert cfg.RATELIMIT_STRATEGY == "sliding-window-counter"
    assert (cfg.QUIZ_DAILY_QUOTA, cfg.QUIZ_ADDRESS_DAILY_QUOTA) == (20, 1000)
    assert (cfg.ADMISSION_PACE_PER_SECOND, cfg.ADMISSION_PACE_BURST_SECONDS) == (-1.0, 5)  # auto
    assert cfg.ADMISSION_MAX_IN_FLIGHT == 128  # README, "Why 128"


@pytest.mark.parametrize("value, expected", [("auto", -1.0), ("OFF", 0.0), ("2.5", 2.5)])
def test_the_admission_pace_reads_auto_off_or_a_rate(tmp_path, value, expected):
    env = {**BASE, "QUIZAPP_VAR_DIR": str(tmp_path), "ADMISSION_PACE_PER_SECOND": value}
    assert Config.from_env(env).ADMISSION_PACE_PER_SECOND == expected


def test_every_default_is_written_once_on_its_field(tmp_path):
    cfg = Config.from_env({**BASE, "QUIZAPP_VAR_DIR": str(tmp_path)})
    given = {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "VAR_DIR"}
    for setting in fields(Config):
        if setting.name not in given:
            default = setting.default if setting.default is not MISSING else setting.default_factory()
            assert getattr(cfg, setting.name) == default, setting.name


@pytest.mark.parametrize(
    "name, value",
    [
        ("DB_POOL_MAX", "lots"),
        ("DB_POOL_MAX", "0"),
        ("DB_POOL_TIMEOUT", "soon"),
        ("DATABASE_URL", "mysql://x@y/z"),
        ("REDIS_URL", "http://127.0.0.1"),
        ("QUIZAPP_ENV", "staging"),
        ("SESSION_COOKIE_SECURE", "maybe"),
        ("PAYMENT_PROVIDER", "paypal"),
        ("RATELIMIT_ADDRESS_PAGES", "lots per minute"),
        ("RATELIMIT_STRATEGY", "moving-window"),
        ("RATELIMIT_IPV6_PREFIX", "200"),
        ("ADMISSION_PACE_PER_SECOND", "0"),
        ("ADMISSION_PACE_PER_SECOND", "fast"),
        ("ADMISSION_PACE_BURST_SECONDS", "0"),
    ],
)
def test_invalid_value_names_the_variable(tmp_path, name, value):
    env = {**BASE, "QUIZAPP_VAR_DIR": str(tmp_path), name: value}
    with pytest.raises(ConfigError, match=name):
        Config.from_env(env)


def test_missing_database_url_is_fatal(tmp_path):
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Config.from_env({"REDIS_URL": BASE["REDIS_URL"], "QUIZAPP_VAR_DIR": str(tmp_path)})


def test_production_requires_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Config.from_env({**BASE, "QUIZAPP_ENV": "production", "QUIZAPP_VAR_DIR": str(tmp_path)})


def test_development_key_is_generated_once_and_shared(tmp_path):
    env = {**BASE, "QUIZAPP_VAR_DIR": str(tmp_path)}
    first = Config.from_env(env).SECRET_KEY
    second = Config.from_env(env).SECRET_KEY
    assert first == second and len(first) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_pool_min_above_max_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="DB_POOL_MIN"):
        Config.from_env({**BASE, "QUIZAPP_VAR_DIR": str(tmp_path), "DB_POOL_MIN": "5", "DB_POOL_MAX": "2"})


def test_production_refuses_the_offline_payment_provider(tmp_path):
    env = {
        **BASE,
        "QUIZAPP_ENV": "production",
        "SECRET_KEY": "0123456789abcdef" * 2,
        "QUIZAPP_VAR_DIR": str(tmp_path),
    }
    with pytest.raises(ConfigError, match="PAYMENT_PROVIDER"):
        Config.from_env(env)
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY"):
        Config.from_env({**env, "PAYMENT_PROVIDER": "stripe"})
