"""Where the API key and base URL come from."""

from __future__ import annotations

from pathlib import Path

import pytest

import oxedit
from oxedit import ConfigurationError
from oxedit._config import resolve_api_key, resolve_base_url


def test_base_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_base_url(None) == "https://hub.oxen.ai"
    monkeypatch.setenv("OXEN_BASE_URL", "http://127.0.0.1:8000/")
    assert resolve_base_url(None) == "http://127.0.0.1:8000"
    assert resolve_base_url("https://other.example") == "https://other.example"


def test_bad_base_url_is_named() -> None:
    with pytest.raises(ConfigurationError, match="base_url='hub.oxen.ai' is not an http"):
        resolve_base_url("hub.oxen.ai")


def test_key_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(tmp_path))
    (tmp_path / "auth_config.toml").write_text(
        'default_host = "hub.oxen.ai"\n'
        '[[host_configs]]\nhost = "hub.oxen.ai"\nauth_token = "from-cli"\n'
        '[[host_configs]]\nhost = "localhost:3000"\nauth_token = "local-cli"\n'
    )
    assert resolve_api_key(None, "https://hub.oxen.ai") == "from-cli"
    assert resolve_api_key(None, "http://localhost:3000") == "local-cli"
    monkeypatch.setenv("OXEN_API_KEY", "from-env")
    assert resolve_api_key(None, "https://hub.oxen.ai") == "from-env"
    assert resolve_api_key("from-arg", "https://hub.oxen.ai") == "from-arg"


def test_no_key_says_how_to_set_one() -> None:
    with pytest.raises(ConfigurationError) as info:
        oxedit.Client()
    message = str(info.value)
    assert "OXEN_API_KEY" in message and "api_key=" in message and "oxen config --auth" in message


def test_broken_cli_config_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(tmp_path))
    (tmp_path / "auth_config.toml").write_text("this is = = not toml")
    with pytest.raises(ConfigurationError, match="auth_config.toml"):
        resolve_api_key(None, "https://hub.oxen.ai")


def test_key_is_not_in_repr() -> None:
    client = oxedit.Client(api_key="sk-secret-123")
    assert "sk-secret" not in repr(client)
    assert "sk-secret" not in repr(vars(client).get("_api"))


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: oxedit.Timeouts(read=0), "read=0 must be a positive number"),
        (lambda: oxedit.Limits(max_connections=0), "max_connections=0"),
        (lambda: oxedit.ReconcilePolicy(stale_after=-1), "stale_after=-1"),
    ],
)
def test_settings_are_checked(factory: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("field", "value"),
    [("edit_field", "img"), ("history_first_page", 2), ("history_first_page", True),
     ("metadata_route", "/meta/")],
)  # fmt: skip
def test_a_hub_profile_refuses_what_no_hub_does(field: str, value: object) -> None:
    with pytest.raises(oxedit.InvalidRequestError, match=f"{field}={value!r}"):
        oxedit.HubProfile(**{field: value})  # type: ignore[arg-type]
