"""Results from a stream engine: `rarenet consume` reads NATS JetStream (Fleet's `nats`
result-log destination) with a durable pull consumer, acking only after the commit."""
