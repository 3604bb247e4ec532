"""Flow control of task queues: priority, weighted fairness keys and rate limits,
decided by a dispatcher between a queue's backlog and its workers
(docs/flow-control.md)."""
