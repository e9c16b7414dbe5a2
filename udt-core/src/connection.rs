//! connection: being written.
