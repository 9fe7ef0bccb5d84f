//! The record format: how one log entry is laid out on disk.
//!
//! ```text
//! offset size field
//!      0    4 crc32c   CRC32C (Castagnoli) of bytes 4..end of record
//!      4    8 seq      sequence number (the key's version), little-endian
//!     12    8 expire   expiry, ms since the Unix epoch; 0 = never
//!     20    1 kind     1 put, 2 delete, 3 batch put, 4 batch delete, 5 batch commit,
//!                      6 durability mark
//!     21    4 key_len  little-endian
//!     25    4 val_len  little-endian
//!     29    … key bytes, then value bytes
//! ```
//!
//! A batch is written as its operations (kinds 3 and 4, all carrying the batch's sequence
//! number) followed by one commit record (kind 5, empty key, a 4-byte little-endian operation
//! count as its value). Recovery applies batch operations only when their commit follows, so
//! a batch is all or nothing across a crash.
//!
//! A durability mark (kind 6, sequence number 0, empty key, an 8-byte little-endian value)
//! records how many bytes of its segment an fsync had made durable before the mark was
//! written. Recovery uses it to tell a write torn by a power loss (nothing after it was
//! ever durable) from damage to acknowledged data. See docs/FORMAT.md.

/// Size of the fixed record header.
pub const HEADER_LEN: usize = 29;

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Sets a key.
    Put = 1,
    /// Deletes a key (a tombstone).
    Delete = 2,
    /// Sets a key as part of a batch.
    BatchPut = 3,
    /// Deletes a key as part of a batch.
    BatchDelete = 4,
    /// Commits the batch operations just before it.
    BatchCommit = 5,
    /// Records how much of its segment was durable when it was written.
    Mark = 6,
}

impl Kind {
    /// Decodes a kind byte.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Put,
            2 => Kind::Delete,
            3 => Kind::BatchPut,
            4 => Kind::BatchDelete,
            5 => Kind::BatchCommit,
            6 => Kind::Mark,
            _ => return None,
        })
    }

    /// Whether this record sets a value (as opposed to deleting or committing).
    pub fn is_put(self) -> bool {
        matches!(self, Kind::Put | Kind::BatchPut)
    }

    /// Whether this record is a tombstone.
    pub fn is_delete(self) -> bool {
        matches!(self, Kind::Delete | Kind::BatchDelete)
    }

    /// Whether this record belongs to an uncommitted batch until a commit follows.
    pub fn in_batch(self) -> bool {
        matches!(self, Kind::BatchPut | Kind::BatchDelete)
    }
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Stored checksum.
    pub crc: u32,
    /// Sequence number.
    pub seq: u64,
    /// Expiry in ms since the epoch, 0 for none.
    pub expire: u64,
    /// Record kind.
    pub kind: Kind,
    /// Key length.
    pub key_len: u32,
    /// Value length.
    pub value_len: u32,
}

impl Header {
    /// Total length of the record this header starts.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + self.key_len as u64 + self.value_len as u64
    }

    /// What is wrong with the lengths of a record of this kind, if anything: a batch commit
    /// has an empty key and a 4-byte value, a durability mark an empty key and an 8-byte one.
    pub fn malformed(&self) -> Option<&'static str> {
        match self.kind {
            Kind::BatchCommit if self.key_len != 0 || self.value_len != 4 => {
                Some("malformed batch commit record")
            }
            Kind::Mark if self.key_len != 0 || self.value_len != 8 => {
                Some("malformed durability mark")
            }
            _ => None,
        }
    }

    /// Decodes a header; `Err` names what is malformed.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, &'static str> {
        let kind = Kind::from_u8(b[20]).ok_or("unknown record kind")?;
        Ok(Header {
            crc: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            seq: u64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
            expire: u64::from_le_bytes(b[12..20].try_into().expect("8 bytes")),
            kind,
            key_len: u32::from_le_bytes(b[21..25].try_into().expect("4 bytes")),
            value_len: u32::from_le_bytes(b[25..29].try_into().expect("4 bytes")),
        })
    }
}

/// Appends one encoded record to `out`.
pub fn encode(out: &mut Vec<u8>, seq: u64, expire: u64, kind: Kind, key: &[u8], value: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&expire.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The encoded length of a durability mark.
pub const MARK_LEN: usize = HEADER_LEN + 8;

/// Appends a durability mark saying that the first `durable` bytes of its segment were on
/// stable storage before it was written.
pub fn encode_mark(out: &mut Vec<u8>, durable: u64) {
    out.extend_from_slice(&mark(durable));
}

/// A durability mark as bytes, without allocating (it goes out on the write path).
pub fn mark(durable: u64) -> [u8; MARK_LEN] {
    let mut m = [0u8; MARK_LEN];
    // seq 0 and expiry 0 (bytes 4..20) stay zero; the key is empty.
    m[20] = Kind::Mark as u8;
    m[25..29].copy_from_slice(&8u32.to_le_bytes());
    m[29..].copy_from_slice(&durable.to_le_bytes());
    let crc = crc32c::crc32c(&m[4..]);
    m[..4].copy_from_slice(&crc.to_le_bytes());
    m
}

/// The watermark of a mark's value, if it has the right shape.
pub fn mark_value(value: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(value.try_into().ok()?))
}

/// Checks a whole record's checksum.
pub fn verify(record: &[u8]) -> bool {
    record.len() >= HEADER_LEN
        && u32::from_le_bytes(record[0..4].try_into().expect("4 bytes"))
            == crc32c::crc32c(&record[4..])
}

/// The encoded length of a record with this key and value.
pub fn encoded_len(key: usize, value: usize) -> u64 {
    (HEADER_LEN + key + value) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_checksum() {
        let mut buf = Vec::new();
        encode(&mut buf, 42, 7, Kind::Put, b"key", b"value");
        assert_eq!(buf.len() as u64, encoded_len(3, 5));
        let h = Header::decode(buf[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(
            (h.seq, h.expire, h.kind, h.key_len, h.value_len),
            (42, 7, Kind::Put, 3, 5)
        );
        assert!(verify(&buf));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(!verify(&bad), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn commits_and_marks_of_the_wrong_shape_are_malformed() {
        let header = |kind, key: &[u8], value: &[u8]| {
            let mut buf = Vec::new();
            encode(&mut buf, 1, 0, kind, key, value);
            Header::decode(buf[..HEADER_LEN].try_into().unwrap()).unwrap()
        };
        let mut mark = Vec::new();
        encode_mark(&mut mark, 99);
        let h = Header::decode(mark[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!((h.kind, h.malformed()), (Kind::Mark, None));
        assert_eq!(mark_value(&mark[HEADER_LEN..]), Some(99));
        let mut generic = Vec::new();
        encode(&mut generic, 0, 0, Kind::Mark, &[], &99u64.to_le_bytes());
        assert_eq!(mark, generic);
        assert!(header(Kind::Mark, b"", &[0; 7]).malformed().is_some());
        assert!(header(Kind::Mark, b"k", &[0; 8]).malformed().is_some());
        assert!(
            header(Kind::BatchCommit, b"", &[0; 4])
                .malformed()
                .is_none()
        );
        assert!(
            header(Kind::BatchCommit, b"", &[0; 8])
                .malformed()
                .is_some()
        );
        assert!(header(Kind::Put, b"k", &[0; 8]).malformed().is_none());
    }

    #[test]
    fn unknown_kind_rejected() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 0, Kind::Delete, b"k", b"");
        buf[20] = 99;
        assert!(Header::decode(buf[..HEADER_LEN].try_into().unwrap()).is_err());
    }
}
