//! Redis's DUMP payload format (an RDB-encoded value, the RDB version, a CRC-64), for DUMP
//! and RESTORE.
//!
//! [`dump`] writes the plain RDB types every Redis since 4.0 loads: strings (type 0),
//! lists (1), sets (2), hashes (4) and sorted sets with binary scores (5), strings
//! uncompressed, tagged RDB version 10 (Redis 7.0; 7.2 loads it too).
//!
//! [`restore`] reads those and what Redis 7.2 and older write: integer-encoded and
//! LZF-compressed strings, quicklists of ziplists or listpacks, intsets, ziplist and
//! listpack hashes, sets and sorted sets, sorted sets with text scores. Zipmaps (Redis 2.4),
//! streams and module types are refused as a bad format. The RDB version may be up to 11
//! (Redis 7.2); the CRC-64 (Jones, as Redis's `crc64`) must match.

use crc::{CRC_64_REDIS, Crc};

/// A value as DUMP carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A string.
    String(Vec<u8>),
    /// A list, head first.
    List(Vec<Vec<u8>>),
    /// A set's members.
    Set(Vec<Vec<u8>>),
    /// A hash's fields and values.
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    /// A sorted set's members and scores.
    Zset(Vec<(Vec<u8>, f64)>),
}

/// Why a payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdbError {
    /// The footer: too short, a newer RDB version, a wrong checksum.
    Footer,
    /// The value itself.
    Format,
}

/// The RDB version DUMP writes.
const DUMP_VERSION: u16 = 10;
/// The newest RDB version RESTORE reads (Redis 7.2).
const MAX_VERSION: u16 = 11;

const CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_REDIS);

const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_ZSET: u8 = 3;
const TYPE_HASH: u8 = 4;
const TYPE_ZSET_2: u8 = 5;
const TYPE_LIST_ZIPLIST: u8 = 10;
const TYPE_SET_INTSET: u8 = 11;
const TYPE_ZSET_ZIPLIST: u8 = 12;
const TYPE_HASH_ZIPLIST: u8 = 13;
const TYPE_LIST_QUICKLIST: u8 = 14;
const TYPE_HASH_LISTPACK: u8 = 16;
const TYPE_ZSET_LISTPACK: u8 = 17;
const TYPE_LIST_QUICKLIST_2: u8 = 18;
const TYPE_SET_LISTPACK: u8 = 20;

// ---------------------------------------------------------------------------------------
// Writing.

fn put_len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0x80);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The DUMP payload of `obj`.
pub fn dump(obj: &Object) -> Vec<u8> {
    let mut out = Vec::new();
    match obj {
        Object::String(s) => {
            out.push(TYPE_STRING);
            put_str(&mut out, s);
        }
        Object::List(items) | Object::Set(items) => {
            out.push(if matches!(obj, Object::List(_)) {
                TYPE_LIST
            } else {
                TYPE_SET
            });
            put_len(&mut out, items.len() as u64);
            for i in items {
                put_str(&mut out, i);
            }
        }
        Object::Hash(pairs) => {
            out.push(TYPE_HASH);
            put_len(&mut out, pairs.len() as u64);
            for (f, v) in pairs {
                put_str(&mut out, f);
                put_str(&mut out, v);
            }
        }
        Object::Zset(pairs) => {
            out.push(TYPE_ZSET_2);
            put_len(&mut out, pairs.len() as u64);
            for (m, s) in pairs {
                put_str(&mut out, m);
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
    }
    out.extend_from_slice(&DUMP_VERSION.to_le_bytes());
    let crc = CRC64.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

// ---------------------------------------------------------------------------------------
// Reading.

/// Checks the footer and decodes the value of a DUMP payload.
///
/// # Errors
/// [`RdbError::Footer`] for a short payload, a newer version or a wrong checksum;
/// [`RdbError::Format`] for anything malformed in the value.
pub fn restore(payload: &[u8]) -> Result<Object, RdbError> {
    if payload.len() < 10 {
        return Err(RdbError::Footer);
    }
    let (body, footer) = payload.split_at(payload.len() - 10);
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    if version > MAX_VERSION {
        return Err(RdbError::Footer);
    }
    let mut crc_bytes = [0u8; 8];
    crc_bytes.copy_from_slice(&footer[2..]);
    if CRC64.checksum(&payload[..payload.len() - 8]) != u64::from_le_bytes(crc_bytes) {
        return Err(RdbError::Footer);
    }
    let mut r = Reader { b: body };
    let obj = r.object()?;
    if !r.b.is_empty() {
        return Err(RdbError::Format);
    }
    Ok(obj)
}

struct Reader<'a> {
    b: &'a [u8],
}

/// A length, or one of the special string encodings.
enum Len {
    Plain(u64),
    Encoded(u8),
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RdbError> {
        if self.b.len() < n {
            return Err(RdbError::Format);
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, RdbError> {
        Ok(self.take(1)?[0])
    }

    fn raw_len(&mut self) -> Result<Len, RdbError> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => Len::Plain(u64::from(first & 0x3f)),
            1 => Len::Plain((u64::from(first & 0x3f) << 8) | u64::from(self.byte()?)),
            2 => match first {
                0x80 => {
                    let b = self.take(4)?;
                    Len::Plain(u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
                }
                0x81 => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(self.take(8)?);
                    Len::Plain(u64::from_be_bytes(a))
                }
                _ => return Err(RdbError::Format),
            },
            _ => Len::Encoded(first & 0x3f),
        })
    }

    fn len(&mut self) -> Result<u64, RdbError> {
        match self.raw_len()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(_) => Err(RdbError::Format),
        }
    }

    /// A count of items, bounded by what the payload could hold (each item takes at least
    /// one byte), so that a forged count cannot make us reserve memory.
    fn count(&mut self) -> Result<usize, RdbError> {
        let n = self.len()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.b.len())
            .ok_or(RdbError::Format)
    }

    fn string(&mut self) -> Result<Vec<u8>, RdbError> {
        match self.raw_len()? {
            Len::Plain(n) => {
                let n = usize::try_from(n).map_err(|_| RdbError::Format)?;
                Ok(self.take(n)?.to_vec())
            }
            Len::Encoded(0) => Ok((self.byte()? as i8).to_string().into_bytes()),
            Len::Encoded(1) => {
                let b = self.take(2)?;
                Ok(i16::from_le_bytes([b[0], b[1]]).to_string().into_bytes())
            }
            Len::Encoded(2) => {
                let b = self.take(4)?;
                Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]])
                    .to_string()
                    .into_bytes())
            }
            Len::Encoded(3) => {
                let clen = usize::try_from(self.len()?).map_err(|_| RdbError::Format)?;
                let len = usize::try_from(self.len()?).map_err(|_| RdbError::Format)?;
                let data = self.take(clen)?;
                lzf_decompress(data, len)
            }
            Len::Encoded(_) => Err(RdbError::Format),
        }
    }

    fn object(&mut self) -> Result<Object, RdbError> {
        let t = self.byte()?;
        Ok(match t {
            TYPE_STRING => Object::String(self.string()?),
            TYPE_LIST | TYPE_SET => {
                let n = self.count()?;
                let items = (0..n).map(|_| self.string()).collect::<Result<_, _>>()?;
                if t == TYPE_LIST {
                    Object::List(items)
                } else {
                    Object::Set(items)
                }
            }
            TYPE_HASH => {
                let n = self.count()?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    pairs.push((self.string()?, self.string()?));
                }
                Object::Hash(pairs)
            }
            TYPE_ZSET | TYPE_ZSET_2 => {
                let n = self.count()?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    let m = self.string()?;
                    let s = if t == TYPE_ZSET_2 {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(self.take(8)?);
                        f64::from_le_bytes(a)
                    } else {
                        self.text_double()?
                    };
                    if s.is_nan() {
                        return Err(RdbError::Format);
                    }
                    pairs.push((m, s));
                }
                Object::Zset(pairs)
            }
            TYPE_SET_INTSET => Object::Set(intset(&self.string()?)?),
            TYPE_LIST_ZIPLIST => Object::List(ziplist(&self.string()?)?),
            TYPE_LIST_QUICKLIST => {
                let n = self.count()?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.extend(ziplist(&self.string()?)?);
                }
                Object::List(items)
            }
            TYPE_LIST_QUICKLIST_2 => {
                let n = self.count()?;
                let mut items = Vec::new();
                for _ in 0..n {
                    match self.len()? {
                        // A plain node: one large element.
                        1 => items.push(self.string()?),
                        2 => items.extend(listpack(&self.string()?)?),
                        _ => return Err(RdbError::Format),
                    }
                }
                Object::List(items)
            }
            TYPE_HASH_ZIPLIST | TYPE_HASH_LISTPACK => {
                let flat = if t == TYPE_HASH_ZIPLIST {
                    ziplist(&self.string()?)?
                } else {
                    listpack(&self.string()?)?
                };
                Object::Hash(pairs(flat)?)
            }
            TYPE_ZSET_ZIPLIST | TYPE_ZSET_LISTPACK => {
                let flat = if t == TYPE_ZSET_ZIPLIST {
                    ziplist(&self.string()?)?
                } else {
                    listpack(&self.string()?)?
                };
                let mut out = Vec::with_capacity(flat.len() / 2);
                for (m, s) in pairs(flat)? {
                    let s = std::str::from_utf8(&s)
                        .ok()
                        .and_then(|s| s.parse::<f64>().ok())
                        .filter(|s| !s.is_nan())
                        .ok_or(RdbError::Format)?;
                    out.push((m, s));
                }
                Object::Zset(out)
            }
            TYPE_SET_LISTPACK => Object::Set(listpack(&self.string()?)?),
            _ => return Err(RdbError::Format),
        })
    }

    /// A score as text (type 3): a length byte, 253 NaN, 254 +inf, 255 -inf.
    fn text_double(&mut self) -> Result<f64, RdbError> {
        match self.byte()? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => std::str::from_utf8(self.take(usize::from(n))?)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(RdbError::Format),
        }
    }
}

/// Field and value pairs.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Splits a flat field, value, field, value... list into pairs.
fn pairs(flat: Vec<Vec<u8>>) -> Result<Pairs, RdbError> {
    if !flat.len().is_multiple_of(2) {
        return Err(RdbError::Format);
    }
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

fn le_int(b: &[u8]) -> i64 {
    // Sign-extends a little-endian integer of 1 to 8 bytes.
    let mut v: i64 = 0;
    for (i, &x) in b.iter().enumerate() {
        v |= i64::from(x) << (8 * i);
    }
    let bits = 8 * b.len() as u32;
    if bits < 64 {
        let shift = 64 - bits;
        v = (v << shift) >> shift;
    }
    v
}

/// The members of an intset: `encoding: u32` (2, 4 or 8), `length: u32`, values, all
/// little-endian.
fn intset(b: &[u8]) -> Result<Vec<Vec<u8>>, RdbError> {
    if b.len() < 8 {
        return Err(RdbError::Format);
    }
    let width = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let n = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    if !matches!(width, 2 | 4 | 8) || b.len() != 8 + width * n {
        return Err(RdbError::Format);
    }
    Ok(b[8..]
        .chunks(width)
        .map(|c| le_int(c).to_string().into_bytes())
        .collect())
}

/// The entries of a listpack: `total: u32`, `count: u16`, entries (encoding, data, back
/// length), `0xFF`.
fn listpack(b: &[u8]) -> Result<Vec<Vec<u8>>, RdbError> {
    let bad = RdbError::Format;
    if b.len() < 7 || u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize != b.len() {
        return Err(bad);
    }
    let mut p = 6;
    let mut out = Vec::new();
    loop {
        let &first = b.get(p).ok_or(bad)?;
        if first == 0xFF {
            break;
        }
        let need = |n: usize| b.get(p..p + n).ok_or(bad);
        // (header length, data length, the element)
        let (head, data, elem): (usize, usize, Vec<u8>) = if first & 0x80 == 0 {
            (1, 0, u64::from(first & 0x7f).to_string().into_bytes())
        } else if first & 0xC0 == 0x80 {
            let n = usize::from(first & 0x3f);
            (1, n, need(1 + n)?[1..].to_vec())
        } else if first & 0xE0 == 0xC0 {
            let h = need(2)?;
            let v = (i64::from(h[0] & 0x1f) << 8) | i64::from(h[1]);
            let v = if v >= 1 << 12 { v - (1 << 13) } else { v };
            (2, 0, v.to_string().into_bytes())
        } else if first & 0xF0 == 0xE0 {
            let h = need(2)?;
            let n = (usize::from(first & 0x0f) << 8) | usize::from(h[1]);
            (2, n, need(2 + n)?[2..].to_vec())
        } else {
            match first {
                0xF0 => {
                    let h = need(5)?;
                    let n = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
                    (5, n, need(5 + n)?[5..].to_vec())
                }
                0xF1..=0xF4 => {
                    let w = match first {
                        0xF1 => 2,
                        0xF2 => 3,
                        0xF3 => 4,
                        _ => 8,
                    };
                    (1, w, le_int(&need(1 + w)?[1..]).to_string().into_bytes())
                }
                _ => return Err(bad),
            }
        };
        let entry = head + data;
        let backlen = match entry {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2_097_150 => 3,
            2_097_151..=268_435_454 => 4,
            _ => 5,
        };
        p += entry + backlen;
        out.push(elem);
    }
    if p + 1 != b.len() {
        return Err(bad);
    }
    Ok(out)
}

/// The entries of a ziplist (Redis before 7): `bytes: u32`, `tail: u32`, `count: u16`,
/// entries (previous length, encoding, data), `0xFF`.
fn ziplist(b: &[u8]) -> Result<Vec<Vec<u8>>, RdbError> {
    let bad = RdbError::Format;
    if b.len() < 11 || u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize != b.len() {
        return Err(bad);
    }
    let mut p = 10;
    let mut out = Vec::new();
    loop {
        let &first = b.get(p).ok_or(bad)?;
        if first == 0xFF {
            break;
        }
        p += if first == 0xFE { 5 } else { 1 };
        let &enc = b.get(p).ok_or(bad)?;
        let need = |at: usize, n: usize| b.get(at..at + n).ok_or(bad);
        let (head, data, elem): (usize, usize, Vec<u8>) = match enc >> 6 {
            0 => {
                let n = usize::from(enc & 0x3f);
                (1, n, need(p + 1, n)?.to_vec())
            }
            1 => {
                let n = (usize::from(enc & 0x3f) << 8) | usize::from(need(p + 1, 1)?[0]);
                (2, n, need(p + 2, n)?.to_vec())
            }
            2 => {
                let h = need(p + 1, 4)?;
                let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                (5, n, need(p + 5, n)?.to_vec())
            }
            _ => {
                let w = match enc {
                    0xC0 => 2,
                    0xD0 => 4,
                    0xE0 => 8,
                    0xF0 => 3,
                    0xFE => 1,
                    0xF1..=0xFD => 0,
                    _ => return Err(bad),
                };
                let v = if w == 0 {
                    i64::from(enc & 0x0f) - 1
                } else {
                    le_int(need(p + 1, w)?)
                };
                (1, w, v.to_string().into_bytes())
            }
        };
        p += head + data;
        out.push(elem);
    }
    if p + 1 != b.len() {
        return Err(bad);
    }
    Ok(out)
}

/// LZF decompression (the format of liblzf, which Redis uses for RDB strings): literal
/// runs (`000LLLLL`, L+1 bytes) and back references (`LLLooooo oooooooo`, length L+2, or
/// `111ooooo LLLLLLLL oooooooo` for length L+9), to exactly `len` bytes.
fn lzf_decompress(input: &[u8], len: usize) -> Result<Vec<u8>, RdbError> {
    let bad = RdbError::Format;
    let mut out: Vec<u8> = Vec::with_capacity(len.min(input.len().saturating_mul(256)));
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let lit = input.get(i..i + run).ok_or(bad)?;
            out.extend_from_slice(lit);
            i += run;
        } else {
            let mut n = ctrl >> 5;
            if n == 7 {
                n += usize::from(*input.get(i).ok_or(bad)?);
                i += 1;
            }
            n += 2;
            let back = ((ctrl & 0x1f) << 8) + usize::from(*input.get(i).ok_or(bad)?) + 1;
            i += 1;
            let start = out.len().checked_sub(back).ok_or(bad)?;
            for k in 0..n {
                let b = out[start + k];
                out.push(b);
            }
        }
        if out.len() > len {
            return Err(bad);
        }
    }
    if out.len() != len {
        return Err(bad);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_round_trips() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        for obj in [
            Object::String(b"".to_vec()),
            Object::String(big.clone()),
            Object::List(vec![b"a".to_vec(), big.clone(), b"".to_vec()]),
            Object::Set((0..300).map(|i| format!("m{i}").into_bytes()).collect()),
            Object::Hash(vec![(b"f".to_vec(), b"v".to_vec()), (big, b"x".to_vec())]),
            Object::Zset(vec![
                (b"a".to_vec(), 1.5),
                (b"b".to_vec(), f64::NEG_INFINITY),
                (b"c".to_vec(), -0.0),
            ]),
        ] {
            assert_eq!(restore(&dump(&obj)).unwrap(), obj);
        }
    }

    #[test]
    fn a_damaged_payload_is_refused() {
        let p = dump(&Object::String(b"hello".to_vec()));
        for i in 0..p.len() {
            let mut bad = p.clone();
            bad[i] ^= 0x01;
            assert!(restore(&bad).is_err(), "byte {i}");
        }
        assert_eq!(restore(&p[..5]), Err(RdbError::Footer));
        // A newer RDB version.
        let mut v12 = p[..p.len() - 10].to_vec();
        v12.extend_from_slice(&12u16.to_le_bytes());
        let crc = CRC64.checksum(&v12);
        v12.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(restore(&v12), Err(RdbError::Footer));
    }

    #[test]
    fn ziplists_of_redis_before_7_decode() {
        // Entries: "ab", 7 (immediate), 300 (int16), -2 (int8), 100000 (int24), 70 bytes
        // (14-bit length); each after a 1-byte previous length.
        let long = vec![b'z'; 70];
        let mut entries = vec![
            0, 0x02, b'a', b'b', 4, 0xF8, 2, 0xC0, 0x2c, 0x01, 4, 0xFE, 0xFE,
        ];
        entries.extend_from_slice(&[3, 0xF0, 0xa0, 0x86, 0x01, 5, 0x40, 70]);
        entries.extend_from_slice(&long);
        let total = 10 + entries.len() + 1;
        let mut zl = (total as u32).to_le_bytes().to_vec();
        zl.extend_from_slice(&0u32.to_le_bytes());
        zl.extend_from_slice(&6u16.to_le_bytes());
        zl.extend_from_slice(&entries);
        zl.push(0xFF);
        let want: Vec<Vec<u8>> = vec![
            b"ab".to_vec(),
            b"7".to_vec(),
            b"300".to_vec(),
            b"-2".to_vec(),
            b"100000".to_vec(),
            long,
        ];
        assert_eq!(ziplist(&zl).unwrap(), want);
        // Cut short, or with a wrong total: refused.
        assert!(ziplist(&zl[..zl.len() - 1]).is_err());
        // As a list (type 10) inside a payload.
        let mut body = vec![TYPE_LIST_ZIPLIST];
        put_str(&mut body, &zl);
        body.extend_from_slice(&9u16.to_le_bytes());
        let crc = CRC64.checksum(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(restore(&body).unwrap(), Object::List(want));
    }

    #[test]
    fn lzf_back_references_expand() {
        // "abcabcabc": literal "abc" (ctrl 2), then a back reference of length 6 at
        // distance 3: ctrl (6-2)<<5 | 0, offset byte 2.
        let out = lzf_decompress(&[2, b'a', b'b', b'c', 4 << 5, 2], 9).unwrap();
        assert_eq!(out, b"abcabcabc");
        assert!(lzf_decompress(&[2, b'a', b'b', b'c', 4 << 5, 9], 9).is_err());
    }
}
