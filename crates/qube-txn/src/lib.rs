//! QubeDB transactions: MVCC with PostgreSQL's isolation levels over any
//! storage [`Engine`](qube_storage::Engine).
//!
//! * [`keys`]: how versions and metadata sit in the engine's keyspace;
//! * [`mvcc`]: snapshots, buffered writes, commit, time travel, GC;
//! * [`locks`]: row locks and deadlock detection;
//! * [`ssi`]: serializable snapshot isolation;
//! * [`writeset`]: a transaction's buffered writes.

pub mod keys;
pub mod locks;
pub mod mvcc;
pub mod ssi;
pub mod writeset;

pub use keys::Ts;
pub use mvcc::{Isolation, Mode, Mvcc, MvccOptions, MvccStatus, ScanKey, Transaction};

/// Longest user key: the version key (tag, escaped key, terminator,
/// timestamp) must fit the engine's limit even if every byte is escaped.
pub const MAX_KEY_LEN: usize = (qube_storage::MAX_KEY_LEN - 11) / 2;
