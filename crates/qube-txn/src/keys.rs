//! The MVCC keyspace: how versions and transaction metadata are laid out
//! in the engine's one ordered keyspace.
//!
//! ```text
//! key                                           value
//! 0x01 'c'                                      last commit timestamp (u64 BE)
//! 0x01 't' ts:u64 BE                            commit wall time of ts (unix µs, u64 BE)
//! 0x02 escape(user key) 0x00 0x00 !ts:u64 BE    0x00 (tombstone) | 0x01 value
//! 0x02 user key !ts:u64 BE                      (a user key of a prefix-free keyspace)
//! ```
//!
//! `escape` doubles every 0x00 byte as 0x00 0xFF, and 0x00 0x00 ends the
//! user key, so the encoding preserves order (a shorter key sorts before its
//! extensions, because 0x00 0x00 sorts below 0x00 0xFF and every other byte)
//! and the escaped form of a prefix is a byte prefix of the escaped form of
//! every key that starts with it. The timestamp is stored inverted (`!ts`),
//! so the versions of one key sort newest first: a reader at snapshot `s`
//! seeks to `(key, s)` and the first entry it meets is the version it sees.
//! Tests in this module prove both order properties.
//!
//! # Prefix-free keyspaces
//!
//! User keys whose first byte is in `PREFIX_FREE` (0x10–0x1F) are stored
//! as they are, without escape or terminator: the keyspaces that begin
//! there promise that none of their keys is a proper prefix of another
//! (the SQL layer's row keys `0x10 ord(table) ord(rowid)` and index keys
//! `0x11 ord(index) columns [ord(rowid)]` are built of self-delimiting
//! parts). Then two different keys differ at a byte inside both, which
//! decides their order before the timestamp is reached, and the versions
//! of one key stay together, newest first, as escaped keys do. A scan
//! reads such a key's user key as the slice before the timestamp instead
//! of unescaping it (about ten instructions a byte), and every version
//! key is shorter by its terminator and its doubled zeros.
//!
//! The two forms do not mix: an escaped key's first byte is its user
//! key's first byte (escaping only ever inserts after a zero), which lies
//! outside 0x10–0x1F, so the first byte after the tag tells the form and
//! keeps the order of the user keys across forms.
//!
//! Ranges keep their meaning for the bounds the SQL layer builds (keys,
//! prefixes of keys, a prefix's successor, a key followed by 0xFF bytes);
//! in a prefix-free keyspace an exclusive start bound or an inclusive
//! end bound that is not itself a key also admits, or excludes, the keys
//! that extend it, since no key is both a key and an extension of one.

use qube_common::{Error, Result};

/// A commit timestamp: commits are numbered 1, 2, 3, … in commit order.
pub type Ts = u64;

const META: u8 = 0x01;
const VERSION: u8 = 0x02;

/// The first bytes of the user keys of prefix-free keyspaces, stored
/// without escape (see the module doc).
pub const PREFIX_FREE: std::ops::RangeInclusive<u8> = 0x10..=0x1F;

/// Whether `key` belongs to a prefix-free keyspace (`PREFIX_FREE`).
#[inline]
pub fn prefix_free(key: &[u8]) -> bool {
    key.first().is_some_and(|b| PREFIX_FREE.contains(b))
}

/// Whether the version key `raw` is one of a prefix-free keyspace's.
#[inline]
fn raw_form(raw: &[u8]) -> bool {
    raw.get(1..).is_some_and(prefix_free)
}

/// Every kind of key the MVCC layer stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// The highest commit timestamp ever assigned.
    LastCommit,
    /// When (wall clock) commit `ts` happened.
    CommitTime(Ts),
    /// Version `ts` of a user key.
    Version(&'a [u8], Ts),
}

impl Key<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Key::LastCommit => out.extend_from_slice(&[META, b'c']),
            Key::CommitTime(ts) => {
                out.extend_from_slice(&[META, b't']);
                out.extend_from_slice(&ts.to_be_bytes());
            }
            Key::Version(key, ts) => {
                version_prefix_into(key, out);
                out.extend_from_slice(&(!ts).to_be_bytes());
            }
        }
    }
}

/// `Key::Version(key, ts)` into `out`, which holds the version key of
/// `prev` (at any timestamp; `None`: `out` holds nothing of use): the
/// escaped bytes of the prefix the two keys share are kept, and only the
/// rest is escaped. A commit encodes its keys in order, and neighbours
/// share most of their bytes (a table's rows: all but the low bytes of
/// the rowid). True if `key` equals `prev`, which a commit's sorted keys
/// never do (the caller's check that its write set held each key once).
pub fn version_key_after(prev: Option<&[u8]>, key: &[u8], ts: Ts, out: &mut Vec<u8>) -> bool {
    let Some(prev) = prev else {
        Key::Version(key, ts).encode_into(out);
        return false;
    };
    let (pf, prev_pf) = (prefix_free(key), prefix_free(prev));
    if pf != prev_pf {
        // Different forms share nothing past the tag (and differ).
        Key::Version(key, ts).encode_into(out);
        return false;
    }
    let cp = crate::writeset::common_prefix(prev, key);
    if pf {
        out.truncate(1 + cp);
        out.extend_from_slice(&key[cp..]);
        out.extend_from_slice(&(!ts).to_be_bytes());
        return cp == key.len() && cp == prev.len();
    }
    // The tag, then the shared bytes escaped: one more per zero byte.
    let keep = 1 + cp + zero_bytes(&key[..cp]);
    out.truncate(keep);
    escape_into(&key[cp..], out);
    out.extend_from_slice(&[0x00, 0x00]);
    out.extend_from_slice(&(!ts).to_be_bytes());
    cp == key.len() && cp == prev.len()
}

/// The length of `Key::Version(key, ts)`: the tag, the escaped key (one
/// more byte per zero byte), the terminator and the timestamp.
pub fn version_key_len(key: &[u8]) -> usize {
    if prefix_free(key) {
        return 1 + key.len() + 8;
    }
    1 + key.len() + zero_bytes(key) + 2 + 8
}

/// `0x02 escape(key) 0x00 0x00` (`0x02 key` in a prefix-free keyspace):
/// the prefix shared by every version of `key`, appended to `out`.
pub fn version_prefix_into(key: &[u8], out: &mut Vec<u8>) {
    out.push(VERSION);
    if prefix_free(key) {
        out.extend_from_slice(key);
        return;
    }
    escape_into(key, out);
    out.extend_from_slice(&[0x00, 0x00]);
}

/// The successor of the version prefix `start` (`version_prefix_into`)
/// into `end` (cleared first): the first key after every version of its
/// user key (and, in a prefix-free keyspace, of the keys extending it,
/// which there are none of).
pub fn version_prefix_end_into(start: &[u8], end: &mut Vec<u8>) {
    if !qube_storage::prefix_successor_into(start, end) {
        end.push(VERSION + 1);
    }
}

/// `0x02 escape(prefix)`: a byte prefix of the versions of every user key
/// that starts with `prefix`.
pub fn user_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    user_prefix_into(prefix, &mut out);
    out
}

/// `user_prefix` into `out` (appended).
pub fn user_prefix_into(prefix: &[u8], out: &mut Vec<u8>) {
    out.push(VERSION);
    if prefix_free(prefix) {
        out.extend_from_slice(prefix);
    } else {
        escape_into(prefix, out);
    }
}

/// Appends the version-key form of `key`, a user key's bytes after
/// `prefix` (whose `user_prefix_into` `out` holds), up to its timestamp:
/// escaped and terminated, or as it is in a prefix-free keyspace.
pub fn key_after_prefix_into(prefix: &[u8], key: &[u8], out: &mut Vec<u8>) {
    let pf = if prefix.is_empty() { prefix_free(key) } else { prefix_free(prefix) };
    if pf {
        out.extend_from_slice(key);
    } else {
        escape_into(key, out);
        out.extend_from_slice(&[0x00, 0x00]);
    }
}

/// The first byte after every version key.
pub fn versions_end() -> Vec<u8> {
    vec![VERSION + 1]
}

/// `versions_end` appended to `out`.
pub fn versions_end_into(out: &mut Vec<u8>) {
    out.push(VERSION + 1);
}

/// The prefix of all commit-time records.
pub fn commit_time_prefix() -> Vec<u8> {
    vec![META, b't']
}

pub(crate) fn escape_into(key: &[u8], out: &mut Vec<u8>) {
    // Eight input bytes at a time into a small array, two bytes written per
    // input byte and the position moved by one or two: no capacity or
    // bounds check and no branch per byte (the mask keeps the index in the
    // array, which the compiler sees). The array starts all 0xFF, so a
    // zero byte's escape byte is already there when the position skips it.
    // SQL keys are short and full of zeros (the high bytes of big-endian
    // integers), so copying the runs between zeros whole cost a search and
    // a copy call per zero, several times this loop (every rowid fetch
    // escapes its row key).
    out.reserve(2 * key.len());
    for chunk in key.chunks(8) {
        let mut tmp = [0xFFu8; 16];
        let mut o = 0usize;
        for &b in chunk {
            tmp[o & 15] = b;
            o += 1 + usize::from(b == 0);
        }
        out.extend_from_slice(&tmp[..o.min(16)]);
    }
}

/// Splits an encoded version key into the user key and timestamp.
pub fn decode_version(raw: &[u8]) -> Result<(Vec<u8>, Ts)> {
    let mut key = Vec::new();
    let ts = decode_version_into(raw, &mut key)?;
    Ok((key, ts))
}

/// As `decode_version`, into a reused buffer (cleared first).
pub fn decode_version_into(raw: &[u8], key: &mut Vec<u8>) -> Result<Ts> {
    key.clear();
    if raw_form(raw) {
        let (k, ts) = split_raw(raw)?;
        key.extend_from_slice(k);
        return Ok(ts);
    }
    decode_from(raw, 1, key)
}

/// The user key and timestamp of a version key of a prefix-free keyspace
/// (`raw_form`): the bytes between the tag and the timestamp.
#[inline]
fn split_raw(raw: &[u8]) -> Result<(&[u8], Ts)> {
    let n = raw.len();
    if n < 10 || raw[0] != VERSION {
        return Err(Error::Internal(format!("malformed MVCC version key {raw:02x?}")));
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&raw[n - 8..]);
    Ok((&raw[1..n - 8], !u64::from_be_bytes(ts)))
}

/// The user key of a version key, borrowed from it when it is stored as it
/// is (a prefix-free keyspace's); None for an escaped one, which must be
/// decoded (`decode_version_into`).
#[inline]
pub fn user_key_of(raw: &[u8]) -> Option<&[u8]> {
    if raw_form(raw) { split_raw(raw).ok().map(|(k, _)| k) } else { None }
}

/// The user key that the version prefix `prefix` (`version_key_prefix` of
/// a version key that `split_raw` accepts) holds as it is, in a
/// prefix-free keyspace; None for an escaped one, which must be decoded.
#[inline]
pub fn prefix_user_key(prefix: &[u8]) -> Option<&[u8]> {
    match prefix {
        [VERSION, rest @ ..] if prefix_free(rest) => Some(rest),
        _ => None,
    }
}

/// As `decode_version_into`, where `key` holds the user key of `prev`, the
/// version prefix (`version_key_prefix`) of another version key that
/// decoded without error: the escaped bytes the two share are not decoded
/// again. Neighbours in a scan share most of theirs (the table's or
/// index's prefix, the high bytes of the values), and unescaping is about
/// ten instructions a byte.
///
/// Escaped, every zero byte of a user key starts a pair `0x00 0xFF`, and
/// the terminator `0x00 0x00` ends it, so the tokens of the shared bytes
/// are the same in both keys up to the token that holds the first
/// difference: decoding resumes at that token's start, with `key` cut to
/// what the tokens before it decode to (counted back from its end, over
/// the few bytes of `prev` after that point). Whatever `prev` holds, the
/// result is `decode_version_into`'s, errors included; a `prev` that is no
/// version prefix, or a `key` too short for it, decodes `raw` whole.
pub fn decode_version_after(prev: &[u8], raw: &[u8], key: &mut Vec<u8>) -> Result<Ts> {
    if raw_form(raw) {
        // Nothing to unescape: copied whole.
        return decode_version_into(raw, key);
    }
    let n = prev.len();
    // (A prefix-free keyspace's prefix may end in two zeros too, but the
    // tokens it shares with an escaped key mean nothing.)
    if n < 3 || prev[0] != VERSION || prev[n - 2..] != [0, 0] || raw_form(prev) || raw.len() < 11 {
        return decode_version_into(raw, key);
    }
    let cp = crate::writeset::common_prefix(prev, version_key_prefix(raw));
    // All of `prev` shared (the same user key, or a malformed `raw`), or
    // not even the tag: decoded whole.
    if cp == 0 || cp >= n {
        return decode_version_into(raw, key);
    }
    // A zero just before the difference starts a pair (the only zero that
    // does not is the terminator's last byte, at n - 1 ≥ cp).
    let s = if prev[cp - 1] == 0 { cp - 1 } else { cp };
    // What prev's tokens from `s` to its terminator decode to.
    let tail = &prev[s..n - 2];
    let tail_len = tail.len() - zero_bytes(tail);
    let Some(keep) = key.len().checked_sub(tail_len) else {
        return decode_version_into(raw, key);
    };
    key.truncate(keep);
    decode_from(raw, s, key)
}

/// How many bytes of `b` are zero, a word at a time.
fn zero_bytes(b: &[u8]) -> usize {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let (words, rest) = b.as_chunks::<8>();
    let mut n = 0;
    for w in words {
        let x = u64::from_ne_bytes(*w);
        // A byte's top bit is set here unless the byte is zero: its low
        // seven bits plus 0x7F carry into the top bit if any is set, and
        // its own top bit is or-ed in.
        let nonzero = ((x & LOW7) + LOW7) | x;
        // One bit per zero byte, summed into the top byte by a multiply
        // (the baseline x86-64 target has no popcount instruction).
        let ones = (!nonzero & !LOW7) >> 7;
        n += (ones.wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize;
    }
    n + rest.iter().filter(|&&b| b == 0).count()
}

/// Decodes the version key `raw` from its byte `from` (≥ 1, a token
/// boundary: see `decode_version_after`) on, appending the user key's
/// bytes to `key`.
fn decode_from(raw: &[u8], from: usize, key: &mut Vec<u8>) -> Result<Ts> {
    let bad = || Error::Internal(format!("malformed MVCC version key {raw:02x?}"));
    if raw.first() != Some(&VERSION) || raw.len() < 11 || from == 0 {
        return Err(bad());
    }
    let (body, ts) = raw[1..].split_at(raw.len() - 9);
    let ts = !u64::from_be_bytes(ts.try_into().map_err(|_| bad())?);
    let Some(body) = body.get(from - 1..) else { return Err(bad()) };
    // Into room made once (the key is never longer than its escaped form).
    let base = key.len();
    key.resize(base + body.len(), 0);
    let (mut i, mut o) = (0, base);
    while let Some(&b) = body.get(i) {
        key[o] = b;
        o += 1;
        if b != 0 {
            i += 1;
            continue;
        }
        match body.get(i + 1) {
            Some(0xFF) => i += 2,
            Some(0) if i + 2 == body.len() => {
                key.truncate(o - 1);
                return Ok(ts);
            }
            _ => return Err(bad()),
        }
    }
    Err(bad())
}

/// Length of the encoded user-key part (tag, escaped key, terminator) of a
/// version key: two version keys belong to the same user key exactly when
/// these prefixes are equal.
pub fn version_key_prefix(raw: &[u8]) -> &[u8] {
    &raw[..raw.len().saturating_sub(8)]
}

/// Whether two version key prefixes (`version_key_prefix`) are equal,
/// compared from their ends first: the keys a scan meets share a long
/// table prefix and differ in their last bytes (the rowid, the index
/// entry's tail), so a different key is usually told after one word.
#[inline]
pub fn same_prefix(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    // The last word as one integer comparison, not a `memcmp` call.
    let word = |k: &[u8]| u64::from_ne_bytes(k[n - 8..].try_into().unwrap_or([0; 8]));
    word(a) == word(b) && a[..n - 8] == b[..n - 8]
}

/// Timestamp of an encoded version key (no allocation).
pub fn version_ts(raw: &[u8]) -> Ts {
    let n = raw.len();
    if n < 9 {
        return 0;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[n - 8..]);
    !u64::from_be_bytes(b)
}

/// Value encoding: a tombstone or a value.
pub fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(v) => {
            let mut out = Vec::with_capacity(v.len() + 1);
            out.push(1);
            out.extend_from_slice(v);
            out
        }
    }
}

/// `encode_value` as its tag byte and the rest, for a batch's
/// `WriteBatch::set_tagged` (no copy into a buffer of its own first).
pub fn value_tag(value: Option<&[u8]>) -> (u8, &[u8]) {
    match value {
        None => (0, &[]),
        Some(v) => (1, v),
    }
}

/// `None` for a tombstone.
pub fn decode_value(raw: &[u8]) -> Result<Option<&[u8]>> {
    match raw.first() {
        Some(0) => Ok(None),
        Some(1) => Ok(Some(&raw[1..])),
        _ => Err(Error::Internal("malformed MVCC value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_round_trip_through_reused_buffers(k in prop::collection::vec(any::<u8>(), 0..40),
                                                  junk in prop::collection::vec(any::<u8>(), 0..50),
                                                  ts: u64) {
            // Escaping appends after what the buffer holds.
            let mut buf = junk.clone();
            version_prefix_into(&k, &mut buf);
            prop_assert_eq!(&buf[..junk.len()], &junk[..]);
            let encoded = Key::Version(&k, ts).encode();
            prop_assert_eq!(&buf[junk.len()..], &encoded[..encoded.len() - 8]);
            prop_assert_eq!(version_key_len(&k), encoded.len());
            // Decoding replaces what the buffer holds.
            let mut out = junk.clone();
            prop_assert_eq!(decode_version_into(&encoded, &mut out).unwrap(), ts);
            prop_assert_eq!(out, k);
        }

        #[test]
        fn zero_bytes_are_counted(b in prop::collection::vec(prop::sample::select(vec![0u8, 1, 0x7F, 0x80, 0xFF]), 0..40)) {
            prop_assert_eq!(zero_bytes(&b), b.iter().filter(|&&x| x == 0).count());
        }

        #[test]
        fn decoding_after_a_neighbour_is_decoding(
            a in prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xFE, 0xFF]), 0..14),
            b in prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xFE, 0xFF]), 0..14),
            shared in 0usize..14, ta: u64, tb: u64,
        ) {
            // Neighbours share a prefix, as the keys of a scan do.
            let b = [&a[..shared.min(a.len())], &b[..]].concat();
            let ka = Key::Version(&a, ta).encode();
            let kb = Key::Version(&b, tb).encode();
            let mut key = decode_version(&ka).unwrap().0;
            prop_assert_eq!(decode_version_after(version_key_prefix(&ka), &kb, &mut key).unwrap(), tb);
            prop_assert_eq!(&key, &b);
            // And back.
            prop_assert_eq!(decode_version_after(version_key_prefix(&kb), &ka, &mut key).unwrap(), ta);
            prop_assert_eq!(&key, &a);
        }

        #[test]
        fn decoding_after_a_neighbour_fails_as_decoding_does(
            a in prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xFF]), 0..10),
            cut in 0usize..30,
            junk in prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xFF]), 0..20),
            stale in prop::collection::vec(any::<u8>(), 0..4),
        ) {
            // Any bytes after some of a valid key's: the same answer as a
            // whole decode, error or key.
            let ka = Key::Version(&a, 7).encode();
            let raw = [&ka[..cut.min(ka.len())], &junk[..]].concat();
            let want = decode_version(&raw);
            let mut key = decode_version(&ka).unwrap().0;
            let got = decode_version_after(version_key_prefix(&ka), &raw, &mut key);
            match want {
                Ok((k, ts)) => {
                    prop_assert_eq!(got.unwrap(), ts);
                    prop_assert_eq!(key, k);
                }
                Err(_) => prop_assert!(got.is_err()),
            }
            // A `prev` that is no version prefix, or a key that does not
            // belong to it, neither panics nor hides a malformed key.
            let mut key = stale.clone();
            let got = decode_version_after(&junk, &raw, &mut key);
            prop_assert_eq!(got.is_ok(), decode_version(&raw).is_ok());
            let mut key = stale;
            let got = decode_version_after(version_key_prefix(&ka), &raw, &mut key);
            prop_assert_eq!(got.is_ok(), decode_version(&raw).is_ok());
        }

        #[test]
        fn tagged_values_are_the_encoded_value(v in prop::option::of(prop::collection::vec(any::<u8>(), 0..20))) {
            let (tag, rest) = value_tag(v.as_deref());
            prop_assert_eq!([&[tag][..], rest].concat(), encode_value(v.as_deref()));
        }

        #[test]
        fn version_keys_after_a_neighbour_are_version_keys(
            prev in prop::collection::vec(0u8..3, 0..12),
            key in prop::collection::vec(0u8..3, 0..12),
            shared in 0usize..12, t0: u64, ts: u64,
        ) {
            // Neighbours share a prefix, as sorted keys do.
            let key = [&prev[..shared.min(prev.len())], &key[..]].concat();
            let mut out = Key::Version(&prev, t0).encode();
            let same = version_key_after(Some(&prev), &key, ts, &mut out);
            prop_assert_eq!(same, key == prev);
            prop_assert_eq!(&out, &Key::Version(&key, ts).encode());
            let mut fresh = vec![9, 9];
            version_key_after(None, &key, ts, &mut fresh);
            prop_assert_eq!(fresh, out);
        }

        #[test]
        fn order_is_preserved(a in prop::collection::vec(0u8..4, 0..6), b in prop::collection::vec(0u8..4, 0..6),
                              ta in 0u64..5, tb in 0u64..5) {
            let ka = Key::Version(&a, ta).encode();
            let kb = Key::Version(&b, tb).encode();
            // User keys ascending, then timestamps descending.
            let want = a.cmp(&b).then(tb.cmp(&ta));
            prop_assert_eq!(ka.cmp(&kb), want);
            prop_assert_eq!(decode_version(&ka).unwrap(), (a.clone(), ta));
        }

        #[test]
        fn prefixes_are_byte_prefixes(p in prop::collection::vec(0u8..3, 0..4), rest in prop::collection::vec(0u8..3, 0..4), ts: u64) {
            let mut key = p.clone();
            key.extend_from_slice(&rest);
            let enc = Key::Version(&key, ts).encode();
            prop_assert!(enc.starts_with(&user_prefix(&p)));
            let mut vp = Vec::new();
            version_prefix_into(&key, &mut vp);
            prop_assert!(enc.starts_with(&vp));
            prop_assert_eq!(version_key_prefix(&enc), &vp[..]);
            prop_assert_eq!(version_ts(&enc), ts);
            prop_assert!(enc < versions_end());
        }

        #[test]
        fn same_prefix_is_equality(a in prop::collection::vec(0u8..3, 0..20), b in prop::collection::vec(0u8..3, 0..20)) {
            prop_assert_eq!(same_prefix(&a, &b), a == b);
            prop_assert!(same_prefix(&a, &a.clone()));
        }
    }

    /// A key of a prefix-free keyspace: a tag in `PREFIX_FREE`, then two
    /// length-prefixed parts (a fixed number of self-delimiting parts, so
    /// no such key is a proper prefix of another).
    fn pf_key() -> impl Strategy<Value = Vec<u8>> {
        let part =
            prop::collection::vec(prop::sample::select(vec![0u8, 1, 0x10, 0xFE, 0xFF]), 0..3);
        (0x10u8..=0x1F, part.clone(), part).prop_map(|(tag, a, b)| {
            let mut k = vec![tag];
            for p in [a, b] {
                k.push(p.len() as u8);
                k.extend_from_slice(&p);
            }
            k
        })
    }

    /// Any key: of a prefix-free keyspace, or escaped (its first byte
    /// outside `PREFIX_FREE`, or none).
    fn any_key() -> impl Strategy<Value = Vec<u8>> {
        let other =
            prop::collection::vec(prop::sample::select(vec![0u8, 1, 0x0F, 0x20, 0xFF]), 0..6);
        prop_oneof![pf_key(), other]
    }

    proptest! {
        #[test]
        fn prefix_free_keys_keep_their_order_unescaped(a in any_key(), b in any_key(),
                                                        ta in 0u64..4, tb in 0u64..4) {
            let ka = Key::Version(&a, ta).encode();
            let kb = Key::Version(&b, tb).encode();
            if prefix_free(&a) {
                // As it is: the tag, the key, the timestamp.
                prop_assert_eq!(ka.len(), 1 + a.len() + 8);
                prop_assert_eq!(user_key_of(&ka), Some(&a[..]));
            } else {
                prop_assert_eq!(user_key_of(&ka), None);
            }
            prop_assert_eq!(version_key_len(&a), ka.len());
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b).then(tb.cmp(&ta)));
            prop_assert_eq!(decode_version(&ka).unwrap(), (a.clone(), ta));
            let mut key = decode_version(&kb).unwrap().0;
            prop_assert_eq!(decode_version_after(version_key_prefix(&kb), &ka, &mut key).unwrap(), ta);
            prop_assert_eq!(&key, &a);
            // Encoded after a neighbour of either form.
            let mut out = kb.clone();
            prop_assert_eq!(version_key_after(Some(&b), &a, ta, &mut out), a == b);
            prop_assert_eq!(&out, &ka);
            // Every version of `a` lies between its prefix and the
            // prefix's end, and no version of another key does.
            let mut vp = Vec::new();
            version_prefix_into(&a, &mut vp);
            let mut end = Vec::new();
            version_prefix_end_into(&vp, &mut end);
            prop_assert!(vp <= ka && ka < end);
            prop_assert_eq!(a == b, vp <= kb && kb < end);
        }

        #[test]
        fn prefixes_of_prefix_free_keys_are_byte_prefixes(k in pf_key(), cut in 1usize..8, ts: u64) {
            let p = &k[..cut.min(k.len())];
            let enc = Key::Version(&k, ts).encode();
            prop_assert!(enc.starts_with(&user_prefix(p)));
            let mut out = user_prefix(p);
            key_after_prefix_into(p, &k[p.len()..], &mut out);
            prop_assert_eq!(&out[..], version_key_prefix(&enc));
            let mut out = user_prefix(b"");
            key_after_prefix_into(b"", &k, &mut out);
            prop_assert_eq!(&out[..], version_key_prefix(&enc));
        }
    }

    #[test]
    fn malformed_prefix_free_version_keys_are_errors() {
        // Too short for a key byte and a timestamp.
        assert!(decode_version(&[VERSION, 0x10, 1, 2, 3, 4, 5, 6, 7]).is_err());
        assert_eq!(user_key_of(&[VERSION, 0x10, 1, 2, 3, 4, 5, 6, 7]), None);
        let mut key = vec![1, 2];
        assert!(
            decode_version_after(b"\x02\x10\x00\x00", &[VERSION, 0x11, 0, 0], &mut key).is_err()
        );
        // The shortest: one key byte.
        let k = [VERSION, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE];
        assert_eq!(decode_version(&k).unwrap(), (vec![0x1F], 1));
        assert_eq!(user_key_of(&k), Some(&[0x1F][..]));
    }

    #[test]
    fn malformed_version_keys_are_errors() {
        let ts = [0xFFu8; 8];
        let with = |body: &[u8]| {
            let mut k = vec![VERSION];
            k.extend_from_slice(body);
            k.extend_from_slice(&ts);
            decode_version(&k)
        };
        assert_eq!(with(b"a\x00\xFFb\x00\x00").unwrap(), (b"a\x00b".to_vec(), 0));
        // A zero followed by neither 0xFF nor the terminator.
        assert!(with(b"a\x00\x01b\x00\x00").is_err());
        // The terminator before the end of the body.
        assert!(with(b"a\x00\x00b\x00\x00").is_err());
        // No terminator, or half of one.
        assert!(with(b"abc").is_err());
        assert!(with(b"abc\x00").is_err());
        // A zero that escapes nothing just before the end.
        assert!(with(b"a\x00\x00\x00").is_err());
        assert!(with(b"a\x00").is_err());
        assert_eq!(with(b"\x00\x00").unwrap(), (Vec::new(), 0));
        assert_eq!(with(b"\x00\xFF\x00\x00").unwrap(), (vec![0], 0));
    }

    #[test]
    fn metadata_sorts_before_versions() {
        assert!(Key::LastCommit.encode() < Key::Version(b"", 0).encode());
        assert!(Key::CommitTime(u64::MAX).encode() < Key::Version(b"", u64::MAX).encode());
        assert!(Key::CommitTime(1).encode().starts_with(&commit_time_prefix()));
        assert!(decode_version(b"\x02a\x00").is_err());
        assert!(decode_version(&Key::LastCommit.encode()).is_err());
    }
}
