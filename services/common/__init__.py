"""What both services share: record contracts, the transform, Kafka and HTTP plumbing."""
