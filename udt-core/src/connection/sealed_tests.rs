//! Secure-mode tests of the connection (sealed packets end to end).
