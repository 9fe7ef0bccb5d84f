//! Offline verification and repair of a data directory (`cask check [--repair]`).
//!
//! `check` reads every record of every segment and verifies its checksum, and verifies every
//! hint file. `repair` keeps every intact record: after damage it searches forward byte by
//! byte for the next record whose header and checksum verify, rewrites the segment with the
//! intact records (temp file, fsync, rename, fsync directory), and drops the segment's hint
//! file so it is rebuilt from the repaired data.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::hint;
use crate::options::Options;
use crate::record::{self, HEADER_LEN, Header, Kind};
use crate::segment::{self, FileName, SEGMENT_HEADER_LEN, hint_path, record_at, segment_path};

/// One problem found by [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The damaged file.
    pub path: PathBuf,
    /// Offset of the damage.
    pub offset: u64,
    /// Bytes affected (until the next intact record or the end of the file).
    pub len: u64,
    /// What is wrong.
    pub reason: String,
}

/// What [`check`] found and, when repairing, did.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Segments read.
    pub segments: usize,
    /// Intact records (puts, deletes and batch records; durability marks are not counted).
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Problems found.
    pub problems: Vec<Problem>,
    /// Whether the problems were repaired.
    pub repaired: bool,
}

impl CheckReport {
    /// Whether everything verified.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies (and with `repair`, salvages) the database in `dir`. Takes the directory lock.
/// `progress(done, total)` is called with bytes read.
///
/// # Errors
/// `Locked` if the database is open elsewhere; I/O errors.
pub fn check(
    dir: &Path,
    opts: &Options,
    repair: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CheckReport> {
    let vfs = &*opts.vfs;
    if !dir.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let _lock = match vfs.lock(&dir.join("LOCK")) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            return Err(Error::Locked {
                dir: dir.to_owned(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut ids = Vec::new();
    let mut hints = Vec::new();
    for name in vfs.list(dir)? {
        match segment::parse_name(&name) {
            FileName::Segment(id) => ids.push(id),
            FileName::Hint(id) => hints.push(id),
            _ => {}
        }
    }
    ids.sort_unstable();
    let mut total = 0u64;
    let mut files = Vec::new();
    for &id in &ids {
        let f = vfs.open(&segment_path(dir, id), false)?;
        total += f.len()?;
        files.push((id, f));
    }
    let mut report = CheckReport {
        segments: ids.len(),
        repaired: repair,
        ..Default::default()
    };
    let mut done = 0u64;
    for (id, file) in files {
        let path = segment_path(dir, id);
        let len = file.len()?;
        let mut data = vec![0u8; len as usize];
        file.read_exact_at(&mut data, 0)?;
        done += len;
        report.bytes += len;
        if let Err(e) = segment::check_header(&path, id, &data) {
            report.problems.push(Problem {
                path: path.clone(),
                offset: 0,
                len,
                reason: e.to_string(),
            });
            progress(done, total);
            continue;
        }
        let (intact, mut problems) = walk(&data, &path, opts);
        let intact = whole_batches(&data, &path, intact, &mut problems);
        report.records += intact
            .iter()
            .filter(|r| header_at(&data, r.0).kind != Kind::Mark)
            .count() as u64;
        let damaged = !problems.is_empty();
        report.problems.extend(problems);
        if damaged && repair {
            let mut out = data[..SEGMENT_HEADER_LEN as usize].to_vec();
            for (start, end) in &intact {
                out.extend_from_slice(&data[*start as usize..*end as usize]);
            }
            let tmp = path.with_extension("seg.tmp");
            let f = vfs.open(&tmp, true)?;
            f.set_len(0)?;
            f.write_all_at(&out, 0)?;
            f.sync_data()?;
            drop(f);
            drop(file);
            vfs.rename(&tmp, &path)?;
            if hints.contains(&id) {
                vfs.remove(&hint_path(dir, id))?;
            }
            vfs.sync_dir(dir)?;
        }
        progress(done, total);
    }
    for id in hints {
        let path = hint_path(dir, id);
        if !ids.contains(&id) {
            continue;
        }
        if let Ok(Err(reason)) = hint::read(vfs, dir, id, opts.max_key_size, |_| {}) {
            report.problems.push(Problem {
                path: path.clone(),
                offset: 0,
                len: 0,
                reason: format!("hint file: {reason}"),
            });
            if repair {
                match vfs.remove(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => vfs.sync_dir(dir)?,
                }
            }
        }
    }
    Ok(report)
}

/// Whether the damage at `offset` in a segment's bytes was ever durable: whether an intact
/// durability mark after it says an fsync had covered `offset` before the mark was written.
///
/// Recovery asks this about damage in the tail segment. Without such a mark the damage can
/// be the remnant of unsynced writes that reached the disk partly and out of order (with
/// group commit or `interval`, several of them, so intact records may follow the hole): a
/// torn tail, cut off. With one, the damaged bytes had been fsynced and writes after them
/// may have been acknowledged: corruption, refused. A mark's watermark can never exceed its
/// own offset; one that does is not a mark this engine wrote and proves nothing.
pub(crate) fn durable_after(data: &[u8], offset: u64, path: &Path) -> bool {
    // Any intact record counts, even one over the configured limits (they may have been
    // lowered since it was written).
    let (intact, _) = walk_from(data, offset as usize + 1, path, usize::MAX, usize::MAX);
    intact.iter().any(|&(start, end)| {
        let h = header_at(data, start);
        h.kind == Kind::Mark
            && record::mark_value(&data[start as usize + HEADER_LEN..end as usize])
                .is_some_and(|durable| durable > offset && durable <= start)
    })
}

/// The header of a record [`walk_from`] found intact.
fn header_at(data: &[u8], start: u64) -> Header {
    let s = start as usize;
    Header::decode(data[s..s + HEADER_LEN].try_into().expect("header")).expect("verified record")
}

/// Finds the intact records of a segment image. Returns their byte ranges and the damaged
/// ranges between them.
fn walk(data: &[u8], path: &Path, opts: &Options) -> (Vec<(u64, u64)>, Vec<Problem>) {
    walk_from(
        data,
        SEGMENT_HEADER_LEN as usize,
        path,
        opts.max_key_size,
        opts.max_value_size,
    )
}

/// [`walk`] from byte `start`, with explicit size limits.
fn walk_from(
    data: &[u8],
    start: usize,
    path: &Path,
    max_key: usize,
    max_value: usize,
) -> (Vec<(u64, u64)>, Vec<Problem>) {
    let mut intact = Vec::new();
    let mut problems = Vec::new();
    let mut pos = start;
    while pos < data.len() {
        match record_at(data, pos, max_key, max_value) {
            Ok(end) => {
                intact.push((pos as u64, end as u64));
                pos = end;
            }
            Err(reason) => {
                let next = (pos + 1..data.len())
                    .find(|p| record_at(data, *p, max_key, max_value).is_ok())
                    .unwrap_or(data.len());
                problems.push(Problem {
                    path: path.to_owned(),
                    offset: pos as u64,
                    len: (next - pos) as u64,
                    reason: reason.to_string(),
                });
                pos = next;
            }
        }
    }
    (intact, problems)
}

/// Keeps a batch only when all of its operations and its commit survived: a commit whose
/// operations were damaged would make recovery reject the segment, and a batch missing an
/// operation must not half-apply. Dropped batches are reported as problems.
fn whole_batches(
    data: &[u8],
    path: &Path,
    intact: Vec<(u64, u64)>,
    problems: &mut Vec<Problem>,
) -> Vec<(u64, u64)> {
    let mut kept = Vec::with_capacity(intact.len());
    let mut pending: Vec<(u64, u64)> = Vec::new();
    let mut pending_seq = 0u64;
    let header = |r: &(u64, u64)| header_at(data, r.0);
    let drop_batch =
        |pending: &mut Vec<(u64, u64)>, commit: Option<(u64, u64)>, problems: &mut Vec<Problem>| {
            let Some(first) = pending.first().copied().or(commit) else {
                return;
            };
            let end = commit.or(pending.last().copied()).map_or(first.1, |r| r.1);
            problems.push(Problem {
                path: path.to_owned(),
                offset: first.0,
                len: end - first.0,
                reason: "incomplete batch (an operation or its commit was damaged): dropped whole"
                    .into(),
            });
            pending.clear();
        };
    for r in intact {
        let h = header(&r);
        match h.kind {
            Kind::BatchPut | Kind::BatchDelete => {
                if !pending.is_empty() && h.seq != pending_seq {
                    drop_batch(&mut pending, None, problems);
                }
                pending_seq = h.seq;
                pending.push(r);
            }
            Kind::BatchCommit => {
                let start = HEADER_LEN + h.key_len as usize;
                let count =
                    segment::commit_count(&data[r.0 as usize + start..r.1 as usize]) as usize;
                if !pending.is_empty() && pending_seq == h.seq && pending.len() == count {
                    kept.append(&mut pending);
                    kept.push(r);
                } else {
                    drop_batch(&mut pending, Some(r), problems);
                }
            }
            // A batch is one write: nothing, not even a mark, comes between its records.
            Kind::Put | Kind::Delete | Kind::Mark => {
                if !pending.is_empty() {
                    drop_batch(&mut pending, None, problems);
                }
                kept.push(r);
            }
        }
    }
    if !pending.is_empty() {
        drop_batch(&mut pending, None, problems);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode, encode_mark};

    /// A segment image: header, a put, a damaged put, a put, then a mark saying `durable`.
    fn image(durable: u64) -> (Vec<u8>, u64, u64) {
        let mut data = segment::encode_header(1, 0).to_vec();
        encode(&mut data, 1, 0, Kind::Put, b"a", b"first");
        let damaged = data.len() as u64;
        encode(&mut data, 2, 0, Kind::Put, b"b", b"second");
        data[damaged as usize + 29] ^= 0xff;
        encode(&mut data, 3, 0, Kind::Put, b"c", b"third");
        let mark = data.len() as u64;
        encode_mark(&mut data, durable);
        (data, damaged, mark)
    }

    /// Regression: the walk did not check a commit's shape, and `whole_batches` read four
    /// bytes of its value: a checksummed commit with a 2-byte value made `check` panic.
    #[test]
    fn a_commit_with_a_short_value_is_damage_not_a_panic() {
        let path = Path::new("0000000001.seg");
        let mut data = segment::encode_header(1, 0).to_vec();
        encode(&mut data, 1, 0, Kind::BatchPut, b"a", b"1");
        let commit = data.len() as u64;
        encode(&mut data, 1, 0, Kind::BatchCommit, b"", &[1, 0]);
        encode(&mut data, 2, 0, Kind::Put, b"b", b"2");
        let (intact, mut problems) = walk(&data, path, &Options::default());
        let kept = whole_batches(&data, path, intact, &mut problems);
        assert_eq!(kept.len(), 1, "only the put after it is whole");
        assert!(
            problems
                .iter()
                .any(|p| p.offset == commit && p.reason == "malformed batch commit record"),
            "{problems:?}"
        );
    }

    #[test]
    fn only_a_mark_past_the_damage_and_not_past_itself_proves_it_durable() {
        let path = Path::new("0000000001.seg");
        let (_, damaged, mark) = image(0);
        for (durable, proves) in [
            (damaged, false),
            (damaged + 1, true),
            (mark, true),
            (mark + 1, false),
        ] {
            let (data, _, _) = image(durable);
            assert_eq!(
                durable_after(&data, damaged, path),
                proves,
                "mark saying {durable} (damage at {damaged}, mark at {mark})"
            );
        }
        // A put after the damage proves nothing by itself.
        let (data, _, _) = image(0);
        assert!(!durable_after(&data[..mark as usize], damaged, path));
    }
}
