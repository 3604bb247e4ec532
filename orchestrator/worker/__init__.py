"""Workers: the engine worker (shard processor) and the activity worker."""
