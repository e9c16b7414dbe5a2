//! send_buffer: being written.
