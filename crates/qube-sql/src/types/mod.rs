//! Values, their casts and their encodings.

pub mod cast;
pub mod datetime;
pub mod encoding;
pub mod value;

pub use value::Value;
