//! loss_list: being written.
