//! Values, their casts and their encodings.

pub mod array;
pub mod cast;
pub mod datetime;
pub mod encoding;
pub mod jsonb;
pub mod numeric;
pub mod value;

pub use value::Value;
