//! packet: being written.
