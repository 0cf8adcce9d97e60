//! `hermod`: the one binary (serve | pub | sub | bench).
fn main() {}
