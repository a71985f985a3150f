"""The API service: validates, persists in PostgreSQL and publishes on Kafka."""
