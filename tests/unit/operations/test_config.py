"""The operations configuration: parsing, and the callback allow-list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.operations.config import (
    CallerEntry,
    ConfigError,
    OperationsConfig,
    load_config,
    parse_config,
)

SECRET = "0123456789abcdef-secret"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://a.example/v1/operation-callbacks", True),
        ("https://a.example/v1/operation-callbacks/", True),
        ("https://a.example/v1/operation-callbacksX", False),
        ("https://a.example/v1/other", False),
        ("https://a.example.evil/v1/operation-callbacks", False),
        ("http://a.example/v1/operation-callbacks", False),
        ("https://a.example:8443/v1/operation-callbacks", False),
        ("https://user@a.example/v1/operation-callbacks", False),
        ("https://a.example/v1/operation-callbacks/../admin", False),
        ("https://a.example/v1/operation-callbacks/%2e%2e/admin", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://a.example:99999/v1/operation-callbacks", False),
        ("not a url", False),
    ],
)
def test_the_allow_list_matches_scheme_host_port_and_path_prefix(url: str, allowed: bool) -> None:
    entry = CallerEntry("https://a.example/v1/operation-callbacks", SECRET)
    assert entry.matches(url) is allowed
    config = OperationsConfig(callers=(entry,))
    assert (config.caller_for(url) is entry) is allowed


def test_a_file_configures_both_sides(tmp_path: Path) -> None:
    path = tmp_path / "ops.json"
    path.write_text(json.dumps({
        "callback_url": "https://a.example/v1/operation-callbacks",
        "endpoints": {"payments": {"url": "https://b.example/", "service": "billing",
                                   "token": "t" * 20, "secret": SECRET}},
        "handlers": {"billing/charge": {"workflow": "billing.charge", "task_queue": "billing"}},
        "callers": [{"url_prefix": "https://a.example/v1/operation-callbacks",
                     "secret": SECRET}],
    }))
    config = load_config(env={"SAGA_OPERATIONS_CONFIG": str(path)})
    assert config.endpoint("payments").url == "https://b.example"
    handler = config.handler_for("billing", "charge")
    assert handler is not None and handler.workflow == "billing.charge"
    assert config.handler_for("billing", "refund") is None
    assert config.caller_for("https://a.example/v1/operation-callbacks") is not None
    assert SECRET not in repr(config), "secrets stay out of logs"
    assert load_config(env={}) == OperationsConfig()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"endpoints": {"p": {"url": "https://b", "service": "s", "token": "t",
                              "secret": SECRET}}}, "callback_url is needed"),
        ({"callback_url": "ftp://a", "endpoints": {}}, r"an http\(s\) URL"),
        ({"callers": [{"url_prefix": "https://a", "secret": "short"}]}, "at least 16"),
        ({"handlers": {"charge": {"workflow": "w", "task_queue": "q"}}}, "service/operation"),
        ({"handler": {}}, "unknown keys"),
        ({"callers": [{"url_prefix": "https://a:99999", "secret": SECRET}]}, "http"),
    ],
)
def test_bad_configurations_name_the_field(data: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config(data)


KAFKA = {"bootstrap.servers": "kafka-b:9092", "sasl.password": "broker-password-123"}


def test_kafka_endpoints_and_callers_parse_and_call_back_on_the_commands_topic() -> None:
    config = parse_config({
        "callback_topic_prefix": "shop",
        "endpoints": {"payments": {"kafka": KAFKA, "topic_prefix": "billing",
                                   "task_queue": "billing", "service": "billing",
                                   "secret": SECRET}},
        "callers": [{"kafka": KAFKA, "topic_prefix": "shop", "secret": SECRET}],
    })
    ep = config.endpoint("payments")
    assert ep.on_kafka and (ep.topic_prefix, ep.task_queue) == ("billing", "billing")
    assert config.callback_for(ep) == "kafka:shop"
    assert config.caller_for("kafka:shop") is config.callers[0]
    assert config.caller_for("kafka:other") is None
    assert config.caller_for("https://a.example/v1/operation-callbacks") is None
    assert "broker-password-123" not in repr(config)
    http = CallerEntry("https://a.example/v1/operation-callbacks", SECRET)
    assert not http.matches("kafka:shop"), "an HTTP entry never allows a Kafka callback"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"endpoints": {"p": {"kafka": KAFKA, "topic_prefix": "b", "task_queue": "q",
                              "service": "s", "secret": SECRET}}}, "callback_topic_prefix"),
        ({"callback_topic_prefix": "a",
          "endpoints": {"p": {"kafka": KAFKA, "topic_prefix": "b", "service": "s",
                              "secret": SECRET}}}, "task_queue"),
        ({"callback_topic_prefix": "a",
          "endpoints": {"p": {"kafka": {}, "topic_prefix": "b", "task_queue": "q",
                              "service": "s", "secret": SECRET}}}, "bootstrap.servers"),
        ({"callback_topic_prefix": "a",
          "endpoints": {"p": {"kafka": KAFKA, "url": "https://b", "topic_prefix": "b",
                              "task_queue": "q", "service": "s", "secret": SECRET}}},
         "no url or token"),
        ({"callers": [{"kafka": KAFKA, "secret": SECRET}]}, "topic_prefix"),
        ({"callers": [{"kafka": {"bootstrap.servers": 9092}, "topic_prefix": "a",
                       "secret": SECRET}]}, "strings"),
    ],
)
def test_bad_kafka_configurations_name_the_field(data: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config(data)
