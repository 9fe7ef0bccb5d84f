//! Reply frames and their encoding in RESP2 or RESP3.
//!
//! Requests are parsed by [`super::parse`] straight into argument vectors; this module only
//! describes what the server sends back. A [`Frame`] is protocol-neutral: the same value
//! encodes as a flat array in RESP2 and as a map in RESP3, as `$-1` or `_` for a null.

use bytes::{BufMut, Bytes, BytesMut};

/// One reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`: the text after the dash, prefix included.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nfoo`.
    Bulk(Bytes),
    /// The null bulk string (RESP2 `$-1`, RESP3 `_`).
    Null,
    /// The null array (RESP2 `*-1`, RESP3 `_`).
    NullArray,
    /// `*N`.
    Array(Vec<Frame>),
    /// RESP3 `%N`; a flat array of keys and values in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~N`; an array in RESP2.
    Set(Vec<Frame>),
    /// RESP3 `,1.5`; a bulk string in RESP2.
    Double(f64),
    /// RESP3 `=N\r\ntxt:...`; a bulk string in RESP2.
    Verbatim(Bytes),
    /// RESP3 out-of-band push `>N` (pub/sub messages); an array in RESP2.
    Push(Vec<Frame>),
}

impl Frame {
    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    /// An error reply: `msg` must start with its code (`ERR`, `WRONGTYPE`, ...).
    pub fn error(msg: impl Into<String>) -> Frame {
        Frame::Error(msg.into())
    }

    /// A bulk string from anything byte-like.
    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// A bulk string or null.
    pub fn bulk_or_null(b: Option<Vec<u8>>) -> Frame {
        match b {
            Some(b) => Frame::Bulk(b.into()),
            None => Frame::Null,
        }
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// Appends the encoding of this frame for protocol version `proto` (2 or 3).
    pub fn encode(&self, proto: u8, out: &mut BytesMut) {
        let resp3 = proto >= 3;
        match self {
            Frame::Simple(s) => line(out, b'+', s.as_bytes()),
            Frame::Error(s) => {
                // A newline inside an error would desync the client: never send one.
                let clean: String = s
                    .chars()
                    .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                    .collect();
                line(out, b'-', clean.as_bytes());
            }
            Frame::Integer(n) => line(out, b':', itoa(*n).as_bytes()),
            Frame::Bulk(b) => bulk(out, b),
            Frame::Null if resp3 => out.put_slice(b"_\r\n"),
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => {
                line(out, b'*', itoa(items.len() as i64).as_bytes());
                for item in items {
                    item.encode(proto, out);
                }
            }
            Frame::Push(items) => {
                line(
                    out,
                    if resp3 { b'>' } else { b'*' },
                    itoa(items.len() as i64).as_bytes(),
                );
                for item in items {
                    item.encode(proto, out);
                }
            }
            Frame::Set(items) => {
                line(
                    out,
                    if resp3 { b'~' } else { b'*' },
                    itoa(items.len() as i64).as_bytes(),
                );
                for item in items {
                    item.encode(proto, out);
                }
            }
            Frame::Map(pairs) => {
                if resp3 {
                    line(out, b'%', itoa(pairs.len() as i64).as_bytes());
                } else {
                    line(out, b'*', itoa(2 * pairs.len() as i64).as_bytes());
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Frame::Double(d) => {
                let text = format_double(*d);
                if resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    bulk(out, text.as_bytes());
                }
            }
            Frame::Verbatim(b) => {
                if resp3 {
                    line(out, b'=', itoa(b.len() as i64 + 4).as_bytes());
                    out.put_slice(b"txt:");
                    out.put_slice(b);
                    out.put_slice(b"\r\n");
                } else {
                    bulk(out, b);
                }
            }
        }
    }
}

fn line(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(tag);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, b: &[u8]) {
    line(out, b'$', itoa(b.len() as i64).as_bytes());
    out.reserve(b.len() + 2);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

fn itoa(n: i64) -> String {
    n.to_string()
}

/// Formats a double the way Redis replies with one: `inf`, `-inf`, `nan`, else the shortest
/// representation that reads back to the same value.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: &Frame, proto: u8) -> Vec<u8> {
        let mut out = BytesMut::new();
        f.encode(proto, &mut out);
        out.to_vec()
    }

    #[test]
    fn nulls_and_maps_depend_on_protocol() {
        assert_eq!(enc(&Frame::Null, 2), b"$-1\r\n");
        assert_eq!(enc(&Frame::Null, 3), b"_\r\n");
        assert_eq!(enc(&Frame::NullArray, 2), b"*-1\r\n");
        let m = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))]);
        assert_eq!(enc(&m, 2), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&m, 3), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Frame::Double(1.5), 3), b",1.5\r\n");
        assert_eq!(enc(&Frame::Double(1.5), 2), b"$3\r\n1.5\r\n");
        let p = Frame::Push(vec![Frame::bulk("a")]);
        assert_eq!(enc(&p, 3), b">1\r\n$1\r\na\r\n");
        assert_eq!(enc(&p, 2), b"*1\r\n$1\r\na\r\n");
    }

    #[test]
    fn errors_never_contain_newlines() {
        assert_eq!(enc(&Frame::error("ERR a\r\nb"), 2), b"-ERR a  b\r\n");
    }
}
