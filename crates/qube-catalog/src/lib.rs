//! The catalog: databases, schemas, tables (columns, types, constraints),
//! indexes, sequences, views, and roles, stored through MVCC so that DDL is
//! transactional.
//!
//! # Storage
//!
//! Catalog entries are ordinary MVCC keys under the catalog's prefix
//! (0x00 'c'), so a CREATE TABLE that rolls back leaves nothing, and a
//! transaction does not see objects created after its snapshot:
//!
//! ```text
//! 0x00 'c' 'o' id:u64 BE                          → Object (JSON)
//! 0x00 'c' 'n' namespace:u8 parent:u64 BE name    → id:u64 BE
//! ```
//!
//! Names are unique per namespace and parent, as in PostgreSQL: databases
//! and roles are global (parent 0), schemas are per database, and tables,
//! views, indexes and sequences share one relation namespace per schema.
//! Creating an object takes the row lock of its name key
//! (`get_for_update`), so two sessions creating the same name serialize and
//! the second gets `42P07`/`42710` duplicate errors, at every isolation
//! level.
//!
//! Object ids and sequence values are not transactional (as OIDs and
//! `nextval` are not in PostgreSQL): they live outside MVCC, directly in the
//! engine under 0x03, so that concurrent DDL never conflicts on a counter.
//! (`0x03 'kl'` beside them is the SQL layer's: the key layout its tables
//! and indexes use, `qube_sql::storage::check_key_layout`.)
//!
//! # Cache
//!
//! Lookups by name and by id are cached. An entry is valid for a
//! transaction that sees every committed catalog change (its snapshot is
//! not older than `Mvcc::ddl_version`) and has none of its own; DDL marks
//! its transaction (`Transaction::mark_ddl`), and a commit of such a
//! transaction moves `ddl_version`, which empties the cache.

mod objects;
pub mod scram;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use qube_common::{Error, Result};
use qube_storage::{Direction, Engine, KeyRange, WriteBatch};
use qube_txn::{Mvcc, Transaction, Ts};

pub use objects::*;

/// Identifies a catalog object.
pub type ObjectId = u64;

/// Which names an object's name must differ from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Namespace {
    Database = 1,
    Schema = 2,
    Relation = 3,
    Role = 4,
}

const OBJECT_PREFIX: &[u8] = b"\x00co";
const NAME_PREFIX: &[u8] = b"\x00cn";
/// Engine keys (outside MVCC) of the non-transactional counters.
/// The object-id counter (`next_id`): present once any object exists,
/// which the SQL layer's key-layout check relies on.
pub const NEXT_ID_KEY: &[u8] = b"\x03id";
const SEQUENCE_PREFIX: &[u8] = b"\x03sq";

fn object_key(id: ObjectId) -> Vec<u8> {
    let mut k = OBJECT_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn name_key(ns: Namespace, parent: ObjectId, name: &str) -> Vec<u8> {
    let mut k = name_prefix(ns, parent);
    k.extend_from_slice(name.as_bytes());
    k
}

fn name_prefix(ns: Namespace, parent: ObjectId) -> Vec<u8> {
    let mut k = NAME_PREFIX.to_vec();
    k.push(ns as u8);
    k.extend_from_slice(&parent.to_be_bytes());
    k
}

fn be_u64(v: &[u8]) -> Result<u64> {
    let b: [u8; 8] =
        v.try_into().map_err(|_| Error::Internal("malformed catalog counter".into()))?;
    Ok(u64::from_be_bytes(b))
}

/// PostgreSQL's error for a name that is taken.
fn duplicate(def: &Def, name: &str) -> Error {
    let (code, what) = match def {
        Def::Database(_) => ("42P04", "database"),
        Def::Schema(_) => ("42P06", "schema"),
        Def::Role(_) => ("42710", "role"),
        _ => ("42P07", "relation"),
    };
    Error::user(code, format!("{what} \"{name}\" already exists"))
}

/// Values a sequence may hand out between two durable writes.
const SEQ_LOG_AHEAD: u32 = 32;

/// A sequence's position (see `Catalog::nextval`).
struct SeqState {
    /// The last value handed out, or the first to hand out if not `called`.
    value: i64,
    called: bool,
    /// Values left before the next durable write.
    ahead: u32,
}

#[derive(Default)]
struct Cache {
    version: Ts,
    by_name: HashMap<(Namespace, ObjectId, String), Option<Arc<Object>>>,
    by_id: HashMap<ObjectId, Option<Arc<Object>>>,
    indexes: HashMap<ObjectId, Vec<Arc<Object>>>,
    referencing: HashMap<ObjectId, Vec<Arc<Object>>>,
}

/// The catalog of one QubeDB instance.
pub struct Catalog {
    mvcc: Arc<Mvcc>,
    cache: Mutex<Cache>,
    /// Serialises the non-transactional counters, and holds the current
    /// value of every sequence used since open.
    counters: Mutex<HashMap<ObjectId, SeqState>>,
}

impl Drop for Catalog {
    fn drop(&mut self) {
        // Best effort: a failed write leaves the logged-ahead values,
        // which skip some numbers but never repeat one.
        let _ = self.flush_sequences();
    }
}

/// Name of the superuser role and database a new instance starts with.
pub const BOOTSTRAP_NAME: &str = "qubedb";

impl Catalog {
    /// Opens the catalog; a new instance gets the role `qubedb` (superuser),
    /// the database `qubedb` owned by it, and its schema `public`.
    pub fn open(mvcc: Arc<Mvcc>) -> Result<Catalog> {
        let cat = Catalog {
            mvcc,
            cache: Mutex::new(Cache::default()),
            counters: Mutex::new(HashMap::new()),
        };
        let mut txn =
            cat.mvcc.begin(qube_txn::Mode::ReadWrite(qube_txn::Isolation::ReadCommitted))?;
        if cat.lookup(&mut txn, Namespace::Role, 0, BOOTSTRAP_NAME)?.is_none() {
            let role = cat.create(
                &mut txn,
                0,
                BOOTSTRAP_NAME,
                0,
                Def::Role(RoleDef {
                    superuser: true,
                    login: true,
                    createdb: true,
                    createrole: true,
                    ..RoleDef::default()
                }),
            )?;
            let db = cat.create(
                &mut txn,
                0,
                BOOTSTRAP_NAME,
                role,
                Def::Database(DatabaseDef::default()),
            )?;
            cat.create(&mut txn, db, "public", role, Def::Schema(SchemaDef::default()))?;
            txn.commit()?;
        } else {
            txn.rollback();
        }
        Ok(cat)
    }

    pub fn mvcc(&self) -> &Arc<Mvcc> {
        &self.mvcc
    }

    fn engine(&self) -> &Arc<dyn Engine> {
        self.mvcc.engine()
    }

    /// Allocates an object id (not transactional: never reused, gaps allowed).
    fn next_id(&self) -> Result<ObjectId> {
        let _g = self.counters.lock();
        let cur = match self.engine().get(NEXT_ID_KEY)? {
            Some(v) => be_u64(&v)?,
            // Ids below 16384 are left for built-in objects, as in PostgreSQL.
            None => 16384,
        };
        let mut b = WriteBatch::new();
        b.set(NEXT_ID_KEY, &(cur + 1).to_be_bytes());
        self.engine().write(b)?;
        Ok(cur)
    }

    /// `nextval`: advances a sequence by its increment and returns the new
    /// value. Not transactional (a rollback does not give values back), as
    /// in PostgreSQL.
    ///
    /// The current value lives in memory; the engine holds a value at
    /// least as far as any value handed out, written ahead every
    /// `SEQ_LOG_AHEAD` calls (as PostgreSQL's `log_cnt`), so a crash skips
    /// some values but never repeats one, and a `nextval` costs a durable
    /// write only once in that many calls.
    pub fn nextval(&self, txn: &mut Transaction, seq: ObjectId) -> Result<i64> {
        let (obj, def) = self.sequence(txn, seq)?;
        let mut states = self.counters.lock();
        let st = self.seq_state(&mut states, seq, &def)?;
        let next = if !st.called {
            st.value
        } else {
            match st.value.checked_add(def.increment) {
                Some(n) if n >= def.min && n <= def.max => n,
                _ if def.cycle => {
                    // A wrap starts a new log-ahead window.
                    st.ahead = 0;
                    if def.increment > 0 { def.min } else { def.max }
                }
                _ => {
                    return Err(Error::user(
                        "2200H",
                        format!(
                            "nextval: reached {} value of sequence \"{}\" ({})",
                            if def.increment > 0 { "maximum" } else { "minimum" },
                            obj.name,
                            if def.increment > 0 { def.max } else { def.min }
                        ),
                    ));
                }
            }
        };
        if st.ahead == 0 {
            // Log a value SEQ_LOG_AHEAD steps on (within the bounds).
            let mut far = next;
            for _ in 1..SEQ_LOG_AHEAD {
                match far.checked_add(def.increment) {
                    Some(n) if n >= def.min && n <= def.max => far = n,
                    _ => break,
                }
            }
            self.write_seq(seq, far, true)?;
            st.ahead = SEQ_LOG_AHEAD;
        }
        st.ahead -= 1;
        st.value = next;
        st.called = true;
        Ok(next)
    }

    /// `setval(seq, value, is_called)`: with `is_called` the next
    /// `nextval` returns `value + increment`, without it `value`.
    pub fn setval(
        &self,
        txn: &mut Transaction,
        seq: ObjectId,
        value: i64,
        is_called: bool,
    ) -> Result<()> {
        let (obj, def) = self.sequence(txn, seq)?;
        if value < def.min || value > def.max {
            return Err(Error::user(
                "22003",
                format!(
                    "setval: value {value} is out of bounds for sequence \"{}\" ({}..{})",
                    obj.name, def.min, def.max
                ),
            ));
        }
        let mut states = self.counters.lock();
        self.write_seq(seq, value, is_called)?;
        states.insert(seq, SeqState { value, called: is_called, ahead: 0 });
        Ok(())
    }

    /// The last value handed out (or to be handed out first, when
    /// `is_called` is false): for `pg_sequences` and `SELECT * FROM seq`.
    pub fn sequence_value(&self, txn: &mut Transaction, seq: ObjectId) -> Result<(i64, bool)> {
        let (_, def) = self.sequence(txn, seq)?;
        let mut states = self.counters.lock();
        let st = self.seq_state(&mut states, seq, &def)?;
        Ok((st.value, st.called))
    }

    fn sequence(&self, txn: &mut Transaction, seq: ObjectId) -> Result<(Arc<Object>, SequenceDef)> {
        let obj = self
            .get(txn, seq)?
            .ok_or_else(|| Error::user("42P01", format!("sequence {seq} does not exist")))?;
        let Def::Sequence(def) = &obj.def else {
            return Err(Error::user("42809", format!("\"{}\" is not a sequence", obj.name)));
        };
        let def = def.clone();
        Ok((obj, def))
    }

    fn seq_key(seq: ObjectId) -> Vec<u8> {
        let mut key = SEQUENCE_PREFIX.to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// Stored form: the value (8 bytes BE) and, when it has not been
    /// handed out yet (`setval(…, false)`), a 0 byte.
    fn write_seq(&self, seq: ObjectId, value: i64, called: bool) -> Result<()> {
        let mut v = (value as u64).to_be_bytes().to_vec();
        if !called {
            v.push(0);
        }
        let mut b = WriteBatch::new();
        b.set(&Self::seq_key(seq), &v);
        self.engine().write(b)
    }

    fn seq_state<'s>(
        &self,
        states: &'s mut HashMap<ObjectId, SeqState>,
        seq: ObjectId,
        def: &SequenceDef,
    ) -> Result<&'s mut SeqState> {
        let st = match states.entry(seq) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let st = match self.engine().get(&Self::seq_key(seq))? {
                    None => SeqState { value: def.start, called: false, ahead: 0 },
                    Some(v) => SeqState {
                        value: be_u64(&v[..8.min(v.len())])? as i64,
                        called: v.len() == 8,
                        ahead: 0,
                    },
                };
                e.insert(st)
            }
        };
        Ok(st)
    }

    /// Writes every sequence's exact position, so that after a clean
    /// close no values are skipped (only a crash skips the values logged
    /// ahead). Called when the catalog is dropped.
    pub fn flush_sequences(&self) -> Result<()> {
        let mut states = self.counters.lock();
        let mut b = WriteBatch::new();
        for (seq, st) in states.iter_mut().filter(|(_, st)| st.ahead > 0) {
            let mut v = (st.value as u64).to_be_bytes().to_vec();
            if !st.called {
                v.push(0);
            }
            b.set(&Self::seq_key(*seq), &v);
            st.ahead = 0;
        }
        if b.is_empty() { Ok(()) } else { self.engine().write(b) }
    }

    /// Forgets a sequence's state (ALTER SEQUENCE … RESTART, DROP): the
    /// next use reads the stored value again.
    pub fn reset_sequence(&self, seq: ObjectId) -> Result<()> {
        let mut states = self.counters.lock();
        states.remove(&seq);
        let mut b = WriteBatch::new();
        b.delete(&Self::seq_key(seq));
        self.engine().write(b)
    }

    fn cache_usable(&self, txn: &Transaction) -> Option<Ts> {
        let v = self.mvcc.ddl_version();
        (!txn.has_ddl() && txn.read_ts() >= v).then_some(v)
    }

    /// Looks an object up by namespace, parent and name.
    pub fn lookup(
        &self,
        txn: &mut Transaction,
        ns: Namespace,
        parent: ObjectId,
        name: &str,
    ) -> Result<Option<Arc<Object>>> {
        let usable = self.cache_usable(txn);
        let ck = (ns, parent, name.to_string());
        if let Some(v) = usable {
            let c = self.cache.lock();
            if c.version == v
                && let Some(hit) = c.by_name.get(&ck)
            {
                return Ok(hit.clone());
            }
        }
        let found = match txn.get(&name_key(ns, parent, name))? {
            Some(id) => self.read_object(txn, be_u64(&id)?)?,
            None => None,
        };
        if let Some(v) = usable {
            let mut c = self.cache.lock();
            if c.version != v {
                *c = Cache { version: v, ..Cache::default() };
            }
            c.by_name.insert(ck, found.clone());
        }
        Ok(found)
    }

    /// Looks an object up by id.
    pub fn get(&self, txn: &mut Transaction, id: ObjectId) -> Result<Option<Arc<Object>>> {
        let usable = self.cache_usable(txn);
        if let Some(v) = usable {
            let c = self.cache.lock();
            if c.version == v
                && let Some(hit) = c.by_id.get(&id)
            {
                return Ok(hit.clone());
            }
        }
        let found = self.read_object(txn, id)?;
        if let Some(v) = usable {
            let mut c = self.cache.lock();
            if c.version != v {
                *c = Cache { version: v, ..Cache::default() };
            }
            c.by_id.insert(id, found.clone());
        }
        Ok(found)
    }

    fn read_object(&self, txn: &mut Transaction, id: ObjectId) -> Result<Option<Arc<Object>>> {
        match txn.get(&object_key(id))? {
            None => Ok(None),
            Some(raw) => {
                let obj: Object = serde_json::from_slice(&raw).map_err(|e| {
                    Error::Internal(format!("catalog object {id} does not decode: {e}"))
                })?;
                Ok(Some(Arc::new(obj)))
            }
        }
    }

    /// Every object of a namespace under `parent`, by name.
    pub fn list(
        &self,
        txn: &mut Transaction,
        ns: Namespace,
        parent: ObjectId,
    ) -> Result<Vec<Arc<Object>>> {
        let prefix = name_prefix(ns, parent);
        let mut out = Vec::new();
        for (_, id) in txn.scan(KeyRange::prefix(&prefix), Direction::Forward)? {
            if let Some(o) = self.get(txn, be_u64(&id)?)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Every object (for dependency checks and the system views).
    pub fn all(&self, txn: &mut Transaction) -> Result<Vec<Arc<Object>>> {
        let mut out = Vec::new();
        for (k, _) in txn.scan(KeyRange::prefix(OBJECT_PREFIX), Direction::Forward)? {
            if let Some(o) = self.get(txn, be_u64(&k[OBJECT_PREFIX.len()..])?)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Creates an object; fails with PostgreSQL's duplicate-object error if
    /// the name is taken (waiting first for a concurrent creator of the
    /// same name to finish).
    pub fn create(
        &self,
        txn: &mut Transaction,
        parent: ObjectId,
        name: &str,
        owner: ObjectId,
        def: Def,
    ) -> Result<ObjectId> {
        if name.is_empty() || name.len() > 63 * 4 {
            return Err(Error::user("42602", format!("invalid name \"{name}\"")));
        }
        let ns = def.namespace();
        let nk = name_key(ns, parent, name);
        txn.mark_ddl();
        if txn.get_for_update(&nk)?.is_some() {
            return Err(duplicate(&def, name));
        }
        let id = self.next_id()?;
        let obj = Object { id, parent, name: name.to_string(), owner, comment: None, def };
        self.put(txn, &obj)?;
        txn.set(&nk, &id.to_be_bytes())?;
        Ok(id)
    }

    fn put(&self, txn: &mut Transaction, obj: &Object) -> Result<()> {
        let raw = serde_json::to_vec(obj)
            .map_err(|e| Error::Internal(format!("catalog object does not encode: {e}")))?;
        txn.set(&object_key(obj.id), &raw)
    }

    /// Replaces an object's definition (ALTER …, COMMENT ON). A rename
    /// moves its name entry, with the duplicate check of `create`.
    pub fn update(&self, txn: &mut Transaction, obj: Object) -> Result<()> {
        let old = self
            .get(txn, obj.id)?
            .ok_or_else(|| Error::user("42704", format!("object {} does not exist", obj.id)))?;
        txn.mark_ddl();
        // Lock the object so concurrent ALTERs serialize.
        txn.get_for_update(&object_key(obj.id))?;
        if old.name != obj.name || old.parent != obj.parent {
            let ns = obj.def.namespace();
            let nk = name_key(ns, obj.parent, &obj.name);
            if txn.get_for_update(&nk)?.is_some() {
                return Err(duplicate(&obj.def, &obj.name));
            }
            txn.delete(&name_key(old.def.namespace(), old.parent, &old.name))?;
            txn.set(&nk, &obj.id.to_be_bytes())?;
        }
        self.put(txn, &obj)
    }

    /// Objects that depend on `id`: indexes on a table, sequences owned by
    /// it, foreign keys of other tables that reference it, objects inside a
    /// schema or database.
    /// The indexes of a table, cached like lookups (every query that
    /// reads or writes a table needs them; `dependents` reads the whole
    /// catalog).
    pub fn indexes_of(&self, txn: &mut Transaction, table: ObjectId) -> Result<Vec<Arc<Object>>> {
        let usable = self.cache_usable(txn);
        if let Some(v) = usable {
            let c = self.cache.lock();
            if c.version == v
                && let Some(hit) = c.indexes.get(&table)
            {
                return Ok(hit.clone());
            }
        }
        let found: Vec<Arc<Object>> = self
            .dependents(txn, table)?
            .into_iter()
            .filter(|o| matches!(&o.def, Def::Index(ix) if ix.table == table))
            .collect();
        if let Some(v) = usable {
            let mut c = self.cache.lock();
            if c.version != v {
                *c = Cache { version: v, ..Cache::default() };
            }
            c.indexes.insert(table, found.clone());
        }
        Ok(found)
    }

    /// The tables with a foreign key that references `table` (cached like
    /// `indexes_of`).
    pub fn referencing(&self, txn: &mut Transaction, table: ObjectId) -> Result<Vec<Arc<Object>>> {
        let usable = self.cache_usable(txn);
        if let Some(v) = usable {
            let c = self.cache.lock();
            if c.version == v
                && let Some(hit) = c.referencing.get(&table)
            {
                return Ok(hit.clone());
            }
        }
        let found: Vec<Arc<Object>> = self
            .dependents(txn, table)?
            .into_iter()
            .filter(|o| {
                matches!(&o.def, Def::Table(t) if t.constraints.iter().any(|c| matches!(&c.kind, ConstraintKind::ForeignKey { ref_table, .. } if *ref_table == table)))
            })
            .collect();
        if let Some(v) = usable {
            let mut c = self.cache.lock();
            if c.version != v {
                *c = Cache { version: v, ..Cache::default() };
            }
            c.referencing.insert(table, found.clone());
        }
        Ok(found)
    }

    pub fn dependents(&self, txn: &mut Transaction, id: ObjectId) -> Result<Vec<Arc<Object>>> {
        let mut out = Vec::new();
        for o in self.all(txn)? {
            if o.id == id {
                continue;
            }
            let depends = o.parent == id
                || match &o.def {
                    Def::Index(ix) => ix.table == id,
                    Def::Sequence(s) => s.owned_by.as_ref().is_some_and(|(t, _)| *t == id),
                    Def::Table(t) => t.constraints.iter().any(|c| matches!(&c.kind, ConstraintKind::ForeignKey { ref_table, .. } if *ref_table == id)),
                    _ => false,
                };
            if depends {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Drops an object. With `cascade`, its dependents go too (foreign-key
    /// constraints referencing a dropped table are removed from their
    /// tables); without it, dependents are an error (2BP01), except the
    /// indexes and owned sequences of a dropped table, which always go
    /// with it, as in PostgreSQL.
    pub fn drop(&self, txn: &mut Transaction, id: ObjectId, cascade: bool) -> Result<()> {
        let obj = self
            .get(txn, id)?
            .ok_or_else(|| Error::user("42704", format!("object {id} does not exist")))?;
        txn.mark_ddl();
        txn.get_for_update(&object_key(id))?;
        for dep in self.dependents(txn, id)? {
            if self.get(txn, dep.id)?.is_none() {
                // Already dropped with an earlier dependent (a table's index
                // inside a dropped schema).
                continue;
            }
            let owned = matches!(&dep.def, Def::Index(ix) if ix.table == id)
                || matches!(&dep.def, Def::Sequence(s) if s.owned_by.as_ref().is_some_and(|(t, _)| *t == id));
            if owned {
                self.drop(txn, dep.id, cascade)?;
                continue;
            }
            if !cascade {
                return Err(Error::user(
                    "2BP01",
                    format!(
                        "cannot drop {} \"{}\" because other objects depend on it (\"{}\")",
                        obj.def.kind_name(),
                        obj.name,
                        dep.name
                    ),
                ));
            }
            if let Def::Table(t) = &dep.def
                && dep.parent != id
            {
                // Only the foreign keys that reference the dropped table go.
                let mut t = t.clone();
                t.constraints.retain(|c| !matches!(&c.kind, ConstraintKind::ForeignKey { ref_table, .. } if *ref_table == id));
                let mut o = (*dep).clone();
                o.def = Def::Table(t);
                self.update(txn, o)?;
            } else {
                self.drop(txn, dep.id, true)?;
            }
        }
        txn.delete(&object_key(id))?;
        txn.delete(&name_key(obj.def.namespace(), obj.parent, &obj.name))?;
        Ok(())
    }
}
