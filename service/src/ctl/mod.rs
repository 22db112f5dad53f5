//! swarmctl commands.
