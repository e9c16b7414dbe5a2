//! estimate: being written.
