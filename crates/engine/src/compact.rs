//! Compaction: rewrite the live records of wasteful sealed segments into new segments.
//!
//! Steps, each crash-safe:
//! 1. Pick sealed segments (never the active one) whose dead ratio exceeds the threshold,
//!    or all with any garbage when total garbage exceeds its threshold or when forced.
//! 2. Copy every live record (the keydir still points at it and it has not expired) into
//!    new segments written under `.tmp` names, with their hint files. Tombstones and expired
//!    records are kept (expired ones as tombstones) unless no other segment can hold an
//!    older record of the same key: a segment's records can only be older than a tombstone
//!    when its smallest sequence number is below the tombstone's.
//! 3. fsync the outputs, rename hint then segment into place, fsync the directory.
//! 4. Publish the outputs to readers, then move each keydir entry to its new location only
//!    if it still points at the old one (concurrent writes win).
//! 5. fsync the active segment (the decisions above relied on its tombstones), then remove
//!    the inputs from the segment map, delete their files, fsync the directory.
//!
//! A crash before step 3 completes leaves the inputs authoritative (the `.tmp` files are
//! removed at open); after it, inputs and outputs coexist and recovery resolves every key by
//! sequence number, so both states read the same. Readers that still hold an input segment
//! keep reading it: the file stays open until their `Arc` drops.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{debug, info};

use crate::db::{Db, write_hint_for};
use crate::error::{Error, Result};
use crate::hint::{HintEntry, HintWriter};
use crate::keydir::Entry;
use crate::record::{self, Kind};
use crate::segment::{self, SEGMENT_HEADER_LEN, Scanner, Segment, hint_path, segment_path};
use crate::stats::CompactionReport;

struct Output {
    seg: Segment,
    tmp_path: std::path::PathBuf,
    hint: HintWriter,
    buf: Vec<u8>,
}

/// A record copied to an output: where it came from and where it went.
struct Moved {
    key: Vec<u8>,
    from: (u32, u64),
    to: Entry,
    /// An expired put rewritten as a tombstone: remove from the keydir instead of moving.
    expired: bool,
}

impl Db {
    /// Compacts every sealed segment that holds garbage, sealing the active segment first so
    /// that all data is eligible. Returns what was done.
    ///
    /// # Errors
    /// I/O errors (the inputs then stay authoritative), corruption met while reading.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.compact_with(true, &mut |_, _| {})
    }

    /// Like [`Db::compact`], calling `progress(bytes_done, bytes_total)` as input is read.
    ///
    /// # Errors
    /// As [`Db::compact`].
    pub fn compact_with_progress(
        &self,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CompactionReport> {
        self.compact_with(true, progress)
    }

    /// Compacts only if some segment passes the configured thresholds.
    ///
    /// # Errors
    /// As [`Db::compact`].
    pub fn compact_if_needed(&self) -> Result<CompactionReport> {
        self.compact_with(false, &mut |_, _| {})
    }

    fn compact_with(
        &self,
        force: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CompactionReport> {
        let inner = &self.inner;
        inner.check_open()?;
        if self.is_poisoned() {
            return Err(Error::Poisoned("compaction refused".into()));
        }
        let _guard = inner.compaction_lock.lock();
        // `close` may have run while we waited for the lock.
        inner.check_open()?;
        if force {
            let mut w = inner.writer.lock();
            let has_data = w
                .active
                .as_ref()
                .is_some_and(|a| a.len.load(Ordering::Relaxed) > SEGMENT_HEADER_LEN);
            if has_data {
                inner.rotate_locked(&mut w)?;
            }
        }
        // Make sure sealed segments have hints (outputs need none: they get their own).
        self.write_pending_hints()?;
        // The active segment and the segment list in one snapshot, under the writer lock:
        // a rotation between the two would make the new active segment look sealed, and
        // compacting (then deleting) a segment that writers still append to loses every
        // record appended after its scan (found by concurrency::compaction_races_writers_and_readers).
        let (active, all) = {
            let w = inner.writer.lock();
            let all: Vec<Arc<Segment>> = inner.segments.read().values().cloned().collect();
            (w.active.as_ref().map(|a| a.id), all)
        };
        let live = inner.keydir.read().live.clone();
        let sealed: Vec<&Arc<Segment>> = all.iter().filter(|s| Some(s.id) != active).collect();
        let dead = |s: &Segment| {
            let bytes = s.len.load(Ordering::Relaxed);
            bytes.saturating_sub(live.get(&s.id).copied().unwrap_or(0))
        };
        // What compacting `s` could reclaim: its dead bytes, less the tombstones an earlier
        // compaction had to keep in it if they would still have to stay (a record older
        // than the newest of them lives in another segment). Without this, a segment of
        // such tombstones was rewritten whole by every automatic compaction, forever.
        let floors = lowest_two_min_seqs(&all);
        let reclaimable = |s: &Segment| {
            let floor = if floors.0.1 == Some(s.id) {
                floors.1
            } else {
                floors.0.0
            };
            let kept = if s.kept_tombstones_seq.load(Ordering::Relaxed) >= floor {
                s.kept_tombstones.load(Ordering::Relaxed)
            } else {
                0
            };
            dead(s).saturating_sub(kept)
        };
        let total_garbage: u64 = sealed
            .iter()
            .map(|s| reclaimable(s).saturating_sub(SEGMENT_HEADER_LEN))
            .sum();
        let opts = &inner.opts;
        let inputs: Vec<Arc<Segment>> = sealed
            .iter()
            .filter(|s| {
                let bytes = s.len.load(Ordering::Relaxed).max(1);
                let garbage = reclaimable(s).saturating_sub(SEGMENT_HEADER_LEN);
                let ratio = reclaimable(s) as f64 / bytes as f64;
                // Forced: whatever is dead (all candidates together raise the floor).
                (force && dead(s) > SEGMENT_HEADER_LEN)
                    || ratio > opts.compaction_ratio
                    || (total_garbage > opts.compaction_garbage_bytes && garbage > 0)
            })
            .map(|s| (*s).clone())
            .collect();
        if inputs.is_empty() {
            return Ok(CompactionReport::default());
        }
        let input_ids: Vec<u32> = inputs.iter().map(|s| s.id).collect();
        // Tombstones older than every record outside the inputs shadow nothing any more.
        let floor = all
            .iter()
            .filter(|s| !input_ids.contains(&s.id))
            .map(|s| s.min_seq.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX);
        // One record carrying the newest sequence number on disk must survive, or the
        // sequence number (every key's version) would go back after a reopen and versions
        // would be handed out twice. A batch shares one sequence number: one of its records
        // is enough.
        let top = all
            .iter()
            .map(|s| s.max_seq.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let mut top_kept = false;
        let bytes_total: u64 = inputs.iter().map(|s| s.len.load(Ordering::Relaxed)).sum();
        let mut report = CompactionReport {
            segments_in: inputs.len(),
            bytes_in: bytes_total,
            ..Default::default()
        };
        let now = self.now_ms();
        let mut outputs: Vec<Output> = Vec::new();
        let mut moved: Vec<Moved> = Vec::new();
        let mut done = 0u64;
        let result = (|| -> Result<()> {
            for seg in &inputs {
                let len = seg.len.load(Ordering::Relaxed);
                let mut scanner = Scanner::new(
                    &*seg.file,
                    len,
                    true,
                    opts.max_key_size,
                    opts.max_value_size,
                );
                let mut batch: Vec<segment::Scanned> = Vec::new();
                loop {
                    let r = match scanner.next_record()? {
                        Ok(Some(r)) => r,
                        Ok(None) => break,
                        Err(bad) => {
                            return Err(Error::corruption(&seg.path, bad.offset, bad.reason));
                        }
                    };
                    done += r.header.record_len();
                    match r.header.kind {
                        Kind::BatchPut | Kind::BatchDelete => {
                            batch.push(r);
                            continue;
                        }
                        Kind::BatchCommit => {
                            for b in std::mem::take(&mut batch) {
                                self.consider(
                                    seg,
                                    b,
                                    (floor, top, &mut top_kept),
                                    now,
                                    &mut outputs,
                                    &mut moved,
                                    &mut report,
                                )?;
                            }
                        }
                        Kind::Mark => batch.clear(),
                        Kind::Put | Kind::Delete => {
                            batch.clear();
                            self.consider(
                                seg,
                                r,
                                (floor, top, &mut top_kept),
                                now,
                                &mut outputs,
                                &mut moved,
                                &mut report,
                            )?;
                        }
                    }
                }
                progress(done.min(bytes_total), bytes_total);
            }
            for out in &mut outputs {
                flush_output(out)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            for out in &outputs {
                let _ = opts.vfs.remove(&out.tmp_path);
                let _ = opts
                    .vfs
                    .remove(&hint_path(&inner.dir, out.seg.id).with_extension("hint.tmp"));
            }
            return Err(e);
        }
        // Outputs: hint, fsync; then rename hint before segment (a segment present at open
        // always has its hint), then fsync the directory.
        let dir = &inner.dir;
        for out in outputs.iter_mut() {
            out.seg.file.sync_data()?;
            let hint = std::mem::take(&mut out.hint);
            hint.finish(&*opts.vfs, dir, out.seg.id)?;
            out.seg.hinted.store(true, Ordering::Relaxed);
        }
        // From the first rename on, the directory holds files the in-memory state does not
        // match (outputs not yet published, inputs already forgotten). A later compaction
        // would decide on that incomplete picture (and drop tombstones that a stray file
        // still needs), so any failure from here on poisons the database; a reopen
        // resolves inputs and outputs by sequence number.
        let fail = |e: std::io::Error| {
            inner.poison("compaction failed while swapping segments", &e);
            Error::Io(e)
        };
        for out in &outputs {
            opts.vfs
                .rename(&out.tmp_path, &segment_path(dir, out.seg.id))
                .map_err(fail)?;
        }
        opts.vfs.sync_dir(dir).map_err(fail)?;
        report.segments_out = outputs.len();
        report.bytes_out = outputs
            .iter()
            .map(|o| o.seg.len.load(Ordering::Relaxed))
            .sum();
        {
            let mut segs = inner.segments.write();
            for out in outputs {
                let mut seg = out.seg;
                seg.path = segment_path(dir, seg.id);
                segs.insert(seg.id, Arc::new(seg));
            }
        }
        for chunk in moved.chunks(1024) {
            let mut kd = inner.keydir.write();
            for m in chunk {
                if m.expired {
                    kd.remove_if_at(&m.key, m.from);
                } else {
                    kd.relocate(&m.key, m.from, m.to);
                }
            }
        }
        // The tombstones and newer values our decisions relied on must be durable before the
        // inputs disappear.
        self.sync()?;
        {
            let mut segs = inner.segments.write();
            for id in &input_ids {
                segs.remove(id);
            }
        }
        let mut kd = inner.keydir.write();
        for id in &input_ids {
            kd.live.remove(id);
        }
        drop(kd);
        // Remove the inputs oldest-newest-record first, each removal durable before the
        // next. A tombstone (or expired put) dropped above may shadow an older put in
        // another input; that input's newest record is older than the tombstone (or holds
        // a newer record of the key itself), so it goes first, and a crash between two
        // removals never leaves the put without what shadowed it. (Ids do not give this
        // order: compaction outputs get ids above the then-active segment.)
        let mut by_age: Vec<&Arc<Segment>> = inputs.iter().collect();
        by_age.sort_by_key(|s| (s.max_seq.load(Ordering::Relaxed), s.id));
        for seg in by_age {
            let id = seg.id;
            opts.vfs.remove(&segment_path(dir, id)).map_err(fail)?;
            match opts.vfs.remove(&hint_path(dir, id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
                _ => {}
            }
            opts.vfs.sync_dir(dir).map_err(fail)?;
        }
        inner.counters.compactions.fetch_add(1, Ordering::Relaxed);
        inner
            .counters
            .reclaimed
            .fetch_add(report.reclaimed(), Ordering::Relaxed);
        inner
            .counters
            .last_compaction_ms
            .store(self.now_ms().max(1), Ordering::Relaxed);
        info!(
            inputs = report.segments_in,
            outputs = report.segments_out,
            reclaimed = report.reclaimed(),
            "compaction finished"
        );
        Ok(report)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site, internal state of one compaction"
    )]
    fn consider(
        &self,
        seg: &Segment,
        r: segment::Scanned,
        (floor, top, top_kept): (u64, u64, &mut bool),
        now: u64,
        outputs: &mut Vec<Output>,
        moved: &mut Vec<Moved>,
        report: &mut CompactionReport,
    ) -> Result<()> {
        let h = r.header;
        let from = (seg.id, r.offset);
        let current = self.inner.keydir.read().map.get(r.key.as_slice()).copied();
        let is_live = current.is_some_and(|e| e.loc() == from);
        let holds_top = h.seq == top && !*top_kept;
        let droppable_tombstone = h.seq < floor && !holds_top;
        let expired = h.expire != 0 && h.expire <= now;
        // Whether this record is written to an output (as itself or as a tombstone).
        let mut emitted = true;
        if h.kind.is_put() && is_live && !expired {
            let to = self.emit(outputs, &r.key, &r.value, h.seq, h.expire, Kind::Put)?;
            moved.push(Moved {
                key: r.key,
                from,
                to,
                expired: false,
            });
            report.records_kept += 1;
        } else if h.kind.is_put() && is_live {
            // Expired: keep a tombstone unless nothing older can be shadowed.
            if droppable_tombstone {
                emitted = false;
            } else {
                self.emit(outputs, &r.key, &[], h.seq, 0, Kind::Delete)?;
            }
            moved.push(Moved {
                key: r.key,
                from,
                to: current.expect("live"),
                expired: true,
            });
            report.records_dropped += 1;
        } else if h.kind.is_put() && current.is_none() && expired && !droppable_tombstone {
            // Expired and already dropped from the keydir (recovery drops expired keys): no
            // record in the log says the key is gone, so this put is what shadows the
            // key's older puts in other segments. Keep it as a tombstone.
            self.emit(outputs, &r.key, &[], h.seq, 0, Kind::Delete)?;
            report.records_dropped += 1;
        } else if h.kind.is_delete() && !droppable_tombstone {
            self.emit(outputs, &r.key, &[], h.seq, 0, Kind::Delete)?;
            report.records_kept += 1;
        } else {
            emitted = false;
            report.records_dropped += 1;
        }
        if emitted && h.seq == top {
            *top_kept = true;
        }
        Ok(())
    }

    /// Appends one record to the current output (starting a new one when full).
    fn emit(
        &self,
        outputs: &mut Vec<Output>,
        key: &[u8],
        value: &[u8],
        seq: u64,
        expire: u64,
        kind: Kind,
    ) -> Result<Entry> {
        let inner = &self.inner;
        let rec_len = record::encoded_len(key.len(), value.len());
        let need_new = match outputs.last() {
            None => true,
            Some(o) => {
                let len = o.seg.len.load(Ordering::Relaxed) + o.buf.len() as u64;
                len > SEGMENT_HEADER_LEN && len + rec_len > inner.opts.segment_size
            }
        };
        if need_new {
            if let Some(last) = outputs.last_mut() {
                flush_output(last)?;
            }
            let id = inner.next_segment_id.fetch_add(1, Ordering::SeqCst);
            let final_path = segment_path(&inner.dir, id);
            let tmp_path = final_path.with_extension("seg.tmp");
            let file = inner.opts.vfs.open(&tmp_path, true)?;
            file.set_len(0)?;
            let compacted_at = (self.now_ms() / 1000).clamp(1, u32::MAX as u64) as u32;
            file.write_all_at(&segment::encode_header(id, compacted_at), 0)?;
            let seg = Segment::new(id, tmp_path.clone(), file, SEGMENT_HEADER_LEN);
            seg.compacted_at.store(compacted_at, Ordering::Relaxed);
            debug!(segment = id, "compaction output started");
            outputs.push(Output {
                seg,
                tmp_path,
                hint: HintWriter::new(id),
                buf: Vec::with_capacity(1 << 20),
            });
        }
        let out = outputs.last_mut().expect("an output exists");
        let off = out.seg.len.load(Ordering::Relaxed) + out.buf.len() as u64;
        record::encode(&mut out.buf, seq, expire, kind, key, value);
        out.seg.note_seq(seq);
        if kind.is_delete() {
            out.seg
                .kept_tombstones
                .fetch_add(rec_len, Ordering::Relaxed);
            out.seg
                .kept_tombstones_seq
                .fetch_max(seq, Ordering::Relaxed);
        }
        out.hint.add(&HintEntry {
            key,
            seq,
            expire,
            offset: off,
            len: rec_len as u32,
            kind,
        });
        if out.buf.len() >= 1 << 20 {
            flush_output(out)?;
        }
        Ok(Entry::new(out.seg.id, off, rec_len as u32, seq, expire))
    }
}

/// The lowest `min_seq` over `segs` with its segment id, and the second lowest: the floor
/// of a compaction of one segment is the lowest among the others.
fn lowest_two_min_seqs(segs: &[Arc<Segment>]) -> ((u64, Option<u32>), u64) {
    let mut first = (u64::MAX, None);
    let mut second = u64::MAX;
    for s in segs {
        let m = s.min_seq.load(Ordering::Relaxed);
        if m < first.0 {
            second = first.0;
            first = (m, Some(s.id));
        } else if m < second {
            second = m;
        }
    }
    (first, second)
}

fn flush_output(out: &mut Output) -> Result<()> {
    if out.buf.is_empty() {
        return Ok(());
    }
    let off = out.seg.len.load(Ordering::Relaxed);
    out.seg.file.write_all_at(&out.buf, off)?;
    out.seg
        .len
        .store(off + out.buf.len() as u64, Ordering::Relaxed);
    out.buf.clear();
    Ok(())
}

/// Rebuilds the hint file of one sealed segment (used by repair tools).
///
/// # Errors
/// I/O errors or corruption in the segment.
pub fn rebuild_hint(db: &Db, id: u32) -> Result<()> {
    let seg = db.inner.segments.read().get(&id).cloned();
    match seg {
        Some(seg) => write_hint_for(&db.inner.dir, &db.inner.opts, &seg),
        None => Err(Error::InvalidArgument(format!("no segment {id}"))),
    }
}
