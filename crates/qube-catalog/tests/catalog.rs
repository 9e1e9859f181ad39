//! The catalog: transactional DDL, visibility by snapshot, the cache,
//! dependencies, sequences.

use std::sync::Arc;
use std::time::Duration;

use qube_catalog::*;
use qube_common::types::DataType;
use qube_storage::{BTreeEngine, Durability, Engine, MemoryEngine, Options};
use qube_txn::{Isolation, Mode, Mvcc, MvccOptions, Transaction};

fn open_memory() -> Catalog {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let mvcc = Arc::new(
        Mvcc::open(engine, MvccOptions { gc_interval: None, ..Default::default() }).unwrap(),
    );
    Catalog::open(mvcc).unwrap()
}

fn rw(c: &Catalog, iso: Isolation) -> Transaction {
    c.mvcc().begin(Mode::ReadWrite(iso)).unwrap()
}

fn public(c: &Catalog, t: &mut Transaction) -> ObjectId {
    let db = c.lookup(t, Namespace::Database, 0, BOOTSTRAP_NAME).unwrap().unwrap();
    c.lookup(t, Namespace::Schema, db.id, "public").unwrap().unwrap().id
}

fn table(cols: &[(&str, DataType)]) -> Def {
    Def::Table(TableDef {
        columns: cols
            .iter()
            .map(|(n, t)| Column {
                name: n.to_string(),
                data_type: t.clone(),
                nullable: true,
                default: None,
                identity: None,
                comment: None,
            })
            .collect(),
        constraints: Vec::new(),
        rowid_key: false,
    })
}

#[test]
fn a_new_instance_has_the_bootstrap_role_database_and_schema() {
    let c = open_memory();
    let mut t = rw(&c, Isolation::ReadCommitted);
    let role = c.lookup(&mut t, Namespace::Role, 0, "qubedb").unwrap().expect("role");
    match &role.def {
        Def::Role(r) => assert!(r.superuser && r.login),
        other => panic!("{other:?}"),
    }
    let db = c.lookup(&mut t, Namespace::Database, 0, "qubedb").unwrap().expect("database");
    assert_eq!(db.owner, role.id);
    assert!(c.lookup(&mut t, Namespace::Schema, db.id, "public").unwrap().is_some());
}

#[test]
fn create_table_is_transactional() {
    let c = open_memory();
    let mut t = rw(&c, Isolation::ReadCommitted);
    let s = public(&c, &mut t);
    c.create(&mut t, s, "ghost", 0, table(&[("a", DataType::Integer)])).unwrap();
    assert!(
        c.lookup(&mut t, Namespace::Relation, s, "ghost").unwrap().is_some(),
        "visible to its own transaction"
    );
    t.rollback();
    let mut t = rw(&c, Isolation::ReadCommitted);
    assert!(
        c.lookup(&mut t, Namespace::Relation, s, "ghost").unwrap().is_none(),
        "a rollback leaves nothing"
    );
    assert!(c.list(&mut t, Namespace::Relation, s).unwrap().is_empty());

    // A snapshot taken before the CREATE committed does not see the table.
    let mut old = rw(&c, Isolation::RepeatableRead);
    assert!(c.lookup(&mut old, Namespace::Relation, s, "t").unwrap().is_none());
    let mut t = rw(&c, Isolation::ReadCommitted);
    c.create(&mut t, s, "t", 0, table(&[("a", DataType::Integer)])).unwrap();
    t.commit().unwrap();
    assert!(
        c.lookup(&mut old, Namespace::Relation, s, "t").unwrap().is_none(),
        "created after the snapshot"
    );
    let mut new = rw(&c, Isolation::RepeatableRead);
    assert!(c.lookup(&mut new, Namespace::Relation, s, "t").unwrap().is_some());
}

#[test]
fn duplicate_names_are_postgres_errors() {
    let c = open_memory();
    let mut t = rw(&c, Isolation::ReadCommitted);
    let s = public(&c, &mut t);
    c.create(&mut t, s, "t", 0, table(&[])).unwrap();
    let e = c.create(&mut t, s, "t", 0, table(&[])).unwrap_err();
    assert_eq!(e.sqlstate(), "42P07", "{e}");
    // Tables and indexes share one namespace.
    let e = c
        .create(
            &mut t,
            s,
            "t",
            0,
            Def::Index(IndexDef {
                table: 1,
                columns: vec![],
                unique: false,
                predicate: None,
                method: "btree".into(),
            }),
        )
        .unwrap_err();
    assert_eq!(e.sqlstate(), "42P07");
    let e = c.create(&mut t, 0, "qubedb", 0, Def::Role(RoleDef::default())).unwrap_err();
    assert_eq!(e.sqlstate(), "42710");
    let e = c.create(&mut t, 0, "qubedb", 0, Def::Database(DatabaseDef::default())).unwrap_err();
    assert_eq!(e.sqlstate(), "42P04");
    let e = c.create(&mut t, s, "", 0, table(&[])).unwrap_err();
    assert_eq!(e.sqlstate(), "42602");
}

#[test]
fn concurrent_creates_of_one_name_serialize() {
    for iso in [Isolation::ReadCommitted, Isolation::RepeatableRead, Isolation::Serializable] {
        let c = Arc::new(open_memory());
        let mut t1 = rw(&c, iso);
        let s = public(&c, &mut t1);
        c.create(&mut t1, s, "x", 0, table(&[])).unwrap();
        let c2 = c.clone();
        let second = std::thread::spawn(move || {
            let mut t2 = rw(&c2, iso);
            c2.create(&mut t2, s, "x", 0, table(&[])).map(|_| t2.commit())
        });
        std::thread::sleep(Duration::from_millis(100));
        t1.commit().unwrap();
        let err = second.join().unwrap().unwrap_err();
        // READ COMMITTED sees the committed table; snapshots fail to serialize.
        let want = if iso == Isolation::ReadCommitted { "42P07" } else { "40001" };
        assert_eq!(err.sqlstate(), want, "{iso:?}: {err}");
    }
}

#[test]
fn the_cache_follows_ddl() {
    let c = open_memory();
    let mut t = rw(&c, Isolation::ReadCommitted);
    let s = public(&c, &mut t);
    let id = c.create(&mut t, s, "t", 0, table(&[("a", DataType::Integer)])).unwrap();
    t.commit().unwrap();
    // Fill the cache.
    let mut r = rw(&c, Isolation::ReadCommitted);
    let before = c.lookup(&mut r, Namespace::Relation, s, "t").unwrap().unwrap();
    let again = c.lookup(&mut r, Namespace::Relation, s, "t").unwrap().unwrap();
    assert!(Arc::ptr_eq(&before, &again), "second lookup is a cache hit");
    // ALTER TABLE ADD COLUMN in another transaction.
    let mut t = rw(&c, Isolation::ReadCommitted);
    let mut o = (*c.get(&mut t, id).unwrap().unwrap()).clone();
    if let Def::Table(td) = &mut o.def {
        td.columns.push(Column {
            name: "b".into(),
            data_type: DataType::Text,
            nullable: true,
            default: None,
            identity: None,
            comment: None,
        });
    }
    c.update(&mut t, o).unwrap();
    // Its own transaction sees the change; others still see the old one.
    let mine = c.lookup(&mut t, Namespace::Relation, s, "t").unwrap().unwrap();
    assert!(matches!(&mine.def, Def::Table(td) if td.columns.len() == 2));
    let mut other = rw(&c, Isolation::RepeatableRead);
    let seen = c.lookup(&mut other, Namespace::Relation, s, "t").unwrap().unwrap();
    assert!(matches!(&seen.def, Def::Table(td) if td.columns.len() == 1));
    t.commit().unwrap();
    // The old snapshot keeps the old definition; new ones see the new.
    let seen = c.lookup(&mut other, Namespace::Relation, s, "t").unwrap().unwrap();
    assert!(matches!(&seen.def, Def::Table(td) if td.columns.len() == 1));
    let mut fresh = rw(&c, Isolation::ReadCommitted);
    let seen = c.lookup(&mut fresh, Namespace::Relation, s, "t").unwrap().unwrap();
    assert!(
        matches!(&seen.def, Def::Table(td) if td.columns.len() == 2),
        "cache invalidated by the commit"
    );
}

#[test]
fn rename_moves_the_name() {
    let c = open_memory();
    let mut t = rw(&c, Isolation::ReadCommitted);
    let s = public(&c, &mut t);
    let id = c.create(&mut t, s, "a", 0, table(&[])).unwrap();
    c.create(&mut t, s, "taken", 0, table(&[])).unwrap();
    let mut o = (*c.get(&mut t, id).unwrap().unwrap()).clone();
    o.name = "taken".into();
    assert_eq!(c.update(&mut t, o.clone()).unwrap_err().sqlstate(), "42P07");
    o.name = "b".into();
    c.update(&mut t, o).unwrap();
    t.commit().unwrap();
    let mut t = rw(&c, Isolation::ReadCommitted);
    assert!(c.lookup(&mut t, Namespace::Relation, s, "a").unwrap().is_none());
    assert_eq!(c.lookup(&mut t, Namespace::Relation, s, "b").unwrap().unwrap().id, id);
}

#[test]
fn drop_follows_dependencies() {
    let c = open_memory();
    let mut t = rw(&c, Isolation::ReadCommitted);
    let s = public(&c, &mut t);
    let parent = c.create(&mut t, s, "parent", 0, table(&[("id", DataType::Integer)])).unwrap();
    let idx = c
        .create(
            &mut t,
            s,
            "parent_pkey",
            0,
            Def::Index(IndexDef {
                table: parent,
                columns: vec![IndexColumn { expr: "id".into(), desc: false, nulls_first: false }],
                unique: true,
                predicate: None,
                method: "btree".into(),
            }),
        )
        .unwrap();
    let child = c
        .create(
            &mut t,
            s,
            "child",
            0,
            Def::Table(TableDef {
                columns: vec![],
                constraints: vec![Constraint {
                    name: "child_fk".into(),
                    kind: ConstraintKind::ForeignKey {
                        columns: vec!["p".into()],
                        ref_table: parent,
                        ref_columns: vec!["id".into()],
                        on_delete: RefAction::Cascade,
                        on_update: RefAction::NoAction,
                    },
                }],
                rowid_key: false,
            }),
        )
        .unwrap();
    t.commit().unwrap();

    let mut t = rw(&c, Isolation::ReadCommitted);
    let e = c.drop(&mut t, parent, false).unwrap_err();
    assert_eq!(e.sqlstate(), "2BP01", "{e}");
    t.rollback();

    let mut t = rw(&c, Isolation::ReadCommitted);
    c.drop(&mut t, parent, true).unwrap();
    t.commit().unwrap();
    let mut t = rw(&c, Isolation::ReadCommitted);
    assert!(c.get(&mut t, parent).unwrap().is_none());
    assert!(c.get(&mut t, idx).unwrap().is_none(), "the index went with its table");
    let child = c.get(&mut t, child).unwrap().expect("the referencing table stays");
    assert!(
        matches!(&child.def, Def::Table(td) if td.constraints.is_empty()),
        "only its foreign key went"
    );

    // A schema with tables in it needs CASCADE.
    let db = c.lookup(&mut t, Namespace::Database, 0, "qubedb").unwrap().unwrap();
    let e = c.drop(&mut t, s, false).unwrap_err();
    assert_eq!(e.sqlstate(), "2BP01");
    c.drop(&mut t, s, true).unwrap();
    assert!(c.list(&mut t, Namespace::Schema, db.id).unwrap().is_empty());
    assert!(c.list(&mut t, Namespace::Relation, s).unwrap().is_empty());
}

#[test]
fn sequences_are_not_transactional() {
    let c = open_memory();
    let mut t = rw(&c, Isolation::ReadCommitted);
    let s = public(&c, &mut t);
    let seq = c
        .create(&mut t, s, "s", 0, Def::Sequence(SequenceDef { max: 3, ..SequenceDef::default() }))
        .unwrap();
    t.commit().unwrap();
    let mut t = rw(&c, Isolation::ReadCommitted);
    assert_eq!(c.nextval(&mut t, seq).unwrap(), 1);
    assert_eq!(c.nextval(&mut t, seq).unwrap(), 2);
    t.rollback();
    let mut t = rw(&c, Isolation::ReadCommitted);
    assert_eq!(c.nextval(&mut t, seq).unwrap(), 3, "a rollback does not give values back");
    let e = c.nextval(&mut t, seq).unwrap_err();
    assert_eq!(e.sqlstate(), "2200H", "{e}");
    c.setval(&mut t, seq, 1, true).unwrap();
    assert_eq!(c.nextval(&mut t, seq).unwrap(), 2);
    assert_eq!(c.setval(&mut t, seq, 9, true).unwrap_err().sqlstate(), "22003");
    let tbl = c.create(&mut t, s, "t", 0, table(&[])).unwrap();
    assert_eq!(c.nextval(&mut t, tbl).unwrap_err().sqlstate(), "42809");
}

#[test]
fn the_catalog_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options {
        durability: Durability::Always,
        checkpoint_interval: None,
        ..Options::default()
    };
    let id;
    {
        let engine: Arc<dyn Engine> = Arc::new(BTreeEngine::open(dir.path(), opts()).unwrap());
        let mvcc = Arc::new(
            Mvcc::open(engine, MvccOptions { gc_interval: None, ..Default::default() }).unwrap(),
        );
        let c = Catalog::open(mvcc).unwrap();
        let mut t = rw(&c, Isolation::ReadCommitted);
        let s = public(&c, &mut t);
        id = c
            .create(
                &mut t,
                s,
                "kept",
                0,
                table(&[("a", DataType::Array(Box::new(DataType::Text)))]),
            )
            .unwrap();
        t.commit().unwrap();
        let mut t2 = rw(&c, Isolation::ReadCommitted);
        c.create(&mut t2, s, "uncommitted", 0, table(&[])).unwrap();
        drop(t2); // never committed
    }
    let engine: Arc<dyn Engine> = Arc::new(BTreeEngine::open(dir.path(), opts()).unwrap());
    let mvcc = Arc::new(
        Mvcc::open(engine, MvccOptions { gc_interval: None, ..Default::default() }).unwrap(),
    );
    let c = Catalog::open(mvcc).unwrap();
    let mut t = rw(&c, Isolation::ReadCommitted);
    let s = public(&c, &mut t);
    let kept = c.lookup(&mut t, Namespace::Relation, s, "kept").unwrap().expect("kept");
    assert_eq!(kept.id, id);
    assert!(
        matches!(&kept.def, Def::Table(td) if td.columns[0].data_type == DataType::Array(Box::new(DataType::Text)))
    );
    assert!(c.lookup(&mut t, Namespace::Relation, s, "uncommitted").unwrap().is_none());
    // Ids are never reused.
    let new = c.create(&mut t, s, "new", 0, table(&[])).unwrap();
    assert!(new > id);
}

#[test]
fn sequence_values_never_repeat_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let engine: Arc<dyn Engine> =
            Arc::new(BTreeEngine::open(dir.path(), Options::default()).unwrap());
        let mvcc = Arc::new(
            Mvcc::open(engine, MvccOptions { gc_interval: None, ..Default::default() }).unwrap(),
        );
        Catalog::open(mvcc).unwrap()
    };
    let (seq, seq2, last) = {
        let c = open();
        let mut t = rw(&c, Isolation::ReadCommitted);
        let s = public(&c, &mut t);
        let seq = c.create(&mut t, s, "s", 0, Def::Sequence(SequenceDef::default())).unwrap();
        let seq2 = c.create(&mut t, s, "s2", 0, Def::Sequence(SequenceDef::default())).unwrap();
        t.commit().unwrap();
        let mut t = rw(&c, Isolation::ReadCommitted);
        let mut last = 0;
        for i in 1..=40 {
            last = c.nextval(&mut t, seq).unwrap();
            assert_eq!(last, i);
        }
        c.setval(&mut t, seq2, 10, false).unwrap();
        (seq, seq2, last)
    };
    let c = open();
    let mut t = rw(&c, Isolation::ReadCommitted);
    let next = c.nextval(&mut t, seq).unwrap();
    assert!(next > last, "{next} after {last}: a value was handed out twice");
    assert_eq!(c.nextval(&mut t, seq2).unwrap(), 10, "setval(…, false) survives");
    assert_eq!(c.nextval(&mut t, seq2).unwrap(), 11);
}

#[test]
fn a_table_definition_without_the_rowid_key_flag_reads_as_false() {
    // Definitions written before `rowid_key` existed carry no such field.
    let old = r#"{"columns":[],"constraints":[]}"#;
    let def: TableDef = serde_json::from_str(old).unwrap();
    assert!(!def.rowid_key);
    // And a definition without the flag set is written as before.
    assert_eq!(serde_json::to_string(&def).unwrap(), old);
    let keyed = TableDef { rowid_key: true, ..TableDef::default() };
    let back: TableDef = serde_json::from_str(&serde_json::to_string(&keyed).unwrap()).unwrap();
    assert!(back.rowid_key);
}
