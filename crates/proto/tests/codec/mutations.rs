//! Mutated streams of valid packets: whatever comes out of the mutations, decoding must not
//! panic, must answer a failure with a DecodeError whose reason code the server can send, and
//! must accept only what encodes again to the same packet.

use proptest::prelude::*;

use crate::MAX;
use crate::generators::version;
use crate::mutate::{check_decode, mutated_stream};

proptest! {
    #![proptest_config(crate::fuzz_config(4000, 0x4845_524D_4F44_0002))]

    /// Mutated streams of valid packets, decoded with the version they were written in and a
    /// generous limit: no panic, errors carry a reason code, accepted packets re-encode exactly.
    #[test]
    fn mutated_streams_decode_or_fail_cleanly((v, bytes) in mutated_stream()) {
        check_decode(&bytes, v, MAX)?;
    }

    /// The same with a small maximum packet size and a version other than the writer's (a v5
    /// stream read as 3.1.1 reaches the v3 parsers with v5 bodies, and the reverse).
    #[test]
    fn mutated_streams_other_version_small_limit(
        (v, bytes) in mutated_stream(),
        reader in version(),
        max in 0usize..200,
    ) {
        let _ = v;
        check_decode(&bytes, reader, max)?;
    }
}
