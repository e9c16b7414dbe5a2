//! sched: being written.
