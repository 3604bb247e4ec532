"""Tokens, loopback checks and the refusals of ``saga http`` (no broker needed)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.http.auth import Role, TokenError, Tokens, is_loopback, load_tokens

ADMIN = "a" * 8 + "-admin-token-01"
READ = "r" * 8 + "-read-token-001"


def test_roles_and_unknown_tokens() -> None:
    tokens = Tokens.of([ADMIN], [READ])
    assert tokens.role_of(ADMIN) is Role.ADMIN
    assert tokens.role_of(READ) is Role.READ
    assert tokens.role_of(ADMIN[:-1]) is None
    assert tokens.role_of(ADMIN + "x") is None
    assert tokens.role_of("") is None
    assert ADMIN not in repr(tokens) and repr(tokens) == "Tokens(admin=1, read=1)"
    assert not Tokens.of([]) and Tokens.of([ADMIN])


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("short-token", "shorter than 16"),
        ("has a space in it!!", "whitespace"),
        ("tab\there-0123456789", "whitespace"),
    ],
)
def test_weak_or_malformed_tokens_are_refused(token: str, problem: str) -> None:
    with pytest.raises(TokenError, match=problem):
        Tokens.of([token])


def test_tokens_from_env_and_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    admin_file, read_file = tmp_path / "admin", tmp_path / "read"
    admin_file.write_text(f"# rotated 2024-05\n\n  {ADMIN}2  \n")
    admin_file.chmod(0o600)
    read_file.write_text(f"{READ}\n")
    read_file.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        tokens = load_tokens(
            {"SAGA_HTTP_TOKENS": f" {ADMIN}, ,", "SAGA_HTTP_READ_TOKENS": ""},
            admin_file,
            read_file,
        )
    assert (len(tokens.admin), len(tokens.read)) == (2, 1)
    assert tokens.role_of(ADMIN) is tokens.role_of(ADMIN + "2") is Role.ADMIN
    assert tokens.role_of(READ) is Role.READ
    assert tokens.role_of("# rotated 2024-05") is None
    assert "readable by group or others" in caplog.text and str(read_file) in caplog.text
    assert str(admin_file) not in caplog.text
    assert not load_tokens({})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("api.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def saga_http(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    env = {"SAGA_HTTP_TOKENS": "", "SAGA_HTTP_READ_TOKENS": "", **(env or {})}
    result = CliRunner().invoke(main, ["http", *args], env=env)
    return result.exit_code, result.output


def test_saga_http_refuses_to_start_without_a_token() -> None:
    code, output = saga_http()
    assert code == 2 and "no API token configured" in output


def test_saga_http_refuses_no_auth_off_loopback_and_weak_tokens() -> None:
    code, output = saga_http("--insecure-no-auth", "--host", "0.0.0.0")
    assert code == 2 and "only a loopback host" in output
    code, output = saga_http("--insecure-no-auth", env={"SAGA_HTTP_TOKENS": ADMIN})
    assert code == 2 and "tokens are configured too" in output
    code, output = saga_http(env={"SAGA_HTTP_TOKENS": "guessable"})
    assert code == 2 and "shorter than 16" in output
    assert "guessable" not in output
