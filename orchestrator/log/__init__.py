"""Kafka adapters: topic layout and admin, shard routing, offset bookkeeping."""
