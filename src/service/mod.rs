//! Ready-made services, each a poll-driven state machine on the [`net`](crate::net) layer.
