//! The system relations that tools read: `pg_catalog` and
//! `information_schema`, computed from the catalog when a query runs.
//!
//! # Shape
//!
//! A system relation is a fixed list of columns with PostgreSQL's names
//! (`TABLES`) and a function that makes its rows from the catalog
//! (`rows`). Nothing is stored: the binder turns a reference to one into
//! a `Plan::System` node, and the executor computes the rows with the
//! statement's transaction and search path (`Ctx::env`), so a prepared
//! statement sees the catalog as it is when it runs, and a transaction
//! sees its own uncommitted DDL.
//!
//! # Names
//!
//! `pg_catalog.X` and `information_schema.X` name system relations (also
//! with the current database in front). An unqualified name is looked up
//! in `pg_catalog` first, before the temporary schema and the search
//! path, as PostgreSQL does when `pg_catalog` is not listed in the path.
//! `information_schema` relations need their schema named. Neither schema
//! is a catalog object: `pg_namespace` shows them with fixed oids (11 and
//! `INFORMATION_SCHEMA_OID`). Writing to a system relation is `42501`
//! (permission denied), as for a PostgreSQL superuser without
//! `allow_system_table_mods`.
//!
//! # Oids
//!
//! Catalog object ids are the oids of databases, schemas, relations and
//! roles (ids start at 16384, as user oids do in PostgreSQL). Built-in
//! types have PostgreSQL's real type oids (`qube_common::types::oid`).
//! System relations get PostgreSQL's own oids where PostgreSQL has them
//! (`pg_class` is 1259, so `classoid = 'pg_class'::regclass` works), the
//! others `SYSTEM_REL_BASE + n`. Objects that are not
//! catalog objects get derived oids: a primary-key or unique constraint
//! has its index's id, other constraints `CONSTRAINT_BASE + table * 64 +
//! position`, a column default `ATTRDEF_BASE + …`.
//!
//! There is no `oid` or `regclass` type: oid columns are `integer` (their
//! values stay below 2^31 while the catalog has fewer than about two
//! billion objects), `name` columns and `"char"` columns are `text`.
//! `x::oid` is `x::integer`; `'t'::regclass` is the relation's oid (an
//! integer, 42P01 if unknown) and `oid::regclass` is its name (text), so
//! `c.oid::regclass` prints a name and `c.oid = 't'::regclass` compares
//! oids, which is how tools use them; `regtype`, `regnamespace`,
//! `regrole` and `regproc` work the same way.
//!
//! # Functions
//!
//! The catalog functions tools call (`pg_get_indexdef`, `format_type`,
//! `pg_table_is_visible`, `obj_description`, …) are `Func::Sys`, bound
//! in `function` and evaluated in `call` with the execution context.

use std::sync::Arc;

use qube_catalog::{ConstraintKind, Def, IndexDef, Namespace, Object, ObjectId, RefAction};
use qube_common::types::{self as pgt, DataType};
use qube_common::{Error, Result};

use crate::exec::{Ctx, Row};
use crate::plan::bind::B;
use crate::plan::{Expr, Func};
use crate::types::Value;

/// The oid of `pg_catalog` (as in PostgreSQL).
pub const PG_CATALOG_OID: u64 = 11;
/// The oid of `information_schema`.
pub const INFORMATION_SCHEMA_OID: u64 = 13_000;
/// System relations' oids start here.
pub const SYSTEM_REL_BASE: u64 = 10_000;
/// Check and foreign-key constraints' oids start here.
const CONSTRAINT_BASE: u64 = 1 << 30;
/// Column defaults' oids start here.
const ATTRDEF_BASE: u64 = 3 << 29;
/// `pg_class`'s oid, the `classoid` of relations in `pg_description`.
const PG_CLASS_OID: i32 = 1259;
const PG_NAMESPACE_OID: i32 = 2615;
const PG_DATABASE_OID: i32 = 1262;

/// A column type of a system relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// `oid` (and `regproc`): integer.
    Oid,
    /// `name`, `"char"`, `text`, `pg_node_tree`: text.
    Text,
    Bool,
    I2,
    I4,
    I8,
    F4,
    TimestampTz,
    TextArr,
    /// `oid[]`, and `oidvector`: integer[].
    OidArr,
    /// `int2[]`: smallint[].
    I2Arr,
    /// `int2vector` (`pg_index.indkey`, `indoption`): a smallint array in
    /// SQL (`= ANY(indkey)`, `unnest`, `array_to_string` work), OID 22 and
    /// text `1 2` on the wire; subscripts start at 1 rather than 0.
    I2Vector,
}

impl Ty {
    pub fn data_type(self) -> DataType {
        match self {
            Ty::Oid | Ty::I4 => DataType::Integer,
            Ty::Text => DataType::Text,
            Ty::Bool => DataType::Boolean,
            Ty::I2 => DataType::SmallInt,
            Ty::I8 => DataType::BigInt,
            Ty::F4 => DataType::Real,
            Ty::TimestampTz => DataType::TimestampTz,
            Ty::TextArr => DataType::Array(Box::new(DataType::Text)),
            Ty::OidArr => DataType::Array(Box::new(DataType::Integer)),
            Ty::I2Arr => DataType::Array(Box::new(DataType::SmallInt)),
            Ty::I2Vector => DataType::Int2Vector,
        }
    }

    /// The value of a column a row does not set.
    fn default(self) -> Value {
        match self {
            Ty::Oid | Ty::I4 => Value::Int4(0),
            Ty::Bool => Value::Bool(false),
            Ty::I2 => Value::Int2(0),
            Ty::I8 => Value::Int8(0),
            Ty::F4 => Value::Float4(0.0),
            _ => Value::Null,
        }
    }
}

/// A system relation: its schema (`true`: information_schema), name and
/// columns.
#[derive(Debug)]
pub struct SysTable {
    pub info_schema: bool,
    pub name: &'static str,
    pub columns: &'static [(&'static str, Ty)],
    /// Views in PostgreSQL (relkind 'v').
    pub view: bool,
}

use Ty::*;

macro_rules! tables {
    ($( $info:literal $view:literal $name:literal [ $( $col:literal $ty:ident ),* $(,)? ] )*) => {
        /// Every system relation.
        pub static TABLES: &[SysTable] = &[
            $( SysTable { info_schema: $info, view: $view, name: $name, columns: &[ $( ($col, $ty) ),* ] }, )*
        ];
    };
}

tables! {
    false false "pg_namespace" ["oid" Oid, "nspname" Text, "nspowner" Oid, "nspacl" TextArr]
    false false "pg_class" [
        "oid" Oid, "relname" Text, "relnamespace" Oid, "reltype" Oid, "reloftype" Oid,
        "relowner" Oid, "relam" Oid, "relfilenode" Oid, "reltablespace" Oid, "relpages" I4,
        "reltuples" F4, "relallvisible" I4, "reltoastrelid" Oid, "relhasindex" Bool,
        "relisshared" Bool, "relpersistence" Text, "relkind" Text, "relnatts" I2,
        "relchecks" I2, "relhasrules" Bool, "relhastriggers" Bool, "relhassubclass" Bool,
        "relrowsecurity" Bool, "relforcerowsecurity" Bool, "relispopulated" Bool,
        "relreplident" Text, "relispartition" Bool, "relrewrite" Oid, "relfrozenxid" I4,
        "relminmxid" I4, "relacl" TextArr, "reloptions" TextArr, "relpartbound" Text,
    ]
    false false "pg_attribute" [
        "attrelid" Oid, "attname" Text, "atttypid" Oid, "attstattarget" I4, "attlen" I2,
        "attnum" I2, "attndims" I4, "attcacheoff" I4, "atttypmod" I4, "attbyval" Bool,
        "attalign" Text, "attstorage" Text, "attcompression" Text, "attnotnull" Bool,
        "atthasdef" Bool, "atthasmissing" Bool, "attidentity" Text, "attgenerated" Text,
        "attisdropped" Bool, "attislocal" Bool, "attinhcount" I4, "attcollation" Oid,
        "attacl" TextArr, "attoptions" TextArr, "attfdwoptions" TextArr,
    ]
    false false "pg_type" [
        "oid" Oid, "typname" Text, "typnamespace" Oid, "typowner" Oid, "typlen" I2,
        "typbyval" Bool, "typtype" Text, "typcategory" Text, "typispreferred" Bool,
        "typisdefined" Bool, "typdelim" Text, "typrelid" Oid, "typsubscript" Text,
        "typelem" Oid, "typarray" Oid, "typinput" Text, "typoutput" Text, "typreceive" Text,
        "typsend" Text, "typmodin" Text, "typmodout" Text, "typanalyze" Text, "typalign" Text,
        "typstorage" Text, "typnotnull" Bool, "typbasetype" Oid, "typtypmod" I4,
        "typndims" I4, "typcollation" Oid, "typdefaultbin" Text, "typdefault" Text,
        "typacl" TextArr,
    ]
    false false "pg_index" [
        "indexrelid" Oid, "indrelid" Oid, "indnatts" I2, "indnkeyatts" I2, "indisunique" Bool,
        "indnullsnotdistinct" Bool, "indisprimary" Bool, "indisexclusion" Bool,
        "indimmediate" Bool, "indisclustered" Bool, "indisvalid" Bool, "indcheckxmin" Bool,
        "indisready" Bool, "indislive" Bool, "indisreplident" Bool, "indkey" I2Vector,
        "indcollation" OidArr, "indclass" OidArr, "indoption" I2Vector, "indexprs" Text, "indpred" Text,
    ]
    false false "pg_constraint" [
        "oid" Oid, "conname" Text, "connamespace" Oid, "contype" Text, "condeferrable" Bool,
        "condeferred" Bool, "convalidated" Bool, "conrelid" Oid, "contypid" Oid,
        "conindid" Oid, "conparentid" Oid, "confrelid" Oid, "confupdtype" Text,
        "confdeltype" Text, "confmatchtype" Text, "conislocal" Bool, "coninhcount" I4,
        "connoinherit" Bool, "conkey" I2Arr, "confkey" I2Arr, "conpfeqop" OidArr,
        "conppeqop" OidArr, "conffeqop" OidArr, "confdelsetcols" I2Arr, "conexclop" OidArr,
        "conbin" Text,
    ]
    false false "pg_attrdef" ["oid" Oid, "adrelid" Oid, "adnum" I2, "adbin" Text]
    false false "pg_database" [
        "oid" Oid, "datname" Text, "datdba" Oid, "encoding" I4, "datlocprovider" Text,
        "datistemplate" Bool, "datallowconn" Bool, "datconnlimit" I4, "datfrozenxid" I4,
        "datminmxid" I4, "dattablespace" Oid, "datcollate" Text, "datctype" Text,
        "daticulocale" Text, "daticurules" Text, "datcollversion" Text, "datacl" TextArr,
    ]
    false true "pg_roles" [
        "rolname" Text, "rolsuper" Bool, "rolinherit" Bool, "rolcreaterole" Bool,
        "rolcreatedb" Bool, "rolcanlogin" Bool, "rolreplication" Bool, "rolconnlimit" I4,
        "rolpassword" Text, "rolvaliduntil" TimestampTz, "rolbypassrls" Bool,
        "rolconfig" TextArr, "oid" Oid,
    ]
    false false "pg_authid" [
        "oid" Oid, "rolname" Text, "rolsuper" Bool, "rolinherit" Bool, "rolcreaterole" Bool,
        "rolcreatedb" Bool, "rolcanlogin" Bool, "rolreplication" Bool, "rolbypassrls" Bool,
        "rolconnlimit" I4, "rolpassword" Text, "rolvaliduntil" TimestampTz,
    ]
    false true "pg_user" [
        "usename" Text, "usesysid" Oid, "usecreatedb" Bool, "usesuper" Bool, "userepl" Bool,
        "usebypassrls" Bool, "passwd" Text, "valuntil" TimestampTz, "useconfig" TextArr,
    ]
    false false "pg_auth_members" [
        "oid" Oid, "roleid" Oid, "member" Oid, "grantor" Oid, "admin_option" Bool,
        "inherit_option" Bool, "set_option" Bool,
    ]
    false true "pg_settings" [
        "name" Text, "setting" Text, "unit" Text, "category" Text, "short_desc" Text,
        "extra_desc" Text, "context" Text, "vartype" Text, "source" Text, "min_val" Text,
        "max_val" Text, "enumvals" TextArr, "boot_val" Text, "reset_val" Text,
        "sourcefile" Text, "sourceline" I4, "pending_restart" Bool,
    ]
    false false "pg_description" ["objoid" Oid, "classoid" Oid, "objsubid" I4, "description" Text]
    false false "pg_proc" [
        "oid" Oid, "proname" Text, "pronamespace" Oid, "proowner" Oid, "prolang" Oid,
        "procost" F4, "prorows" F4, "provariadic" Oid, "prosupport" Text, "prokind" Text,
        "prosecdef" Bool, "proleakproof" Bool, "proisstrict" Bool, "proretset" Bool,
        "provolatile" Text, "proparallel" Text, "pronargs" I2, "pronargdefaults" I2,
        "prorettype" Oid, "proargtypes" Text, "proallargtypes" OidArr, "proargmodes" TextArr,
        "proargnames" TextArr, "proargdefaults" Text, "protrftypes" OidArr, "prosrc" Text,
        "probin" Text, "prosqlbody" Text, "proconfig" TextArr, "proacl" TextArr,
    ]
    false false "pg_am" ["oid" Oid, "amname" Text, "amhandler" Text, "amtype" Text]
    false true "pg_stat_activity" [
        "datid" Oid, "datname" Text, "pid" I4, "leader_pid" I4, "usesysid" Oid,
        "usename" Text, "application_name" Text, "client_addr" Text, "client_hostname" Text,
        "client_port" I4, "backend_start" TimestampTz, "xact_start" TimestampTz,
        "query_start" TimestampTz, "state_change" TimestampTz, "wait_event_type" Text,
        "wait_event" Text, "state" Text, "backend_xid" Text, "backend_xmin" Text,
        "query_id" I8, "query" Text, "backend_type" Text,
    ]
    false true "pg_tables" [
        "schemaname" Text, "tablename" Text, "tableowner" Text, "tablespace" Text,
        "hasindexes" Bool, "hasrules" Bool, "hastriggers" Bool, "rowsecurity" Bool,
    ]
    false true "pg_views" ["schemaname" Text, "viewname" Text, "viewowner" Text, "definition" Text]
    false true "pg_indexes" [
        "schemaname" Text, "tablename" Text, "indexname" Text, "tablespace" Text, "indexdef" Text,
    ]
    false true "pg_sequences" [
        "schemaname" Text, "sequencename" Text, "sequenceowner" Text, "data_type" Text,
        "start_value" I8, "min_value" I8, "max_value" I8, "increment_by" I8, "cycle" Bool,
        "cache_size" I8, "last_value" I8,
    ]
    false false "pg_sequence" [
        "seqrelid" Oid, "seqtypid" Oid, "seqstart" I8, "seqincrement" I8, "seqmax" I8,
        "seqmin" I8, "seqcache" I8, "seqcycle" Bool,
    ]
    // Empty: what psql's \d and drivers join with, for features QubeDB
    // does not have.
    false false "pg_collation" [
        "oid" Oid, "collname" Text, "collnamespace" Oid, "collowner" Oid, "collprovider" Text,
        "collisdeterministic" Bool, "collencoding" I4, "collcollate" Text, "collctype" Text,
    ]
    false false "pg_policy" [
        "oid" Oid, "polname" Text, "polrelid" Oid, "polcmd" Text, "polpermissive" Bool,
        "polroles" OidArr, "polqual" Text, "polwithcheck" Text,
    ]
    false false "pg_statistic_ext" [
        "oid" Oid, "stxrelid" Oid, "stxname" Text, "stxnamespace" Oid, "stxowner" Oid,
        "stxstattarget" I4, "stxkeys" Text, "stxkind" TextArr, "stxexprs" Text,
    ]
    false false "pg_publication" [
        "oid" Oid, "pubname" Text, "pubowner" Oid, "puballtables" Bool, "pubinsert" Bool,
        "pubupdate" Bool, "pubdelete" Bool, "pubtruncate" Bool, "pubviaroot" Bool,
    ]
    false false "pg_publication_namespace" ["oid" Oid, "pnpubid" Oid, "pnnspid" Oid]
    false false "pg_publication_rel" [
        "oid" Oid, "prpubid" Oid, "prrelid" Oid, "prqual" Text, "prattrs" I2Arr,
    ]
    false false "pg_inherits" [
        "inhrelid" Oid, "inhparent" Oid, "inhseqno" I4, "inhdetachpending" Bool,
    ]
    false false "pg_trigger" [
        "oid" Oid, "tgrelid" Oid, "tgparentid" Oid, "tgname" Text, "tgfoid" Oid, "tgtype" I2,
        "tgenabled" Text, "tgisinternal" Bool, "tgconstrrelid" Oid, "tgconstrindid" Oid,
        "tgconstraint" Oid, "tgdeferrable" Bool, "tginitdeferred" Bool, "tgnargs" I2,
        "tgattr" Text, "tgargs" Text, "tgqual" Text, "tgoldtable" Text, "tgnewtable" Text,
    ]
    false false "pg_rewrite" [
        "oid" Oid, "rulename" Text, "ev_class" Oid, "ev_type" Text, "ev_enabled" Text,
        "is_instead" Bool, "ev_qual" Text, "ev_action" Text,
    ]
    false false "pg_extension" [
        "oid" Oid, "extname" Text, "extowner" Oid, "extnamespace" Oid, "extrelocatable" Bool,
        "extversion" Text, "extconfig" OidArr, "extcondition" TextArr,
    ]
    false false "pg_enum" ["oid" Oid, "enumtypid" Oid, "enumsortorder" F4, "enumlabel" Text]
    false false "pg_opclass" [
        "oid" Oid, "opcmethod" Oid, "opcname" Text, "opcnamespace" Oid, "opcowner" Oid,
        "opcfamily" Oid, "opcintype" Oid, "opcdefault" Bool, "opckeytype" Oid,
    ]
    false false "pg_depend" [
        "classid" Oid, "objid" Oid, "objsubid" I4, "refclassid" Oid, "refobjid" Oid,
        "refobjsubid" I4, "deptype" Text,
    ]
    false false "pg_tablespace" [
        "oid" Oid, "spcname" Text, "spcowner" Oid, "spcacl" TextArr, "spcoptions" TextArr,
    ]
    false false "pg_foreign_table" ["ftrelid" Oid, "ftserver" Oid, "ftoptions" TextArr]
    false false "pg_partitioned_table" [
        "partrelid" Oid, "partstrat" Text, "partnatts" I2, "partdefid" Oid, "partattrs" Text,
    ]
    true true "schemata" [
        "catalog_name" Text, "schema_name" Text, "schema_owner" Text,
        "default_character_set_catalog" Text, "default_character_set_schema" Text,
        "default_character_set_name" Text, "sql_path" Text,
    ]
    true true "tables" [
        "table_catalog" Text, "table_schema" Text, "table_name" Text, "table_type" Text,
        "self_referencing_column_name" Text, "reference_generation" Text,
        "user_defined_type_catalog" Text, "user_defined_type_schema" Text,
        "user_defined_type_name" Text, "is_insertable_into" Text, "is_typed" Text,
        "commit_action" Text,
    ]
    true true "columns" [
        "table_catalog" Text, "table_schema" Text, "table_name" Text, "column_name" Text,
        "ordinal_position" I4, "column_default" Text, "is_nullable" Text, "data_type" Text,
        "character_maximum_length" I4, "character_octet_length" I4, "numeric_precision" I4,
        "numeric_precision_radix" I4, "numeric_scale" I4, "datetime_precision" I4,
        "interval_type" Text, "interval_precision" I4, "character_set_catalog" Text,
        "character_set_schema" Text, "character_set_name" Text, "collation_catalog" Text,
        "collation_schema" Text, "collation_name" Text, "domain_catalog" Text,
        "domain_schema" Text, "domain_name" Text, "udt_catalog" Text, "udt_schema" Text,
        "udt_name" Text, "scope_catalog" Text, "scope_schema" Text, "scope_name" Text,
        "maximum_cardinality" I4, "dtd_identifier" Text, "is_self_referencing" Text,
        "is_identity" Text, "identity_generation" Text, "identity_start" Text,
        "identity_increment" Text, "identity_maximum" Text, "identity_minimum" Text,
        "identity_cycle" Text, "is_generated" Text, "generation_expression" Text,
        "is_updatable" Text,
    ]
    true true "views" [
        "table_catalog" Text, "table_schema" Text, "table_name" Text, "view_definition" Text,
        "check_option" Text, "is_updatable" Text, "is_insertable_into" Text,
        "is_trigger_updatable" Text, "is_trigger_deletable" Text,
        "is_trigger_insertable_into" Text,
    ]
    true true "table_constraints" [
        "constraint_catalog" Text, "constraint_schema" Text, "constraint_name" Text,
        "table_catalog" Text, "table_schema" Text, "table_name" Text, "constraint_type" Text,
        "is_deferrable" Text, "initially_deferred" Text, "enforced" Text,
        "nulls_distinct" Text,
    ]
    true true "key_column_usage" [
        "constraint_catalog" Text, "constraint_schema" Text, "constraint_name" Text,
        "table_catalog" Text, "table_schema" Text, "table_name" Text, "column_name" Text,
        "ordinal_position" I4, "position_in_unique_constraint" I4,
    ]
    true true "referential_constraints" [
        "constraint_catalog" Text, "constraint_schema" Text, "constraint_name" Text,
        "unique_constraint_catalog" Text, "unique_constraint_schema" Text,
        "unique_constraint_name" Text, "match_option" Text, "update_rule" Text,
        "delete_rule" Text,
    ]
}

/// The system relation a (qualified) name refers to, by position in
/// `TABLES`: `pg_catalog.X`, `information_schema.X`, the same after the
/// current database's name, or an unqualified `pg_catalog` name.
pub fn resolve(parts: &[String], db_name: &str) -> Option<usize> {
    let (schema, name) = match parts {
        [n] => ("pg_catalog", n.as_str()),
        [s, n] => (s.as_str(), n.as_str()),
        [d, s, n] if d == db_name => (s.as_str(), n.as_str()),
        _ => return None,
    };
    let info = match schema {
        "pg_catalog" => false,
        "information_schema" => true,
        _ => return None,
    };
    TABLES.iter().position(|t| t.info_schema == info && t.name == name)
}

/// PostgreSQL's own oids of the catalogs that have one: tools compare
/// `classoid` with `'pg_class'::regclass` and the like, so these must be
/// the oids `pg_description` and `pg_depend` use.
const REAL_CATALOG_OIDS: &[(&str, u64)] = &[
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", PG_CLASS_OID as u64),
    ("pg_authid", 1260),
    ("pg_auth_members", 1261),
    ("pg_database", PG_DATABASE_OID as u64),
    ("pg_tablespace", 1213),
    ("pg_am", 2601),
    ("pg_attrdef", 2604),
    ("pg_constraint", 2606),
    ("pg_depend", 2608),
    ("pg_description", 2609),
    ("pg_index", 2610),
    ("pg_inherits", 2611),
    ("pg_namespace", PG_NAMESPACE_OID as u64),
    ("pg_rewrite", 2618),
    ("pg_trigger", 2620),
    ("pg_sequence", 2224),
    ("pg_extension", 3079),
    ("pg_enum", 3501),
    ("pg_opclass", 2616),
    ("pg_collation", 3456),
];

/// The oid of system relation `table` (a position in `TABLES`): its
/// PostgreSQL oid when it has one, else `SYSTEM_REL_BASE + table`.
pub fn system_rel_oid(table: usize) -> u64 {
    let t = &TABLES[table];
    (!t.info_schema)
        .then(|| REAL_CATALOG_OIDS.iter().find(|(n, _)| *n == t.name).map(|(_, o)| *o))
        .flatten()
        .unwrap_or(SYSTEM_REL_BASE + table as u64)
}

/// The system relation with oid `id`, if it is one.
fn system_rel_of_oid(id: i64) -> Option<usize> {
    let id = u64::try_from(id).ok()?;
    (0..TABLES.len()).find(|&t| system_rel_oid(t) == id)
}

/// A system relation's output columns.
pub fn columns(table: usize) -> Vec<(String, DataType)> {
    TABLES[table].columns.iter().map(|(n, t)| (n.to_string(), t.data_type())).collect()
}

// ------------------------------------------------------------ built-in types

/// A built-in type as `pg_type` shows it.
struct PgType {
    oid: u32,
    name: &'static str,
    len: i16,
    /// typcategory.
    cat: char,
    /// 'b' base, 'p' pseudo.
    kind: char,
    array: u32,
}

const fn t(oid: u32, name: &'static str, len: i16, cat: char, array: u32) -> PgType {
    PgType { oid, name, len, cat, kind: 'b', array }
}

static TYPES: &[PgType] = &[
    t(16, "bool", 1, 'B', 1000),
    t(17, "bytea", -1, 'U', 1001),
    t(18, "char", 1, 'Z', 1002),
    t(19, "name", 64, 'S', 1003),
    t(20, "int8", 8, 'N', 1016),
    t(21, "int2", 2, 'N', 1005),
    t(22, "int2vector", -1, 'A', 1006),
    t(23, "int4", 4, 'N', 1007),
    t(24, "regproc", 4, 'N', 1008),
    t(25, "text", -1, 'S', 1009),
    t(26, "oid", 4, 'N', 1028),
    t(30, "oidvector", -1, 'A', 1013),
    t(114, "json", -1, 'U', 199),
    t(194, "pg_node_tree", -1, 'Z', 0),
    t(700, "float4", 4, 'N', 1021),
    t(701, "float8", 8, 'N', 1022),
    t(1042, "bpchar", -1, 'S', 1014),
    t(1043, "varchar", -1, 'S', 1015),
    t(1082, "date", 4, 'D', 1182),
    t(1083, "time", 8, 'D', 1183),
    t(1114, "timestamp", 8, 'D', 1115),
    t(1184, "timestamptz", 8, 'D', 1185),
    t(1186, "interval", 16, 'T', 1187),
    t(1700, "numeric", -1, 'N', 1231),
    t(2205, "regclass", 4, 'N', 2210),
    t(2206, "regtype", 4, 'N', 2211),
    t(2950, "uuid", 16, 'U', 2951),
    t(3802, "jsonb", -1, 'U', 3807),
    t(4089, "regnamespace", 4, 'N', 4090),
    t(4096, "regrole", 4, 'N', 4097),
    PgType { oid: 705, name: "unknown", len: -2, cat: 'X', kind: 'p', array: 0 },
    PgType { oid: 2249, name: "record", len: -1, cat: 'P', kind: 'p', array: 2287 },
    PgType { oid: 2278, name: "void", len: 4, cat: 'P', kind: 'p', array: 0 },
    PgType { oid: 2276, name: "any", len: 4, cat: 'P', kind: 'p', array: 0 },
    PgType { oid: 2277, name: "anyarray", len: -1, cat: 'P', kind: 'p', array: 0 },
];

/// The element type of array type `oid`.
fn array_elem(oid: u32) -> Option<&'static PgType> {
    TYPES.iter().find(|t| t.array == oid && oid != 0)
}

fn type_by_oid(oid: u32) -> Option<&'static PgType> {
    TYPES.iter().find(|t| t.oid == oid)
}

/// `pg_type.typname` of a type oid (arrays: `_elem`).
fn type_name(oid: u32) -> Option<String> {
    if let Some(t) = type_by_oid(oid) {
        return Some(t.name.to_string());
    }
    array_elem(oid).map(|e| format!("_{}", e.name))
}

/// The oid a type name (as `::regtype` takes it) names.
fn type_oid_of_name(name: &str) -> Option<u32> {
    let name = name.trim().to_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    if let Some(elem) = name.strip_suffix("[]") {
        return type_oid_of_name(elem).and_then(|o| type_by_oid(o).map(|t| t.array));
    }
    let alias = match name {
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "character" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "\"char\"" => "char",
        n => n,
    };
    TYPES.iter().find(|t| t.name == alias).map(|t| t.oid).or_else(|| {
        alias.strip_prefix('_').and_then(|e| TYPES.iter().find(|t| t.name == e)).map(|t| t.array)
    })
}

/// `format_type(oid, typmod)`.
pub fn format_type(oid: u32, typmod: i32) -> String {
    let with_mod = |t: DataType| -> DataType {
        let m = typmod - 4;
        match t {
            DataType::Varchar(_) if typmod >= 4 => DataType::Varchar(Some(m as u32)),
            DataType::Char(_) if typmod >= 4 => DataType::Char(m as u32),
            DataType::Numeric(_) if typmod >= 4 => {
                DataType::Numeric(Some(((m >> 16) as u32, ((m & 0x7ff) ^ 1024) - 1024)))
            }
            t => t,
        }
    };
    if let Some(t) = pgt::from_oid(oid) {
        return match t {
            DataType::Char(_) if typmod < 0 => "bpchar".into(),
            DataType::Array(e) => match *e {
                DataType::Char(_) if typmod < 0 => "bpchar[]".into(),
                e => format!("{}[]", with_mod(e).sql_name()),
            },
            t => with_mod(t).sql_name(),
        };
    }
    match type_by_oid(oid) {
        Some(t) if t.name == "char" => "\"char\"".into(),
        Some(t) => t.name.into(),
        None => match array_elem(oid) {
            Some(e) if e.name == "char" => "\"char\"[]".into(),
            Some(e) => format!("{}[]", e.name),
            None => "???".into(),
        },
    }
}

/// The type oid of a column type.
fn type_oid(t: &DataType) -> i32 {
    pgt::oid(t) as i32
}

// ------------------------------------------------------------ rows

fn oid(id: ObjectId) -> Value {
    Value::Int4(i32::try_from(id).unwrap_or(-1))
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn texts<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Array(items.iter().map(|s| text(s.as_ref())).collect())
}

fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}

/// One row of a system relation, filled by column name; columns not set
/// take their type's default (0, false or NULL).
struct RowB {
    table: &'static SysTable,
    vals: Vec<Value>,
}

impl RowB {
    fn new(table: &'static SysTable) -> RowB {
        RowB { table, vals: table.columns.iter().map(|(_, t)| t.default()).collect() }
    }

    fn set(mut self, col: &str, v: Value) -> RowB {
        if let Some(i) = self.table.columns.iter().position(|(n, _)| *n == col) {
            self.vals[i] = v;
        } else {
            debug_assert!(false, "{} has no column {col}", self.table.name);
        }
        self
    }

    fn row(self) -> Row {
        self.vals
    }
}

/// What the rows of one statement's system relations come from: the
/// current database's schemas and relations, and the roles.
struct Snapshot {
    db: Arc<Object>,
    /// Schemas of the current database, then pg_catalog and
    /// information_schema as (oid, name).
    schemas: Vec<Arc<Object>>,
    /// Relations of those schemas.
    rels: Vec<Arc<Object>>,
    roles: Vec<Arc<Object>>,
}

impl Snapshot {
    fn take(ctx: &mut Ctx) -> Result<Snapshot> {
        let env =
            ctx.env.ok_or_else(|| Error::Internal("system relation without a session".into()))?;
        let cat = env.catalog;
        let db = cat
            .get(ctx.txn, env.path.db)?
            .ok_or_else(|| Error::user("3D000", "the current database no longer exists"))?;
        let schemas = cat.list(ctx.txn, Namespace::Schema, env.path.db)?;
        let mut rels = Vec::new();
        for s in &schemas {
            rels.extend(cat.list(ctx.txn, Namespace::Relation, s.id)?);
        }
        let roles = cat.list(ctx.txn, Namespace::Role, 0)?;
        Ok(Snapshot { db, schemas, rels, roles })
    }

    fn schema_name(&self, id: ObjectId) -> String {
        match id {
            PG_CATALOG_OID => "pg_catalog".into(),
            INFORMATION_SCHEMA_OID => "information_schema".into(),
            _ => self.schemas.iter().find(|s| s.id == id).map_or(String::new(), |s| s.name.clone()),
        }
    }

    fn role_name(&self, id: ObjectId) -> String {
        self.roles
            .iter()
            .find(|r| r.id == id)
            .map_or_else(|| BOOTSTRAP_ROLE.into(), |r| r.name.clone())
    }

    fn rel(&self, id: ObjectId) -> Option<&Arc<Object>> {
        self.rels.iter().find(|r| r.id == id)
    }

    /// The owner of built-in objects: the bootstrap superuser.
    fn superuser(&self) -> ObjectId {
        self.roles
            .iter()
            .find(|r| r.name == qube_catalog::BOOTSTRAP_NAME)
            .or(self.roles.first())
            .map_or(10, |r| r.id)
    }
}

const BOOTSTRAP_ROLE: &str = qube_catalog::BOOTSTRAP_NAME;

/// 1-based positions of named columns of a table (0 for unknown names).
fn attnums(def: &qube_catalog::TableDef, cols: &[String]) -> Vec<Value> {
    cols.iter()
        .map(|c| {
            Value::Int2(def.columns.iter().position(|x| &x.name == c).map_or(0, |p| p as i16 + 1))
        })
        .collect()
}

fn relkind(def: &Def) -> &'static str {
    match def {
        Def::Table(_) => "r",
        Def::Index(_) => "i",
        Def::View(_) => "v",
        Def::Sequence(_) => "S",
        _ => "r",
    }
}

/// Every constraint of the current database: (oid, table, position, constraint).
fn constraints(snap: &Snapshot) -> Vec<(ObjectId, &Arc<Object>, &qube_catalog::Constraint)> {
    let mut out = Vec::new();
    for r in &snap.rels {
        if let Def::Table(t) = &r.def {
            for (i, c) in t.constraints.iter().enumerate() {
                let id = match &c.kind {
                    ConstraintKind::PrimaryKey { index, .. }
                    | ConstraintKind::Unique { index, .. } => *index,
                    _ => CONSTRAINT_BASE + r.id * 64 + i as u64,
                };
                out.push((id, r, c));
            }
        }
    }
    out
}

/// Whether a table has a foreign key or is referenced by one.
fn has_fk(snap: &Snapshot, rel: &Object) -> bool {
    let refs = |o: &Object, target: Option<ObjectId>| {
        match &o.def {
        Def::Table(t) => t.constraints.iter().any(|c| {
            matches!(&c.kind, ConstraintKind::ForeignKey { ref_table, .. } if target.is_none_or(|x| x == *ref_table))
        }),
        _ => false,
    }
    };
    matches!(rel.def, Def::Table(_))
        && (refs(rel, None) || snap.rels.iter().any(|o| refs(o, Some(rel.id))))
}

fn action_char(a: RefAction) -> &'static str {
    match a {
        RefAction::NoAction => "a",
        RefAction::Restrict => "r",
        RefAction::Cascade => "c",
        RefAction::SetNull => "n",
        RefAction::SetDefault => "d",
    }
}

fn action_rule(a: RefAction) -> &'static str {
    match a {
        RefAction::NoAction => "NO ACTION",
        RefAction::Restrict => "RESTRICT",
        RefAction::Cascade => "CASCADE",
        RefAction::SetNull => "SET NULL",
        RefAction::SetDefault => "SET DEFAULT",
    }
}

/// The rows of system relation `table` (a position in `TABLES`).
pub fn rows(ctx: &mut Ctx, table: usize) -> Result<Vec<Row>> {
    let t: &'static SysTable = &TABLES[table];
    let snap = Snapshot::take(ctx)?;
    let env = ctx.env.ok_or_else(|| Error::Internal("system relation without a session".into()))?;
    let su = snap.superuser();
    let db_name = snap.db.name.clone();
    let r = || RowB::new(t);
    let mut out = Vec::new();
    match t.name {
        "pg_namespace" if !t.info_schema => {
            out.push(
                r().set("oid", oid(PG_CATALOG_OID))
                    .set("nspname", text("pg_catalog"))
                    .set("nspowner", oid(su))
                    .row(),
            );
            out.push(
                r().set("oid", oid(INFORMATION_SCHEMA_OID))
                    .set("nspname", text("information_schema"))
                    .set("nspowner", oid(su))
                    .row(),
            );
            for s in &snap.schemas {
                out.push(
                    r().set("oid", oid(s.id))
                        .set("nspname", text(&s.name))
                        .set("nspowner", oid(s.owner))
                        .row(),
                );
            }
        }
        "pg_class" => {
            for rel in &snap.rels {
                let (natts, checks, hasindex) = match &rel.def {
                    Def::Table(td) => (
                        td.columns.len(),
                        td.constraints
                            .iter()
                            .filter(|c| matches!(c.kind, ConstraintKind::Check { .. }))
                            .count(),
                        snap.rels
                            .iter()
                            .any(|o| matches!(&o.def, Def::Index(ix) if ix.table == rel.id)),
                    ),
                    Def::View(v) => (v.columns.len(), 0, false),
                    Def::Index(ix) => (ix.columns.len(), 0, false),
                    Def::Sequence(_) => (3, 0, false),
                    _ => (0, 0, false),
                };
                let temp =
                    snap.schema_name(rel.parent).starts_with(crate::names::TEMP_SCHEMA_PREFIX);
                let am = match &rel.def {
                    Def::Table(_) => 2,
                    Def::Index(_) => 403,
                    _ => 0,
                };
                out.push(
                    r().set("oid", oid(rel.id))
                        .set("relname", text(&rel.name))
                        .set("relnamespace", oid(rel.parent))
                        .set("relowner", oid(rel.owner))
                        .set("relam", Value::Int4(am))
                        .set("relfilenode", oid(rel.id))
                        .set("reltuples", Value::Float4(-1.0))
                        .set("relhasindex", Value::Bool(hasindex))
                        // Foreign keys are triggers in PostgreSQL; psql
                        // asks for them only when this is set.
                        .set("relhastriggers", Value::Bool(has_fk(&snap, rel)))
                        .set("relpersistence", text(if temp { "t" } else { "p" }))
                        .set("relkind", text(relkind(&rel.def)))
                        .set("relnatts", Value::Int2(natts as i16))
                        .set("relchecks", Value::Int2(checks as i16))
                        .set("relispopulated", Value::Bool(true))
                        .set(
                            "relreplident",
                            text(if matches!(rel.def, Def::Table(_)) { "d" } else { "n" }),
                        )
                        .row(),
                );
            }
            for (i, st) in TABLES.iter().enumerate() {
                out.push(
                    r().set("oid", oid(system_rel_oid(i)))
                        .set("relname", text(st.name))
                        .set(
                            "relnamespace",
                            oid(if st.info_schema {
                                INFORMATION_SCHEMA_OID
                            } else {
                                PG_CATALOG_OID
                            }),
                        )
                        .set("relowner", oid(su))
                        .set("relam", Value::Int4(if st.view { 0 } else { 2 }))
                        .set("reltuples", Value::Float4(-1.0))
                        .set("relpersistence", text("p"))
                        .set("relkind", text(if st.view { "v" } else { "r" }))
                        .set("relnatts", Value::Int2(st.columns.len() as i16))
                        .set("relispopulated", Value::Bool(true))
                        .set("relreplident", text(if st.view { "n" } else { "d" }))
                        .row(),
                );
            }
        }
        "pg_attribute" => {
            let att = |relid: u64,
                       num: usize,
                       name: &str,
                       ty: &DataType,
                       notnull: bool,
                       hasdef: bool,
                       identity: &str| {
                let arr = matches!(ty, DataType::Array(_));
                r().set("attrelid", oid(relid))
                    .set("attname", text(name))
                    .set("atttypid", Value::Int4(type_oid(ty)))
                    .set("attstattarget", Value::Int4(-1))
                    .set("attlen", Value::Int2(pgt::type_size(ty)))
                    .set("attnum", Value::Int2(num as i16))
                    .set("attndims", Value::Int4(arr as i32))
                    .set("attcacheoff", Value::Int4(-1))
                    .set("atttypmod", Value::Int4(pgt::type_modifier(ty)))
                    .set("attbyval", Value::Bool((1..=8).contains(&pgt::type_size(ty))))
                    .set(
                        "attalign",
                        text(match pgt::type_size(ty) {
                            1 => "c",
                            2 => "s",
                            8 => "d",
                            _ => "i",
                        }),
                    )
                    .set("attstorage", text(if pgt::type_size(ty) > 0 { "p" } else { "x" }))
                    .set("attcompression", text(""))
                    .set("attnotnull", Value::Bool(notnull))
                    .set("atthasdef", Value::Bool(hasdef))
                    .set("attidentity", text(identity))
                    .set("attgenerated", text(""))
                    .set("attislocal", Value::Bool(true))
                    .set(
                        "attcollation",
                        Value::Int4(
                            if matches!(
                                ty,
                                DataType::Text | DataType::Varchar(_) | DataType::Char(_)
                            ) {
                                100
                            } else {
                                0
                            },
                        ),
                    )
                    .row()
            };
            for rel in &snap.rels {
                match &rel.def {
                    Def::Table(td) => {
                        for (i, c) in td.columns.iter().enumerate() {
                            let ident = match &c.identity {
                                Some(id) if id.always => "a",
                                Some(_) => "d",
                                None => "",
                            };
                            out.push(att(
                                rel.id,
                                i + 1,
                                &c.name,
                                &c.data_type,
                                !c.nullable,
                                c.default.is_some(),
                                ident,
                            ));
                        }
                    }
                    Def::Index(ix) => {
                        let tdef = match snap.rel(ix.table).map(|o| &o.def) {
                            Some(Def::Table(td)) => Some(td),
                            _ => None,
                        };
                        for (i, c) in ix.columns.iter().enumerate() {
                            let ty = tdef
                                .and_then(|td| td.column(&c.expr))
                                .map_or(DataType::Text, |col| col.data_type.clone());
                            out.push(att(rel.id, i + 1, &c.expr, &ty, false, false, ""));
                        }
                    }
                    Def::View(v) => {
                        let types = view_types(ctx, env, &v.query);
                        for (i, c) in v.columns.iter().enumerate() {
                            let ty = types.get(i).cloned().unwrap_or(DataType::Text);
                            out.push(att(rel.id, i + 1, c, &ty, false, false, ""));
                        }
                    }
                    Def::Sequence(_) => {
                        for (i, (c, ty)) in [
                            ("last_value", DataType::BigInt),
                            ("log_cnt", DataType::BigInt),
                            ("is_called", DataType::Boolean),
                        ]
                        .iter()
                        .enumerate()
                        {
                            out.push(att(rel.id, i + 1, c, ty, true, false, ""));
                        }
                    }
                    _ => {}
                }
            }
            for (i, st) in TABLES.iter().enumerate() {
                for (k, (c, ty)) in st.columns.iter().enumerate() {
                    out.push(att(system_rel_oid(i), k + 1, c, &ty.data_type(), false, false, ""));
                }
            }
        }
        "pg_type" => {
            for ty in TYPES {
                let row = |oid_: u32,
                           name: String,
                           len: i16,
                           cat: char,
                           kind: char,
                           elem: u32,
                           array: u32| {
                    r().set("oid", Value::Int4(oid_ as i32))
                        .set("typname", text(name))
                        .set("typnamespace", oid(PG_CATALOG_OID))
                        .set("typowner", oid(su))
                        .set("typlen", Value::Int2(len))
                        .set("typbyval", Value::Bool((1..=8).contains(&len)))
                        .set("typtype", text(kind.to_string()))
                        .set("typcategory", text(cat.to_string()))
                        .set(
                            "typispreferred",
                            Value::Bool(matches!(oid_, 16 | 25 | 701 | 1184 | 1186 | 26)),
                        )
                        .set("typisdefined", Value::Bool(true))
                        .set("typdelim", text(","))
                        .set(
                            "typsubscript",
                            text(if elem != 0 { "array_subscript_handler" } else { "-" }),
                        )
                        .set("typelem", Value::Int4(elem as i32))
                        .set("typarray", Value::Int4(array as i32))
                        .set(
                            "typinput",
                            text(if elem != 0 { "array_in".to_string() } else { "-".to_string() }),
                        )
                        .set("typoutput", text(if elem != 0 { "array_out" } else { "-" }))
                        .set(
                            "typalign",
                            text(match len {
                                1 => "c",
                                2 => "s",
                                8 => "d",
                                _ => "i",
                            }),
                        )
                        .set("typstorage", text(if len > 0 { "p" } else { "x" }))
                        .set("typtypmod", Value::Int4(-1))
                        .set(
                            "typcollation",
                            Value::Int4(if cat == 'S' && oid_ != 19 { 100 } else { 0 }),
                        )
                        .row()
                };
                out.push(row(ty.oid, ty.name.to_string(), ty.len, ty.cat, ty.kind, 0, ty.array));
                if ty.array != 0 {
                    out.push(row(ty.array, format!("_{}", ty.name), -1, 'A', 'b', ty.oid, 0));
                }
            }
        }
        "pg_index" => {
            for rel in &snap.rels {
                let Def::Index(ix) = &rel.def else { continue };
                let Some(table) = snap.rel(ix.table) else { continue };
                let Def::Table(td) = &table.def else { continue };
                let primary = td.constraints.iter().any(|c| matches!(&c.kind, ConstraintKind::PrimaryKey { index, .. } if *index == rel.id));
                let keys: Vec<String> = ix.columns.iter().map(|c| c.expr.clone()).collect();
                let options: Vec<Value> = ix
                    .columns
                    .iter()
                    .map(|c| Value::Int2((c.desc as i16) | ((c.nulls_first != c.desc) as i16) << 1))
                    .collect();
                let zeros = || Value::Array(vec![Value::Int4(0); ix.columns.len()]);
                let exprs: Vec<&str> = ix
                    .columns
                    .iter()
                    .filter(|c| td.column(&c.expr).is_none())
                    .map(|c| c.expr.as_str())
                    .collect();
                let n = ix.columns.len() as i16;
                out.push(
                    r().set("indexrelid", oid(rel.id))
                        .set("indrelid", oid(ix.table))
                        .set("indnatts", Value::Int2(n))
                        .set("indnkeyatts", Value::Int2(n))
                        .set("indisunique", Value::Bool(ix.unique))
                        .set("indisprimary", Value::Bool(primary))
                        .set("indimmediate", Value::Bool(true))
                        .set("indisvalid", Value::Bool(true))
                        .set("indisready", Value::Bool(true))
                        .set("indislive", Value::Bool(true))
                        .set("indkey", Value::Array(attnums(td, &keys)))
                        .set("indcollation", zeros())
                        .set("indclass", zeros())
                        .set("indoption", Value::Array(options))
                        .set(
                            "indexprs",
                            if exprs.is_empty() { Value::Null } else { text(exprs.join(", ")) },
                        )
                        .set("indpred", opt_text(ix.predicate.as_deref()))
                        .row(),
                );
            }
        }
        "pg_constraint" => {
            for (id, table, c) in constraints(&snap) {
                let Def::Table(td) = &table.def else { continue };
                let mut row = r()
                    .set("oid", oid(id))
                    .set("conname", text(&c.name))
                    .set("connamespace", oid(table.parent))
                    .set("convalidated", Value::Bool(true))
                    .set("conrelid", oid(table.id))
                    .set("confupdtype", text(" "))
                    .set("confdeltype", text(" "))
                    .set("confmatchtype", text(" "))
                    .set("conislocal", Value::Bool(true));
                row = match &c.kind {
                    ConstraintKind::PrimaryKey { columns, index }
                    | ConstraintKind::Unique { columns, index } => row
                        .set(
                            "contype",
                            text(if matches!(c.kind, ConstraintKind::PrimaryKey { .. }) {
                                "p"
                            } else {
                                "u"
                            }),
                        )
                        .set("conindid", oid(*index))
                        .set("conkey", Value::Array(attnums(td, columns))),
                    ConstraintKind::Check { expr } => row
                        .set("contype", text("c"))
                        .set("conbin", text(expr))
                        .set("conkey", Value::Array(Vec::new())),
                    ConstraintKind::ForeignKey {
                        columns,
                        ref_table,
                        ref_columns,
                        on_delete,
                        on_update,
                    } => {
                        let rdef = match snap.rel(*ref_table).map(|o| &o.def) {
                            Some(Def::Table(rd)) => attnums(rd, ref_columns),
                            _ => Vec::new(),
                        };
                        let idx = snap
                            .rels
                            .iter()
                            .find(|o| matches!(&o.def, Def::Index(ix) if ix.table == *ref_table && ix.unique && ix.columns.iter().map(|c| &c.expr).eq(ref_columns.iter())))
                            .map_or(0, |o| o.id);
                        row.set("contype", text("f"))
                            .set("conindid", oid(idx))
                            .set("confrelid", oid(*ref_table))
                            .set("confupdtype", text(action_char(*on_update)))
                            .set("confdeltype", text(action_char(*on_delete)))
                            .set("confmatchtype", text("s"))
                            .set("conkey", Value::Array(attnums(td, columns)))
                            .set("confkey", Value::Array(rdef))
                    }
                };
                out.push(row.row());
            }
        }
        "pg_attrdef" => {
            for rel in &snap.rels {
                let Def::Table(td) = &rel.def else { continue };
                for (i, c) in td.columns.iter().enumerate() {
                    if let Some(d) = &c.default {
                        out.push(
                            r().set("oid", oid(attrdef_oid(rel.id, i + 1)))
                                .set("adrelid", oid(rel.id))
                                .set("adnum", Value::Int2(i as i16 + 1))
                                .set("adbin", text(d))
                                .row(),
                        );
                    }
                }
            }
        }
        "pg_database" => {
            for d in env.catalog.list(ctx.txn, Namespace::Database, 0)? {
                out.push(
                    r().set("oid", oid(d.id))
                        .set("datname", text(&d.name))
                        .set("datdba", oid(d.owner))
                        .set("encoding", Value::Int4(6))
                        .set("datlocprovider", text("c"))
                        .set("datallowconn", Value::Bool(true))
                        .set("datconnlimit", Value::Int4(-1))
                        .set("dattablespace", Value::Int4(1663))
                        .set("datcollate", text("C"))
                        .set("datctype", text("C"))
                        .row(),
                );
            }
        }
        "pg_roles" | "pg_authid" | "pg_user" => {
            // pg_authid holds the password verifiers: superusers only.
            let superuser = snap
                .roles
                .iter()
                .any(|r| r.name == env.path.user && matches!(&r.def, Def::Role(d) if d.superuser));
            if t.name == "pg_authid" && !superuser {
                return Err(Error::user("42501", "permission denied for table pg_authid"));
            }
            for role in &snap.roles {
                let Def::Role(rd) = &role.def else { continue };
                let row = if t.name == "pg_user" {
                    r().set("usename", text(&role.name))
                        .set("usesysid", oid(role.id))
                        .set("usecreatedb", Value::Bool(rd.createdb))
                        .set("usesuper", Value::Bool(rd.superuser))
                        .set("userepl", Value::Bool(rd.superuser))
                        .set("usebypassrls", Value::Bool(rd.superuser))
                        .set("passwd", text("********"))
                        .set("valuntil", rd.valid_until.map_or(Value::Null, Value::TimestampTz))
                } else {
                    let pw = if t.name == "pg_roles" {
                        text("********")
                    } else {
                        opt_text(rd.password.as_deref())
                    };
                    r().set("oid", oid(role.id))
                        .set("rolname", text(&role.name))
                        .set("rolsuper", Value::Bool(rd.superuser))
                        .set("rolinherit", Value::Bool(true))
                        .set("rolcreaterole", Value::Bool(rd.createrole))
                        .set("rolcreatedb", Value::Bool(rd.createdb))
                        .set("rolcanlogin", Value::Bool(rd.login))
                        .set("rolreplication", Value::Bool(rd.superuser))
                        .set("rolbypassrls", Value::Bool(rd.superuser))
                        .set("rolconnlimit", Value::Int4(rd.connection_limit))
                        .set("rolpassword", pw)
                        .set(
                            "rolvaliduntil",
                            rd.valid_until.map_or(Value::Null, Value::TimestampTz),
                        )
                };
                out.push(row.row());
            }
        }
        "pg_auth_members" => {
            for role in &snap.roles {
                let Def::Role(rd) = &role.def else { continue };
                for m in &rd.member_of {
                    out.push(
                        r().set("roleid", oid(*m))
                            .set("member", oid(role.id))
                            .set("grantor", oid(su))
                            .set("inherit_option", Value::Bool(true))
                            .set("set_option", Value::Bool(true))
                            .row(),
                    );
                }
            }
        }
        "pg_settings" => {
            for (name, setting, unit, vartype) in SETTINGS {
                let v = session_setting(name)
                    .map(|v| in_unit(name, &v, *unit))
                    .unwrap_or_else(|| setting.to_string());
                out.push(
                    r().set("name", text(*name))
                        .set("setting", text(v))
                        .set("unit", opt_text(*unit))
                        .set("category", text("Client Connection Defaults"))
                        .set("short_desc", text(""))
                        .set("context", text("user"))
                        .set("vartype", text(*vartype))
                        .set("source", text("default"))
                        .set("boot_val", text(*setting))
                        .set("reset_val", text(*setting))
                        .row(),
                );
            }
        }
        "pg_description" => {
            let d = |objoid: u64, class: i32, sub: i32, s: &str| {
                r().set("objoid", oid(objoid))
                    .set("classoid", Value::Int4(class))
                    .set("objsubid", Value::Int4(sub))
                    .set("description", text(s))
                    .row()
            };
            for s in &snap.schemas {
                if let Some(c) = &s.comment {
                    out.push(d(s.id, PG_NAMESPACE_OID, 0, c));
                }
            }
            if let Some(c) = &snap.db.comment {
                out.push(d(snap.db.id, PG_DATABASE_OID, 0, c));
            }
            for rel in &snap.rels {
                if let Some(c) = &rel.comment {
                    out.push(d(rel.id, PG_CLASS_OID, 0, c));
                }
                if let Def::Table(td) = &rel.def {
                    for (i, col) in td.columns.iter().enumerate() {
                        if let Some(c) = &col.comment {
                            out.push(d(rel.id, PG_CLASS_OID, i as i32 + 1, c));
                        }
                    }
                }
            }
        }
        "pg_tablespace" => {
            for (o, n) in [(1663, "pg_default"), (1664, "pg_global")] {
                out.push(
                    r().set("oid", Value::Int4(o))
                        .set("spcname", text(n))
                        .set("spcowner", oid(su))
                        .row(),
                );
            }
        }
        "pg_am" => {
            out.push(
                r().set("oid", Value::Int4(2))
                    .set("amname", text("heap"))
                    .set("amhandler", text("heap_tableam_handler"))
                    .set("amtype", text("t"))
                    .row(),
            );
            out.push(
                r().set("oid", Value::Int4(403))
                    .set("amname", text("btree"))
                    .set("amhandler", text("bthandler"))
                    .set("amtype", text("i"))
                    .row(),
            );
        }
        "pg_stat_activity" => {
            // Every session of the database server (see `activity`); a
            // statement run outside a session (none in practice) sees
            // only itself.
            let sessions = crate::activity::current().map(|(reg, _)| reg.list());
            for a in sessions.unwrap_or_default() {
                let st = a.state();
                let role = snap.roles.iter().find(|r| r.name == a.user).map_or(su, |r| r.id);
                let ts = |t: Option<i64>| t.map_or(Value::Null, Value::TimestampTz);
                out.push(
                    r().set("datid", oid(a.database_id))
                        .set("datname", text(&a.database))
                        .set("pid", Value::Int4(a.pid))
                        .set("leader_pid", Value::Null)
                        .set("usesysid", oid(role))
                        .set("usename", text(&a.user))
                        .set("application_name", text(st.application_name))
                        .set(
                            "client_addr",
                            a.client.map_or(Value::Null, |c| text(c.ip().to_string())),
                        )
                        .set(
                            "client_port",
                            Value::Int4(a.client.map_or(-1, |c| i32::from(c.port()))),
                        )
                        .set("backend_start", Value::TimestampTz(a.backend_start))
                        .set("xact_start", ts(st.xact_start))
                        .set("query_start", ts(st.query_start))
                        .set("state_change", Value::TimestampTz(st.state_change))
                        .set("state", text(st.state.as_str()))
                        .set("query_id", Value::Null)
                        .set("query", text(&*st.query))
                        .set("backend_type", text("client backend"))
                        .row(),
                );
            }
        }
        "pg_tables" | "pg_views" | "pg_indexes" | "pg_sequences" | "pg_sequence" => {
            for rel in &snap.rels {
                let schema = text(snap.schema_name(rel.parent));
                let owner = text(snap.role_name(rel.owner));
                let row = match (t.name, &rel.def) {
                    ("pg_tables", Def::Table(_)) => {
                        r().set("schemaname", schema)
                            .set("tablename", text(&rel.name))
                            .set("tableowner", owner)
                            .set(
                                "hasindexes",
                                Value::Bool(snap.rels.iter().any(
                                    |o| matches!(&o.def, Def::Index(ix) if ix.table == rel.id),
                                )),
                            )
                    }
                    ("pg_views", Def::View(v)) => r()
                        .set("schemaname", schema)
                        .set("viewname", text(&rel.name))
                        .set("viewowner", owner)
                        .set("definition", text(&v.query)),
                    ("pg_indexes", Def::Index(ix)) => {
                        let Some(table) = snap.rel(ix.table) else { continue };
                        r().set("schemaname", schema)
                            .set("tablename", text(&table.name))
                            .set("indexname", text(&rel.name))
                            .set("indexdef", text(index_def(&snap, rel, ix, 0)))
                    }
                    ("pg_sequences", Def::Sequence(sd)) => {
                        let (v, called) = env.catalog.sequence_value(ctx.txn, rel.id)?;
                        r().set("schemaname", schema)
                            .set("sequencename", text(&rel.name))
                            .set("sequenceowner", owner)
                            .set("data_type", text(sd.data_type.sql_name()))
                            .set("start_value", Value::Int8(sd.start))
                            .set("min_value", Value::Int8(sd.min))
                            .set("max_value", Value::Int8(sd.max))
                            .set("increment_by", Value::Int8(sd.increment))
                            .set("cycle", Value::Bool(sd.cycle))
                            .set("cache_size", Value::Int8(1))
                            .set("last_value", if called { Value::Int8(v) } else { Value::Null })
                    }
                    ("pg_sequence", Def::Sequence(sd)) => r()
                        .set("seqrelid", oid(rel.id))
                        .set("seqtypid", Value::Int4(type_oid(&sd.data_type)))
                        .set("seqstart", Value::Int8(sd.start))
                        .set("seqincrement", Value::Int8(sd.increment))
                        .set("seqmax", Value::Int8(sd.max))
                        .set("seqmin", Value::Int8(sd.min))
                        .set("seqcache", Value::Int8(1))
                        .set("seqcycle", Value::Bool(sd.cycle)),
                    _ => continue,
                };
                out.push(row.row());
            }
        }
        "schemata" => {
            let mut names: Vec<(String, ObjectId)> =
                snap.schemas.iter().map(|s| (s.name.clone(), s.owner)).collect();
            names.push(("pg_catalog".into(), su));
            names.push(("information_schema".into(), su));
            for (n, owner) in names {
                out.push(
                    r().set("catalog_name", text(&db_name))
                        .set("schema_name", text(n))
                        .set("schema_owner", text(snap.role_name(owner)))
                        .row(),
                );
            }
        }
        "tables"
        | "views"
        | "columns"
        | "table_constraints"
        | "key_column_usage"
        | "referential_constraints" => {
            info_schema(t, &snap, &db_name, &mut out);
        }
        _ => {}
    }
    ctx.charge(out.len() * t.columns.len())?;
    Ok(out)
}

fn info_schema(t: &'static SysTable, snap: &Snapshot, db: &str, out: &mut Vec<Row>) {
    let r = || RowB::new(t);
    match t.name {
        "tables" => {
            for rel in &snap.rels {
                let kind = match &rel.def {
                    Def::Table(_)
                        if snap
                            .schema_name(rel.parent)
                            .starts_with(crate::names::TEMP_SCHEMA_PREFIX) =>
                    {
                        "LOCAL TEMPORARY"
                    }
                    Def::Table(_) => "BASE TABLE",
                    Def::View(_) => "VIEW",
                    _ => continue,
                };
                out.push(
                    r().set("table_catalog", text(db))
                        .set("table_schema", text(snap.schema_name(rel.parent)))
                        .set("table_name", text(&rel.name))
                        .set("table_type", text(kind))
                        .set("is_insertable_into", text(if kind == "VIEW" { "NO" } else { "YES" }))
                        .set("is_typed", text("NO"))
                        .row(),
                );
            }
        }
        "views" => {
            for rel in &snap.rels {
                let Def::View(v) = &rel.def else { continue };
                out.push(
                    r().set("table_catalog", text(db))
                        .set("table_schema", text(snap.schema_name(rel.parent)))
                        .set("table_name", text(&rel.name))
                        .set("view_definition", text(&v.query))
                        .set("check_option", text("NONE"))
                        .set("is_updatable", text("NO"))
                        .set("is_insertable_into", text("NO"))
                        .set("is_trigger_updatable", text("NO"))
                        .set("is_trigger_deletable", text("NO"))
                        .set("is_trigger_insertable_into", text("NO"))
                        .row(),
                );
            }
        }
        "columns" => {
            for rel in &snap.rels {
                let Def::Table(td) = &rel.def else { continue };
                for (i, c) in td.columns.iter().enumerate() {
                    let ty = &c.data_type;
                    let (data_type, udt) = match ty {
                        DataType::Array(_) => {
                            ("ARRAY".to_string(), type_name(pgt::oid(ty)).unwrap_or_default())
                        }
                        t => (
                            match t {
                                DataType::Varchar(_) => "character varying".into(),
                                DataType::Char(_) => "character".into(),
                                DataType::Numeric(_) => "numeric".into(),
                                t => t.sql_name(),
                            },
                            type_name(pgt::oid(t)).unwrap_or_default(),
                        ),
                    };
                    let int = |v: Option<i32>| v.map_or(Value::Null, Value::Int4);
                    let (prec, radix, scale) = match ty {
                        DataType::SmallInt => (Some(16), Some(2), Some(0)),
                        DataType::Integer => (Some(32), Some(2), Some(0)),
                        DataType::BigInt => (Some(64), Some(2), Some(0)),
                        DataType::Real => (Some(24), Some(2), None),
                        DataType::Double => (Some(53), Some(2), None),
                        DataType::Numeric(Some((p, s))) => (Some(*p as i32), Some(10), Some(*s)),
                        DataType::Numeric(None) => (None, Some(10), None),
                        _ => (None, None, None),
                    };
                    let len = match ty {
                        DataType::Varchar(Some(n)) | DataType::Char(n) => Some(*n as i32),
                        _ => None,
                    };
                    let octets = match ty {
                        DataType::Varchar(_) | DataType::Char(_) | DataType::Text => {
                            Some(len.map_or(1_073_741_824, |n| n.saturating_mul(4)))
                        }
                        _ => None,
                    };
                    let dt_prec = match ty {
                        DataType::Date => Some(0),
                        DataType::Time
                        | DataType::Timestamp
                        | DataType::TimestampTz
                        | DataType::Interval => Some(6),
                        _ => None,
                    };
                    out.push(
                        r().set("table_catalog", text(db))
                            .set("table_schema", text(snap.schema_name(rel.parent)))
                            .set("table_name", text(&rel.name))
                            .set("column_name", text(&c.name))
                            .set("ordinal_position", Value::Int4(i as i32 + 1))
                            .set("column_default", opt_text(c.default.as_deref()))
                            .set("is_nullable", text(if c.nullable { "YES" } else { "NO" }))
                            .set("data_type", text(data_type))
                            .set("character_maximum_length", int(len))
                            .set("character_octet_length", int(octets))
                            .set("numeric_precision", int(prec))
                            .set("numeric_precision_radix", int(radix))
                            .set("numeric_scale", int(scale))
                            .set("datetime_precision", int(dt_prec))
                            .set("udt_catalog", text(db))
                            .set("udt_schema", text("pg_catalog"))
                            .set("udt_name", text(udt))
                            .set("dtd_identifier", text((i + 1).to_string()))
                            .set("is_self_referencing", text("NO"))
                            .set(
                                "is_identity",
                                text(if c.identity.is_some() { "YES" } else { "NO" }),
                            )
                            .set(
                                "identity_generation",
                                match &c.identity {
                                    Some(id) if id.always => text("ALWAYS"),
                                    Some(_) => text("BY DEFAULT"),
                                    None => Value::Null,
                                },
                            )
                            .set("identity_cycle", text("NO"))
                            .set("is_generated", text("NEVER"))
                            .set("is_updatable", text("YES"))
                            .row(),
                    );
                }
            }
        }
        "table_constraints" | "key_column_usage" | "referential_constraints" => {
            for (_, table, c) in constraints(snap) {
                let schema = snap.schema_name(table.parent);
                let base = r()
                    .set("constraint_catalog", text(db))
                    .set("constraint_schema", text(&schema))
                    .set("constraint_name", text(&c.name));
                let (kind, cols) = match &c.kind {
                    ConstraintKind::PrimaryKey { columns, .. } => ("PRIMARY KEY", Some(columns)),
                    ConstraintKind::Unique { columns, .. } => ("UNIQUE", Some(columns)),
                    ConstraintKind::Check { .. } => ("CHECK", None),
                    ConstraintKind::ForeignKey { columns, .. } => ("FOREIGN KEY", Some(columns)),
                };
                match t.name {
                    "table_constraints" => out.push(
                        base.set("table_catalog", text(db))
                            .set("table_schema", text(&schema))
                            .set("table_name", text(&table.name))
                            .set("constraint_type", text(kind))
                            .set("is_deferrable", text("NO"))
                            .set("initially_deferred", text("NO"))
                            .set("enforced", text("YES"))
                            .set(
                                "nulls_distinct",
                                if kind == "UNIQUE" { text("YES") } else { Value::Null },
                            )
                            .row(),
                    ),
                    "key_column_usage" => {
                        let Some(cols) = cols else { continue };
                        for (i, col) in cols.iter().enumerate() {
                            let pos = match &c.kind {
                                ConstraintKind::ForeignKey { .. } => Value::Int4(i as i32 + 1),
                                _ => Value::Null,
                            };
                            out.push(
                                RowB::new(t)
                                    .set("constraint_catalog", text(db))
                                    .set("constraint_schema", text(&schema))
                                    .set("constraint_name", text(&c.name))
                                    .set("table_catalog", text(db))
                                    .set("table_schema", text(&schema))
                                    .set("table_name", text(&table.name))
                                    .set("column_name", text(col))
                                    .set("ordinal_position", Value::Int4(i as i32 + 1))
                                    .set("position_in_unique_constraint", pos)
                                    .row(),
                            );
                        }
                    }
                    _ => {
                        let ConstraintKind::ForeignKey {
                            ref_table,
                            ref_columns,
                            on_delete,
                            on_update,
                            ..
                        } = &c.kind
                        else {
                            continue;
                        };
                        // The unique constraint the foreign key references.
                        let uc = snap.rel(*ref_table).and_then(|rt| match &rt.def {
                            Def::Table(rd) => rd
                                .constraints
                                .iter()
                                .find(|k| matches!(&k.kind, ConstraintKind::PrimaryKey { columns, .. } | ConstraintKind::Unique { columns, .. } if columns == ref_columns))
                                .map(|k| (snap.schema_name(rt.parent), k.name.clone())),
                            _ => None,
                        });
                        out.push(
                            base.set("unique_constraint_catalog", text(db))
                                .set(
                                    "unique_constraint_schema",
                                    opt_text(uc.as_ref().map(|u| u.0.as_str())),
                                )
                                .set(
                                    "unique_constraint_name",
                                    opt_text(uc.as_ref().map(|u| u.1.as_str())),
                                )
                                .set("match_option", text("NONE"))
                                .set("update_rule", text(action_rule(*on_update)))
                                .set("delete_rule", text(action_rule(*on_delete)))
                                .row(),
                        );
                    }
                }
            }
        }
        _ => {}
    }
}

/// The column types of a view's query (bound again; text if that fails).
fn view_types(ctx: &mut Ctx, env: crate::exec::Env, query: &str) -> Vec<DataType> {
    let Ok(stmts) = crate::session::parse(query) else { return Vec::new() };
    let Some(sqlparser::ast::Statement::Query(q)) = stmts.into_iter().next() else {
        return Vec::new();
    };
    let mut b = crate::plan::bind::Binder::new(env.catalog, ctx.txn, env.path);
    b.query(&q).map(|q| q.columns.into_iter().map(|c| c.1).collect()).unwrap_or_default()
}

fn attrdef_oid(table: ObjectId, attnum: usize) -> u64 {
    ATTRDEF_BASE + (table % (1 << 18)) * 2048 + attnum as u64
}

/// `pg_settings`: name, default, unit, type.
static SETTINGS: &[(&str, &str, Option<&str>, &str)] = &[
    ("application_name", "", None, "string"),
    ("block_size", "8192", None, "integer"),
    ("client_encoding", "UTF8", None, "string"),
    ("client_min_messages", "notice", None, "enum"),
    ("DateStyle", "ISO, MDY", None, "string"),
    ("default_table_access_method", "heap", None, "string"),
    ("default_transaction_isolation", "read committed", None, "enum"),
    ("default_transaction_read_only", "off", None, "bool"),
    ("extra_float_digits", "1", None, "integer"),
    ("integer_datetimes", "on", None, "bool"),
    ("IntervalStyle", "postgres", None, "enum"),
    ("lc_collate", "C", None, "string"),
    ("lc_ctype", "C", None, "string"),
    ("max_connections", "100", None, "integer"),
    ("max_identifier_length", "63", None, "integer"),
    ("max_index_keys", "32", None, "integer"),
    ("search_path", "\"$user\", public", None, "string"),
    ("server_encoding", "UTF8", None, "string"),
    ("server_version", "16.0", None, "string"),
    ("server_version_num", "160000", None, "integer"),
    ("shared_buffers", "16384", Some("8kB"), "integer"),
    ("standard_conforming_strings", "on", None, "bool"),
    ("statement_timeout", "0", Some("ms"), "integer"),
    ("TimeZone", "UTC", None, "string"),
    ("transaction_deferrable", "off", None, "bool"),
    ("transaction_isolation", "read committed", None, "string"),
    ("transaction_read_only", "off", None, "bool"),
    ("work_mem", "4096", Some("kB"), "integer"),
];

/// A setting as `pg_settings.setting` shows it: a number in the row's
/// unit (`work_mem` 4MB is 4096 kB, `shared_buffers` 128MB is 16384 pages
/// of 8 kB, `statement_timeout` 5s is 5000 ms), as in PostgreSQL, where
/// SHOW gives the value with its unit.
fn in_unit(name: &str, value: &str, unit: Option<&str>) -> String {
    let per = match unit {
        Some("kB") => 1024,
        Some("8kB") => 8192,
        Some("ms") => {
            return crate::exec::interrupt::parse_duration_ms(name, value)
                .map_or_else(|_| value.to_string(), |ms| ms.to_string());
        }
        _ => return value.to_string(),
    };
    crate::exec::spill::parse_memory(name, value, 0, u64::MAX >> 12)
        .map_or_else(|_| value.to_string(), |bytes| (bytes / per).to_string())
}

/// How a running statement reads its session's settings.
/// Shared, so that a session builds one per change of its settings and
/// each statement registers it by a reference count, not a copy.
pub type SettingsLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

std::thread_local! {
    static SESSION_SETTINGS: std::cell::RefCell<Option<SettingsLookup>> =
        const { std::cell::RefCell::new(None) };
}

/// A setting's current value in the running session, if the session
/// registered a lookup (see `enter_settings`).
fn session_setting(name: &str) -> Option<String> {
    SESSION_SETTINGS.with(|s| s.borrow().as_ref().and_then(|f| f(name)))
}

/// Publishes `lookup` to answer `current_setting` and `pg_settings` in
/// the running statement (kept in place after it, see `published`).
pub(crate) fn enter_settings(
    lookup: &SettingsLookup,
) -> crate::published::Replaced<SettingsLookup> {
    crate::published::publish(
        &SESSION_SETTINGS,
        |l| std::sync::Arc::ptr_eq(l, lookup),
        || lookup.clone(),
    )
}

/// Ends what `enter_settings` began.
pub(crate) fn leave_settings(r: crate::published::Replaced<SettingsLookup>) {
    crate::published::restore(&SESSION_SETTINGS, r);
}

/// The default of a setting PostgreSQL has (for `current_setting`).
pub fn default_setting(name: &str) -> Option<&'static str> {
    SETTINGS.iter().find(|s| s.0.eq_ignore_ascii_case(name)).map(|s| s.1)
}

/// `pg_backend_pid()`: the session's process id (`activity`), which the
/// wire protocol's BackendKeyData carries too.
fn backend_pid() -> i32 {
    crate::activity::current().map_or(std::process::id() as i32, |(_, pid)| pid)
}

/// `pg_cancel_backend(pid)` / `pg_terminate_backend(pid)`: true if there
/// is such a session, else PostgreSQL's WARNING and false.
fn signal_backend(pid: Option<i64>, terminate: bool) -> Value {
    let found = match (crate::activity::current(), pid.and_then(|p| i32::try_from(p).ok())) {
        (Some((reg, _)), Some(p)) => reg.get(p),
        _ => None,
    };
    match found {
        Some(a) => {
            if terminate {
                a.terminate();
            } else {
                a.cancel();
            }
            Value::Bool(true)
        }
        None => {
            crate::notice::raise(crate::notice::Notice::warning(
                "01000",
                format!("PID {} is not a PostgreSQL backend process", pid.unwrap_or(0)),
            ));
            Value::Bool(false)
        }
    }
}

/// `pg_sleep(seconds)`: sleeps in slices, stopping early (57014) when the
/// statement is cancelled or times out.
fn sleep(seconds: f64) -> Result<Value> {
    let check = crate::exec::interrupt::Check::current();
    if seconds.is_finite() && seconds > 0.0 {
        let until = std::time::Instant::now()
            + std::time::Duration::from_secs_f64(seconds.min(i32::MAX as f64));
        qube_common::wait::wait(|| -> Result<()> {
            loop {
                check.check()?;
                let now = std::time::Instant::now();
                if now >= until {
                    return Ok(());
                }
                std::thread::sleep((until - now).min(std::time::Duration::from_millis(10)));
            }
        })?;
    }
    check.check()?;
    Ok(Value::Null)
}

// ------------------------------------------------------------ definitions as text

fn quote_ident(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { s.to_string() } else { format!("\"{}\"", s.replace('"', "\"\"")) }
}

/// `pg_get_indexdef(oid, column, pretty)`: the CREATE INDEX statement, or
/// one key column's text (column > 0).
fn index_def(snap: &Snapshot, rel: &Object, ix: &IndexDef, column: i32) -> String {
    let cols: Vec<String> = ix
        .columns
        .iter()
        .map(|c| {
            let mut s = if c.expr.chars().all(|ch| ch.is_alphanumeric() || ch == '_') {
                quote_ident(&c.expr)
            } else {
                format!("({})", c.expr)
            };
            if c.desc {
                s.push_str(" DESC");
                if !c.nulls_first {
                    s.push_str(" NULLS LAST");
                }
            } else if c.nulls_first {
                s.push_str(" NULLS FIRST");
            }
            s
        })
        .collect();
    if column > 0 {
        return ix.columns.get(column as usize - 1).map_or(String::new(), |c| c.expr.clone());
    }
    let table = snap.rel(ix.table).map_or(String::new(), |t| {
        format!("{}.{}", quote_ident(&snap.schema_name(t.parent)), quote_ident(&t.name))
    });
    let mut s = format!(
        "CREATE {}INDEX {} ON {} USING {} ({})",
        if ix.unique { "UNIQUE " } else { "" },
        quote_ident(&rel.name),
        table,
        ix.method,
        cols.join(", ")
    );
    if let Some(p) = &ix.predicate {
        s.push_str(&format!(" WHERE ({p})"));
    }
    s
}

/// `pg_get_constraintdef(oid)`.
fn constraint_def(
    snap: &Snapshot,
    table: &Object,
    c: &qube_catalog::Constraint,
    path: &crate::names::SearchPath,
) -> String {
    let list = |cols: &[String]| cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    match &c.kind {
        ConstraintKind::PrimaryKey { columns, .. } => format!("PRIMARY KEY ({})", list(columns)),
        ConstraintKind::Unique { columns, .. } => format!("UNIQUE ({})", list(columns)),
        ConstraintKind::Check { expr } => format!("CHECK (({expr}))"),
        ConstraintKind::ForeignKey { columns, ref_table, ref_columns, on_delete, on_update } => {
            let rname = snap.rel(*ref_table).map_or(String::new(), |t| {
                let visible = path.temp == Some(t.parent) || path.schemas.contains(&t.parent);
                if visible && table.parent == t.parent {
                    quote_ident(&t.name)
                } else {
                    format!("{}.{}", quote_ident(&snap.schema_name(t.parent)), quote_ident(&t.name))
                }
            });
            let mut s = format!(
                "FOREIGN KEY ({}) REFERENCES {}({})",
                list(columns),
                rname,
                list(ref_columns)
            );
            if *on_update != RefAction::NoAction {
                s.push_str(&format!(" ON UPDATE {}", action_rule(*on_update)));
            }
            if *on_delete != RefAction::NoAction {
                s.push_str(&format!(" ON DELETE {}", action_rule(*on_delete)));
            }
            s
        }
    }
}

// ------------------------------------------------------------ functions

/// Catalog functions (`Func::Sys`), evaluated with the execution context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysFunc {
    GetUserById,
    EncodingToChar,
    TableIsVisible,
    TypeIsVisible,
    FormatType,
    GetIndexDef,
    GetConstraintDef,
    GetExpr,
    ObjDescription,
    ColDescription,
    ShobjDescription,
    /// has_*_privilege: true for now (privileges come later).
    HasPrivilege,
    CurrentSchemas,
    CurrentSetting,
    SetConfig,
    BackendPid,
    /// `to_regclass`, `to_regtype`, …: the oid, or NULL when unknown.
    ToReg(RegKind),
    /// `'schema.f'::regproc`: the function's bare name.
    ProcName,
    /// `pg_get_serial_sequence(table, column)`.
    SerialSequence,
    /// pg_cancel_backend(pid), pg_terminate_backend(pid).
    CancelBackend,
    TerminateBackend,
    /// pg_sleep(seconds).
    Sleep,
    /// `x::regclass` etc. from a name (text) to an oid.
    NameToOid(RegKind),
    /// `x::regclass` etc. from an oid to a name.
    OidToName(RegKind),
    /// Functions of features QubeDB lacks, that psql calls on empty sets:
    /// NULL.
    Null,
    /// Table size functions: 0 for now.
    Zero,
    SizePretty,
    /// pg_get_viewdef(oid).
    GetViewDef,
}

/// The `reg*` types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegKind {
    Class,
    Type,
    Namespace,
    Role,
    Proc,
}

/// The `reg*` type a cast names (`regclass`, `pg_catalog.regtype`, …).
pub fn reg_kind(name: &str) -> Option<RegKind> {
    Some(match name {
        "regclass" => RegKind::Class,
        "regtype" => RegKind::Type,
        "regnamespace" => RegKind::Namespace,
        "regrole" => RegKind::Role,
        "regproc" | "regprocedure" => RegKind::Proc,
        _ => return None,
    })
}

/// Binds `x::regclass` (and the other reg types): from a number, the
/// object's name; from text, its oid.
pub(crate) fn reg_cast(kind: RegKind, b: B) -> Result<B> {
    let numeric = !b.unknown && crate::plan::bind::is_numeric(&b.ty);
    if kind == RegKind::Proc && !numeric {
        // There are no function oids (pg_proc is empty): a regproc is the
        // function's name, as `pg_type.typinput` shows it, so
        // `typinput = 'pg_catalog.array_in'::regproc` compares names.
        let e = crate::plan::bind::coerce(b, &DataType::Text)?;
        return Ok(B::new(
            Expr::Func { func: Func::Sys(SysFunc::ProcName), args: vec![e] },
            DataType::Text,
        ));
    }
    if numeric {
        let e = crate::plan::bind::coerce(b, &DataType::Integer)?;
        Ok(B::new(
            Expr::Func { func: Func::Sys(SysFunc::OidToName(kind)), args: vec![e] },
            DataType::Text,
        ))
    } else {
        let e = crate::plan::bind::coerce(b, &DataType::Text)?;
        Ok(B::new(
            Expr::Func { func: Func::Sys(SysFunc::NameToOid(kind)), args: vec![e] },
            DataType::Integer,
        ))
    }
}

/// The columns of a set-returning catalog function that has no rows in
/// QubeDB (`pg_partition_ancestors`: there are no partitions), called in
/// FROM.
pub fn empty_function(name: &str, with_ordinality: bool) -> Option<Vec<(String, DataType)>> {
    let mut cols = match name {
        "pg_partition_ancestors" => vec![("relid".to_string(), DataType::Integer)],
        _ => return None,
    };
    if with_ordinality {
        cols.push(("ordinality".into(), DataType::BigInt));
    }
    Some(cols)
}

/// Binds a catalog function call, if `name` is one.
pub(crate) fn function(name: &str, args: &mut Vec<B>) -> Result<Option<B>> {
    use SysFunc as F;
    let int = DataType::Integer;
    let text_t = DataType::Text;
    if (name, args.len()) == ("pg_partition_ancestors", 1) {
        // No partitions: no ancestors (an empty set, as for a table that
        // is not a partition).
        args.clear();
        let empty = Expr::Const(Value::Array(Vec::new()));
        return Ok(Some(B::new(
            Expr::Func {
                func: Func::SetReturning(crate::plan::SetFunc::Unnest),
                args: vec![empty],
            },
            int,
        )));
    }
    let (f, arg_types, ret): (SysFunc, Vec<DataType>, DataType) = match (name, args.len()) {
        ("pg_get_userbyid", 1) => (F::GetUserById, vec![int.clone()], text_t),
        ("pg_encoding_to_char", 1) => (F::EncodingToChar, vec![int.clone()], text_t),
        ("pg_table_is_visible", 1) => (F::TableIsVisible, vec![int.clone()], DataType::Boolean),
        ("pg_type_is_visible", 1) => (F::TypeIsVisible, vec![int.clone()], DataType::Boolean),
        (
            "pg_function_is_visible"
            | "pg_operator_is_visible"
            | "pg_collation_is_visible"
            | "pg_conversion_is_visible"
            | "pg_opclass_is_visible"
            | "pg_ts_config_is_visible",
            1,
        ) => (F::HasPrivilege, vec![int.clone()], DataType::Boolean),
        ("format_type", 2) => (F::FormatType, vec![int.clone(), int.clone()], text_t),
        ("pg_get_indexdef", 1) => (F::GetIndexDef, vec![int.clone()], text_t),
        ("pg_get_indexdef", 3) => {
            (F::GetIndexDef, vec![int.clone(), int.clone(), DataType::Boolean], text_t)
        }
        ("pg_get_constraintdef", 1) => (F::GetConstraintDef, vec![int.clone()], text_t),
        ("pg_get_constraintdef", 2) => {
            (F::GetConstraintDef, vec![int.clone(), DataType::Boolean], text_t)
        }
        ("pg_get_expr", 2) => (F::GetExpr, vec![text_t.clone(), int.clone()], text_t),
        ("pg_get_expr", 3) => {
            (F::GetExpr, vec![text_t.clone(), int.clone(), DataType::Boolean], text_t)
        }
        ("pg_get_viewdef", 1) => (F::GetViewDef, vec![int.clone()], text_t),
        ("pg_get_viewdef", 2) => (F::GetViewDef, vec![int.clone(), DataType::Boolean], text_t),
        ("obj_description", 1) => (F::ObjDescription, vec![int.clone()], text_t),
        ("obj_description", 2) => (F::ObjDescription, vec![int.clone(), text_t.clone()], text_t),
        ("shobj_description", 2) => {
            (F::ShobjDescription, vec![int.clone(), text_t.clone()], text_t)
        }
        ("col_description", 2) => (F::ColDescription, vec![int.clone(), int.clone()], text_t),
        (
            "has_table_privilege"
            | "has_schema_privilege"
            | "has_database_privilege"
            | "has_column_privilege"
            | "has_sequence_privilege"
            | "has_function_privilege",
            n,
        ) if (2..=4).contains(&n) => {
            let a: Vec<DataType> = args
                .iter()
                .map(|b| if b.unknown { DataType::Text } else { b.ty.clone() })
                .collect();
            (F::HasPrivilege, a, DataType::Boolean)
        }
        ("current_schemas", 1) => {
            (F::CurrentSchemas, vec![DataType::Boolean], DataType::Array(Box::new(DataType::Text)))
        }
        ("current_setting", 1) => (F::CurrentSetting, vec![text_t.clone()], text_t),
        ("current_setting", 2) => {
            (F::CurrentSetting, vec![text_t.clone(), DataType::Boolean], text_t)
        }
        ("set_config", 3) => {
            (F::SetConfig, vec![text_t.clone(), text_t.clone(), DataType::Boolean], text_t)
        }
        ("pg_backend_pid", 0) => (F::BackendPid, vec![], int),
        ("pg_get_serial_sequence", 2) => {
            (F::SerialSequence, vec![text_t.clone(), text_t.clone()], text_t)
        }
        ("to_regclass", 1) => (F::ToReg(RegKind::Class), vec![text_t], int),
        ("to_regtype", 1) => (F::ToReg(RegKind::Type), vec![text_t], int),
        ("to_regnamespace", 1) => (F::ToReg(RegKind::Namespace), vec![text_t], int),
        ("to_regrole", 1) => (F::ToReg(RegKind::Role), vec![text_t], int),
        ("to_regproc" | "to_regprocedure", 1) => (F::ToReg(RegKind::Proc), vec![text_t], int),
        ("pg_cancel_backend", 1) => (F::CancelBackend, vec![int.clone()], DataType::Boolean),
        ("pg_terminate_backend", 1) => (F::TerminateBackend, vec![int.clone()], DataType::Boolean),
        ("pg_terminate_backend", 2) => {
            (F::TerminateBackend, vec![int.clone(), DataType::BigInt], DataType::Boolean)
        }
        // void in PostgreSQL; NULL here (psql prints an empty value either way).
        ("pg_sleep", 1) => (F::Sleep, vec![DataType::Double], text_t.clone()),
        (
            "pg_get_function_result"
            | "pg_get_function_arguments"
            | "pg_get_function_identity_arguments"
            | "pg_get_functiondef",
            1,
        ) => (F::Null, vec![int.clone()], text_t),
        ("pg_get_triggerdef", 1) => (F::Null, vec![int.clone()], text_t),
        ("pg_get_triggerdef", 2) => (F::Null, vec![int.clone(), DataType::Boolean], text_t),
        ("pg_relation_is_publishable", 1) => (F::Null, vec![int], DataType::Boolean),
        ("pg_get_statisticsobjdef_columns", 1) => (F::Null, vec![int], text_t),
        (
            "pg_total_relation_size"
            | "pg_table_size"
            | "pg_relation_size"
            | "pg_indexes_size"
            | "pg_database_size",
            1,
        ) => (
            F::Zero,
            vec![if args[0].unknown || args[0].ty == DataType::Text { text_t } else { int }],
            DataType::BigInt,
        ),
        ("pg_size_pretty", 1) => (F::SizePretty, vec![DataType::BigInt], text_t),
        _ => return Ok(None),
    };
    let mut exprs = Vec::with_capacity(arg_types.len());
    for (b, ty) in std::mem::take(args).into_iter().zip(&arg_types) {
        exprs.push(crate::plan::bind::coerce(b, ty)?);
    }
    Ok(Some(B::new(Expr::Func { func: Func::Sys(f), args: exprs }, ret)))
}

fn arg_i64(v: &[Value], i: usize) -> Option<i64> {
    v.get(i).and_then(Value::as_i64)
}

fn arg_text(v: &[Value], i: usize) -> Option<String> {
    match v.get(i) {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Evaluates a catalog function.
pub fn call(ctx: &mut Ctx, f: SysFunc, args: Vec<Value>) -> Result<Value> {
    use SysFunc as F;
    // Functions of no object: NULL in, NULL out.
    if !matches!(f, F::BackendPid | F::CurrentSchemas | F::HasPrivilege | F::Null | F::SetConfig)
        && args.first().is_some_and(Value::is_null)
    {
        return Ok(Value::Null);
    }
    match f {
        F::Null => return Ok(Value::Null),
        F::Zero => return Ok(Value::Int8(0)),
        F::SizePretty => {
            let n = arg_i64(&args, 0).unwrap_or(0);
            return Ok(text(size_pretty(n)));
        }
        F::HasPrivilege => return Ok(Value::Bool(true)),
        F::BackendPid => return Ok(Value::Int4(backend_pid())),
        F::CancelBackend => return Ok(signal_backend(arg_i64(&args, 0), false)),
        F::TerminateBackend => return Ok(signal_backend(arg_i64(&args, 0), true)),
        F::Sleep => {
            let secs = match args.first() {
                Some(Value::Float8(f)) => *f,
                Some(v) => v.to_string().parse().unwrap_or(0.0),
                None => 0.0,
            };
            return sleep(secs);
        }
        F::EncodingToChar => {
            return Ok(text(match arg_i64(&args, 0) {
                Some(6) => "UTF8",
                Some(0) => "SQL_ASCII",
                _ => "",
            }));
        }
        F::FormatType => {
            let o = arg_i64(&args, 0).unwrap_or(0) as u32;
            let m = arg_i64(&args, 1).unwrap_or(-1) as i32;
            return Ok(text(format_type(o, m)));
        }
        F::GetExpr => return Ok(args.into_iter().next().unwrap_or(Value::Null)),
        F::CurrentSetting => {
            let name = arg_text(&args, 0).unwrap_or_default();
            let missing_ok = matches!(args.get(1), Some(Value::Bool(true)));
            return match session_setting(&name)
                .or_else(|| default_setting(&name).map(str::to_string))
            {
                Some(v) => Ok(text(v)),
                None if missing_ok => Ok(Value::Null),
                None => Err(Error::user(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                )),
            };
        }
        F::SetConfig => {
            // Settings are changed with SET; set_config reports the value
            // without keeping it.
            return Ok(args.get(1).cloned().unwrap_or(Value::Null));
        }
        _ => {}
    }
    let env =
        ctx.env.ok_or_else(|| Error::Internal("catalog function without a session".into()))?;
    let cat = env.catalog;
    let id = arg_i64(&args, 0).unwrap_or(-1);
    let obj = |ctx: &mut Ctx| -> Result<Option<Arc<Object>>> {
        if id < 0 { Ok(None) } else { cat.get(ctx.txn, id as u64) }
    };
    Ok(match f {
        F::GetUserById => match obj(ctx)? {
            Some(o) if matches!(o.def, Def::Role(_)) => text(&o.name),
            _ => text(format!("unknown (OID={id})")),
        },
        F::TableIsVisible => {
            if let Some(t) = system_rel_of_oid(id) {
                Value::Bool(!TABLES[t].info_schema)
            } else {
                match obj(ctx)? {
                    Some(o) if o.def.namespace() == Namespace::Relation => {
                        let found =
                            env.path.relation(cat, ctx.txn, std::slice::from_ref(&o.name))?;
                        Value::Bool(
                            found.is_some_and(|f| f.id == o.id)
                                && resolve(std::slice::from_ref(&o.name), "").is_none(),
                        )
                    }
                    _ => Value::Null,
                }
            }
        }
        F::TypeIsVisible => Value::Bool(type_name(id as u32).is_some()),
        F::GetIndexDef => match obj(ctx)? {
            Some(o) => match &o.def {
                Def::Index(ix) => {
                    let snap = Snapshot::take(ctx)?;
                    text(index_def(&snap, &o, ix, arg_i64(&args, 1).unwrap_or(0) as i32))
                }
                _ => Value::Null,
            },
            None => Value::Null,
        },
        F::GetConstraintDef => {
            let snap = Snapshot::take(ctx)?;
            let found = constraints(&snap).into_iter().find(|(cid, _, _)| *cid as i64 == id);
            match found {
                Some((_, table, c)) => text(constraint_def(&snap, table, c, env.path)),
                None => Value::Null,
            }
        }
        F::GetViewDef => match obj(ctx)? {
            Some(o) => match &o.def {
                Def::View(v) => text(&v.query),
                _ => Value::Null,
            },
            None => Value::Null,
        },
        F::ObjDescription | F::ShobjDescription => {
            let catalog = arg_text(&args, 1);
            match obj(ctx)? {
                Some(o) => {
                    let class = match o.def {
                        Def::Schema(_) => "pg_namespace",
                        Def::Database(_) => "pg_database",
                        Def::Role(_) => "pg_authid",
                        _ => "pg_class",
                    };
                    if catalog
                        .as_deref()
                        .is_some_and(|c| c.trim_start_matches("pg_catalog.") != class)
                    {
                        Value::Null
                    } else {
                        opt_text(o.comment.as_deref())
                    }
                }
                None => Value::Null,
            }
        }
        F::ColDescription => {
            let n = arg_i64(&args, 1).unwrap_or(0);
            match obj(ctx)? {
                Some(o) => match &o.def {
                    Def::Table(td) if n >= 1 => {
                        opt_text(td.columns.get(n as usize - 1).and_then(|c| c.comment.as_deref()))
                    }
                    _ => Value::Null,
                },
                None => Value::Null,
            }
        }
        F::CurrentSchemas => {
            let implicit = matches!(args.first(), Some(Value::Bool(true)));
            let mut names = Vec::new();
            if implicit {
                if let Some(t) = env.path.temp {
                    names.push(cat.get(ctx.txn, t)?.map_or(String::new(), |o| o.name.clone()));
                }
                names.push("pg_catalog".to_string());
            }
            for s in &env.path.schemas {
                if let Some(o) = cat.get(ctx.txn, *s)? {
                    names.push(o.name.clone());
                }
            }
            texts(&names)
        }
        F::SerialSequence => {
            let table = arg_text(&args, 0).unwrap_or_default();
            let column = arg_text(&args, 1).unwrap_or_default();
            serial_sequence(ctx, &table, &column)?
        }
        F::ProcName => match arg_text(&args, 0) {
            Some(name) => {
                let name = name.split('(').next().unwrap_or_default().trim();
                let parts = crate::names::parse_qualified(name)?;
                text(parts.last().cloned().unwrap_or_default())
            }
            None => Value::Null,
        },
        F::ToReg(kind) => {
            let name = arg_text(&args, 0).unwrap_or_default();
            name_to_oid(ctx, kind, &name).unwrap_or(Value::Null)
        }
        F::NameToOid(kind) => {
            let name = arg_text(&args, 0).unwrap_or_default();
            name_to_oid(ctx, kind, &name)?
        }
        F::OidToName(kind) => oid_to_name(ctx, kind, id)?,
        _ => Value::Null,
    })
}

/// `pg_get_serial_sequence`: the qualified name of the sequence behind
/// a serial or identity column (its identity sequence, or a sequence OWNED
/// BY it), NULL when there is none. The table name is parsed as SQL, the
/// column name taken literally, as in PostgreSQL.
fn serial_sequence(ctx: &mut Ctx, table: &str, column: &str) -> Result<Value> {
    let Value::Int4(table_id) = name_to_oid(ctx, RegKind::Class, table)? else {
        return Ok(Value::Null);
    };
    let snap = Snapshot::take(ctx)?;
    let Some(rel) = snap.rel(table_id as ObjectId) else { return Ok(Value::Null) };
    let Def::Table(td) = &rel.def else { return Ok(Value::Null) };
    let Some(col) = td.columns.iter().find(|c| c.name == column) else {
        return Err(Error::user(
            "42703",
            format!("column \"{column}\" of relation \"{}\" does not exist", rel.name),
        ));
    };
    let seq = match &col.identity {
        Some(id) => snap.rel(id.sequence),
        None => snap.rels.iter().find(|o| {
            matches!(&o.def, Def::Sequence(sd)
                if sd.owned_by.as_ref().is_some_and(|(t, c)| *t == rel.id && c == column))
        }),
    };
    Ok(match seq {
        Some(s) => {
            text(format!("{}.{}", quote_ident(&snap.schema_name(s.parent)), quote_ident(&s.name)))
        }
        None => Value::Null,
    })
}

fn size_pretty(n: i64) -> String {
    let mut v = n as f64;
    for unit in ["bytes", "kB", "MB", "GB", "TB"] {
        if v.abs() < 10240.0 || unit == "TB" {
            return format!("{} {unit}", v.round() as i64);
        }
        v /= 1024.0;
    }
    format!("{n} bytes")
}

/// `'name'::regclass` and its kin: the oid the name names.
fn name_to_oid(ctx: &mut Ctx, kind: RegKind, name: &str) -> Result<Value> {
    let env = ctx.env.ok_or_else(|| Error::Internal("reg cast without a session".into()))?;
    // A number is an oid already.
    if let Ok(n) = name.trim().parse::<i64>() {
        return Ok(Value::Int4(n as i32));
    }
    let cat = env.catalog;
    match kind {
        RegKind::Class => {
            let parts = crate::names::parse_qualified(name)?;
            if let Some(t) = resolve(&parts, &env.path.db_name) {
                return Ok(oid(system_rel_oid(t)));
            }
            match env.path.relation(cat, ctx.txn, &parts)? {
                Some(o) => Ok(oid(o.id)),
                None => Err(Error::user("42P01", format!("relation \"{name}\" does not exist"))),
            }
        }
        RegKind::Type => type_oid_of_name(name)
            .map(|o| Value::Int4(o as i32))
            .ok_or_else(|| Error::user("42704", format!("type \"{name}\" does not exist"))),
        RegKind::Namespace => {
            let n = crate::names::parse_qualified(name)?.pop().unwrap_or_default();
            match n.as_str() {
                "pg_catalog" => Ok(oid(PG_CATALOG_OID)),
                "information_schema" => Ok(oid(INFORMATION_SCHEMA_OID)),
                _ => match cat.lookup(ctx.txn, Namespace::Schema, env.path.db, &n)? {
                    Some(o) => Ok(oid(o.id)),
                    None => Err(Error::user("3F000", format!("schema \"{n}\" does not exist"))),
                },
            }
        }
        RegKind::Role => {
            let n = crate::names::parse_qualified(name)?.pop().unwrap_or_default();
            match cat.lookup(ctx.txn, Namespace::Role, 0, &n)? {
                Some(o) => Ok(oid(o.id)),
                None => Err(Error::user("42704", format!("role \"{n}\" does not exist"))),
            }
        }
        RegKind::Proc => Err(Error::user("42883", format!("function \"{name}\" does not exist"))),
    }
}

/// `oid::regclass` and its kin: the name of the object, qualified when
/// the search path would not find it (a number when there is none).
fn oid_to_name(ctx: &mut Ctx, kind: RegKind, id: i64) -> Result<Value> {
    let env = ctx.env.ok_or_else(|| Error::Internal("reg cast without a session".into()))?;
    if id == 0 {
        return Ok(text("-"));
    }
    let cat = env.catalog;
    match kind {
        RegKind::Type => Ok(text(match type_by_oid(id as u32).or_else(|| array_elem(id as u32)) {
            Some(_) => format_type(id as u32, -1),
            None => id.to_string(),
        })),
        RegKind::Class => {
            if let Some(t) = system_rel_of_oid(id) {
                let t = &TABLES[t];
                return Ok(text(if t.info_schema {
                    format!("information_schema.{}", t.name)
                } else {
                    t.name.to_string()
                }));
            }
            match cat.get(ctx.txn, id as u64)? {
                Some(o) if o.def.namespace() == Namespace::Relation => {
                    let found = env.path.relation(cat, ctx.txn, std::slice::from_ref(&o.name))?;
                    if found.is_some_and(|f| f.id == o.id) {
                        Ok(text(quote_ident(&o.name)))
                    } else {
                        let schema =
                            cat.get(ctx.txn, o.parent)?.map_or(String::new(), |s| s.name.clone());
                        Ok(text(format!("{}.{}", quote_ident(&schema), quote_ident(&o.name))))
                    }
                }
                _ => Ok(text(id.to_string())),
            }
        }
        RegKind::Namespace | RegKind::Role => {
            if kind == RegKind::Namespace && id as u64 == PG_CATALOG_OID {
                return Ok(text("pg_catalog"));
            }
            if kind == RegKind::Namespace && id as u64 == INFORMATION_SCHEMA_OID {
                return Ok(text("information_schema"));
            }
            Ok(text(match cat.get(ctx.txn, id as u64)? {
                Some(o) => quote_ident(&o.name),
                None => id.to_string(),
            }))
        }
        RegKind::Proc => Ok(text(id.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_type_matches_postgresql() {
        assert_eq!(format_type(23, -1), "integer");
        assert_eq!(format_type(1043, 14), "character varying(10)");
        assert_eq!(format_type(1700, ((10 << 16) | 2) + 4), "numeric(10,2)");
        assert_eq!(format_type(1007, -1), "integer[]");
        assert_eq!(format_type(19, -1), "name");
        assert_eq!(format_type(18, -1), "\"char\"");
        assert_eq!(format_type(1042, -1), "bpchar");
    }

    #[test]
    fn names_resolve() {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(resolve(&p(&["pg_class"]), "db").is_some());
        assert!(resolve(&p(&["pg_catalog", "pg_class"]), "db").is_some());
        assert!(resolve(&p(&["information_schema", "tables"]), "db").is_some());
        assert!(resolve(&p(&["tables"]), "db").is_none());
        assert!(resolve(&p(&["db", "pg_catalog", "pg_type"]), "db").is_some());
        assert!(resolve(&p(&["public", "pg_class"]), "db").is_none());
    }

    #[test]
    fn every_table_has_distinct_columns() {
        for t in TABLES {
            let mut names: Vec<_> = t.columns.iter().map(|c| c.0).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), t.columns.len(), "{}", t.name);
        }
        assert_eq!(type_oid_of_name("integer"), Some(23));
        assert_eq!(type_oid_of_name("int4[]"), Some(1007));
        assert_eq!(type_name(1007).as_deref(), Some("_int4"));
    }
}
