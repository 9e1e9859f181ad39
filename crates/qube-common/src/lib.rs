//! Shared pieces every QubeDB layer uses: the error type and small helpers.
//!
//! Errors are classified by what the caller must do about them (STYLE.md,
//! point 6), never by message text:
//!
//! | variant          | the caller should …                                   |
//! |------------------|-------------------------------------------------------|
//! | `InvalidInput`   | fix the request (key too long, bad argument)          |
//! | `User`           | fix the request; carries its exact SQLSTATE           |
//! | `Serialization`  | retry the transaction (a concurrent one conflicted)   |
//! | `Deadlock`       | retry the transaction (it was chosen as the victim)   |
//! | `ReadOnly`       | use a read-write transaction                          |
//! | `Refused`        | not use this directory / this handle (not ours, newer format, locked) |
//! | `Corruption`     | suspect the disk; the data named is unreadable        |
//! | `Io`             | suspect the environment (disk full, permissions)      |
//! | `Poisoned`       | reopen: an fsync failed and memory may disagree with disk |
//! | `Internal`       | report a bug in QubeDB                                |

use std::fmt;
use std::path::PathBuf;

/// The result type used throughout QubeDB.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where corrupted bytes were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// Page number inside a page file, if the file is paged.
    pub page: Option<u64>,
    /// Byte offset inside the file, if known (WAL records).
    pub offset: Option<u64>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.page {
            write!(f, ", page {p}")?;
        }
        if let Some(o) = self.offset {
            write!(f, ", offset {o}")?;
        }
        Ok(())
    }
}

/// Every error QubeDB's storage layers return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (limits, arguments). Nothing was changed.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The request is wrong in a way PostgreSQL names with a specific
    /// SQLSTATE (duplicate object, undefined object, dependent objects …).
    #[error("{message}")]
    User {
        sqlstate: &'static str,
        message: String,
        /// Where in the query text the error is: a 1-based character
        /// offset, as PostgreSQL's error field P reports it.
        position: Option<u32>,
        /// A secondary message with specifics (PostgreSQL's DETAIL, field
        /// D), e.g. `Key (id)=(1) already exists.`
        detail: Option<Box<str>>,
        /// A suggestion what to do (PostgreSQL's HINT, field H).
        hint: Option<Box<str>>,
    },
    /// The transaction conflicted with a concurrent one and was rolled back;
    /// retrying it may succeed (SQLSTATE 40001).
    #[error("could not serialize access: {0}")]
    Serialization(String),
    /// The transaction was chosen to break a deadlock and was rolled back;
    /// retrying it may succeed (SQLSTATE 40P01).
    #[error("deadlock detected: {0}")]
    Deadlock(String),
    /// A write in a read-only transaction (SQLSTATE 25006).
    #[error("cannot write in a read-only transaction: {0}")]
    ReadOnly(String),
    /// The directory or handle cannot be used: not a QubeDB data directory,
    /// written by a newer format version, or locked by another process.
    #[error("refused: {0}")]
    Refused(String),
    /// Stored bytes failed a checksum or a structural check.
    #[error("corruption in {location}: {detail}")]
    Corruption { location: Location, detail: String },
    /// The operating system reported an I/O error.
    #[error("I/O error ({context}): {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// An earlier fsync failed; the handle refuses writes until reopened.
    #[error("engine is poisoned after a failed sync and refuses writes until reopened: {0}")]
    Poisoned(String),
    /// A bug in QubeDB: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
    /// An error with PostgreSQL's context line (the CONTEXT field, e.g.
    /// `COPY t, line 3, column a: "x"`); SQLSTATE and position are the
    /// inner error's.
    #[error("{error}")]
    Context { error: Box<Error>, context: String },
}

impl Error {
    /// Builds an I/O error with a short description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// Builds a corruption error for a page of a paged file.
    pub fn corrupt_page(file: impl Into<PathBuf>, page: u64, detail: impl Into<String>) -> Self {
        Error::Corruption {
            location: Location { file: file.into(), page: Some(page), offset: None },
            detail: detail.into(),
        }
    }

    /// Builds a corruption error at a byte offset of a file.
    pub fn corrupt_at(file: impl Into<PathBuf>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corruption {
            location: Location { file: file.into(), page: None, offset: Some(offset) },
            detail: detail.into(),
        }
    }

    /// A user error with its SQLSTATE.
    pub fn user(sqlstate: &'static str, message: impl Into<String>) -> Self {
        Error::User { sqlstate, message: message.into(), position: None, detail: None, hint: None }
    }

    /// The same error with a DETAIL (only user errors carry one).
    pub fn with_detail(mut self, text: impl Into<String>) -> Self {
        if let Error::User { detail, .. } = &mut self {
            *detail = Some(text.into().into_boxed_str());
        }
        self
    }

    /// The same error with a HINT (only user errors carry one).
    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        if let Error::User { hint, .. } = &mut self {
            *hint = Some(text.into().into_boxed_str());
        }
        self
    }

    /// PostgreSQL's DETAIL of the error, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Error::User { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }

    /// PostgreSQL's HINT of the error, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::User { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }

    /// The position in the query text the error refers to, if known.
    pub fn position(&self) -> Option<u32> {
        match self {
            Error::User { position, .. } => *position,
            Error::Context { error, .. } => error.position(),
            _ => None,
        }
    }

    /// The error with a context line (PostgreSQL's CONTEXT field).
    pub fn with_context(self, context: impl Into<String>) -> Self {
        Error::Context { error: Box::new(self), context: context.into() }
    }

    /// The context line, if the error carries one.
    pub fn context(&self) -> Option<&str> {
        match self {
            Error::Context { context, .. } => Some(context),
            _ => None,
        }
    }

    /// The same error, pointing at `pos` (1-based, in characters) unless
    /// it already points somewhere.
    pub fn with_position(mut self, pos: u32) -> Self {
        if let Error::User { position: position @ None, .. } = &mut self {
            *position = Some(pos);
        }
        self
    }

    /// True for errors after which retrying the whole transaction may work.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Serialization(_) | Error::Deadlock(_))
    }

    /// The PostgreSQL SQLSTATE that best describes the error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "22023",
            Error::User { sqlstate, .. } => sqlstate,
            Error::Serialization(_) => "40001",
            Error::Deadlock(_) => "40P01",
            Error::ReadOnly(_) => "25006",
            Error::Refused(_) => "58000",
            Error::Corruption { .. } => "XX001",
            Error::Io { .. } => "58030",
            Error::Poisoned(_) => "58030",
            Error::Internal(_) => "XX000",
            Error::Context { error, .. } => error.sqlstate(),
        }
    }

    /// True for errors that say the stored data is damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

pub mod types;
pub mod wait;

/// The decimal digits of `n`, written into the end of `buf`, as its
/// `Display` gives them, without the formatting machinery (command tags
/// and wire-protocol integers are written this way for every statement).
pub fn decimal_digits(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits_are_display() {
        let mut buf = [0u8; 20];
        for n in [0u64, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(decimal_digits(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn user_errors_carry_detail_hint_and_position() {
        let e = Error::user("23505", "duplicate key value violates unique constraint \"t_pkey\"")
            .with_detail("Key (id)=(1) already exists.")
            .with_hint("Use another key.")
            .with_position(8)
            .with_position(9);
        assert_eq!(e.detail(), Some("Key (id)=(1) already exists."));
        assert_eq!(e.hint(), Some("Use another key."));
        assert_eq!(e.position(), Some(8), "the first position stays");
        assert_eq!(e.sqlstate(), "23505");
        // Other errors have none.
        let e = Error::Internal("x".into()).with_detail("d").with_hint("h");
        assert_eq!((e.detail(), e.hint()), (None, None));
    }

    #[test]
    fn corruption_names_file_and_page() {
        let e = Error::corrupt_page("/d/data.qdb", 7, "checksum mismatch");
        assert!(e.is_corruption());
        assert_eq!(e.to_string(), "corruption in /d/data.qdb, page 7: checksum mismatch");
    }
}
