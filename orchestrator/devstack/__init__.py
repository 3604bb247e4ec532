"""Development stack: real Kafka and PostgreSQL started by the project itself."""
