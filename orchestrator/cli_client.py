"""The client a ``saga`` subcommand uses: settings from the environment, errors as
one line (a ``click.ClickException``), closed when the command ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from orchestrator.config import Settings
from orchestrator.exceptions import OrchestratorError
from orchestrator.log.topics import TopicLayout

if TYPE_CHECKING:
    from orchestrator.client import Client

__all__ = ["env_client"]


@contextmanager
def env_client() -> Iterator[Client]:
    """A client for the cluster and layout the environment names."""
    from orchestrator.client import Client

    settings = Settings.from_env()
    client = Client(settings, layout=TopicLayout(settings.topic_prefix, settings.shards))
    try:
        yield client
    except (OrchestratorError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        client.close()
