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
            Frame::Integer(n) => line_n(out, b':', *n),
            Frame::Bulk(b) => bulk(out, b),
            Frame::Null if resp3 => out.put_slice(b"_\r\n"),
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => {
                line_n(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(proto, out);
                }
            }
            Frame::Push(items) => {
                line_n(out, if resp3 { b'>' } else { b'*' }, items.len() as i64);
                for item in items {
                    item.encode(proto, out);
                }
            }
            Frame::Set(items) => {
                line_n(out, if resp3 { b'~' } else { b'*' }, items.len() as i64);
                for item in items {
                    item.encode(proto, out);
                }
            }
            Frame::Map(pairs) => {
                if resp3 {
                    line_n(out, b'%', pairs.len() as i64);
                } else {
                    line_n(out, b'*', 2 * pairs.len() as i64);
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Frame::Double(d) => {
                let text = format_d2string(*d);
                if resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    bulk(out, text.as_bytes());
                }
            }
            Frame::Verbatim(b) => {
                if resp3 {
                    line_n(out, b'=', b.len() as i64 + 4);
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
    line_n(out, b'$', b.len() as i64);
    out.reserve(b.len() + 2);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// A line holding the integer `n` (lengths, counts, integer replies), formatted without
/// allocating.
fn line_n(out: &mut BytesMut, tag: u8, n: i64) {
    line(out, tag, itoa::Buffer::new().format(n).as_bytes());
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

/// Formats a double the way Redis 7.2 replies with one (`addReplyDouble`, `d2string`):
/// `inf`, `-inf`, `nan`, `-0`; integers up to 2^62 in plain digits; otherwise the shortest
/// digits that read back to the same value, laid out as Redis's `fpconv_dtoa` does (`1.5`,
/// `0.0001`, `1e+20`, `1.5e-7`). Used for [`Frame::Double`] (sorted-set scores).
pub fn format_d2string(d: f64) -> String {
    if d.is_nan() {
        return "nan".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    const LIM: f64 = (i64::MAX / 2) as f64;
    if (-LIM..=LIM).contains(&d) && d.fract() == 0.0 {
        return (d as i64).to_string();
    }
    // Shortest round-trip digits and the decimal exponent of the first one.
    let sci = format!("{:e}", d.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let n = digits.len() as i32;
    let k = exp - (n - 1); // exponent of the last digit
    let mut out = String::with_capacity(24);
    if d < 0.0 {
        out.push('-');
    }
    if k >= 0 && exp.abs() < n + 7 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', k as usize));
    } else if k < 0 && (k > -7 || exp.abs() < 4) {
        let offset = n + k;
        if offset <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-offset) as usize));
            out.push_str(&digits);
        } else {
            out.push_str(&digits[..offset as usize]);
            out.push('.');
            out.push_str(&digits[offset as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&exp.abs().to_string());
    }
    out
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
    fn doubles_format_like_redis() {
        let cases = [
            (1.5, "1.5"),
            (3.0, "3"),
            (-3.0, "-3"),
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-7"),
            (1e20, "1e+20"),
            (1.5e20, "1.5e+20"),
            (1e100, "1e+100"),
            (-2.5e-300, "-2.5e-300"),
            (123.456, "123.456"),
            (4611686018427387904.0, "4611686018427387904"),
            (9_223_372_036_854_775_808.0, "9223372036854776000"),
            (123456789.51234567, "1.2345678951234567e+8"),
            (1234567.5, "1234567.5"),
            (3.0e-5, "0.00003"),
        ];
        for (d, want) in cases {
            assert_eq!(format_d2string(d), want, "{d:e}");
            if d.is_finite() {
                assert_eq!(want.parse::<f64>().unwrap(), d);
            }
        }
    }

    #[test]
    fn errors_never_contain_newlines() {
        assert_eq!(enc(&Frame::error("ERR a\r\nb"), 2), b"-ERR a  b\r\n");
    }
}
