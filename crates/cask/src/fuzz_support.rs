//! The body of the `resp_parser` fuzz target (`fuzz/fuzz_targets/resp_parser.rs`), kept in
//! the library so that a stable `cargo test` replays its corpus through the same code
//! (`crates/cask/tests/fuzz_corpus.rs`). Not a stable API.
//!
//! Input: a flags byte (bit 0: the client is authenticated; bits 1-3 pick small protocol
//! limits so their checks are reached), a seed byte for the read boundaries, then the byte
//! stream a client sends. The stream is parsed twice: all at once, and as it would arrive
//! in reads of 1 to 16 bytes with the connection's loop (parse again only once the buffer
//! holds as many bytes as the last `Incomplete(n)` asked for). Both must yield the same
//! requests and the same final protocol error; every `Incomplete(n)` must ask for more than
//! the buffer holds, every consumed length must be within the buffer, and every argument
//! range within the consumed bytes. Streams are capped below the inline-line limit
//! (64 KiB), where whether a long line is refused depends on how much of it has arrived
//! (as in Redis).

use crate::config::Limits;
use crate::server::parse::{INLINE_MAX, Parsed, parse};

/// One parsed request (its arguments) or the protocol error that ended the stream.
type Event = Result<Vec<Vec<u8>>, String>;

/// Parses everything `buf` holds, checking the parser's invariants. Returns the requests
/// and the bytes consumed.
fn drain(buf: &[u8], limits: &Limits, auth: bool, events: &mut Vec<Event>) -> (usize, usize) {
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        match parse(rest, limits, auth) {
            Err(e) => {
                events.push(Err(e.0));
                return (pos, usize::MAX);
            }
            Ok(Parsed::Incomplete(n)) => {
                assert!(n > rest.len(), "Incomplete({n}) with {} bytes", rest.len());
                return (pos, pos + n);
            }
            Ok(Parsed::Multibulk(ranges, used)) => {
                assert!(used > 0 && used <= rest.len(), "bad consumed length {used}");
                let args = ranges
                    .into_iter()
                    .map(|r| {
                        assert!(r.start <= r.end && r.end <= used, "range {r:?} past {used}");
                        rest[r].to_vec()
                    })
                    .collect::<Vec<_>>();
                events.push(Ok(args));
                pos += used;
            }
            Ok(Parsed::Inline(args, used)) => {
                assert!(used > 0 && used <= rest.len(), "bad consumed length {used}");
                if !args.is_empty() {
                    events.push(Ok(args));
                }
                pos += used;
            }
        }
    }
}

/// Fuzz target `resp_parser`: see the module docs. Panics only on a violated invariant.
pub fn resp_parser(data: &[u8]) {
    let [flags, seed, stream @ ..] = data else {
        return;
    };
    let stream = &stream[..stream.len().min(INLINE_MAX - 1)];
    let auth = flags & 1 == 1;
    let limits = match (flags >> 1) & 7 {
        0 => Limits::default(),
        1 => Limits {
            max_bulk_len: 4,
            ..Limits::default()
        },
        2 => Limits {
            max_multibulk_len: 3,
            ..Limits::default()
        },
        n => Limits {
            max_bulk_len: u64::from(n) * 7,
            max_multibulk_len: u64::from(n),
            query_buffer_limit: 1024,
            ..Limits::default()
        },
    };
    // All at once.
    let mut whole = Vec::new();
    drain(stream, &limits, auth, &mut whole);
    // In reads of 1 to 16 bytes, as the connection's loop does it.
    let mut split = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut need = 1usize;
    let mut rng = u64::from(*seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut sent = 0;
    while sent < stream.len() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let n = ((rng % 16) as usize + 1).min(stream.len() - sent);
        buf.extend_from_slice(&stream[sent..sent + n]);
        sent += n;
        if buf.len() < need {
            continue;
        }
        let (used, next) = drain(&buf, &limits, auth, &mut split);
        if next == usize::MAX {
            break;
        }
        buf.drain(..used);
        need = next - used;
    }
    assert_eq!(
        whole, split,
        "parsing at read boundaries changed the requests"
    );
}
