//! Request parsing: RESP multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands
//! (`PING\r\n`, as typed in telnet or sent by redis-benchmark's `PING_INLINE`).
//!
//! The parser looks at the buffered bytes without consuming them and reports either a whole
//! request (with the number of bytes it used), or how many bytes it needs at least before it
//! is worth looking again, or a protocol error with Redis's exact wording. Every length is
//! checked against [`Limits`] before anything is allocated for it; a bulk body is never
//! copied, only located (the connection slices it out of the frozen buffer).

use std::ops::Range;

use crate::config::Limits;

/// Longest inline request or length line, like Redis's `PROTO_INLINE_MAX_SIZE`.
pub const INLINE_MAX: usize = 64 * 1024;

/// Unauthenticated clients may send at most this many arguments (as in Redis).
const UNAUTH_MAX_MULTIBULK: i64 = 10;
/// Unauthenticated clients may send bulk strings of at most this size (as in Redis).
const UNAUTH_MAX_BULK: i64 = 16 * 1024;

/// What [`parse`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole multibulk request: argument ranges in the buffer, and bytes consumed.
    Multibulk(Vec<Range<usize>>, usize),
    /// A whole inline request: its (unescaped) arguments, and bytes consumed. Empty
    /// arguments mean an empty line, which is skipped.
    Inline(Vec<Vec<u8>>, usize),
    /// Not enough bytes yet; do not parse again before the buffer holds this many.
    Incomplete(usize),
}

/// A malformed request. The message follows `-ERR ` in the reply; the connection is then
/// closed, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn perr(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

/// Parses the request at the front of `buf`.
///
/// # Errors
/// A [`ProtocolError`] with Redis's wording when the input is malformed or over a limit.
pub fn parse(buf: &[u8], limits: &Limits, authenticated: bool) -> Result<Parsed, ProtocolError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete(1)),
        Some(b'*') => parse_multibulk(buf, limits, authenticated),
        Some(_) => parse_inline(buf),
    }
}

fn parse_inline(buf: &[u8]) -> Result<Parsed, ProtocolError> {
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() > INLINE_MAX {
            return Err(perr("too big inline request"));
        }
        return Ok(Parsed::Incomplete(buf.len() + 1));
    };
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let args = split_args(line).ok_or_else(|| perr("unbalanced quotes in request"))?;
    Ok(Parsed::Inline(args, nl + 1))
}

fn parse_multibulk(
    buf: &[u8],
    limits: &Limits,
    authenticated: bool,
) -> Result<Parsed, ProtocolError> {
    let Some((count, mut pos)) = read_line_number(buf, 1) else {
        if buf.len() > INLINE_MAX {
            return Err(perr("too big mbulk count string"));
        }
        return Ok(Parsed::Incomplete(buf.len() + 1));
    };
    let count = match count {
        Some(n) if n <= i64::from(i32::MAX) && n <= limits.max_multibulk_len as i64 => n,
        _ => return Err(perr("invalid multibulk length")),
    };
    if !authenticated && count > UNAUTH_MAX_MULTIBULK {
        return Err(perr("unauthenticated multibulk length"));
    }
    if count <= 0 {
        return Ok(Parsed::Multibulk(Vec::new(), pos));
    }
    // Never trust the count for the allocation: grow as arguments actually arrive.
    let mut args = Vec::with_capacity((count as usize).min(1024));
    for _ in 0..count {
        let Some(&first) = buf.get(pos) else {
            return Ok(Parsed::Incomplete(pos + 1));
        };
        if first != b'$' {
            return Err(perr(format!("expected '$', got '{}'", char::from(first))));
        }
        let Some((len, body)) = read_line_number(buf, pos + 1) else {
            if buf.len() - pos > INLINE_MAX {
                return Err(perr("too big bulk count string"));
            }
            return Ok(Parsed::Incomplete(buf.len() + 1));
        };
        let len = match len {
            Some(n) if n >= 0 && (n as u64) <= limits.max_bulk_len => n,
            _ => return Err(perr("invalid bulk length")),
        };
        if !authenticated && len > UNAUTH_MAX_BULK {
            return Err(perr("unauthenticated bulk length"));
        }
        let end = body.saturating_add(len as usize);
        let next = end.saturating_add(2);
        if buf.len() < next {
            return Ok(Parsed::Incomplete(next));
        }
        args.push(body..end);
        pos = next;
    }
    Ok(Parsed::Multibulk(args, pos))
}

/// Reads the number on the line starting at `start`, which ends with `\r` and one more byte
/// (the `\n`, not checked, as in Redis). Returns `None` if the line is not complete yet, else
/// the number (`None` if it is not a valid integer) and the offset after the line.
fn read_line_number(buf: &[u8], start: usize) -> Option<(Option<i64>, usize)> {
    let rest = buf.get(start..)?;
    let cr = memchr(b'\r', rest)?;
    if start + cr + 2 > buf.len() {
        return None;
    }
    Some((parse_i64(&rest[..cr]), start + cr + 2))
}

/// Parses a strict decimal integer the way Redis's `string2ll` does: optional minus sign,
/// no plus sign, no spaces, no leading zeros, no overflow.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(digit)?
        } else {
            v.checked_add(digit)?
        };
    }
    Some(v)
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Splits an inline command line into arguments like Redis's `sdssplitargs`: spaces
/// separate, `"..."` supports `\n \r \t \b \a \\ \"` and `\xHH`, `'...'` supports `\'`.
/// A closing quote must be followed by a space or the end. `None` on unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                let c = *line.get(i)?;
                if c == b'\\' && line.get(i + 1) == Some(&b'x') {
                    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                    if let (Some(h), Some(l)) = (hex(line.get(i + 2)), hex(line.get(i + 3))) {
                        cur.push((h * 16 + l) as u8);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < line.len() {
                    cur.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                    continue;
                }
                if c == b'"' {
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return None;
                    }
                    i += 1;
                    break;
                }
                cur.push(c);
                i += 1;
            } else if in_sq {
                let c = *line.get(i)?;
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    cur.push(b'\'');
                    i += 2;
                    continue;
                }
                if c == b'\'' {
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return None;
                    }
                    i += 1;
                    break;
                }
                cur.push(c);
                i += 1;
            } else {
                match line.get(i) {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(&c) => cur.push(c),
                }
                i += 1;
            }
        }
        args.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(buf: &[u8]) -> Result<Parsed, ProtocolError> {
        parse(buf, &Limits::default(), true)
    }

    #[test]
    fn multibulk_is_parsed_at_once_and_incrementally() {
        let req = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        assert_eq!(
            p(req),
            Ok(Parsed::Multibulk(vec![8..11, 17..18], req.len()))
        );
        for cut in 0..req.len() {
            assert!(
                matches!(p(&req[..cut]), Ok(Parsed::Incomplete(n)) if n > cut),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn malformed_multibulk_gets_redis_errors() {
        let err = |b: &[u8]| p(b).unwrap_err().0;
        assert_eq!(err(b"*3000000000\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*x\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*1\r\nfoo\r\n"), "expected '$', got 'f'");
        assert_eq!(err(b"*1\r\n$-10\r\n"), "invalid bulk length");
        assert_eq!(err(b"*1\r\n$2000000000\r\n"), "invalid bulk length");
        assert_eq!(err(b"*1\r\n$blabla\r\n"), "invalid bulk length");
        assert_eq!(err(&[b'*'; INLINE_MAX + 2]), "too big mbulk count string");
        assert_eq!(err(&[b'x'; INLINE_MAX + 2]), "too big inline request");
        let unauth = parse(b"*11\r\n", &Limits::default(), false).unwrap_err();
        assert_eq!(unauth.0, "unauthenticated multibulk length");
    }

    #[test]
    fn empty_and_negative_counts_are_empty_requests() {
        assert_eq!(p(b"*0\r\n"), Ok(Parsed::Multibulk(vec![], 4)));
        assert_eq!(p(b"*-10\r\n"), Ok(Parsed::Multibulk(vec![], 6)));
    }

    #[test]
    fn inline_splits_like_sdssplitargs() {
        assert_eq!(
            p(b"set \"a b\" 'c\\'d' \"\\x41\\n\"\r\n"),
            Ok(Parsed::Inline(
                vec![
                    b"set".to_vec(),
                    b"a b".to_vec(),
                    b"c'd".to_vec(),
                    b"A\n".to_vec()
                ],
                27
            ))
        );
        assert_eq!(p(b"\r\n"), Ok(Parsed::Inline(vec![], 2)));
        assert_eq!(
            p(b"set \"\"\"test-key\"\"\" v\r\n").unwrap_err().0,
            "unbalanced quotes in request"
        );
        assert_eq!(
            p(b"ping \"x\r\n").unwrap_err().0,
            "unbalanced quotes in request"
        );
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [&b"01"[..], b"+1", b" 1", b"1 ", b"", b"-", b"-0", b"1a"] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }
}
