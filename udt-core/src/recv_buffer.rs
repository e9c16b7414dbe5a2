//! recv_buffer: being written.
