//! Pull-based execution of scans, filters and projections.
//!
//! Most operators materialise their input (`Vec<Row>`), but the ones that
//! consume rows one at a time — LIMIT, aggregation, the inputs of a join,
//! and filters and projections themselves — pull them from a `Stream`
//! instead: a table or index scan reads the keyspace in batches through a
//! `storage::RangeCursor` (first batch sized by how many rows the consumer
//! wants, then doubling up to `MAX_BATCH`), and filters and projections
//! work on each row as it arrives. So `LIMIT n` over a scan, or over an
//! ordered index scan with a filter, reads about n rows, not the table; and
//! a GROUP BY over a million rows holds one batch of them at a time.
//!
//! ```text
//! Limit ── pulls n ──▶ Project ──▶ Filter ──▶ IndexScan (reverse)
//!                                              │ batch of index entries → rowids
//!                                              └ rows fetched in rowid order,
//!                                                handed on in index order
//! ```
//!
//! An index scan that is not index-only fetches each batch's rows through
//! `Fetch::rows`: the rowids sorted, read by one `Transaction::get_each`
//! (whose B+Tree seeker keeps its path from one key to the next, so sorted
//! rowids share the upper levels of their descents), and put back in the
//! order of the index entries.
//!
//! Anything else (sorts, joins, …) is run as before and its rows streamed
//! from memory. Under EXPLAIN ANALYZE every node is run by `exec::run`, so
//! that each one's statistics are counted.

use std::collections::VecDeque;

use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_storage::{Direction, KeyRange};
use smallvec::SmallVec;

use super::eval::{eval, truthy};
use super::{Ctx, Row};
use crate::plan::{Expr, IndexRange, Plan};
use crate::storage::{self, RangeCursor};
use crate::types::Value;
use crate::types::encoding::{
    IntCell, KeyKind, decode_key_as, decode_row_cols, decode_row_select, encode_key, peek_int,
};
use crate::types::value::{clear_row, null_row, set_value, truncate_row};

/// The most rows one scan batch reads.
pub const MAX_BATCH: usize = 1024;

/// The low bits of a packed rowid that hold its place in the batch
/// (`FetchBufs::rows`): a batch's places fit.
const PLACE_BITS: u32 = 10;
const _: () = assert!(MAX_BATCH <= 1 << PLACE_BITS);

/// Reads the row at row key `key` into a new row of `ncols` (the columns
/// in `need`), through the transaction's reused read buffer.
fn point_row(
    ctx: &mut Ctx,
    key: &[u8],
    ncols: usize,
    need: Option<&[bool]>,
) -> Result<Option<Row>> {
    ctx.txn.get_with(key, |v| {
        let mut row = Vec::with_capacity(ncols);
        decode_row_cols(v, ncols, need, &mut row)?;
        Ok(row)
    })
}

/// Rows pulled one at a time.
pub enum Stream<'p> {
    Rows(std::vec::IntoIter<Row>),
    /// At most one row (a point lookup), held without a vector.
    One(Option<Row>),
    Table {
        cursor: RangeCursor,
        ncols: usize,
        buf: VecDeque<Row>,
        batch: usize,
        need: Need,
        /// Rows handed back by the consumer (`Stream::recycle`), decoded
        /// into again instead of allocating a row per row.
        spare: Vec<Row>,
        /// Only rows whose integer column is one of these keys (a hash
        /// join's probe side: `Stream::keep_int_keys`).
        keep: Option<Box<IntKeys>>,
    },
    Index {
        cursor: RangeCursor,
        table: u64,
        ncols: usize,
        batch: usize,
        need: Need,
        /// The batch's rowids and rows (`Fetch::out`, which an index-only
        /// scan fills too), the rows handed back (`FetchBufs::spare`), and
        /// the buffers of their fetch, reused.
        fetch: Fetch,
        /// An index-only scan's columns (`plan::indexonly`): rows are
        /// decoded from the entries.
        only: Option<KeyCols<'p>>,
    },
    /// A sort's output (in memory, or merged from spilled runs).
    Sorted(super::spill::Sorted<'p>),
    /// Rows read back from a temporary file.
    Spilled(super::spill::SpillReader),
    Filter(Box<Stream<'p>>, &'p Expr),
    /// LIMIT and OFFSET over an unsorted input.
    Limit(Box<Stream<'p>>, Limited),
    /// The flag: every expression is a distinct column of the input row,
    /// so the values are moved out of it (the row is recycled right
    /// after) instead of cloned.
    Project(Box<Stream<'p>>, &'p [Expr], bool),
}

/// A table scan's row filter for a hash join's probe side: only rows whose
/// `column` holds one of `keys` can join. Rows with NULL there are dropped
/// (they join with nothing), and rows holding a value that is not an
/// integer are kept for the join's own comparison.
pub struct IntKeys {
    pub(crate) column: usize,
    pub(crate) keys: super::FastSet<i64>,
}

impl Stream<'_> {
    /// Makes a table scan keep only the rows `keys` admits (before they are
    /// decoded); false (and nothing changes) for any other stream.
    pub(crate) fn keep_int_keys(&mut self, keys: Box<IntKeys>) -> bool {
        match self {
            Stream::Table { keep, .. } => {
                *keep = Some(keys);
                true
            }
            _ => false,
        }
    }
}

impl Stream<'_> {
    /// Makes an index scan return only the columns `exprs` name (plain
    /// columns, strictly ascending: `in_place`), in their order, as a
    /// projection of them would; false (and nothing changes) for any other
    /// stream. The rows are then decoded straight into the projection's
    /// output, without the other columns' slots: a fetch decodes just
    /// those columns of each row; an index-only scan puts each key column
    /// it decodes into its output slot, or drops it (`KeyCols::select`).
    pub(crate) fn select_columns(&mut self, exprs: &[Expr]) -> bool {
        let mut cols: SmallVec<[usize; 8]> = SmallVec::with_capacity(exprs.len());
        for e in exprs {
            match e {
                Expr::Column(c) => cols.push(*c),
                _ => return false,
            }
        }
        let (only, fetch, ncols) = match self {
            Stream::Index { only, fetch, ncols, .. } => (only, fetch, ncols),
            // A point lookup's one row, read already: its columns moved
            // down within it as `Stream::Project` moves them, without a
            // row or a stream of their own. One row, so its spare
            // capacity costs nothing.
            Stream::One(Some(row)) => {
                if cols.iter().any(|&c| c >= row.len()) {
                    return false;
                }
                keep_columns(row, cols.iter().copied());
                return true;
            }
            Stream::One(None) => return true,
            _ => return false,
        };
        // A projection of a projection (a subquery in FROM) names
        // positions in the one below's output: through its columns, to
        // the table's.
        match only {
            Some(only) => {
                only.select(&cols);
                *ncols = cols.len();
            }
            None => {
                let select = &mut fetch.bufs().select;
                if let Some(below) = select.as_deref() {
                    let Some(through) = cols.iter().map(|&c| below.get(c).copied()).collect()
                    else {
                        return false;
                    };
                    cols = through;
                }
                *select = Some(cols.to_vec());
            }
        }
        true
    }
}

/// Moves columns `cols` (ascending, each past the one before, each
/// within the row) of `row` down to its first places, in that order, and
/// drops the rest: a projection of plain columns done within the row.
fn keep_columns(row: &mut Row, cols: impl Iterator<Item = usize>) {
    let mut n = 0;
    for (i, c) in cols.enumerate() {
        row.swap(i, c);
        n = i + 1;
    }
    truncate_row(row, n);
}

/// Whether `exprs` are columns, each read once (`Stream::Project`'s flag).
fn distinct_columns(exprs: &[Expr]) -> bool {
    exprs.iter().enumerate().all(|(i, e)| match e {
        Expr::Column(c) => !exprs[..i].iter().any(|p| matches!(p, Expr::Column(d) if d == c)),
        _ => false,
    })
}

/// The first batch: what the consumer wants, exactly (LIMIT, the one
/// consumer that says, stops pulling at its count; a row more was read,
/// decoded and dropped), or a full batch.
fn first_batch(want: Option<usize>) -> usize {
    want.unwrap_or(MAX_BATCH).clamp(1, MAX_BATCH)
}

/// The columns of a row that its consumer reads (None: all of them); a
/// scan leaves the others' text and bytea values NULL instead of copying
/// them out. Inline for rows of up to 16 columns (built per execution).
pub type Need = Option<SmallVec<[bool; 16]>>;

/// `need` plus the columns `exprs` read; all of them (None) if one holds a
/// subquery, whose outer references may read any column of the row.
/// One walk per expression, into `need`'s own vector.
pub fn needing<'e>(need: Need, width: usize, exprs: impl IntoIterator<Item = &'e Expr>) -> Need {
    let mut out = need?;
    if out.len() < width {
        out.resize(width, false);
    }
    let mut all = false;
    for e in exprs {
        e.walk(&mut |x| match x {
            Expr::Column(c) => match out.get_mut(*c) {
                Some(b) => *b = true,
                None => all = true,
            },
            x if x.is_subquery() => all = true,
            _ => {}
        });
        if all {
            return None;
        }
    }
    Some(out)
}

/// No column yet (start of `needing`).
pub fn none_needed(width: usize) -> Need {
    Some(SmallVec::from_elem(false, width))
}

/// A stream of `plan`'s rows; `want` is how many the caller expects to
/// need (None: all), which sizes the first scan batch; `need` is which
/// columns the caller reads.
pub fn open<'p>(ctx: &mut Ctx, plan: &'p Plan, want: Option<usize>) -> Result<Stream<'p>> {
    open_cols(ctx, plan, want, None)
}

/// `open` for a caller that applies a top LIMIT and OFFSET itself: for
/// a `Plan::Limit` that streams (`Stream::Limit`), its input's stream and
/// (rows to skip, rows to hand out); for any other plan, its stream and
/// (0, None). A consumer pulling from the input directly saves a layer
/// that every row's `Result<Option<Row>>` would pass through.
pub fn open_limited<'p>(ctx: &mut Ctx, plan: &'p Plan) -> Result<(Stream<'p>, Limited)> {
    match plan {
        Plan::Limit { input, limit, offset }
            if ctx.stats.is_none() && !super::sorted_below(input) =>
        {
            let (skip, left) = super::limit_counts(ctx, limit, offset)?;
            let want = left.map(|l| l.saturating_add(skip));
            Ok((open(ctx, input, want)?, Limited { skip, left }))
        }
        _ => Ok((open(ctx, plan, None)?, Limited { skip: 0, left: None })),
    }
}

/// LIMIT and OFFSET over a stream: the rows still to skip, then the rows
/// still to hand out (None: all).
#[derive(Clone, Copy, Debug)]
pub struct Limited {
    pub skip: usize,
    pub left: Option<usize>,
}

impl Limited {
    /// The next row of `s` within the limit.
    #[inline(always)]
    pub fn next(&mut self, ctx: &mut Ctx, s: &mut Stream) -> Result<Option<Row>> {
        if self.skip > 0 && !self.skip_rows(ctx, s)? {
            return Ok(None);
        }
        if self.left == Some(0) {
            return Ok(None);
        }
        let r = s.next(ctx)?;
        if let Some(n) = &mut self.left {
            *n -= 1;
        }
        Ok(r)
    }
    /// Reads past the OFFSET's rows; false if the stream ended first.
    #[inline(never)]
    fn skip_rows(&mut self, ctx: &mut Ctx, s: &mut Stream) -> Result<bool> {
        while self.skip > 0 {
            let Some(r) = s.next(ctx)? else { return Ok(false) };
            self.skip -= 1;
            s.recycle(r);
        }
        Ok(true)
    }
}

pub fn open_cols<'p>(
    ctx: &mut Ctx,
    plan: &'p Plan,
    want: Option<usize>,
    need: Need,
) -> Result<Stream<'p>> {
    if ctx.stats.is_some() {
        return Ok(Stream::Rows(super::run(ctx, plan)?.into_iter()));
    }
    Ok(match plan {
        Plan::Scan { .. } | Plan::IndexScan { .. } => open_scan(ctx, plan, want, need)?,
        Plan::Filter { input, predicate } => {
            let width = super::plan_width(input, None);
            let need = needing(need, width, [predicate]);
            Stream::Filter(Box::new(open_cols(ctx, input, want, need)?), predicate)
        }
        Plan::Project { input, exprs } if !super::typefuncs::has_set_function(exprs) => {
            let width = super::plan_width(input, None);
            let need = needing(none_needed(width), width, exprs);
            let moves = distinct_columns(exprs);
            let mut rows = open_cols(ctx, input, want, need)?;
            // Plain columns in ascending order over an index scan's row
            // fetch: the fetch decodes just those, into the output row.
            if in_place(exprs, width) && rows.select_columns(exprs) {
                return Ok(rows);
            }
            Stream::Project(Box::new(rows), exprs, moves)
        }
        Plan::MultiJoin { inputs, conds, width } => {
            Stream::Rows(super::multi_join(ctx, inputs, conds, *width, need)?.into_iter())
        }
        Plan::Aggregate { input, group_by, aggs, sets } if sets.is_empty() => {
            super::aggregate_plan(ctx, input, group_by, aggs)?
        }
        Plan::Limit { input, limit, offset } if !super::sorted_below(input) => {
            let (off, lim) = super::limit_counts(ctx, limit, offset)?;
            // Only the rows the limit hands out, of those the caller wants.
            let rows = lim.map(|l| l.saturating_add(off));
            let want = match (want, rows) {
                (Some(w), Some(r)) => Some(w.min(r)),
                (w, r) => w.or(r),
            };
            Stream::Limit(
                Box::new(open_cols(ctx, input, want, need)?),
                Limited { skip: off, left: lim },
            )
        }
        Plan::Sort { input, keys } => {
            // The sort reads the caller's columns and its keys' columns.
            let width = super::plan_width(input, None);
            let need = needing(need, width, keys.iter().map(|k| &k.expr));
            let rows = open_cols(ctx, input, None, need)?;
            Stream::Sorted(super::spill::sort_stream(ctx, rows, keys, None)?)
        }
        _ => Stream::Rows(super::run(ctx, plan)?.into_iter()),
    })
}

/// A stream of a `Scan` or `IndexScan` (any other plan is run).
pub fn open_scan<'p>(
    ctx: &mut Ctx,
    plan: &'p Plan,
    want: Option<usize>,
    need: Need,
) -> Result<Stream<'p>> {
    match plan {
        Plan::Scan { table } => Ok(Stream::Table {
            cursor: RangeCursor::table(table.id),
            ncols: table.columns.len(),
            buf: VecDeque::new(),
            batch: first_batch(want),
            need,
            spare: Vec::new(),
            keep: None,
        }),
        Plan::IndexScan { table, index, unique, columns, keys, range, reverse, index_only } => {
            let ncols = table.columns.len();
            // An index-only scan's columns, in key order, with their types,
            // and the key-rowid column if the index does not hold it.
            let only: Option<KeyCols> = match index_only {
                true => table
                    .indexes
                    .iter()
                    .find(|i| i.0 == *index)
                    .map(|i| {
                        let rowid = table.rowid_key.map(|k| k.column);
                        KeyCols::new(*index, &table.columns, &i.1, rowid)
                    })
                    .transpose()?,
                false => None,
            };
            // The key types: the columns', or an expression index's own.
            let types = match table.expr_index(*index) {
                Some(x) => KeyTypes::Types(&x.types),
                None => KeyTypes::Columns(&table.columns),
            };
            let rows_of = table.rows_of(*index);
            let found =
                lookup(ctx, types, *index, *unique, columns, keys, range.as_ref(), rows_of)?;
            if rows_of.is_some() {
                // The key of key rowids: the lookup found row keys.
                return Ok(match found {
                    Lookup::Point(key) => {
                        Stream::One(point_row(ctx, &key, ncols, need.as_deref())?)
                    }
                    Lookup::Range(range) => {
                        let dir = if *reverse { Direction::Reverse } else { Direction::Forward };
                        Stream::Table {
                            cursor: RangeCursor::new(range, dir),
                            ncols,
                            buf: VecDeque::new(),
                            batch: first_batch(want),
                            need,
                            spare: Vec::new(),
                            keep: None,
                        }
                    }
                    found => {
                        let mut rows = Vec::new();
                        let mut val = Vec::new();
                        lookup_rows(ctx, found, &mut val, &mut |_, v| {
                            let mut row = Vec::with_capacity(ncols);
                            decode_row_cols(v, ncols, need.as_deref(), &mut row)?;
                            rows.push(row);
                            Ok(())
                        })?;
                        if *reverse {
                            rows.reverse();
                        }
                        Stream::Rows(rows.into_iter())
                    }
                });
            }
            Ok(match found {
                Lookup::Nothing => Stream::Rows(Vec::new().into_iter()),
                Lookup::Point(key) => {
                    let mut rows = Vec::new();
                    let mut v = Vec::new();
                    if let Some(only) = &only {
                        if ctx.txn.get_into(&key, &mut v)? {
                            let mut row = Vec::with_capacity(ncols);
                            key_row(&key, &v, only, ncols, &mut row)?;
                            rows.push(row);
                        }
                    } else if ctx.txn.get_into(&key, &mut v)? {
                        let rowid = be_rowid(&v)?;
                        if ctx.txn.get_into(&storage::row_key(table.id, rowid), &mut v)? {
                            let mut row = Vec::with_capacity(ncols);
                            decode_row_cols(&v, ncols, need.as_deref(), &mut row)?;
                            rows.push(row);
                        }
                    }
                    Stream::Rows(rows.into_iter())
                }
                Lookup::Many(parts) => {
                    let mut fetch = Fetch::new();
                    let f = fetch.bufs();
                    for part in parts {
                        lookup_rowids(ctx, part, &mut f.rowids)?;
                    }
                    if *reverse {
                        f.rowids.reverse();
                    }
                    f.rows(ctx.txn, table.id, ncols, need.as_deref())?;
                    Stream::Rows(Vec::from(std::mem::take(&mut f.out)).into_iter())
                }
                Lookup::Range(range) => {
                    let dir = if *reverse { Direction::Reverse } else { Direction::Forward };
                    let mut fetch = Fetch::new();
                    if let Some(only) = &only {
                        fetch.bufs().plain = only.plain();
                    }
                    Stream::Index {
                        cursor: RangeCursor::new(range, dir),
                        table: table.id,
                        ncols,
                        batch: first_batch(want),
                        need,
                        fetch,
                        only,
                    }
                }
            })
        }
        _ => Ok(Stream::Rows(super::run(ctx, plan)?.into_iter())),
    }
}

/// What an index-only scan returns (`plan::indexonly`): the index's
/// columns, in key order with their types, decoded from each entry's key;
/// and, for a table with key rowids (`storage::RowidKey`) whose index does
/// not hold that column, the column and its type, read from the entry's
/// value (every entry's value is its row's rowid, and a key rowid is the
/// key's value, order-preservingly flipped).
pub struct KeyCols<'p> {
    /// The index's columns, in key order.
    cols: SmallVec<[KeyCol; 2]>,
    /// The key-rowid column, if the index does not hold it.
    rowid: Option<KeyCol>,
    /// The table's columns (the plan's), for the types.
    columns: &'p [(String, DataType)],
    /// The length of the index's key prefix (`storage::index_prefix`),
    /// which every entry's key starts with.
    prefix_len: usize,
    /// Whether `cols` and `rowid` write every slot of the output rows, so
    /// that a reused row of their width need not be set to NULLs first.
    covers: bool,
}

/// A column `key_row` decodes: its slot in the output row (`usize::MAX`
/// for none: `KeyCols::select`), the table column (a valid index into
/// `KeyCols::columns`, for its type), and how its type decodes.
struct KeyCol {
    slot: usize,
    col: usize,
    kind: KeyKind,
}

impl<'p> KeyCols<'p> {
    /// Rows of all `columns` of a table from the entries of its index `id`
    /// on `index` (column numbers), whose key rowids, if any, are column
    /// `rowid`.
    fn new(
        id: u64,
        columns: &'p [(String, DataType)],
        index: &[usize],
        rowid: Option<usize>,
    ) -> Result<KeyCols<'p>> {
        let col = |c: usize| match columns.get(c) {
            Some((_, ty)) => Ok(KeyCol { slot: c, col: c, kind: KeyKind::of(ty) }),
            None => Err(no_column(c)),
        };
        let mut only = KeyCols {
            cols: index.iter().map(|&c| col(c)).collect::<Result<_>>()?,
            rowid: rowid.filter(|c| !index.contains(c)).map(col).transpose()?,
            columns,
            prefix_len: storage::index_prefix(id).len(),
            covers: false,
        };
        only.covers = only.writes_all(columns.len());
        Ok(only)
    }

    /// Output rows of just the table columns `select` (ascending), in that
    /// order: each key column moves to its place among them, and one not
    /// among them gets a slot past the row's end (decoded, since the key's
    /// encoding is read in order, and dropped by `key_row`).
    fn select(&mut self, select: &[usize]) {
        let slot = |c: usize| select.binary_search(&c).unwrap_or(usize::MAX);
        for c in self.cols.iter_mut() {
            c.slot = slot(c.slot);
        }
        if let Some(c) = self.rowid.as_mut() {
            c.slot = slot(c.slot);
        }
        self.covers = self.writes_all(select.len());
    }

    /// Whether the rows hold only integers (and NULLs).
    fn plain(&self) -> bool {
        self.cols.iter().chain(&self.rowid).all(|c| c.kind != KeyKind::Other)
    }

    fn ty(&self, c: &KeyCol) -> &DataType {
        &self.columns[c.col].1
    }

    /// Whether every slot of rows `ncols` wide is some column's.
    fn writes_all(&self, ncols: usize) -> bool {
        let cols = self.cols.iter().chain(&self.rowid);
        ncols <= cols.clone().count() && (0..ncols).all(|s| cols.clone().any(|c| c.slot == s))
    }
}

impl Stream<'_> {
    #[inline]
    pub fn next(&mut self, ctx: &mut Ctx) -> Result<Option<Row>> {
        // An index-only scan's next row when its batch holds one (most
        // calls): handed out here, without a call.
        if let Stream::Index { fetch: Fetch(Some(b)), only: Some(_), .. } = self
            && !b.out.is_empty()
        {
            ctx.tick()?;
            return Ok(b.out.pop_front());
        }
        self.next_any(ctx)
    }

    #[inline(never)]
    fn next_any(&mut self, ctx: &mut Ctx) -> Result<Option<Row>> {
        ctx.tick()?;
        match self {
            Stream::Rows(it) => Ok(it.next()),
            Stream::One(r) => Ok(r.take()),
            Stream::Table { cursor, ncols, buf, batch, need, spare, keep } => {
                // A batch whose rows `keep` all turned away is followed by the next.
                while buf.is_empty() && !cursor.is_done() {
                    if keep.is_some() {
                        ctx.tick()?;
                    }
                    let ncols = *ncols;
                    let need = need.as_deref();
                    let keep = keep.as_ref();
                    cursor.next_batch(ctx.txn, *batch, |v| {
                        if let Some(k) = keep {
                            match peek_int(v, k.column)? {
                                IntCell::Int(i) if !k.keys.contains(&i) => return Ok(()),
                                IntCell::Null => return Ok(()),
                                _ => {}
                            }
                        }
                        let mut row = spare.pop().unwrap_or_else(|| Vec::with_capacity(ncols));
                        decode_row_cols(v, ncols, need, &mut row)?;
                        buf.push_back(row);
                        Ok(())
                    })?;
                    *batch = (*batch * 2).min(MAX_BATCH);
                }
                Ok(buf.pop_front())
            }
            Stream::Index { cursor, table, ncols, batch, need, fetch, only } => {
                if let Some(only) = only {
                    let FetchBufs { out: buf, entry_key, entry_from, spare, .. } = fetch.bufs();
                    if buf.is_empty() && !cursor.is_done() {
                        let ncols = *ncols;
                        // Room for the batch at once (LIMIT 10 grew it 3 times).
                        buf.reserve(*batch);
                        cursor.next_batch_keyed(
                            ctx.txn,
                            *batch,
                            (entry_key, entry_from),
                            |k, v| {
                                let mut row =
                                    spare.pop().unwrap_or_else(|| Vec::with_capacity(ncols));
                                key_row(k, v, only, ncols, &mut row)?;
                                buf.push_back(row);
                                Ok(())
                            },
                        )?;
                        *batch = (*batch * 2).min(MAX_BATCH);
                    }
                    return Ok(buf.pop_front());
                }
                let f = fetch.bufs();
                while f.out.is_empty() && !cursor.is_done() {
                    let rowids = &mut f.rowids;
                    rowids.clear();
                    cursor.next_batch(ctx.txn, *batch, |v| {
                        rowids.push(be_rowid(v)?);
                        Ok(())
                    })?;
                    *batch = (*batch * 2).min(MAX_BATCH);
                    f.rows(ctx.txn, *table, *ncols, need.as_deref())?;
                }
                Ok(f.out.pop_front())
            }
            Stream::Sorted(s) => s.next_row(),
            Stream::Spilled(r) => r.next_row(),
            Stream::Filter(input, predicate) => loop {
                match input.next(ctx)? {
                    None => return Ok(None),
                    Some(r) => {
                        if truthy(&eval(ctx, predicate, &r)?) {
                            return Ok(Some(r));
                        }
                        input.recycle(r);
                    }
                }
            },
            Stream::Limit(input, limited) => limited.next(ctx, input),
            Stream::Project(input, exprs, moves) => match input.next(ctx)? {
                None => Ok(None),
                Some(mut r) => {
                    if *moves && exprs.len() * 2 >= r.len() && in_place(exprs, r.len()) {
                        // Plain columns in ascending order (`SELECT id,
                        // name`): moved down within the row itself, which
                        // then goes up as the output (no row allocated).
                        // Only when they are at least half the row: a
                        // sort or hash over the output holds every row,
                        // and its memory is counted by the values kept.
                        keep_columns(
                            &mut r,
                            exprs.iter().filter_map(|e| match e {
                                Expr::Column(c) => Some(*c),
                                _ => None,
                            }),
                        );
                        return Ok(Some(r));
                    }
                    let mut o = Vec::with_capacity(exprs.len());
                    for e in exprs.iter() {
                        match e {
                            Expr::Column(c) if *moves && *c < r.len() => {
                                o.push(std::mem::replace(&mut r[*c], Value::Null))
                            }
                            e => o.push(eval(ctx, e, &r)?),
                        }
                    }
                    input.recycle(r);
                    Ok(Some(o))
                }
            },
        }
    }

    /// Hands a row the consumer is done with back to the scan below, whose
    /// next batch decodes into it instead of allocating (a full scan then
    /// allocates about one batch of rows, not one per row).
    pub fn recycle(&mut self, row: Row) {
        self.recycle_from(row, true)
    }

    /// `recycle`, where `own` says whether `row` is one this stream's scan
    /// made (else a projection's, whose values may be anything).
    fn recycle_from(&mut self, row: Row, own: bool) {
        match self {
            Stream::Table { spare, .. } => {
                if spare.len() < MAX_BATCH {
                    spare.push(row);
                }
            }
            Stream::Index { fetch, .. } => {
                let f = fetch.bufs();
                f.plain &= own;
                if f.spare.len() < MAX_BATCH {
                    f.spare.push(row);
                }
            }
            Stream::Filter(input, _) | Stream::Limit(input, ..) => input.recycle_from(row, own),
            Stream::Project(input, _, _) => input.recycle_from(row, false),
            Stream::Rows(_) | Stream::One(_) | Stream::Sorted(_) | Stream::Spilled(_) => {}
        }
    }

    /// Every remaining row.
    pub fn collect(mut self, ctx: &mut Ctx) -> Result<Vec<Row>> {
        match self {
            Stream::Rows(it) => return Ok(it.collect()),
            Stream::One(r) => return Ok(r.into_iter().collect()),
            _ => {}
        }
        let mut out = Vec::new();
        while let Some(r) = self.next(ctx)? {
            out.push(r);
        }
        Ok(out)
    }
}

/// The buffers of an index scan's row fetches (`FetchBufs`), boxed so
/// that a `Stream` stays small (it is moved around by value), and kept
/// from one batch to the next and, when the scan is dropped, for the
/// thread's next one: a query's first batch then allocates none of them
/// (each would be a large allocation, glibc's slow path), nor the box.
#[derive(Default)]
pub struct Fetch(Option<Box<FetchBufs>>);

/// A batch of rowids to fetch (an index range's, `FetchBufs::rows`), the
/// rows found, and the fetch's own buffers.
#[derive(Default)]
pub struct FetchBufs {
    pub rowids: Vec<u64>,
    /// The rows found, in the batch's order, for the scan to hand on (an
    /// index-only scan's rows too).
    pub out: VecDeque<Row>,
    /// An index-only scan's entry key, decoded, and the version prefix it
    /// was decoded from (`RangeCursor::next_batch_keyed`).
    entry_key: Vec<u8>,
    entry_from: Vec<u8>,
    /// The batch's rowids in key order, each with its place in the batch:
    /// packed into one word (`PLACE_BITS`) when they fit, else as pairs.
    packed: Vec<u64>,
    order: Vec<(u64, usize)>,
    /// The rowids' key bytes (`storage::OrdU64`) in the order read.
    keys: Vec<storage::OrdU64>,
    /// The rows found, by place in the batch.
    slots: Vec<Option<Row>>,
    /// The only columns to decode, in this (ascending) order, when the
    /// scan stands for a projection of them (`Stream::select_columns`).
    select: Option<Vec<usize>>,
    /// Rows the consumer handed back (`Stream::recycle`), decoded into
    /// again instead of allocating a row per row (each decoder overwrites
    /// or clears what a row holds). They outlive the scan, with the
    /// thread's spare buffers (up to `SPARE_ROWS`, none holding a long
    /// value: `Value::is_small`), so
    /// that a query run again and again (a prepared LIMIT 10 streamed to
    /// its caller) allocates no rows at all.
    spare: Vec<Row>,
    /// Whether this scan's rows hold only plain values (an index-only
    /// scan of integer columns): then the spare rows are kept without a
    /// look at each value. False again when the buffers are put away.
    plain: bool,
}

/// The rows a dropped fetch keeps for the thread's next one.
const SPARE_ROWS: usize = 128;

std::thread_local! {
    /// The buffers of the last `Fetch` this thread dropped, empty.
    static SPARE_FETCH: std::cell::RefCell<Option<Box<FetchBufs>>> =
        const { std::cell::RefCell::new(None) };
}

impl Fetch {
    /// A fetch with the thread's spare buffers, if it has them.
    pub fn new() -> Fetch {
        Fetch(SPARE_FETCH.try_with(|s| s.try_borrow_mut().ok()?.take()).ok().flatten())
    }

    /// The buffers (boxed on first use: once per thread, `Fetch::new`).
    #[inline]
    pub fn bufs(&mut self) -> &mut FetchBufs {
        #[cold]
        fn new_bufs() -> Box<FetchBufs> {
            Box::default()
        }
        self.0.get_or_insert_with(new_bufs)
    }
}

impl Drop for Fetch {
    fn drop(&mut self) {
        let Some(mut b) = self.0.take() else { return };
        // Kept if no larger than a full batch's.
        let caps = [b.rowids.capacity(), b.slots.capacity(), b.out.capacity(), b.packed.capacity()];
        if caps.iter().any(|&c| c > MAX_BATCH) {
            return;
        }
        b.rowids.clear();
        b.out.clear();
        b.slots.clear();
        b.select = None;
        // Only so many, and emptied if they hold long values: plain ones
        // and short texts are overwritten by the next scan's rows (a text
        // into its buffer).
        b.spare.truncate(SPARE_ROWS);
        if !std::mem::take(&mut b.plain) {
            for row in &mut b.spare {
                if !row.iter().all(Value::is_small) {
                    clear_row(row);
                }
            }
        }
        let _ = SPARE_FETCH.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                *s = Some(b);
            }
        });
    }
}

impl FetchBufs {
    /// Appends to `self.out` the visible rows of `table` that `self.rowids`
    /// name, in their order, each decoded into a row from `self.spare` if there
    /// is one. The rows are read in rowid (key) order through one
    /// `Transaction::get_each`, whose seeks then share their way down the
    /// tree, and put back in the batch's order: the index's order, which
    /// ORDER BY, merge joins and LIMIT rely on.
    pub fn rows(
        &mut self,
        txn: &mut qube_txn::Transaction,
        table: u64,
        ncols: usize,
        need: Option<&[bool]>,
    ) -> Result<()> {
        let spare = &mut self.spare;
        let select = self.select.as_deref();
        let width = select.map_or(ncols, |s| s.len());
        let decode = |v: &[u8], spare: &mut Vec<Row>| -> Result<Row> {
            let mut row = spare.pop().unwrap_or_else(|| Vec::with_capacity(width));
            match select {
                Some(cols) => decode_row_select(v, cols, &mut row)?,
                None => decode_row_cols(v, ncols, need, &mut row)?,
            }
            Ok(row)
        };
        let prefix = storage::table_prefix(table);
        let (rowids, out) = (&self.rowids, &mut self.out);
        self.keys.clear();
        if rowids.is_sorted() {
            // Already in key order (one row, or an index that follows the
            // rowids): read straight into the output.
            self.keys.extend(rowids.iter().map(|&r| storage::OrdU64::new(r)));
            return txn.get_each(&prefix, &self.keys, |_, v| {
                out.push_back(decode(v, spare)?);
                Ok(())
            });
        }
        // Equal rowids (if an index had two entries for one row) read the
        // same row for each place, in whatever order.
        let (low, high) = rowids.iter().fold((u64::MAX, 0), |(l, h), &r| (l.min(r), h.max(r)));
        self.order.clear();
        self.packed.clear();
        let packed =
            rowids.len() <= 1 << PLACE_BITS && high.saturating_sub(low) < 1 << (64 - PLACE_BITS);
        if packed {
            // (rowid − low, place) in one word: the sort compares and moves
            // words, not pairs by key (~40% of its instructions).
            let rows = rowids.iter().enumerate();
            self.packed.extend(rows.map(|(i, &r)| ((r - low) << PLACE_BITS) | i as u64));
            self.packed.sort_unstable();
            let keys = self.packed.iter().map(|&p| storage::OrdU64::new((p >> PLACE_BITS) + low));
            self.keys.extend(keys);
        } else {
            self.order.extend(rowids.iter().enumerate().map(|(i, &r)| (r, i)));
            self.order.sort_unstable_by_key(|&(r, _)| r);
            self.keys.extend(self.order.iter().map(|&(r, _)| storage::OrdU64::new(r)));
        }
        self.slots.clear();
        self.slots.resize_with(rowids.len(), || None);
        let (order, packs, slots) = (&self.order, &self.packed, &mut self.slots);
        let place = |i: usize| match packed {
            true => packs.get(i).map(|&p| (p & ((1 << PLACE_BITS) - 1)) as usize),
            false => order.get(i).map(|&(_, at)| at),
        };
        txn.get_each(&prefix, &self.keys, |i, v| {
            if let Some(slot) = place(i).and_then(|at| slots.get_mut(at)) {
                *slot = Some(decode(v, spare)?);
            }
            Ok(())
        })?;
        out.extend(self.slots.drain(..).flatten());
        Ok(())
    }
}

/// Whether a projection is plain columns in strictly ascending order, all
/// within a row of `width`: then swapping each into its place in turn never
/// disturbs one still to come (column `c` of the `i`th is at least `i` and
/// above every earlier one's), and the row can become the output.
fn in_place(exprs: &[Expr], width: usize) -> bool {
    let mut next = 0;
    for e in exprs {
        match e {
            Expr::Column(c) if *c >= next && *c < width => next = c + 1,
            _ => return false,
        }
    }
    true
}

/// Appends the rowids of the index entries `l` finds, in key order.
pub fn lookup_rowids(ctx: &mut Ctx, l: Lookup, out: &mut Vec<u64>) -> Result<()> {
    match l {
        Lookup::Nothing => {}
        Lookup::Point(key) => {
            if let Some(r) = ctx.txn.get(&key)? {
                out.push(be_rowid(&r)?);
            }
        }
        Lookup::Range(r) => {
            ctx.txn.scan_each(r, Direction::Forward, |_, v| {
                out.push(be_rowid(v)?);
                Ok(true)
            })?;
        }
        Lookup::Many(parts) => {
            for p in parts {
                ctx.tick()?;
                lookup_rowids(ctx, p, out)?;
            }
        }
    }
    Ok(())
}

/// Calls `f(rowid, row value)` for the rows a lookup on the key of a
/// table with key rowids finds (`lookup` with `rows_of`), in key order.
pub fn lookup_rows(
    ctx: &mut Ctx,
    l: Lookup,
    val: &mut Vec<u8>,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    match l {
        Lookup::Nothing => {}
        Lookup::Point(key) => {
            if ctx.txn.get_into(&key, val)? {
                f(storage::rowid_of(&key)?, val)?;
            }
        }
        Lookup::Range(r) => {
            ctx.txn.scan_each(r, Direction::Forward, |k, v| {
                f(storage::rowid_of(k)?, v)?;
                Ok(true)
            })?;
        }
        Lookup::Many(parts) => {
            for p in parts {
                ctx.tick()?;
                lookup_rows(ctx, p, val, f)?;
            }
        }
    }
    Ok(())
}

/// The types of an index's key columns by column position (`lookup`'s
/// `columns`): an expression index's own types, or a table's columns,
/// read where they are (a point lookup copies no type).
#[derive(Clone, Copy)]
pub enum KeyTypes<'a> {
    Types(&'a [DataType]),
    Columns(&'a [(String, DataType)]),
}

impl<'a> KeyTypes<'a> {
    fn of(self, column: usize) -> &'a DataType {
        match self {
            KeyTypes::Types(t) => &t[column],
            KeyTypes::Columns(c) => &c[column].1,
        }
    }
}

/// What an index scan reads.
pub enum Lookup {
    /// No row can match (a NULL key, a value the column cannot hold).
    Nothing,
    /// One entry of a unique index (or one row key), held inline when
    /// short: a point select on a key rowid allocates no key.
    Point(SmallVec<[u8; 24]>),
    /// A range of entries.
    Range(KeyRange),
    /// Several points or ranges (a key set: IN list or `= ANY(array)`),
    /// distinct, in key order.
    Many(Vec<Lookup>),
}

/// The entries whose index columns equal the keys (and whose next column
/// lies within `range`, bounds inclusive). `rows_of`: Some(table) when
/// `index` is the key of that table's key rowids, whose lookups find row
/// keys (and rows) instead of entries.
#[allow(clippy::too_many_arguments)]
pub fn lookup(
    ctx: &mut Ctx,
    types: KeyTypes<'_>,
    index: u64,
    unique: bool,
    columns: &[usize],
    keys: &[Expr],
    range: Option<&IndexRange>,
    rows_of: Option<u64>,
) -> Result<Lookup> {
    if keys.iter().any(|k| crate::plan::bind::as_key_set(k).is_some()) {
        return lookup_set(ctx, types, index, unique, columns, keys, range, rows_of);
    }
    if let (Some(table), [k], [c], None) = (rows_of, keys, columns, range) {
        // A point on the key of key rowids (a primary-key lookup), without
        // a vector of values.
        return match super::index_value(eval(ctx, k, &[])?, types.of(*c)) {
            Some(v) => row_lookup(ctx, table, types, std::slice::from_ref(&v), None),
            None => Ok(Lookup::Nothing),
        };
    }
    let mut vals = Vec::with_capacity(keys.len());
    for (k, &c) in keys.iter().zip(columns) {
        let v = eval(ctx, k, &[])?;
        // The key must be encoded as the column's values are: a value that
        // the column's type cannot hold exactly (5.5 for an integer column)
        // or NULL matches nothing.
        match super::index_value(v, types.of(c)) {
            Some(v) => vals.push(v),
            None => return Ok(Lookup::Nothing),
        }
    }
    if let Some(table) = rows_of {
        return row_lookup(ctx, table, types, &vals, range);
    }
    if unique {
        return Ok(Lookup::Point(SmallVec::from_vec(storage::index_key(index, &vals, 0, true))));
    }
    if vals.is_empty() && range.is_none() {
        // The whole index (ORDER BY its columns), without a copy of the
        // prefix to extend.
        return Ok(Lookup::Range(storage::prefix_range(&storage::index_prefix(index))));
    }
    let mut prefix = storage::index_prefix(index).to_vec();
    for v in &vals {
        encode_key(v, &mut prefix);
    }
    let Some(r) = range else { return Ok(Lookup::Range(storage::prefix_range(&prefix))) };
    // Values only (0x01 …), not NULLs (0x02), which no range matches.
    let mut start = prefix.clone();
    let mut end = prefix;
    let ty = types.of(r.column);
    let bound = |ctx: &mut Ctx, e: &Option<Expr>| -> Result<Option<Option<Value>>> {
        match e {
            None => Ok(Some(None)),
            Some(e) => match eval(ctx, e, &[])? {
                Value::Null => Ok(None),
                // A bound the column cannot hold exactly stays
                // open on that side; the condition above decides.
                v => Ok(Some(super::index_value(v, ty))),
            },
        }
    };
    let (Some(low), Some(high)) = (bound(ctx, &r.low)?, bound(ctx, &r.high)?) else {
        return Ok(Lookup::Nothing);
    };
    match low {
        Some(v) => encode_key(&v, &mut start),
        None => start.push(1),
    }
    match high {
        Some(v) => {
            encode_key(&v, &mut end);
            end.extend_from_slice(&[0xff; 10]);
        }
        None => end.push(2),
    }
    // `KeyRange::between` without copying the bounds again.
    Ok(Lookup::Range(KeyRange {
        start: std::ops::Bound::Included(start),
        end: std::ops::Bound::Excluded(end),
    }))
}

/// `lookup` on the key of a table with key rowids: `vals` is empty or the
/// key's one value.
fn row_lookup(
    ctx: &mut Ctx,
    table: u64,
    types: KeyTypes<'_>,
    vals: &[Value],
    range: Option<&IndexRange>,
) -> Result<Lookup> {
    if let Some(v) = vals.first() {
        return Ok(Lookup::Point(SmallVec::from_slice(&storage::key_row_key(table, v)?)));
    }
    let Some(r) = range else {
        return Ok(Lookup::Range(storage::prefix_range(&storage::table_prefix(table))));
    };
    let ty = types.of(r.column);
    // As for entries: NULL bounds match nothing, a bound the column cannot
    // hold stays open (the condition above decides).
    let mut bound = |e: &Option<Expr>, open: u64| -> Result<Option<Vec<u8>>> {
        let rowid = match e {
            None => open,
            Some(e) => match eval(ctx, e, &[])? {
                Value::Null => return Ok(None),
                v => super::index_value(v, ty).and_then(|v| storage::key_rowid(&v)).unwrap_or(open),
            },
        };
        Ok(Some(storage::row_key(table, rowid).to_vec()))
    };
    let (Some(low), Some(high)) = (bound(&r.low, 0)?, bound(&r.high, u64::MAX)?) else {
        return Ok(Lookup::Nothing);
    };
    Ok(Lookup::Range(KeyRange {
        start: std::ops::Bound::Included(low),
        end: std::ops::Bound::Included(high),
    }))
}

/// `lookup` of keys some of which are key sets: one lookup per
/// combination of their distinct elements that the columns can hold
/// (NULLs and values a column cannot equal are dropped). Past
/// `MAX_KEY_SET` combinations, the keys from the first set on are left
/// out (a wider range; the conditions above still decide).
#[allow(clippy::too_many_arguments)]
fn lookup_set(
    ctx: &mut Ctx,
    types: KeyTypes<'_>,
    index: u64,
    unique: bool,
    columns: &[usize],
    keys: &[Expr],
    range: Option<&IndexRange>,
    rows_of: Option<u64>,
) -> Result<Lookup> {
    // Every key's candidate values.
    let mut choices: Vec<Vec<Value>> = Vec::with_capacity(keys.len());
    let mut combos = 1usize;
    for (k, &c) in keys.iter().zip(columns) {
        let mut vals = Vec::new();
        match crate::plan::bind::as_key_set(k) {
            Some(array) => match eval(ctx, array, &[])? {
                Value::Array(items) => {
                    for v in items {
                        if let Some(v) = super::index_value(v, types.of(c)) {
                            vals.push(v);
                        }
                    }
                }
                Value::Null => {}
                other => {
                    return Err(Error::Internal(format!(
                        "index key set is not an array: {other:?}"
                    )));
                }
            },
            None => {
                if let Some(v) = super::index_value(eval(ctx, k, &[])?, types.of(c)) {
                    vals.push(v);
                }
            }
        }
        if vals.is_empty() {
            return Ok(Lookup::Nothing);
        }
        vals.sort_by(|a, b| a.total_cmp(b));
        vals.dedup_by(|a, b| a.total_cmp(b) == std::cmp::Ordering::Equal);
        combos = combos.saturating_mul(vals.len());
        if combos > crate::plan::bind::MAX_KEY_SET {
            // Look up the prefix before this key only.
            return lookup_combinations(index, false, &choices, None, ctx, types, columns, rows_of);
        }
        choices.push(vals);
    }
    lookup_combinations(index, unique, &choices, range, ctx, types, columns, rows_of)
}

/// One lookup per combination of `choices` (already index values, one
/// list per leading index column); `unique` when they fix every column of
/// a unique index.
#[allow(clippy::too_many_arguments)]
fn lookup_combinations(
    index: u64,
    unique: bool,
    choices: &[Vec<Value>],
    range: Option<&IndexRange>,
    ctx: &mut Ctx,
    types: KeyTypes<'_>,
    columns: &[usize],
    rows_of: Option<u64>,
) -> Result<Lookup> {
    let mut out = Vec::new();
    let mut pick = vec![0usize; choices.len()];
    let mut consts: Vec<Expr> = Vec::with_capacity(choices.len());
    loop {
        consts.clear();
        consts.extend(pick.iter().zip(choices).map(|(&i, c)| Expr::Const(c[i].clone())));
        let cols = &columns[..choices.len()];
        match lookup(ctx, types, index, unique, cols, &consts, range, rows_of)? {
            Lookup::Nothing => {}
            one => out.push(one),
        }
        // The next combination, last key fastest (so key order).
        let mut i = choices.len();
        loop {
            if i == 0 {
                return Ok(Lookup::Many(out));
            }
            i -= 1;
            pick[i] += 1;
            if pick[i] < choices[i].len() {
                break;
            }
            pick[i] = 0;
        }
    }
}

/// A row of `ncols` columns from an index entry's key (cleared first): the
/// index columns `only` decoded from it, each into its slot (none for a
/// column a projection left out: `KeyCols::select`), the others NULL; the
/// key-rowid column, if `only` names one, from the entry's value (its
/// row's rowid).
fn key_row(key: &[u8], value: &[u8], only: &KeyCols, ncols: usize, row: &mut Row) -> Result<()> {
    // Emptied and refilled without cloning NULLs (`resize` clones its
    // value into every slot; a row handed back keeps its slots). A row
    // whose every slot is written below keeps its values until then.
    if row.len() != ncols {
        clear_row(row);
        row.resize_with(ncols, || Value::Null);
    } else if !only.covers {
        null_row(row);
    }
    // After the index prefix (tag and index id).
    let mut pos = only.prefix_len;
    for c in &only.cols {
        let v = decode_key_as(key, &mut pos, c.kind, || only.ty(c))?;
        if let Some(slot) = row.get_mut(c.slot) {
            set_value(slot, v);
        }
    }
    if let Some(c) = &only.rowid
        && let Some(slot) = row.get_mut(c.slot)
    {
        let rowid = be_rowid(value)?;
        let v = c.kind.int_value((rowid ^ (1 << 63)) as i64);
        set_value(slot, v.ok_or_else(|| bad_rowid(rowid, only.ty(c)))?);
    }
    Ok(())
}

#[cold]
fn no_column(col: usize) -> Error {
    Error::Internal(format!("index-only scan of a column {col} the table does not have"))
}

/// A key rowid (`storage::key_rowid`) that a column of type `ty` cannot
/// hold.
#[cold]
fn bad_rowid(rowid: u64, ty: &DataType) -> Error {
    Error::Internal(format!("rowid {rowid} does not fit a {ty:?} key column"))
}

pub fn be_rowid(b: &[u8]) -> Result<u64> {
    b.try_into().map(u64::from_be_bytes).map_err(|_| Error::Internal("bad index entry".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several fetches alive at once (a join of two index scans), dropped
    /// in turn: the thread keeps one set of spare buffers, whichever came
    /// last, and the next fetch starts with them, empty. (Dropping the
    /// spare that a later drop replaced once ran `Drop` on it again, and
    /// so on without end.)
    #[test]
    fn fetches_dropped_together_keep_one_spare() {
        let mut a = Fetch::new();
        let mut b = Fetch::new();
        a.bufs().rowids.extend([1, 2, 3]);
        a.bufs().out.push_back(vec![Value::Int4(1)]);
        b.bufs().rowids.reserve(500);
        drop(a);
        drop(b);
        let mut c = Fetch::new();
        assert!(c.bufs().rowids.is_empty() && c.bufs().out.is_empty());
        assert!(c.bufs().rowids.capacity() >= 500);
        let mut d = Fetch::new();
        assert_eq!(d.bufs().rowids.capacity(), 0);
        // A fetch larger than a batch is not kept.
        let mut e = Fetch::new();
        e.bufs().rowids.reserve(MAX_BATCH + 1);
        drop((c, d, e));
        assert!(Fetch::new().bufs().rowids.capacity() <= MAX_BATCH);
    }

    /// A scan whose own rows hold only integers keeps its spare rows
    /// without looking at them; a row a projection hands back (`Project`
    /// recycles its output, which may hold anything) makes it look again,
    /// so no long value outlives the scan in the thread's spare rows.
    #[test]
    fn spare_rows_from_a_projection_are_checked_for_long_values() {
        let long = || Value::Text("x".repeat(1000));
        let index = || {
            let mut fetch = Fetch(None);
            fetch.bufs().plain = true;
            Stream::Index {
                cursor: RangeCursor::new(qube_storage::KeyRange::all(), Direction::Forward),
                table: 1,
                ncols: 1,
                batch: 1,
                need: None,
                fetch,
                only: None,
            }
        };
        let spare = || Fetch::new().bufs().spare.clone();
        // Straight from the scan: kept as they are (such a scan's rows
        // cannot hold long values; this one is made up to show the check
        // is skipped).
        let mut s = index();
        s.recycle(vec![Value::Int4(7)]);
        drop(s);
        assert_eq!(spare(), vec![vec![Value::Int4(7)]]);
        // Through a projection: checked, the long value dropped.
        let mut p = Stream::Project(Box::new(index()), &[], false);
        p.recycle(vec![Value::Int4(1), long()]);
        p.recycle(vec![Value::Int4(2)]);
        drop(p);
        let rows = spare();
        assert!(rows.iter().flatten().all(Value::is_small), "{rows:?}");
        assert!(rows.contains(&vec![Value::Int4(2)]), "{rows:?}");
        // A later scan's buffers come back with the flag cleared.
        assert!(!Fetch::new().bufs().plain);
    }
}
