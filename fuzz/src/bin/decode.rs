//! AFL++ entry point of the `decode` target: each input goes to [`hermod_fuzz::decode`].

fn main() {
    afl::fuzz!(|data: &[u8]| hermod_fuzz::decode(data));
}
