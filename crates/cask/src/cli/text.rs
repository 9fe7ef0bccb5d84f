//! Bytes as text: how listings show keys and values, and how the REPL reads arguments.
//!
//! [`escape`] and [`tokenize`] are inverses for a single token: `tokenize("\"" +
//! escape(b) + "\"")` gives back `b` for any bytes `b`, so what `scan` and the REPL print can
//! be typed back in.

use std::fmt::Write as _;

/// Shows bytes as one printable line: valid UTF-8 text stays as it is, except that `\` and
/// `"` get a backslash, tab, newline and carriage return become `\t`, `\n`, `\r`, and any other control
/// character or byte that is not valid UTF-8 becomes `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Splits a command line into arguments.
///
/// - Arguments are separated by spaces or tabs.
/// - `"double quotes"` group words; inside them and outside quotes, backslash escapes are
///   `\\`, `\"`, `\'`, `\n`, `\r`, `\t`, `\0`, `\ ` (a space) and `\xNN` (any byte).
/// - `'single quotes'` are literal, except `\'` for a quote and `\\` for a backslash.
/// - Adjacent pieces join: `a"b c"` is the one argument `ab c`; `""` is an empty argument.
///
/// # Errors
/// An unterminated quote, an unknown escape or a bad `\xNN`, as a message for the user.
pub fn tokenize(line: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && matches!(line[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        while i < line.len() && !matches!(line[i], b' ' | b'\t' | b'\r' | b'\n') {
            match line[i] {
                b'"' => {
                    i += 1;
                    loop {
                        match line.get(i) {
                            None => return Err("unterminated double quote".into()),
                            Some(b'"') => break,
                            Some(b'\\') => i = unescape(line, i, &mut arg)?,
                            Some(&b) => {
                                arg.push(b);
                                i += 1;
                            }
                        }
                    }
                    i += 1;
                }
                b'\'' => {
                    i += 1;
                    loop {
                        match (line.get(i), line.get(i + 1)) {
                            (None, _) => return Err("unterminated single quote".into()),
                            (Some(b'\''), _) => break,
                            (Some(b'\\'), Some(&q @ (b'\'' | b'\\'))) => {
                                arg.push(q);
                                i += 2;
                            }
                            (Some(&b), _) => {
                                arg.push(b);
                                i += 1;
                            }
                        }
                    }
                    i += 1;
                }
                b'\\' => i = unescape(line, i, &mut arg)?,
                b => {
                    arg.push(b);
                    i += 1;
                }
            }
        }
        args.push(arg);
    }
}

/// Decodes the escape that starts with the backslash at `line[i]` into `out`; returns the
/// index after it.
fn unescape(line: &[u8], i: usize, out: &mut Vec<u8>) -> Result<usize, String> {
    let Some(&c) = line.get(i + 1) else {
        return Err("backslash at end of line".into());
    };
    let byte = match c {
        b'\\' | b'"' | b'\'' | b' ' => c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'0' => 0,
        b'x' => {
            let hex = line
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("\\x must be followed by two hex digits")?;
            out.push(hex);
            return Ok(i + 4);
        }
        other => {
            return Err(format!(
                "unknown escape \\{}",
                escape(&[other]).trim_start_matches('\\')
            ));
        }
    };
    out.push(byte);
    Ok(i + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> Vec<Vec<u8>> {
        tokenize(s.as_bytes()).unwrap()
    }

    #[test]
    fn splits_and_quotes() {
        assert_eq!(
            tok("  set a  b "),
            vec![b"set".to_vec(), b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            tok(r#"set "a b" 'c d'"#)[1..],
            [b"a b".to_vec(), b"c d".to_vec()]
        );
        assert_eq!(tok(r#"x"y z"w"#), vec![b"xy zw".to_vec()]);
        assert_eq!(tok(r#""" ''"#), vec![Vec::<u8>::new(), Vec::new()]);
        assert_eq!(tok(""), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn escapes() {
        assert_eq!(
            tok(r#""\x00\xff\n\t\"\\""#),
            vec![b"\x00\xff\n\t\"\\".to_vec()]
        );
        assert_eq!(tok(r"a\ b"), vec![b"a b".to_vec()]);
        assert_eq!(tok(r"'it\'s \n'"), vec![b"it's \\n".to_vec()]);
    }

    #[test]
    fn errors() {
        assert!(
            tokenize(br#"get "abc"#)
                .unwrap_err()
                .contains("double quote")
        );
        assert!(tokenize(b"get 'abc").unwrap_err().contains("single quote"));
        assert!(tokenize(br"get \xg1").unwrap_err().contains("hex"));
        assert!(
            tokenize(br"get \q")
                .unwrap_err()
                .contains("unknown escape \\q")
        );
        assert!(tokenize(b"get \\").is_err());
    }

    #[test]
    fn escape_round_trips() {
        let samples: [&[u8]; 5] = [
            b"plain",
            b"tab\there",
            b"\x00\xff\xfe",
            "h\u{e9}\u{85}".as_bytes(),
            b"\\x41 \"q\"",
        ];
        for s in samples {
            let e = escape(s);
            assert!(e.chars().all(|c| !c.is_control()), "{e:?}");
            let line = format!("\"{e}\"");
            assert_eq!(tokenize(line.as_bytes()).unwrap(), vec![s.to_vec()], "{e}");
        }
        assert_eq!(escape(b"a\tb\x01\xff"), r"a\tb\x01\xff");
    }
}
