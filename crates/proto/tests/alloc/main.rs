//! Allocation bounds of the decoder, measured with a counting global allocator (its own test
//! binary, so no other test pays for the counting). Lengths on the wire are untrusted: a declared
//! remaining length, property length, string length or count must never size an allocation.
//! What `decode_packet` allocates is bounded by a small multiple of the bytes actually buffered
//! (a decoded packet's strings and lists are copies of, and proportional to, its bytes).
#![allow(clippy::unwrap_used)]

#[path = "../codec/generators.rs"]
mod generators;
#[path = "../codec/mutate.rs"]
mod mutate;
#[path = "../codec/support.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use hermod_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::generators::version;
use crate::mutate::mutated_stream;
use crate::support::{fuzz_config, varint};

/// Limit for tests that are not about the maximum packet size (as in the `codec` binary).
pub(crate) const MAX: usize = 1 << 20;

/// Counts the bytes allocated by the current thread while tracking is on. Thread-local, so the
/// test harness's other threads do not disturb a measurement.
struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(delta: isize, size: usize) {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let live = LIVE.with(|l| {
                l.set(l.get() + delta);
                l.get()
            });
            PEAK.with(|p| p.set(p.get().max(live)));
            LARGEST.with(|m| m.set(m.get().max(size)));
        }
    });
}

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(signed(layout.size()), layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(signed(layout.size()), layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-signed(layout.size()), 0);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(signed(new_size) - signed(layout.size()), new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What one measured call allocated: the peak of live bytes and the largest single block.
#[derive(Debug, Clone, Copy)]
struct Usage {
    peak: usize,
    largest: usize,
}

fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    LARGEST.with(|m| m.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    let usage = Usage {
        peak: usize::try_from(PEAK.with(Cell::get)).unwrap_or(0),
        largest: LARGEST.with(Cell::get),
    };
    (r, usage)
}

/// The bound: a decoded packet's lists hold at most one element per few wire bytes (an empty
/// UNSUBSCRIBE filter is 2 bytes and a 24-byte `String`; `Vec` doubling makes that 24x), plus a
/// constant for the fixed-size parts (a boxed CONNECT, the frozen buffer's header).
fn bound(buffered: usize) -> usize {
    32 * buffered + 4096
}

/// Decodes `bytes` packet by packet, checking each call against the bound for what was
/// buffered at that call.
fn check_stream(bytes: &[u8], v: ProtocolVersion, max: usize) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let buffered = buf.len();
        let (r, usage) = measure(|| decode_packet(&mut buf, v, max));
        prop_assert!(
            usage.peak <= bound(buffered) && usage.largest <= bound(buffered),
            "{usage:?} decoding {buffered} buffered bytes: {r:?}"
        );
        // Drop outside the measurement.
        match r {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

/// An encoded packet whose body is only the start of what its lengths announce.
fn huge_claims() -> impl Strategy<Value = (ProtocolVersion, Vec<u8>)> {
    let v5_connect_props = |len: usize| {
        let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C];
        body.extend(varint(len)); // property length far beyond the packet
        body.extend([0x26, 0xFF, 0xFF, b'k']); // user property key of 65535 bytes
        body
    };
    prop_oneof![
        // Remaining length up to 268,435,455 with a few bytes present.
        (
            version(),
            1u8..15,
            0usize..=MAX_REMAINING_LENGTH,
            vec(any::<u8>(), 0..16)
        )
            .prop_map(|(v, kind, len, tail)| {
                let first = match kind {
                    3 => 0x30,
                    6 | 8 | 10 => (kind << 4) | 0x02,
                    k => k << 4,
                };
                let mut b = vec![first];
                b.extend(varint(len));
                b.extend(tail);
                (v, b)
            }),
        // A complete packet whose inner lengths overrun it.
        (1usize..=MAX_REMAINING_LENGTH).prop_map(move |len| {
            let body = v5_connect_props(len);
            (ProtocolVersion::V5, support::frame(0x10, &body))
        }),
        // String lengths of 65535 in a short PUBLISH, SUBSCRIBE, UNSUBSCRIBE.
        (
            version(),
            prop_oneof![Just(0x30u8), Just(0x82), Just(0xA2)],
            vec(any::<u8>(), 0..8)
        )
            .prop_map(|(v, first, tail)| {
                let mut body = if first == 0x30 {
                    vec![]
                } else {
                    vec![0x00, 0x01]
                };
                body.extend([0xFF, 0xFF]);
                body.extend(tail);
                (v, support::frame(first, &body))
            }),
    ]
}

proptest! {
    #![proptest_config(fuzz_config(1500, 0x4845_524D_4F44_0010))]

    /// Mutated streams of every packet type and version, with a generous limit.
    #[test]
    fn mutated_streams_allocate_in_proportion_to_their_bytes((v, bytes) in mutated_stream()) {
        check_stream(&bytes, v, MAX)?;
    }

    /// Declared lengths far beyond the bytes present: remaining length (awaited without any
    /// reservation, even with no size limit), property length and string lengths (refused).
    #[test]
    fn declared_lengths_never_size_an_allocation((v, bytes) in huge_claims()) {
        let mut buf = BytesMut::from(&bytes[..]);
        let capacity = buf.capacity();
        let (r, usage) = measure(|| decode_packet(&mut buf, v, usize::MAX));
        prop_assert!(usage.peak <= 4096 && usage.largest <= 4096, "{:?}: {:?}", usage, r);
        prop_assert!(buf.capacity() <= capacity, "the buffer was grown");
        if let Ok(Some(p)) = r {
            return Err(TestCaseError::fail(format!("decoded {p:?} from a packet that overruns")));
        }
    }
}

/// Calibration: the worst case the bound's comment names (many empty UNSUBSCRIBE filters and
/// many empty user properties) stays inside it, and the counter does see allocations.
#[test]
fn worst_case_lists_stay_inside_the_bound() {
    let mut filters = vec![0x00, 0x01];
    for _ in 0..20_000 {
        filters.extend([0x00, 0x00]);
    }
    let mut users = vec![0x00, 0x01];
    let mut props = Vec::new();
    for _ in 0..10_000 {
        props.extend([0x26, 0x00, 0x00, 0x00, 0x00]);
    }
    users.extend(varint(props.len()));
    users.extend(props);
    users.extend([0x00, 0x01, b'a']);
    for (v, bytes) in [
        (ProtocolVersion::V311, support::frame(0xA2, &filters)),
        (ProtocolVersion::V5, support::frame(0xA2, &users)),
    ] {
        let mut buf = BytesMut::from(&bytes[..]);
        let (r, usage) = measure(|| decode_packet(&mut buf, v, MAX));
        assert!(matches!(r, Ok(Some(Packet::Unsubscribe(_)))), "{r:?}");
        assert!(
            usage.peak > bytes.len(),
            "the counter sees the lists: {usage:?}"
        );
        assert!(
            usage.peak <= bound(bytes.len()),
            "{usage:?} for {} bytes",
            bytes.len()
        );
    }
}
