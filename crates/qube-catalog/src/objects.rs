//! The definitions the catalog stores.

use qube_common::types::DataType;
use serde::{Deserialize, Serialize};

use crate::{Namespace, ObjectId};

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub id: ObjectId,
    /// The database of a schema, the schema of a relation; 0 for databases and roles.
    pub parent: ObjectId,
    pub name: String,
    /// The owning role.
    pub owner: ObjectId,
    /// COMMENT ON.
    pub comment: Option<String>,
    pub def: Def,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Def {
    Database(DatabaseDef),
    Schema(SchemaDef),
    Table(TableDef),
    Index(IndexDef),
    Sequence(SequenceDef),
    View(ViewDef),
    Role(RoleDef),
}

impl Def {
    pub fn namespace(&self) -> Namespace {
        match self {
            Def::Database(_) => Namespace::Database,
            Def::Schema(_) => Namespace::Schema,
            Def::Role(_) => Namespace::Role,
            Def::Table(_) | Def::Index(_) | Def::Sequence(_) | Def::View(_) => Namespace::Relation,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Def::Database(_) => "database",
            Def::Schema(_) => "schema",
            Def::Table(_) => "table",
            Def::Index(_) => "index",
            Def::Sequence(_) => "sequence",
            Def::View(_) => "view",
            Def::Role(_) => "role",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseDef {
    pub encoding: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaDef {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub columns: Vec<Column>,
    pub constraints: Vec<Constraint>,
    /// The rows are keyed by the primary key's value (a single column of
    /// type smallint, integer or bigint), which has no index entries of
    /// its own: see qube-sql's `storage` module. Absent in definitions
    /// written before the flag existed, which read as false (rows keyed
    /// by counter rowids, the primary key an ordinary unique index).
    #[serde(default, skip_serializing_if = "is_false")]
    pub rowid_key: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl TableDef {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    /// DEFAULT, as SQL text (bound again when used).
    pub default: Option<String>,
    pub identity: Option<Identity>,
    pub comment: Option<String>,
}

/// GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY, backed by a sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub always: bool,
    pub sequence: ObjectId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub name: String,
    pub kind: ConstraintKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefAction {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConstraintKind {
    PrimaryKey {
        columns: Vec<String>,
        index: ObjectId,
    },
    Unique {
        columns: Vec<String>,
        index: ObjectId,
    },
    /// CHECK, as SQL text.
    Check {
        expr: String,
    },
    ForeignKey {
        columns: Vec<String>,
        ref_table: ObjectId,
        ref_columns: Vec<String>,
        on_delete: RefAction,
        on_update: RefAction,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDef {
    pub table: ObjectId,
    pub columns: Vec<IndexColumn>,
    pub unique: bool,
    /// Partial index predicate (WHERE …), as SQL text.
    pub predicate: Option<String>,
    /// Access method: "btree" (later "hnsw", "gin", …).
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexColumn {
    /// A column name or an expression, as SQL text.
    pub expr: String,
    pub desc: bool,
    pub nulls_first: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceDef {
    pub data_type: DataType,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cycle: bool,
    /// OWNED BY table.column (dropped with it).
    pub owned_by: Option<(ObjectId, String)>,
}

impl Default for SequenceDef {
    fn default() -> Self {
        SequenceDef {
            data_type: DataType::BigInt,
            start: 1,
            increment: 1,
            min: 1,
            max: i64::MAX,
            cycle: false,
            owned_by: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ViewDef {
    /// The defining query, as SQL text.
    pub query: String,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleDef {
    pub superuser: bool,
    pub login: bool,
    pub createdb: bool,
    pub createrole: bool,
    /// SCRAM-SHA-256 verifier, as PostgreSQL stores it (see `scram`).
    pub password: Option<String>,
    /// Roles this one is a member of.
    pub member_of: Vec<ObjectId>,
    /// VALID UNTIL: when the password stops being accepted, in µs since
    /// 2000-01-01 UTC (`i64::MAX` for 'infinity'); None: always valid.
    #[serde(default)]
    pub valid_until: Option<i64>,
    /// CONNECTION LIMIT (-1: none). Stored and shown, not enforced yet.
    #[serde(default = "no_limit")]
    pub connection_limit: i32,
}

fn no_limit() -> i32 {
    -1
}

impl Default for RoleDef {
    fn default() -> Self {
        RoleDef {
            superuser: false,
            login: false,
            createdb: false,
            createrole: false,
            password: None,
            member_of: Vec::new(),
            valid_until: None,
            connection_limit: -1,
        }
    }
}
