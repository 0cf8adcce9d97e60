fn main() {
    afl::fuzz!(|data: &[u8]| hermod_fuzz::proxy(data));
}
