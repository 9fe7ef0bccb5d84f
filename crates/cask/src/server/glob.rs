//! Glob-style pattern matching with the semantics of Redis's `stringmatchlen`, used by
//! KEYS and SCAN MATCH: `*` any run, `?` one byte, `[abc]`, `[^abc]`, `[a-z]` classes,
//! `\x` a literal `x`. Works on bytes, not characters.

/// Whether `s` matches the glob `pattern`.
pub fn matches(pattern: &[u8], s: &[u8]) -> bool {
    // Bound the backtracking the way Redis does since 7.0: patterns with many stars cost at
    // most (stars x len) steps because a failed tail match after a star is final.
    let mut skip_longer = false;
    match_inner(pattern, s, &mut skip_longer, 0)
}

fn match_inner(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, depth: usize) -> bool {
    if depth > 1000 {
        return false;
    }
    while let Some(&pc) = p.first() {
        match pc {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                loop {
                    if match_inner(&p[1..], s, skip_longer, depth + 1) {
                        return true;
                    }
                    if *skip_longer || s.is_empty() {
                        // Nothing after the star matched anything shorter: no hope.
                        *skip_longer = true;
                        return false;
                    }
                    s = &s[1..];
                }
            }
            b'?' => {
                if s.is_empty() {
                    return false;
                }
                s = &s[1..];
                p = &p[1..];
            }
            b'[' => {
                let Some(&c) = s.first() else { return false };
                p = &p[1..];
                let not = p.first() == Some(&b'^');
                if not {
                    p = &p[1..];
                }
                let mut hit = false;
                loop {
                    match p {
                        [] => break,
                        [b'\\', lit, ..] => {
                            if *lit == c {
                                hit = true;
                            }
                            p = &p[2..];
                        }
                        [b']', ..] => break,
                        [lo, b'-', hi, ..] if *hi != b']' || p.len() > 3 => {
                            let (a, b) = if lo <= hi { (*lo, *hi) } else { (*hi, *lo) };
                            if c >= a && c <= b {
                                hit = true;
                            }
                            p = &p[3..];
                        }
                        [x, ..] => {
                            if *x == c {
                                hit = true;
                            }
                            p = &p[1..];
                        }
                    }
                }
                if not {
                    hit = !hit;
                }
                if !hit {
                    return false;
                }
                s = &s[1..];
                // Skip the closing bracket; an unclosed class ends the pattern.
                if !p.is_empty() {
                    p = &p[1..];
                }
            }
            b'\\' if p.len() >= 2 => {
                if s.first() != Some(&p[1]) {
                    return false;
                }
                s = &s[1..];
                p = &p[2..];
            }
            _ => {
                if s.first() != Some(&pc) {
                    return false;
                }
                s = &s[1..];
                p = &p[1..];
            }
        }
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            return p.is_empty();
        }
    }
    s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_semantics() {
        let yes = [
            ("*", ""),
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("a\\*b", "a*b"),
            ("key:*", "key:1"),
            ("*:*:*", "a:b:c"),
            ("[\\]]", "]"),
            ("foo*", "foo"),
        ];
        let no = [
            ("h?llo", "hllo"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("a\\*b", "axb"),
            ("key:*", "key"),
            ("", "x"),
            ("x", ""),
            ("a*b", "acbd"),
        ];
        for (p, s) in yes {
            assert!(matches(p.as_bytes(), s.as_bytes()), "{p} should match {s}");
        }
        for (p, s) in no {
            assert!(
                !matches(p.as_bytes(), s.as_bytes()),
                "{p} should not match {s}"
            );
        }
    }

    #[test]
    fn pathological_patterns_finish() {
        let p = "a*".repeat(50) + "b";
        let s = "a".repeat(100);
        assert!(!matches(p.as_bytes(), s.as_bytes()));
    }
}
