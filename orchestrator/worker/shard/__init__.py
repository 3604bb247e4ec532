"""The engine worker: one shard processor per owned partition of ``<prefix>.commands``."""
