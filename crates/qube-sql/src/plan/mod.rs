//! Bound plans: what the binder makes of sqlparser's AST, and what the
//! executor runs.
//!
//! Expressions refer to columns by position in the row their operator
//! receives (`Expr::Column`), or, inside a correlated subquery, by depth
//! and position in an enclosing query's current row (`Expr::Outer`).
//! Every plan node knows its output width; names and types live in the
//! binder's scopes and in `Bound::columns`.

pub mod bind;
pub mod explain;
pub mod expr;
pub mod indexonly;
pub mod order;

use qube_common::types::DataType;

pub use expr::{AggCall, AggFunc, BinOp, Expr, Func, UnOp};

/// A table as the executor needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRef {
    pub id: u64,
    pub name: String,
    pub columns: Vec<(String, DataType)>,
    /// The table's plain indexes: (id, column positions, unique).
    pub indexes: Vec<(u64, Vec<usize>, bool)>,
    /// Its indexes on expressions or with a WHERE (partial).
    pub expr_indexes: std::sync::Arc<Vec<ExprIndex>>,
    /// The primary key that keys its rows, if it has key rowids (an
    /// `IndexScan` on that index reads row keys: `storage`'s module doc).
    pub rowid_key: Option<crate::storage::RowidKey>,
    /// The names of its indexes, by id (EXPLAIN).
    pub index_names: std::sync::Arc<Vec<(u64, String)>>,
}

/// An index with expression columns or a predicate, bound over the row.
/// An `IndexScan` on one has key positions (into `keys`/`types`) as its
/// `columns`, not table columns.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprIndex {
    pub id: u64,
    pub name: String,
    /// The key columns as written (for messages).
    pub texts: Vec<String>,
    pub keys: Vec<Expr>,
    /// The keys' types.
    pub types: Vec<DataType>,
    pub unique: bool,
    pub predicate: Option<Expr>,
}

impl TableRef {
    /// `Some(table id)` if `index` is the key of this table's key rowids.
    pub fn rows_of(&self, index: u64) -> Option<u64> {
        self.rowid_key.filter(|k| k.index == index).map(|_| self.id)
    }

    /// The name of index `id` (its id, if unknown).
    pub fn index_name(&self, id: u64) -> String {
        self.index_names
            .iter()
            .find(|(i, _)| *i == id)
            .map_or_else(|| format!("index {id}"), |(_, n)| n.clone())
    }

    /// The expression or partial index `id`, if it is one.
    pub fn expr_index(&self, id: u64) -> Option<&ExprIndex> {
        self.expr_indexes.iter().find(|x| x.id == id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOpKind {
    Union,
    Intersect,
    Except,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub expr: Expr,
    pub desc: bool,
    pub nulls_first: bool,
}

/// One input of a `MultiJoin`, with where its columns go in the joined row.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinInput {
    pub plan: Plan,
    pub offset: usize,
    pub width: usize,
}

/// A set of `MultiJoin` inputs (bit i = input i), of any size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputSet(Vec<u64>);

impl InputSet {
    pub fn one(i: usize) -> InputSet {
        let mut s = InputSet::default();
        s.insert(i);
        s
    }
    pub fn insert(&mut self, i: usize) {
        if self.0.len() <= i / 64 {
            self.0.resize(i / 64 + 1, 0);
        }
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// Every member of `self` is in `other`.
    pub fn is_subset(&self, other: &InputSet) -> bool {
        self.0.iter().enumerate().all(|(k, w)| w & !other.0.get(k).copied().unwrap_or(0) == 0)
    }
    /// Exactly the one input `i`.
    pub fn is_only(&self, i: usize) -> bool {
        self.contains(i) && self.len() == 1
    }
    /// The one input, if there is exactly one.
    pub fn single(&self) -> Option<usize> {
        if self.len() != 1 {
            return None;
        }
        self.0
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(k, w)| k * 64 + w.trailing_zeros() as usize)
    }
}

/// A condition of a `MultiJoin` and the inputs it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinCond {
    pub expr: Expr,
    pub inputs: InputSet,
}

/// The inputs whose columns `e` reads.
pub fn inputs_of(e: &Expr, inputs: &[JoinInput]) -> InputSet {
    let mut cols = Vec::new();
    e.columns_used(&mut cols);
    let mut set = InputSet::default();
    for c in cols {
        for (i, inp) in inputs.iter().enumerate() {
            if c >= inp.offset && c < inp.offset + inp.width {
                set.insert(i);
            }
        }
    }
    set
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Literal rows (also `SELECT` without `FROM`: one empty row).
    Values {
        rows: Vec<Vec<Expr>>,
        width: usize,
    },
    /// Every visible row of a table, in rowid order.
    Scan {
        table: TableRef,
    },
    /// Every visible row of a table followed by its rowid (Int8): the
    /// target of UPDATE … FROM and DELETE … USING, whose joined rows say
    /// which stored row they update.
    ScanRowids {
        table: TableRef,
    },
    /// The rows whose leading index columns equal `keys` (evaluated once,
    /// without a row: constants, parameters, outer references). The
    /// conditions stay on top, so the index only narrows the search.
    IndexScan {
        table: TableRef,
        index: u64,
        unique: bool,
        columns: Vec<usize>,
        keys: Vec<Expr>,
        /// Bounds on the index column after the equalities (inclusive;
        /// the conditions above make exclusive ones exact).
        range: Option<IndexRange>,
        /// Read the entries in reverse (an ORDER BY … DESC that the index
        /// answers; see `order.rs`).
        reverse: bool,
        /// Every column the query reads is in the index: the rows come
        /// from the entries' keys alone, the other columns NULL
        /// (`indexonly.rs`).
        index_only: bool,
    },
    /// WITH RECURSIVE: the anchor's rows, then the recursive term's, run
    /// again on the rows it produced last until it produces none.
    RecursiveUnion {
        id: usize,
        anchor: Box<Plan>,
        recursive: Box<Plan>,
        all: bool,
    },
    /// A WITH query that PostgreSQL would materialize (read more than
    /// once, calling a volatile function, or `AS MATERIALIZED`): run once
    /// per statement, at its first read, and every read gets its rows
    /// (`Ctx::ctes`, keyed by the `Arc`'s address, which every copy of
    /// the plan shares). The other WITH queries are inlined where read.
    CteScan {
        name: String,
        input: std::sync::Arc<Plan>,
        width: usize,
    },
    /// The rows of the previous iteration of recursive CTE `id`.
    WorkTable {
        id: usize,
        width: usize,
    },
    /// The input's columns, then one per window function call.
    Window {
        input: Box<Plan>,
        calls: Vec<WindowCall>,
    },
    /// generate_series(start, stop [, step]): one column.
    Series {
        start: Expr,
        stop: Expr,
        step: Option<Expr>,
    },
    /// A set-returning function in FROM (unnest, jsonb_each, …); its
    /// arguments are evaluated once, without a row.
    SetFunction {
        func: SetFunc,
        args: Vec<Expr>,
        width: usize,
        /// The column definition list (json(b)_to_record[set]): the
        /// members to read and their types; empty for the functions whose
        /// columns are fixed.
        record: Vec<(String, DataType)>,
    },
    /// The rows of a system relation (`system::TABLES[table]`), computed
    /// from the catalog when the plan runs.
    System {
        table: usize,
        width: usize,
    },
    Filter {
        input: Box<Plan>,
        predicate: Expr,
    },
    Project {
        input: Box<Plan>,
        exprs: Vec<Expr>,
    },
    /// Inner joins of several inputs with their conditions; the executor
    /// picks the order (each next input is one an equality links to what
    /// is joined so far, by hash join) and applies each condition as soon
    /// as its inputs are joined. The output row is the inputs side by side
    /// in their listed order.
    MultiJoin {
        inputs: Vec<JoinInput>,
        conds: Vec<JoinCond>,
        width: usize,
    },
    /// A binary outer join: left columns, then right columns.
    Join {
        left: Box<Plan>,
        right: Box<Plan>,
        kind: JoinKind,
        on: Expr,
    },
    /// LATERAL: `right` runs once per row of `left`, which it reads as
    /// its outer row (depth 1); output rows are the left row followed by
    /// each right row for which `on` holds (and, for a LEFT join, the
    /// left row padded with NULLs when none does).
    Lateral {
        left: Box<Plan>,
        right: Box<Plan>,
        /// Inner or Left.
        kind: JoinKind,
        on: Expr,
        right_width: usize,
    },
    /// Output: the group keys, then the aggregates. Without keys, exactly
    /// one row even for empty input.
    ///
    /// With grouping `sets` (GROUPING SETS, ROLLUP, CUBE), the rows of
    /// each set in turn: the keys a set does not group by are NULL, and
    /// the last key is the set's number (for GROUPING()).
    Aggregate {
        input: Box<Plan>,
        group_by: Vec<Expr>,
        aggs: Vec<AggCall>,
        sets: Vec<Vec<usize>>,
    },
    Sort {
        input: Box<Plan>,
        keys: Vec<SortKey>,
    },
    Limit {
        input: Box<Plan>,
        limit: Option<Expr>,
        offset: Option<Expr>,
    },
    Distinct {
        input: Box<Plan>,
    },
    /// DISTINCT ON: the first row of each run of equal `on` values (input sorted).
    DistinctOn {
        input: Box<Plan>,
        on: Vec<Expr>,
    },
    SetOp {
        left: Box<Plan>,
        right: Box<Plan>,
        kind: SetOpKind,
        all: bool,
    },
}

impl Plan {
    /// SELECT without FROM: one row of no columns.
    pub fn unit() -> Plan {
        Plan::Values { rows: vec![vec![]], width: 0 }
    }
}

/// Set-returning functions (in FROM), by PostgreSQL name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetFunc {
    Unnest,
    /// jsonb_array_elements / json_array_elements (and `_text`).
    ArrayElements {
        text: bool,
    },
    /// jsonb_each / json_each (and `_text`).
    Each {
        text: bool,
    },
    ObjectKeys,
    /// generate_subscripts(array, dim [, reverse]): the array's subscripts
    /// (1 … n for dimension 1, 0 … n-1 for an int2vector; nothing for
    /// other dimensions).
    Subscripts {
        zero_based: bool,
    },
    /// information_schema._pg_expandarray(array): one record `(x, n)` per
    /// element (the element and its 1-based position, also for an
    /// int2vector); `field` Some(0) or Some(1) gives just `x` or `n` (a
    /// field selected from the call, `(_pg_expandarray(a)).n`, which
    /// PostgreSQL expands in step with the other calls of the select list).
    ExpandArray {
        field: Option<u8>,
    },
    /// generate_series(start, stop [, step]) in a select list (in FROM it
    /// is `Plan::Series`).
    Series,
    /// regexp_matches(string, pattern [, flags]): one text[] per match
    /// (every match with flag g, else the first).
    RegexpMatches,
    /// regexp_split_to_table(string, pattern [, flags]).
    RegexpSplit,
    /// json(b)_to_record (one row) and json(b)_to_recordset (a row per
    /// element of an array of objects), typed by a column definition list.
    ToRecord {
        set: bool,
    },
}

impl SetFunc {
    pub fn name(self) -> &'static str {
        match self {
            SetFunc::Unnest => "unnest",
            SetFunc::ArrayElements { text: false } => "jsonb_array_elements",
            SetFunc::ArrayElements { text: true } => "jsonb_array_elements_text",
            SetFunc::Each { text: false } => "jsonb_each",
            SetFunc::Each { text: true } => "jsonb_each_text",
            SetFunc::ObjectKeys => "jsonb_object_keys",
            SetFunc::Subscripts { .. } => "generate_subscripts",
            SetFunc::ExpandArray { .. } => "_pg_expandarray",
            SetFunc::Series => "generate_series",
            SetFunc::RegexpMatches => "regexp_matches",
            SetFunc::RegexpSplit => "regexp_split_to_table",
            SetFunc::ToRecord { set: false } => "jsonb_to_record",
            SetFunc::ToRecord { set: true } => "jsonb_to_recordset",
        }
    }
}

/// Window functions, by PostgreSQL name; `Agg` is any aggregate OVER ….
#[derive(Debug, Clone, PartialEq)]
pub enum WindowFunc {
    RowNumber,
    Rank,
    DenseRank,
    PercentRank,
    CumeDist,
    Ntile,
    Lag,
    Lead,
    FirstValue,
    LastValue,
    NthValue,
    Agg(AggCall),
}

/// One end of a window frame.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameBound {
    UnboundedPreceding,
    /// ROWS: rows; GROUPS: peer groups.
    Preceding(u64),
    CurrentRow,
    Following(u64),
    UnboundedFollowing,
    /// RANGE with an offset: the rows whose ORDER BY value is within the
    /// offset (a constant expression of the value's type, or an interval
    /// for date/time values) before or after the current row's.
    ValuePreceding(Expr),
    ValueFollowing(Expr),
}

/// How a frame's offsets count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameUnits {
    Rows,
    /// ORDER BY peers are one; offsets are values.
    Range,
    /// Offsets count peer groups.
    Groups,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub units: FrameUnits,
    pub start: FrameBound,
    pub end: FrameBound,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowCall {
    pub func: WindowFunc,
    pub args: Vec<Expr>,
    pub partition: Vec<Expr>,
    pub order: Vec<SortKey>,
    pub frame: Frame,
}

/// Lower and upper bounds of one index column, each optional.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRange {
    pub column: usize,
    pub low: Option<Expr>,
    pub high: Option<Expr>,
}

/// A bound RETURNING list: expressions over the table's row, and the
/// output columns.
pub type Returning = (Vec<Expr>, Vec<(String, DataType)>);

/// A bound query: its plan and its output columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub plan: Plan,
    pub columns: Vec<(String, DataType)>,
    /// Columns that are untyped literals (`SELECT NULL`, `SELECT 'a'`),
    /// whose type a UNION partner decides.
    pub unknown: Vec<bool>,
    /// Where each output column comes from (shorter, even empty, when the
    /// rest come from nowhere): see `ColumnOrigin`.
    pub origins: Vec<ColumnOrigin>,
}

impl Query {
    /// Output column `i`'s origin.
    pub fn origin(&self, i: usize) -> ColumnOrigin {
        self.origins.get(i).copied().flatten()
    }
}

/// The table column an output column reads, as RowDescription reports it
/// (PostgreSQL's `resorigtbl`/`resorigcol`): the relation's oid (as
/// `pg_class.oid` shows it) and the column's `attnum`. Set for a plain
/// column reference of a table, view or system relation, and carried
/// through subqueries and CTEs; a view's column is the view's own, as in
/// PostgreSQL. None for expressions, set operations and VALUES.
pub type ColumnOrigin = Option<(u32, i16)>;

/// The oid a relation's catalog id shows as in `pg_class.oid`, for a
/// `ColumnOrigin` (0 beyond the oid range, which no id reaches).
pub fn relation_oid(id: u64) -> u32 {
    i32::try_from(id).map_or(0, |v| v as u32)
}

/// The origin of the `k`th (0-based) column of relation `id`.
pub fn attribute_origin(id: u64, k: usize) -> ColumnOrigin {
    let attnum = i16::try_from(k + 1).ok()?;
    Some((relation_oid(id), attnum))
}
