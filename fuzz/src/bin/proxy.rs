//! AFL++ entry point of the `proxy` target: each input goes to [`hermod_fuzz::proxy`].

fn main() {
    afl::fuzz!(|data: &[u8]| hermod_fuzz::proxy(data));
}
