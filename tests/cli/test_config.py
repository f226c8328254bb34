"""Settings: defaults, rarenet.toml, RARENET_* env, flags; bad values name key and file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import DOCS

from rarenet.baseline.config import describe_settings, load_config
from rarenet.baseline.errors import ConfigError
from rarenet.baseline.units import format_duration, parse_duration, parse_size, parse_time


def test_defaults_match_the_rule() -> None:
    config = load_config(None, env={})
    detect = config.detect
    assert (detect.interval, detect.lookback, detect.threshold, detect.max_signals) == (
        900,
        2700,
        50,
        100,
    )
    assert (detect.history, detect.warmup_buckets, detect.suppress_for) == (14 * 86400, 20, 86400)
    assert (config.server.host, config.server.port, config.store.path) == (
        "127.0.0.1",
        8089,
        "./rarenet.db",
    )
    assert "osqueryd" in config.ingest.exclude_processes


def test_file_env_and_flags_in_order_of_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "rarenet.toml"
    toml.write_text(
        '[detect]\ninterval = "5m"\nthreshold = 60\n\n[store]\npath = "/data/a.db"\n\n'
        '[[webhooks]]\nurl = "http://127.0.0.1:9/hook"\nformat = "slack"\n'
    )
    config = load_config(str(toml), env={"RARENET_DETECT_THRESHOLD": "70"})
    assert (config.detect.interval, config.detect.threshold, config.store.path) == (
        300,
        70,
        "/data/a.db",
    )
    assert config.webhooks[0].format == "slack" and config.source == str(toml)
    flagged = load_config(
        str(toml), env={"RARENET_DB": "/env.db"}, overrides={"store": {"path": "/flag.db"}}
    )
    assert flagged.store.path == "/flag.db"
    assert load_config(str(toml), env={"RARENET_DB": "/env.db"}).store.path == "/env.db"


def test_config_found_via_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rarenet.toml").write_text("[server]\nport = 9000\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(None, env={}).server.port == 9000
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 9100\n")
    assert load_config(None, env={"RARENET_CONFIG": str(other)}).server.port == 9100


def test_bad_value_names_the_key_and_line(tmp_path: Path) -> None:
    toml = tmp_path / "rarenet.toml"
    toml.write_text('[store]\npath = "x.db"\n\n[detect]\n# comment\ninterval = "15x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(toml), env={})
    assert str(caught.value).startswith(f"{toml}:6: [detect] interval: '15x' is not a duration")


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"\$RARENET_SERVER_PORT: 'eighty' is not"):
        load_config(None, env={"RARENET_SERVER_PORT": "eighty"})


def test_unknown_key_and_section_are_refused(tmp_path: Path) -> None:
    toml = tmp_path / "rarenet.toml"
    toml.write_text("[detect]\ntreshold = 50\n")
    with pytest.raises(
        ConfigError, match=r":2: \[detect\] treshold: unknown setting 'treshold'.*threshold"
    ):
        load_config(str(toml), env={})
    toml.write_text("[detection]\nthreshold = 50\n")
    with pytest.raises(ConfigError, match=r"unknown section \[detection\]"):
        load_config(str(toml), env={})


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    toml = tmp_path / "rarenet.toml"
    toml.write_text("[detect\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(toml), env={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "missing.toml"), env={})


def test_webhook_needs_url(tmp_path: Path) -> None:
    toml = tmp_path / "rarenet.toml"
    toml.write_text('[[webhooks]]\nformat = "json"\n')
    with pytest.raises(ConfigError, match=r"\[\[webhooks\]\] #1: a webhook needs a url"):
        load_config(str(toml), env={})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1.5h", 5400), ("14d", 1209600), ("45", 45), (30, 30)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "15x", "-5m", "m15", True])
def test_bad_durations(bad: str | bool) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_sizes_times_and_formats() -> None:
    assert [parse_size(v) for v in ("65536", "64KiB", "16MiB", "1GiB", 7)] == [
        65536,
        65536,
        16 << 20,
        1 << 30,
        7,
    ]
    assert (
        parse_time("2026-01-05T00:01:00Z")
        == 1767571260
        == parse_time("1767571260")
        == parse_time("2026-01-05T00:01:00")
    )
    assert [format_duration(s) for s in (900, 5400, 86400, 14 * 86400, 90)] == [
        "15m",
        "90m",
        "1d",
        "14d",
        "90s",
    ]
    with pytest.raises(ValueError):
        parse_size("lots")
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_every_setting_is_documented() -> None:
    docs = (DOCS / "configuration.md").read_text()
    for section, key, _default, _help in describe_settings():
        assert f"| `{key}` |" in docs or f"`{section}.{key}`" in docs, (
            f"[{section}] {key} is not in docs/configuration.md"
        )
        env = f"RARENET_{section.upper()}_{key.upper()}"
        assert env in docs, f"{env} is not in docs/configuration.md"


def test_values_out_of_range_are_refused(tmp_path: Path) -> None:
    for env, message in [
        ({"RARENET_SERVER_PORT": "99999"}, "99999 is above the maximum 65535"),
        ({"RARENET_DETECT_THRESHOLD": "nan"}, "is not a number"),
        ({"RARENET_DETECT_BUCKET_SPAN": "0s"}, "0 is below the minimum 1"),
        ({"RARENET_DETECT_MAX_SIGNALS": "-5"}, "-5 is below the minimum 1"),
        ({"RARENET_INGEST_MAX_BODY": "0"}, "0 is below the minimum 1024"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, env=env)


def test_a_bad_secret_is_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "secret.toml"
    path.write_text('[ingest]\ntokens = ["super-secret-12345", 2]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    assert "super-secret-12345" not in str(caught.value)
    assert "tokens" in str(caught.value) and "secret.toml:2" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"RARENET_WEBHOOKS_SECRET": "x", "RARENET_WEBHOOKS_TIMEOUT": "0"})
    assert "below the minimum" in str(caught.value)  # non-secret values still explained


@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        "ftp://hooks.example/x",
        "https:///no-host",
        "hooks.slack.com/services/T0/B0/SECRETPART",
    ],
)
def test_a_bad_webhook_url_is_refused_at_load_with_file_and_line(tmp_path: Path, url: str) -> None:
    path = tmp_path / "hooks.toml"
    path.write_text(
        f'[detect]\nthreshold = 60\n\n[[webhooks]]\nname = "ok"\nurl = "http://127.0.0.1:9/a"\n\n'
        f'[[webhooks]]\nname = "bad"\nurl = "{url}"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    text = str(caught.value)
    assert "hooks.toml:10: [webhooks] url" in text and "http:// or https://" in text
    assert url not in text and "SECRETPART" not in text  # webhook URLs carry credentials


def test_good_webhook_urls_load() -> None:
    config = load_config(None, env={})
    assert config.webhooks == ()
    from rarenet.baseline.config import _check_url

    assert _check_url(" https://hooks.slack.com/services/T/B/C ") == (
        "https://hooks.slack.com/services/T/B/C"
    )
    assert _check_url("http://[::1]:8080/hook") == "http://[::1]:8080/hook"


def test_shards_are_urls_named_by_host_and_port_and_listed_once(tmp_path: Path) -> None:
    from rarenet.baseline.detect.shards import configured_shards

    path = tmp_path / "shards.toml"
    path.write_text('[detect]\nshards = ["http://shard-a:8080/", "ftp://shard-b"]\n')
    with pytest.raises(ConfigError) as bad:
        load_config(str(path), env={})
    assert f"{path}:2: [detect] shards" in str(bad.value) and "http://" in str(bad.value)
    env = {"RARENET_DETECT_SHARDS": "https://user:pw@shard-a, http://[::1]:9000"}
    names = [shard.name for shard in configured_shards(load_config(None, env=env).detect)]
    assert names == ["shard-a:443", "[::1]:9000"]  # never the URL's credential
    twice = {"RARENET_DETECT_SHARDS": "http://shard-a:80,http://shard-a"}
    with pytest.raises(ConfigError, match="shard-a:80 is listed twice"):
        configured_shards(load_config(None, env=twice).detect)


def test_a_shard_does_not_list_shards_and_does_not_run_the_rule(tmp_path: Path) -> None:
    both = {"RARENET_DETECT_ROLE": "shard", "RARENET_DETECT_SHARDS": "http://shard-a"}
    with pytest.raises(ConfigError, match="cannot itself list shards"):
        load_config(None, env=both)
    with pytest.raises(ConfigError, match="not one of node, shard"):
        load_config(None, env={"RARENET_DETECT_ROLE": "coordinator"})
