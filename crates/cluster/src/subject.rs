//! Topic <-> NATS subject mapping.
