//! One adapter per engine under test, all behind the same small trait.
//!
//! Every adapter follows the same durability rules: `bulk_load`, `put_durable`,
//! `batch_durable` and `remove_durable` return only once the data is on stable storage
//! (fsynced), each engine using its own documented way of getting there.

use std::path::Path;

use redb::ReadableDatabase as _;

/// The error type of the whole benchmark: any engine's error, boxed.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A key-value pair.
pub type Kv = (Vec<u8>, Vec<u8>);

/// The engines this crate knows how to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// cask-engine, `SyncPolicy::Always`, no background compaction.
    Cask,
    /// redb, `Durability::Immediate` commits.
    Redb,
    /// fjall, one keyspace, `PersistMode::SyncAll`.
    Fjall,
    /// sled 0.34, `flush()` after each durable operation.
    Sled,
    /// RocksDB (only with the `rocksdb` cargo feature), `sync = true` writes.
    Rocksdb,
}

impl Kind {
    /// The engine's name as used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cask => "cask",
            Kind::Redb => "redb",
            Kind::Fjall => "fjall",
            Kind::Sled => "sled",
            Kind::Rocksdb => "rocksdb",
        }
    }

    /// Parses a name given by [`Kind::name`].
    pub fn parse(s: &str) -> Option<Kind> {
        match s.trim() {
            "cask" => Some(Kind::Cask),
            "redb" => Some(Kind::Redb),
            "fjall" => Some(Kind::Fjall),
            "sled" => Some(Kind::Sled),
            "rocksdb" => Some(Kind::Rocksdb),
            _ => None,
        }
    }
}

/// Read access, possibly tied to a read transaction (redb).
pub trait Reader {
    /// Reads one key; returns the value's length (0 when missing).
    fn get(&self, key: &[u8]) -> Res<usize>;
    /// Reads up to `n` items from `start` on; returns the number of value bytes read.
    fn range(&self, start: &[u8], n: usize) -> Res<usize>;
}

/// An open database of one engine.
pub trait Engine: Send + Sync {
    /// Writes all pairs in one batch / transaction, durably.
    fn bulk_load(&self, kvs: &[Kv]) -> Res<()>;
    /// Writes one pair and returns once it is durable.
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()>;
    /// Writes a batch atomically and durably.
    fn batch_durable(&self, kvs: &[Kv]) -> Res<()> {
        self.bulk_load(kvs)
    }
    /// Removes keys in one batch / transaction, durably.
    fn remove_durable(&self, keys: &[Vec<u8>]) -> Res<()>;
    /// A reader (a read transaction for redb).
    fn reader(&self) -> Res<Box<dyn Reader + '_>>;
    /// Runs the engine's full compaction, if it has one. Returns false if it has none.
    fn compact(&mut self) -> Res<bool>;
    /// Closes cleanly (flushing whatever the engine flushes on close).
    fn close(self: Box<Self>) -> Res<()>;
    /// The engine's own account of its space, if it keeps one.
    fn describe(&self) -> Option<String> {
        None
    }
}

/// Opens (or creates) the database of `kind` in `dir`.
pub fn open(kind: Kind, dir: &Path) -> Res<Box<dyn Engine>> {
    std::fs::create_dir_all(dir)?;
    Ok(match kind {
        Kind::Cask => Box::new(CaskDb::open(dir)?),
        Kind::Redb => Box::new(RedbDb::open(dir)?),
        Kind::Fjall => Box::new(FjallDb::open(dir)?),
        Kind::Sled => Box::new(SledDb::open(dir)?),
        #[cfg(feature = "rocksdb")]
        Kind::Rocksdb => Box::new(rocks::RocksDb::open(dir)?),
        #[cfg(not(feature = "rocksdb"))]
        Kind::Rocksdb => return Err("built without the `rocksdb` cargo feature".into()),
    })
}

// ---------------------------------------------------------------- cask

struct CaskDb(cask_engine::Db);

impl CaskDb {
    fn open(dir: &Path) -> Res<Self> {
        let opts = cask_engine::Options {
            sync: cask_engine::SyncPolicy::Always,
            background_compaction: false,
            ..cask_engine::Options::default()
        };
        Ok(CaskDb(cask_engine::Db::open(dir, opts)?))
    }
}

impl Reader for CaskDb {
    fn get(&self, key: &[u8]) -> Res<usize> {
        Ok(self.0.get(key)?.map_or(0, |v| v.len()))
    }
    fn range(&self, start: &[u8], n: usize) -> Res<usize> {
        let mut bytes = 0;
        for item in self.0.scan(start.to_vec()..).take(n) {
            bytes += item?.1.len();
        }
        Ok(bytes)
    }
}

impl Engine for CaskDb {
    fn bulk_load(&self, kvs: &[Kv]) -> Res<()> {
        let mut batch = cask_engine::Batch::new();
        for (k, v) in kvs {
            batch.put(k.clone(), v.clone());
        }
        self.0.write(&batch)?;
        Ok(())
    }
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()> {
        self.0.set(key, value)?;
        Ok(())
    }
    fn remove_durable(&self, keys: &[Vec<u8>]) -> Res<()> {
        let mut batch = cask_engine::Batch::new();
        for k in keys {
            batch.delete(k.clone());
        }
        self.0.write(&batch)?;
        Ok(())
    }
    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(CaskDb(self.0.clone())))
    }
    fn compact(&mut self) -> Res<bool> {
        self.0.compact()?;
        Ok(true)
    }
    fn close(self: Box<Self>) -> Res<()> {
        self.0.close()?;
        Ok(())
    }
    fn describe(&self) -> Option<String> {
        let s = self.0.stats();
        let hints: u64 = std::fs::read_dir(self.0.dir())
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("hint"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        Some(format!(
            "after compaction: {} keys, segments {:.1} MiB (live {:.1} MiB, dead {:.1} MiB), \
             hint files {:.1} MiB, {} segments",
            s.keys,
            s.total_bytes as f64 / 1048576.0,
            s.live_bytes as f64 / 1048576.0,
            s.dead_bytes as f64 / 1048576.0,
            hints as f64 / 1048576.0,
            s.segments.len()
        ))
    }
}

// ---------------------------------------------------------------- redb

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");

struct RedbDb(redb::Database);

impl RedbDb {
    fn open(dir: &Path) -> Res<Self> {
        let db = redb::Database::create(dir.join("redb.db"))?;
        // Make sure the table exists so that readers can open it.
        let tx = db.begin_write()?;
        tx.open_table(TABLE)?;
        tx.commit()?;
        Ok(RedbDb(db))
    }
    fn write(&self, f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Res<()>) -> Res<()> {
        let mut tx = self.0.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)?;
        {
            let mut table = tx.open_table(TABLE)?;
            f(&mut table)?;
        }
        tx.commit()?;
        Ok(())
    }
}

struct RedbReader(redb::ReadOnlyTable<&'static [u8], &'static [u8]>);

impl Reader for RedbReader {
    fn get(&self, key: &[u8]) -> Res<usize> {
        Ok(self.0.get(key)?.map_or(0, |v| v.value().len()))
    }
    fn range(&self, start: &[u8], n: usize) -> Res<usize> {
        let mut bytes = 0;
        for item in self.0.range::<&[u8]>(start..)?.take(n) {
            bytes += item?.1.value().len();
        }
        Ok(bytes)
    }
}

impl Engine for RedbDb {
    fn bulk_load(&self, kvs: &[Kv]) -> Res<()> {
        self.write(|t| {
            for (k, v) in kvs {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(())
        })
    }
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()> {
        self.write(|t| {
            t.insert(key, value)?;
            Ok(())
        })
    }
    fn remove_durable(&self, keys: &[Vec<u8>]) -> Res<()> {
        self.write(|t| {
            for k in keys {
                t.remove(k.as_slice())?;
            }
            Ok(())
        })
    }
    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        let tx = self.0.begin_read()?;
        Ok(Box::new(RedbReader(tx.open_table(TABLE)?)))
    }
    fn compact(&mut self) -> Res<bool> {
        // redb compacts in steps; repeat until it reports nothing more to do.
        while self.0.compact()? {}
        Ok(true)
    }
    fn close(self: Box<Self>) -> Res<()> {
        drop(self.0);
        Ok(())
    }
}

// ---------------------------------------------------------------- fjall

struct FjallDb {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl FjallDb {
    fn open(dir: &Path) -> Res<Self> {
        let db = fjall::Database::builder(dir).open()?;
        let ks = db.keyspace("bench", fjall::KeyspaceCreateOptions::default)?;
        Ok(FjallDb { db, ks })
    }
    fn commit(&self, f: impl FnOnce(&mut fjall::OwnedWriteBatch)) -> Res<()> {
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        f(&mut batch);
        batch.commit()?;
        Ok(())
    }
}

impl Reader for FjallDb {
    fn get(&self, key: &[u8]) -> Res<usize> {
        Ok(self.ks.get(key)?.map_or(0, |v| v.len()))
    }
    fn range(&self, start: &[u8], n: usize) -> Res<usize> {
        let mut bytes = 0;
        for item in self.ks.range(start..).take(n) {
            bytes += item.into_inner()?.1.len();
        }
        Ok(bytes)
    }
}

impl Engine for FjallDb {
    fn bulk_load(&self, kvs: &[Kv]) -> Res<()> {
        self.commit(|b| {
            for (k, v) in kvs {
                b.insert(&self.ks, k.as_slice(), v.as_slice());
            }
        })
    }
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()> {
        self.ks.insert(key, value)?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }
    fn remove_durable(&self, keys: &[Vec<u8>]) -> Res<()> {
        self.commit(|b| {
            for k in keys {
                b.remove(&self.ks, k.as_slice());
            }
        })
    }
    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(FjallDb {
            db: self.db.clone(),
            ks: self.ks.clone(),
        }))
    }
    fn compact(&mut self) -> Res<bool> {
        // Flush the memtable so that compaction sees all data, then compact everything.
        self.ks.rotate_memtable_and_wait()?;
        self.ks.major_compact()?;
        Ok(true)
    }
    fn close(self: Box<Self>) -> Res<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        drop(self);
        Ok(())
    }
}

// ---------------------------------------------------------------- sled

struct SledDb(sled::Db);

impl SledDb {
    fn open(dir: &Path) -> Res<Self> {
        Ok(SledDb(sled::Config::new().path(dir).open()?))
    }
}

impl Reader for SledDb {
    fn get(&self, key: &[u8]) -> Res<usize> {
        Ok(self.0.get(key)?.map_or(0, |v| v.len()))
    }
    fn range(&self, start: &[u8], n: usize) -> Res<usize> {
        let mut bytes = 0;
        for item in self.0.range(start..).take(n) {
            bytes += item?.1.len();
        }
        Ok(bytes)
    }
}

impl Engine for SledDb {
    fn bulk_load(&self, kvs: &[Kv]) -> Res<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in kvs {
            batch.insert(k.as_slice(), v.as_slice());
        }
        self.0.apply_batch(batch)?;
        self.0.flush()?;
        Ok(())
    }
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()> {
        self.0.insert(key, value)?;
        self.0.flush()?;
        Ok(())
    }
    fn remove_durable(&self, keys: &[Vec<u8>]) -> Res<()> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k.as_slice());
        }
        self.0.apply_batch(batch)?;
        self.0.flush()?;
        Ok(())
    }
    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(SledDb(self.0.clone())))
    }
    fn compact(&mut self) -> Res<bool> {
        Ok(false)
    }
    fn close(self: Box<Self>) -> Res<()> {
        self.0.flush()?;
        drop(self);
        Ok(())
    }
}

// ---------------------------------------------------------------- rocksdb

#[cfg(feature = "rocksdb")]
mod rocks {
    use super::{Engine, Kv, Reader, Res};
    use std::path::Path;

    pub struct RocksDb(rocksdb::DB);

    impl RocksDb {
        pub fn open(dir: &Path) -> Res<Self> {
            let mut opts = rocksdb::Options::default();
            opts.create_if_missing(true);
            Ok(RocksDb(rocksdb::DB::open(&opts, dir)?))
        }
        fn sync_opts() -> rocksdb::WriteOptions {
            let mut w = rocksdb::WriteOptions::default();
            w.set_sync(true);
            w
        }
    }

    impl Reader for RocksDb {
        fn get(&self, key: &[u8]) -> Res<usize> {
            Ok(self.0.get_pinned(key)?.map_or(0, |v| v.len()))
        }
        fn range(&self, start: &[u8], n: usize) -> Res<usize> {
            let mode = rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward);
            let mut bytes = 0;
            for item in self.0.iterator(mode).take(n) {
                bytes += item?.1.len();
            }
            Ok(bytes)
        }
    }

    impl Engine for RocksDb {
        fn bulk_load(&self, kvs: &[Kv]) -> Res<()> {
            let mut b = rocksdb::WriteBatch::default();
            for (k, v) in kvs {
                b.put(k, v);
            }
            self.0.write_opt(b, &Self::sync_opts())?;
            Ok(())
        }
        fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()> {
            self.0.put_opt(key, value, &Self::sync_opts())?;
            Ok(())
        }
        fn remove_durable(&self, keys: &[Vec<u8>]) -> Res<()> {
            let mut b = rocksdb::WriteBatch::default();
            for k in keys {
                b.delete(k);
            }
            self.0.write_opt(b, &Self::sync_opts())?;
            Ok(())
        }
        fn reader(&self) -> Res<Box<dyn Reader + '_>> {
            Ok(Box::new(RocksRef(&self.0)))
        }
        fn compact(&mut self) -> Res<bool> {
            self.0.flush()?;
            self.0.compact_range(None::<&[u8]>, None::<&[u8]>);
            Ok(true)
        }
        fn close(self: Box<Self>) -> Res<()> {
            self.0.flush()?;
            drop(self);
            Ok(())
        }
    }

    struct RocksRef<'a>(&'a rocksdb::DB);

    impl Reader for RocksRef<'_> {
        fn get(&self, key: &[u8]) -> Res<usize> {
            Ok(self.0.get_pinned(key)?.map_or(0, |v| v.len()))
        }
        fn range(&self, start: &[u8], n: usize) -> Res<usize> {
            let mode = rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward);
            let mut bytes = 0;
            for item in self.0.iterator(mode).take(n) {
                bytes += item?.1.len();
            }
            Ok(bytes)
        }
    }
}
