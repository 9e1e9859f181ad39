//! Values in and out of JSON.
//!
//! Out (`write_value`), chosen so that no value loses precision in a
//! JavaScript client (whose numbers are doubles) and every column has one
//! JSON type:
//!
//! | SQL type | JSON |
//! |---|---|
//! | NULL (any type) | `null` |
//! | boolean | `true` / `false` |
//! | smallint, integer | number |
//! | real, double precision | number; `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
//! | bigint, numeric | **string** (`"9007199254740993"`), as node-postgres does: exact beyond 2^53 |
//! | text, varchar, char | string |
//! | json, jsonb | the document itself, embedded (not a string) |
//! | arrays | JSON arrays of their elements (by these rules) |
//! | bytea | string `"\\x0102ff"` (PostgreSQL's hex form) |
//! | date, time, timestamp, timestamptz, interval, uuid | string in PostgreSQL's text form (timestamptz in UTC) |
//!
//! In (`param`): `null` → NULL, `true`/`false` → boolean, a string → text
//! (the engine casts it to the type the statement gives the parameter, as
//! for a text parameter of the wire protocol), a number → its text (so
//! `"id = $1"` with `5` and with `"5"` mean the same; integers stay exact),
//! an array → an array of its converted elements, an object → its JSON
//! text (cast by the engine to json or jsonb).

use std::fmt::Write;

use qube_sql::Value;
use qube_sql::types::jsonb::escape_into;

/// Appends `s` as a JSON string.
pub fn escape(s: &str, out: &mut String) {
    escape_into(s, out)
}

/// Appends `v` as JSON.
pub fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int2(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Int4(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float4(f) if f.is_finite() => {
            let _ = write!(out, "{v}");
        }
        Value::Float8(f) if f.is_finite() => {
            let _ = write!(out, "{v}");
        }
        Value::Text(s) => escape_into(s, out),
        // Validated JSON text, and our jsonb's text output: both JSON.
        Value::Json(s) => out.push_str(s),
        Value::Jsonb(j) => {
            let _ = write!(out, "{j}");
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        // bigint, numeric, non-finite floats, bytea, date/time, uuid:
        // PostgreSQL's text form as a string.
        other => escape_into(&other.to_string(), out),
    }
}

/// A request parameter as the engine's value (see the module notes).
pub fn param(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => Value::Text(n.to_string()),
        J::String(s) => Value::Text(s.clone()),
        J::Array(items) => Value::Array(items.iter().map(param).collect()),
        J::Object(_) => Value::Text(v.to_string()),
    }
}
