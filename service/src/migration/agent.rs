//! The reference orchestrator (work in progress).
