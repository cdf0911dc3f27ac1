"""Settings come from one mapping, once; a bad variable is named in the error."""

from __future__ import annotations

import pytest

from service.config import ConfigError, Settings
from service.runtime import create_app


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite:///./recorder.db"
    assert settings.max_body_bytes == 64 * 1024
    assert settings.agora_ncs_verify is True
    assert settings.agora_ncs_secret == []


def test_several_notification_secrets_are_comma_separated() -> None:
    settings = Settings.from_env({"AGORA_NCS_SECRET": " first-secret, second-secret ,,"})
    values = [s.get_secret_value() for s in settings.agora_ncs_secret]
    assert values == ["first-secret", "second-secret"]
    assert "first-secret" not in repr(settings)


def test_values_are_parsed_and_unknown_variables_ignored() -> None:
    settings = Settings.from_env(
        {
            "AGORA_NCS_VERIFY": "false",
            "MAX_BODY_BYTES": "2048",
            "API_TOKENS": "tok-a-0123456789ab:acme,tok-b-0123456789ab:globex",
            "STORAGE_PROFILES": '{"main": {"bucket": "b", "secret_access_key": "sk-123456"}}',
            "SOMETHING_ELSE": "x",
        }
    )
    assert settings.agora_ncs_verify is False
    assert settings.max_body_bytes == 2048
    assert settings.api_tokens == {"tok-a-0123456789ab": "acme", "tok-b-0123456789ab": "globex"}
    assert settings.storage_profiles["main"].bucket == "b"
    secrets = set(settings.secret_values())
    assert {"tok-a-0123456789ab", "tok-b-0123456789ab", "sk-123456"} <= secrets


@pytest.mark.parametrize(
    "name, value",
    [
        ("MAX_BODY_BYTES", "lots"),
        ("MAX_BODY_BYTES", "10"),
        ("LOG_LEVEL", "LOUD"),
        ("AGORA_NCS_VERIFY", "perhaps"),
        ("API_TOKENS", "no-tenant"),
        ("STORAGE_PROFILES", '{"main": {"region": "x"}}'),
    ],
)
def test_a_bad_variable_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^invalid environment variable {name}: "):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    "tokens, why",
    [
        ("token-of-acme-0001:acme,token-of-acme-eu1:acme/eu", "tenant 'acme/eu'"),
        ("token-of-acme-0001:-acme", "tenant '-acme'"),
        ("token-of-acme-0001:ac me", "tenant 'ac me'"),
        ("short-token:acme", "shorter than 16 characters"),
    ],
)
def test_tenant_names_and_token_lengths_are_checked_at_start_up(tokens: str, why: str) -> None:
    """Issue 20: a tenant named ``acme/eu`` saw into acme's lists (keys are ``tenant/room``),
    and a token of any length was accepted. Both are refused, naming the variable."""
    with pytest.raises(ConfigError, match=r"^invalid environment variable API_TOKENS: ") as exc:
        Settings.from_env({"API_TOKENS": tokens})
    assert why in str(exc.value)
    assert "token-of-acme" not in str(exc.value), "the message never shows a token"


def test_short_secrets_are_redacted_too() -> None:
    settings = Settings.from_env({"AGORA_NCS_SECRET": "abc", "AGORA_CUSTOMER_SECRET": "x9"})
    assert {"abc", "x9"} <= set(settings.secret_values())


def test_the_app_reads_only_the_settings_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "not a number")
    monkeypatch.setenv("DATABASE_URL", "nonsense://")
    app = create_app(Settings.from_env({}))  # building it touches neither env nor disk
    assert app.state.context.settings.max_body_bytes == 64 * 1024


def test_seed_100_a_lost_stop_is_retried_within_a_query_interval() -> None:
    """Chaos seed 100: killed mid-stop with a 2 s query interval, the fixed 30 s retry let an
    orphan live 21 s past the 8 s bound."""
    from service.runtime import plan_config

    assert plan_config(Settings.from_env({}, query_interval_seconds=2)).stop_retry_after == 2
