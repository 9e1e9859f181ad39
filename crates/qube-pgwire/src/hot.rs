//! The extended protocol's per-execution messages, read in place.
//!
//! A driver that runs a prepared statement sends, for every execution,
//! the first four below; a simple query is one Query:
//!
//! ```text
//! Bind      'B' len portal\0 statement\0 nfmt fmt*2 nparam (len value)* nres res*2
//! Describe  'D' len ('S' | 'P') name\0          (libpq describes the portal each time)
//! Execute   'E' len portal\0 max_rows:i32
//! Sync      'S' len
//! Query     'Q' len text\0
//! ```
//!
//! pgwire's decoder turns each into owned values: two `String`s, three
//! `Vec`s and a `Bytes` per parameter for a Bind. These five are read here
//! instead, borrowing names and values from the frame (names are UTF-8 in
//! practice; other bytes become U+FFFD as in pgwire, which allocates only
//! then). The frame's layout is checked first (`conn::well_formed`), so
//! the reads below cannot run past its end. Every other message, and
//! Describe, Execute and Sync when they are longer than pgwire accepts for
//! their type (so that they fail as before), goes through pgwire.

use std::borrow::Cow;

/// pgwire's length limits: for Describe, Execute and Sync (its
/// `SMALL_PACKET_SIZE_LIMIT`), and for Bind and Query
/// (`LARGE_PACKET_SIZE_LIMIT`). Longer ones are left to pgwire, which
/// refuses them.
const SMALL: usize = 10_000;
const LARGE: usize = 0x3fff_fffe;

/// One of the five messages, borrowing from its frame.
pub enum Hot<'a> {
    /// The text, or PostgreSQL's 22021 if it is not UTF-8 (read lossily,
    /// a string literal would change silently).
    Query(qube_sql::Result<&'a str>),
    Bind(BindMsg<'a>),
    Describe {
        target: u8,
        name: Cow<'a, str>,
    },
    Execute {
        portal: Cow<'a, str>,
        max_rows: i32,
    },
    Sync,
}

/// A Bind's fields as they lie in the frame.
pub struct BindMsg<'a> {
    pub portal: Cow<'a, str>,
    pub statement: Cow<'a, str>,
    /// The parameter format codes, 2 bytes each, big-endian.
    param_formats: &'a [u8],
    /// The number of parameter values and their encoded list.
    param_count: usize,
    params: &'a [u8],
    /// The result format codes, 2 bytes each, big-endian.
    result_formats: &'a [u8],
}

impl<'a> BindMsg<'a> {
    pub fn param_format_count(&self) -> usize {
        self.param_formats.len() / 2
    }

    /// Parameter `i`'s format code, by the protocol's rule: none means all
    /// text, one applies to all, else one each.
    pub fn param_format(&self, i: usize) -> i16 {
        code_of(self.param_formats, i)
    }

    pub fn param_count(&self) -> usize {
        self.param_count
    }

    /// The parameter values in order; None is SQL NULL (length -1).
    pub fn params(&self) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        let mut r = Reader(self.params);
        (0..self.param_count).map(move |_| {
            let len = r.i32();
            (len >= 0).then(|| r.take(len as usize))
        })
    }

    pub fn result_format_count(&self) -> usize {
        self.result_formats.len() / 2
    }

    /// The result format codes, each as sent.
    pub fn result_formats(&self) -> impl Iterator<Item = i16> + 'a {
        self.result_formats.chunks_exact(2).map(|c| i16::from_be_bytes([c[0], c[1]]))
    }

    /// Every format code, parameters' and results'.
    pub fn all_formats(&self) -> impl Iterator<Item = i16> + 'a {
        self.param_formats
            .chunks_exact(2)
            .chain(self.result_formats.chunks_exact(2))
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
    }
}

fn code_of(codes: &[u8], i: usize) -> i16 {
    let at = match codes.len() / 2 {
        0 => return 0,
        1 => 0,
        _ => i,
    };
    codes.get(at * 2..at * 2 + 2).map_or(0, |c| i16::from_be_bytes([c[0], c[1]]))
}

/// Whether `frame` (type byte, length, body) is one of the five messages
/// and short enough for pgwire to accept it.
pub fn is_hot(frame: &[u8]) -> bool {
    match frame.first() {
        Some(b'B' | b'Q') => frame.len() - 1 <= LARGE,
        Some(b'D' | b'E' | b'S') => frame.len() - 1 <= SMALL,
        _ => false,
    }
}

/// Reads a frame for which `is_hot` holds and whose layout
/// `conn::well_formed` accepted.
pub fn read(frame: &[u8]) -> Hot<'_> {
    let mut r = Reader(frame.get(5..).unwrap_or_default());
    match frame[0] {
        b'B' => {
            let portal = r.cstr();
            let statement = r.cstr();
            let param_formats = r.counted(2);
            let param_count = r.u16();
            let start = r.0;
            for _ in 0..param_count {
                let len = r.i32();
                if len >= 0 {
                    r.take(len as usize);
                }
            }
            let params = &start[..start.len() - r.0.len()];
            let result_formats = r.counted(2);
            Hot::Bind(BindMsg {
                portal,
                statement,
                param_formats,
                param_count,
                params,
                result_formats,
            })
        }
        b'D' => {
            let target = r.take(1).first().copied().unwrap_or(b'S');
            Hot::Describe { target, name: r.cstr() }
        }
        b'E' => {
            let portal = r.cstr();
            Hot::Execute { portal, max_rows: r.i32() }
        }
        b'Q' => Hot::Query(r.text()),
        _ => Hot::Sync,
    }
}

/// Reads from a body whose layout was checked; a short read yields what
/// is there (never reached after `well_formed`), a missing number 0.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let b: &'a [u8] = self.0;
        let (h, t) = b.split_at(n.min(b.len()));
        self.0 = t;
        h
    }

    fn u16(&mut self) -> usize {
        let b = self.take(2);
        if b.len() == 2 { usize::from(u16::from_be_bytes([b[0], b[1]])) } else { 0 }
    }

    fn i32(&mut self) -> i32 {
        let b = self.take(4);
        if b.len() == 4 { i32::from_be_bytes([b[0], b[1], b[2], b[3]]) } else { 0 }
    }

    fn counted(&mut self, each: usize) -> &'a [u8] {
        let n = self.u16();
        self.take(n * each)
    }

    fn cstr(&mut self) -> Cow<'a, str> {
        let n = self.0.iter().position(|b| *b == 0).unwrap_or(self.0.len());
        let s = self.take(n);
        self.take(1);
        // Valid UTF-8 (nearly always) is checked a word at a time;
        // `from_utf8_lossy` walks it in chunks, ~4 times the instructions.
        match std::str::from_utf8(s) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(s),
        }
    }

    /// A string that must be UTF-8 (`types::utf8_str`).
    fn text(&mut self) -> qube_sql::Result<&'a str> {
        let n = self.0.iter().position(|b| *b == 0).unwrap_or(self.0.len());
        let s = self.take(n);
        self.take(1);
        crate::types::utf8_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn bind_fields_are_read_in_place() {
        let mut body = b"p1\0s1\0".to_vec();
        body.extend_from_slice(&[0, 2, 0, 0, 0, 1]); // two parameter formats: text, binary
        body.extend_from_slice(&[0, 3]); // three values
        body.extend_from_slice(&3i32.to_be_bytes());
        body.extend_from_slice(b"abc");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&[0, 1, 0, 1]); // one result format: binary
        let f = frame(b'B', &body);
        assert!(is_hot(&f));
        let Hot::Bind(b) = read(&f) else { panic!("not a Bind") };
        assert_eq!((b.portal.as_ref(), b.statement.as_ref()), ("p1", "s1"));
        assert_eq!(b.param_format_count(), 2);
        assert_eq!((b.param_format(0), b.param_format(1), b.param_format(2)), (0, 1, 0));
        let params: Vec<_> = b.params().collect();
        assert_eq!(params, vec![Some(&b"abc"[..]), None, Some(&b""[..])]);
        assert_eq!(b.param_count(), 3);
        assert_eq!(b.result_formats().collect::<Vec<_>>(), vec![1]);
        assert_eq!(b.all_formats().collect::<Vec<_>>(), vec![0, 1, 1]);
    }

    #[test]
    fn one_format_applies_to_all_and_none_means_text() {
        let mut body = b"\0\0".to_vec();
        body.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0]);
        let f = frame(b'B', &body);
        let Hot::Bind(b) = read(&f) else { panic!("not a Bind") };
        assert_eq!((b.portal.as_ref(), b.statement.as_ref()), ("", ""));
        assert_eq!((b.param_format(0), b.param_format(5)), (1, 1));
        assert_eq!(b.params().count(), 0);
        assert_eq!(code_of(&[], 3), 0);
    }

    #[test]
    fn describe_execute_sync() {
        let f = frame(b'D', b"Pcur\0");
        let Hot::Describe { target, name } = read(&f) else { panic!("not a Describe") };
        assert_eq!((target, name.as_ref()), (b'P', "cur"));
        let mut body = b"\0".to_vec();
        body.extend_from_slice(&10i32.to_be_bytes());
        let f = frame(b'E', &body);
        let Hot::Execute { portal, max_rows } = read(&f) else { panic!("not an Execute") };
        assert_eq!((portal.as_ref(), max_rows), ("", 10));
        assert!(matches!(read(&frame(b'S', b"")), Hot::Sync));
        let f = frame(b'Q', b"select 1\0");
        let Hot::Query(q) = read(&f) else { panic!("not a Query") };
        assert_eq!(q.ok(), Some("select 1"));
        let f = frame(b'Q', b"select '\xff'\0");
        let Hot::Query(q) = read(&f) else { panic!("not a Query") };
        assert_eq!(q.err().map(|e| e.sqlstate().to_string()).as_deref(), Some("22021"));
    }

    #[test]
    fn names_that_are_not_utf8_are_replaced_as_pgwire_does() {
        let f = frame(b'D', b"S\xffx\0");
        let Hot::Describe { name, .. } = read(&f) else { panic!("not a Describe") };
        assert_eq!(name, "\u{fffd}x");
    }

    #[test]
    fn long_small_messages_and_others_are_left_to_pgwire() {
        let long = frame(b'E', &vec![b'a'; SMALL]);
        assert!(!is_hot(&long));
        assert!(is_hot(&frame(b'B', &vec![0; SMALL * 2])));
        assert!(!is_hot(&frame(b'P', b"\0select 1\0\0\0")));
        assert!(is_hot(&frame(b'Q', &vec![b'a'; SMALL * 2])));
        assert!(!is_hot(&frame(b'X', b"")));
    }
}
