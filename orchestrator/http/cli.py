"""``saga http``: serve the HTTP API."""

from __future__ import annotations

import dataclasses
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.config import Settings

if TYPE_CHECKING:
    from orchestrator.http.auth import Tokens

__all__ = ["register"]

log = logging.getLogger("orchestrator.http")


def _tokens(
    token_file: Path | None, read_token_file: Path | None, host: str, insecure: bool
) -> Tokens | None:
    """The configured tokens, or None for --insecure-no-auth (loopback hosts only)."""
    from orchestrator.http.auth import TokenError, is_loopback, load_tokens

    try:
        tokens = load_tokens(token_file=token_file, read_token_file=read_token_file)
    except (TokenError, OSError) as exc:
        raise click.UsageError(str(exc)) from exc
    if insecure:
        if tokens:
            raise click.UsageError("--insecure-no-auth given, but tokens are configured too")
        if not is_loopback(host):
            raise click.UsageError(
                f"--insecure-no-auth serves only a loopback host (127.0.0.1, ::1), not {host!r}"
            )
        return None
    if not tokens:
        raise click.UsageError(
            "no API token configured: set SAGA_HTTP_TOKENS or pass --token-file "
            "(or --insecure-no-auth on a loopback host, for local development)"
        )
    return tokens


def _tls(
    cert: Path | None, key: Path | None, host: str, plain_off_loopback: bool
) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain HTTP (refused off loopback unless
    ``--insecure-plain-http``: tokens would cross the network readable)."""
    from orchestrator.http.auth import is_loopback

    if (cert is None) != (key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if cert is None or key is None:
        if not is_loopback(host) and not plain_off_loopback:
            raise click.UsageError(
                f"serving {host!r} over plain HTTP would send tokens readable on the network: "
                "give --tls-cert and --tls-key, or --insecure-plain-http when a TLS proxy "
                "in front of this server (or a private network) protects them"
            )
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise click.UsageError(f"cannot load the TLS certificate or key: {exc}") from exc
    return context


@click.command("http")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=None, help="Port [default: SAGA_HTTP_PORT, else 8080].")
@click.option(
    "--bootstrap", default=None, help="Kafka bootstrap servers [KAFKA_BOOTSTRAP_SERVERS]."
)
@click.option("--prefix", default=None, help="Topic prefix [SAGA_TOPIC_PREFIX, else saga].")
@click.option(
    "--database-url",
    default=None,
    help="Visibility database for list/search/stats [DATABASE_URL]; '' disables them.",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Admin tokens, one per line (adds to SAGA_HTTP_TOKENS).",
)
@click.option(
    "--read-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read-only tokens, one per line (adds to SAGA_HTTP_READ_TOKENS).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Serve HTTPS with this certificate chain (PEM); with --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The certificate's private key (PEM).",
)
@click.option(
    "--insecure-plain-http",
    is_flag=True,
    help="Allow plain HTTP on a non-loopback host (behind a TLS proxy, or on a private "
    "network); without TLS or this flag such a host is refused.",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve without authentication (refused unless --host is a loopback address).",
)
@click.option(
    "--operations",
    "operations_file",
    envvar="SAGA_OPERATIONS_CONFIG",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Operations configuration (JSON): operations served here, endpoints whose "
    "callbacks are taken here (docs/operations-api.md) [SAGA_OPERATIONS_CONFIG].",
)
def http_command(
    *,
    operations_file: Path | None,
    host: str,
    port: int | None,
    bootstrap: str | None,
    prefix: str | None,
    database_url: str | None,
    token_file: Path | None,
    read_token_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure_plain_http: bool,
    insecure_no_auth: bool,
) -> None:
    """Serve the HTTP API (docs/http-api.md) until SIGTERM or Ctrl-C."""
    from aiohttp import web

    from orchestrator.http.app import build_app
    from orchestrator.http.services import ApiOptions
    from orchestrator.operations.config import ConfigError, load_config

    tokens = _tokens(token_file, read_token_file, host, insecure_no_auth)
    tls = _tls(tls_cert, tls_key, host, insecure_plain_http)
    settings = Settings.from_env()
    if bootstrap:
        settings = dataclasses.replace(settings, bootstrap_servers=bootstrap)
    if prefix:
        settings = dataclasses.replace(settings, topic_prefix=prefix)
    dsn = settings.database_url if database_url is None else database_url
    try:
        operations = load_config(operations_file, env={})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    options = ApiOptions(
        kafka_config=settings.kafka_config(),
        topic_prefix=settings.topic_prefix,
        database_url=dsn or None,
        tokens=tokens,
        operations=operations,
    )
    port = settings.http_port if port is None else port
    log.info("settings: %s", {**settings.redacted(), "http_port": port})
    log.info(
        "HTTP API on %s://%s:%d (console at /console/), authentication: %s",
        "https" if tls else "http",
        host,
        port,
        "DISABLED (loopback only)" if tokens is None else tokens,
    )
    web.run_app(
        build_app(options),
        host=host,
        port=port,
        ssl_context=tls,
        print=None,
        shutdown_timeout=5.0,
    )


def register(main: click.Group) -> None:
    """Add ``saga http`` to the CLI."""
    main.add_command(http_command)
