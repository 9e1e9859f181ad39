//! SQL data types, by PostgreSQL's names. (Values and their encodings
//! arrive with the SQL engine; the catalog already needs the types.)

use serde::{Deserialize, Serialize};

/// A column's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    /// `numeric(precision, scale)`; `None` for unconstrained `numeric`.
    /// numeric(precision, scale): precision 1..=1000, scale -1000..=1000 (PostgreSQL 15).
    Numeric(Option<(u32, i32)>),
    Boolean,
    Text,
    /// `varchar(n)`; `None` for unbounded `varchar`.
    Varchar(Option<u32>),
    /// `char(n)`.
    Char(u32),
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    Json,
    Jsonb,
    /// One-dimensional array of the element type.
    Array(Box<DataType>),
    /// PostgreSQL's `int2vector` (`pg_index.indkey`): a smallint array in
    /// SQL (`ANY`, `unnest`, subscripts), OID 22 on the wire with the text
    /// form `1 2`, so drivers read it as PostgreSQL sends it.
    Int2Vector,
    /// An anonymous composite (PostgreSQL's `record`, OID 2249) with its
    /// fields' names and types: what a function returning several columns
    /// gives in an expression (`information_schema._pg_expandarray`). Not
    /// a column type: it exists only while a query runs.
    Record(Vec<(String, DataType)>),
}

impl DataType {
    /// The name PostgreSQL's `format_type` prints.
    pub fn sql_name(&self) -> String {
        match self {
            DataType::SmallInt => "smallint".into(),
            DataType::Integer => "integer".into(),
            DataType::BigInt => "bigint".into(),
            DataType::Real => "real".into(),
            DataType::Double => "double precision".into(),
            DataType::Numeric(None) => "numeric".into(),
            DataType::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
            DataType::Boolean => "boolean".into(),
            DataType::Text => "text".into(),
            DataType::Varchar(None) => "character varying".into(),
            DataType::Varchar(Some(n)) => format!("character varying({n})"),
            DataType::Char(n) => format!("character({n})"),
            DataType::Bytea => "bytea".into(),
            DataType::Date => "date".into(),
            DataType::Time => "time without time zone".into(),
            DataType::Timestamp => "timestamp without time zone".into(),
            DataType::TimestampTz => "timestamp with time zone".into(),
            DataType::Interval => "interval".into(),
            DataType::Uuid => "uuid".into(),
            DataType::Json => "json".into(),
            DataType::Jsonb => "jsonb".into(),
            DataType::Array(t) => format!("{}[]", t.sql_name()),
            DataType::Int2Vector => "int2vector".into(),
            DataType::Record(_) => "record".into(),
        }
    }
}

// ------------------------------------------------------------ PostgreSQL type OIDs
//
// One table for the wire protocol (RowDescription, Bind parameter types)
// and the SQL engine's system catalog (pg_type, format_type).

pub const TEXT_OID: u32 = 25;
/// The pseudo-type `record`.
pub const RECORD_OID: u32 = 2249;

/// The OID PostgreSQL gives a type (arrays: the array type's OID).
pub fn oid(t: &DataType) -> u32 {
    match t {
        DataType::Boolean => 16,
        DataType::Bytea => 17,
        DataType::BigInt => 20,
        DataType::SmallInt => 21,
        DataType::Integer => 23,
        DataType::Text => TEXT_OID,
        DataType::Json => 114,
        DataType::Real => 700,
        DataType::Double => 701,
        DataType::Char(_) => 1042,
        DataType::Varchar(_) => 1043,
        DataType::Date => 1082,
        DataType::Time => 1083,
        DataType::Timestamp => 1114,
        DataType::TimestampTz => 1184,
        DataType::Interval => 1186,
        DataType::Numeric(_) => 1700,
        DataType::Uuid => 2950,
        DataType::Jsonb => 3802,
        DataType::Array(e) => match e.as_ref() {
            DataType::Boolean => 1000,
            DataType::Bytea => 1001,
            DataType::BigInt => 1016,
            DataType::SmallInt => 1005,
            DataType::Integer => 1007,
            DataType::Text => 1009,
            DataType::Json => 199,
            DataType::Real => 1021,
            DataType::Double => 1022,
            DataType::Char(_) => 1014,
            DataType::Varchar(_) => 1015,
            DataType::Date => 1182,
            DataType::Time => 1183,
            DataType::Timestamp => 1115,
            DataType::TimestampTz => 1185,
            DataType::Interval => 1187,
            DataType::Numeric(_) => 1231,
            DataType::Uuid => 2951,
            DataType::Jsonb => 3807,
            // Nested arrays are not a type of their own in PostgreSQL.
            DataType::Record(_) => 2287,
            DataType::Array(_) | DataType::Int2Vector => 1009,
        },
        DataType::Int2Vector => 22,
        DataType::Record(_) => RECORD_OID,
    }
}

/// The type of an OID a client declared (None: unknown to us, or 0).
pub fn from_oid(oid: u32) -> Option<DataType> {
    let arr = |t: DataType| DataType::Array(Box::new(t));
    Some(match oid {
        16 => DataType::Boolean,
        17 => DataType::Bytea,
        20 => DataType::BigInt,
        21 => DataType::SmallInt,
        23 => DataType::Integer,
        25 => DataType::Text,
        114 => DataType::Json,
        700 => DataType::Real,
        701 => DataType::Double,
        1042 => DataType::Char(1),
        1043 => DataType::Varchar(None),
        1082 => DataType::Date,
        1083 => DataType::Time,
        1114 => DataType::Timestamp,
        1184 => DataType::TimestampTz,
        1186 => DataType::Interval,
        1700 => DataType::Numeric(None),
        2950 => DataType::Uuid,
        3802 => DataType::Jsonb,
        1000 => arr(DataType::Boolean),
        1001 => arr(DataType::Bytea),
        1016 => arr(DataType::BigInt),
        1005 => arr(DataType::SmallInt),
        1007 => arr(DataType::Integer),
        1009 => arr(DataType::Text),
        199 => arr(DataType::Json),
        1021 => arr(DataType::Real),
        1022 => arr(DataType::Double),
        1014 => arr(DataType::Char(1)),
        1015 => arr(DataType::Varchar(None)),
        1182 => arr(DataType::Date),
        1183 => arr(DataType::Time),
        1115 => arr(DataType::Timestamp),
        1185 => arr(DataType::TimestampTz),
        1187 => arr(DataType::Interval),
        1231 => arr(DataType::Numeric(None)),
        2951 => arr(DataType::Uuid),
        3807 => arr(DataType::Jsonb),
        _ => return None,
    })
}

/// `pg_type.typlen`: the fixed width, or -1.
pub fn type_size(t: &DataType) -> i16 {
    match t {
        DataType::Boolean => 1,
        DataType::SmallInt => 2,
        DataType::Integer | DataType::Real | DataType::Date => 4,
        DataType::BigInt
        | DataType::Double
        | DataType::Time
        | DataType::Timestamp
        | DataType::TimestampTz => 8,
        DataType::Interval | DataType::Uuid => 16,
        _ => -1,
    }
}

/// `atttypmod`: declared lengths and precisions, -1 for none.
pub fn type_modifier(t: &DataType) -> i32 {
    match t {
        DataType::Varchar(Some(n)) | DataType::Char(n) => (*n as i32).saturating_add(4),
        DataType::Numeric(Some((p, s))) => (((*p as i32) << 16) | (*s & 0x7ff)).saturating_add(4),
        _ => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            DataType::Array(Box::new(DataType::Varchar(Some(3)))).sql_name(),
            "character varying(3)[]"
        );
        assert_eq!(DataType::Numeric(Some((10, 2))).sql_name(), "numeric(10,2)");
    }
}
