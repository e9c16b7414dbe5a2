//! The `udt` program (work in progress: commands land next).

fn main() {}
