//! handshake: being written.
