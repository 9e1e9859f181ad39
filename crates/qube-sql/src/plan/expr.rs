//! Bound expressions.

use qube_common::types::DataType;

use super::Plan;
use crate::types::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Concat,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq)
    }
}

/// Scalar functions, by PostgreSQL name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Abs,
    Coalesce,
    NullIf,
    Greatest,
    Least,
    Lower,
    Upper,
    Length,
    Substr,
    Trim,
    Ltrim,
    Rtrim,
    Replace,
    Concat,
    Round,
    Trunc,
    Ceil,
    Floor,
    Sqrt,
    Power,
    Sign,
    Mod,
    Left,
    Right,
    Repeat,
    Reverse,
    Position,
    StrposFn,
    Random,
    /// `~` and `~*` (the second argument is the pattern).
    RegexMatch,
    RegexIMatch,
    Nextval,
    Currval,
    Setval,
    Lastval,
    // Date/time (exec/datetime.rs).
    Now,
    StatementTimestamp,
    ClockTimestamp,
    CurrentDate,
    LocalTime,
    LocalTimestamp,
    /// extract(field FROM x): numeric; date_part('field', x): double.
    Extract,
    DatePart,
    DateTrunc,
    Age,
    MakeDate,
    MakeTime,
    MakeTimestamp,
    MakeTimestampTz,
    MakeInterval,
    /// to_timestamp(double precision).
    ToTimestampEpoch,
    /// to_timestamp(text, format).
    ToTimestampFmt,
    ToDate,
    ToChar,
    JustifyDays,
    JustifyHours,
    JustifyInterval,
    IsFinite,
    /// `x AT TIME ZONE zone` (args: x, zone).
    AtTimeZone,
    DateBin,
    /// Rounds a time value to `p` fractional digits (`timestamp(p)` casts).
    RoundTime,
    // uuid, json/jsonb and arrays: evaluated by exec::typefuncs.
    GenRandomUuid,
    /// `->` (key or index), `->>`, `#>`, `#>>` on json and jsonb.
    JsonGet,
    JsonGetText,
    JsonPath,
    JsonPathText,
    /// `@>` on jsonb or arrays (`<@` swaps the arguments).
    Contains,
    /// `?`, `?|`, `?&`.
    JsonExists,
    JsonExistsAny,
    JsonExistsAll,
    JsonbConcat,
    /// jsonb `-` key, index or text[] of keys.
    JsonbDelete,
    /// jsonb `#-` text[] path.
    JsonbDeletePath,
    JsonTypeof,
    JsonArrayLength,
    JsonbBuildObject,
    JsonBuildObject,
    JsonbBuildArray,
    JsonBuildArray,
    ToJsonb,
    ToJson,
    JsonbSet,
    /// jsonb_insert(target, path, new [, insert_after]).
    JsonbInsert,
    /// json_object / jsonb_object from one text[] of alternating keys and
    /// values, or from a text[] of keys and one of values.
    JsonObject,
    JsonbObject,
    JsonbPretty,
    JsonbStripNulls,
    /// row_to_json(t): arguments are (name, value) pairs.
    RowToJson,
    /// `ARRAY[…]`.
    ArrayCtor,
    /// `ROW(…)`: a record of its arguments.
    RowCtor,
    /// `a[i]` (1-based; NULL out of range) and `a[lo:hi]`.
    Subscript,
    Slice,
    /// `x op ANY/ALL (array)`.
    ArrayAny {
        op: BinOp,
        all: bool,
    },
    /// `&&`.
    Overlap,
    ArrayCat,
    ArrayAppend,
    ArrayPrepend,
    ArrayLength,
    /// array_lower / array_upper (lower bound is always 1).
    ArrayLower,
    ArrayUpper,
    Cardinality,
    ArrayPosition,
    ArrayRemove,
    ArrayToString,
    StringToArray,
    /// A set-returning function in the select list: expanded by the
    /// Project above it (one row per element), an error anywhere else.
    SetReturning(super::SetFunc),
    /// `(record).field`: field `k` of a record (NULL for a NULL record).
    RecordField(usize),
    /// `(s1, e1) OVERLAPS (s2, e2)` (args: s1, e1, s2, e2).
    Overlaps,
    // String, math and system functions (exec::morefuncs).
    SplitPart,
    /// Integer `&`, `|`, `#` (xor), `<<`, `>>`, and prefix `~`, in the
    /// width of their (first) argument.
    BitAnd,
    BitOr,
    BitXor,
    ShiftLeft,
    ShiftRight,
    BitNot,
    Lpad,
    Rpad,
    ConcatWs,
    Initcap,
    /// like_escape(pattern, escape): the pattern with `\` as its escape.
    LikeEscape,
    /// regexp_replace(s, pattern, replacement, start, n, flags); n
    /// `i32::MIN`: not given.
    RegexpReplace,
    RegexpSplitToArray,
    /// regexp_match(s, pattern, flags).
    RegexpMatch,
    /// regexp_like(s, pattern, flags).
    RegexpLike,
    /// regexp_count(s, pattern, start, flags).
    RegexpCount,
    /// regexp_instr(s, pattern, start, n, endoption, flags, subexpr).
    RegexpInstr,
    /// regexp_substr(s, pattern, start, n, flags, subexpr).
    RegexpSubstr,
    Md5,
    Ascii,
    Chr,
    Translate,
    StartsWith,
    Format,
    ToHex,
    OctetLength,
    BitLength,
    /// One-argument double precision math (ln, log10, exp, trigonometry…).
    Math1(u8),
    LogBase,
    Atan2,
    Div,
    Gcd,
    Lcm,
    Factorial,
    WidthBucket,
    QuoteIdent,
    QuoteLiteral,
    QuoteNullable,
    Encode,
    Decode,
    NumNulls,
    NumNonnulls,
    Overlay,
    /// Read the session (evaluated with the execution context).
    CurrentDatabase,
    CurrentSchema,
    CurrentUser,
    /// A catalog function (see `system`), evaluated with the execution
    /// context.
    Sys(crate::system::SysFunc),
}

impl Func {
    /// Whether `exec::morefuncs` evaluates this function.
    pub fn is_more(self) -> bool {
        use Func::*;
        matches!(
            self,
            SplitPart
                | BitAnd
                | BitOr
                | BitXor
                | ShiftLeft
                | ShiftRight
                | BitNot
                | Lpad
                | Rpad
                | ConcatWs
                | Initcap
                | LikeEscape
                | RegexpReplace
                | RegexpSplitToArray
                | RegexpMatch
                | RegexpLike
                | RegexpCount
                | RegexpInstr
                | RegexpSubstr
                | Md5
                | Ascii
                | Chr
                | Translate
                | StartsWith
                | Format
                | ToHex
                | OctetLength
                | BitLength
                | Math1(_)
                | LogBase
                | Atan2
                | Div
                | Gcd
                | Lcm
                | Factorial
                | WidthBucket
                | QuoteIdent
                | QuoteLiteral
                | QuoteNullable
                | Encode
                | Decode
                | NumNulls
                | NumNonnulls
                | Overlay
        )
    }

    /// Whether `exec::datetime` evaluates this function.
    pub fn is_datetime(self) -> bool {
        matches!(
            self,
            Func::Now
                | Func::StatementTimestamp
                | Func::ClockTimestamp
                | Func::CurrentDate
                | Func::LocalTime
                | Func::LocalTimestamp
                | Func::Extract
                | Func::DatePart
                | Func::DateTrunc
                | Func::Age
                | Func::MakeDate
                | Func::MakeTime
                | Func::MakeTimestamp
                | Func::MakeTimestampTz
                | Func::MakeInterval
                | Func::ToTimestampEpoch
                | Func::ToTimestampFmt
                | Func::ToDate
                | Func::ToChar
                | Func::JustifyDays
                | Func::JustifyHours
                | Func::JustifyInterval
                | Func::IsFinite
                | Func::AtTimeZone
                | Func::DateBin
                | Func::RoundTime
                | Func::Overlaps
        )
    }

    /// Whether `exec::typefuncs` evaluates this function.
    pub fn is_typed(self) -> bool {
        use Func::*;
        matches!(
            self,
            GenRandomUuid
                | JsonGet
                | JsonGetText
                | JsonPath
                | JsonPathText
                | Contains
                | JsonExists
                | JsonExistsAny
                | JsonExistsAll
                | JsonbConcat
                | JsonbDelete
                | JsonbDeletePath
                | JsonTypeof
                | JsonArrayLength
                | JsonbBuildObject
                | JsonBuildObject
                | JsonbBuildArray
                | JsonBuildArray
                | ToJsonb
                | ToJson
                | JsonbSet
                | JsonbInsert
                | JsonObject
                | JsonbObject
                | JsonbPretty
                | JsonbStripNulls
                | RowToJson
                | ArrayCtor
                | RowCtor
                | Subscript
                | Slice
                | ArrayAny { .. }
                | Overlap
                | ArrayCat
                | ArrayAppend
                | ArrayPrepend
                | ArrayLength
                | ArrayLower
                | ArrayUpper
                | Cardinality
                | ArrayPosition
                | ArrayRemove
                | ArrayToString
                | StringToArray
                | SetReturning(_)
                | RecordField(_)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    BoolAnd,
    BoolOr,
    StringAgg,
    StddevSamp,
    StddevPop,
    VarSamp,
    VarPop,
    /// Ordered-set aggregates: `percentile_cont(f) WITHIN GROUP (ORDER BY
    /// x)` (arg x, extra f), `percentile_disc`, `mode()`.
    PercentileCont,
    PercentileDisc,
    Mode,
    // Collecting aggregates (exec: Acc::List / Acc::Pairs); NULLs are kept.
    ArrayAgg,
    JsonAgg,
    JsonbAgg,
    /// `extra` is the value; the argument is the key.
    JsonObjectAgg,
    JsonbObjectAgg,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggCall {
    pub func: AggFunc,
    /// The argument (none for `count(*)`); `string_agg` also has `extra`
    /// (the delimiter).
    pub arg: Option<Expr>,
    pub extra: Option<Expr>,
    pub distinct: bool,
    pub filter: Option<Expr>,
    /// ORDER BY inside the call (or WITHIN GROUP): the values are fed to
    /// the aggregate in this order.
    pub order_by: Vec<super::SortKey>,
    /// The result type.
    pub data_type: DataType,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Const(Value),
    Column(usize),
    /// A column of an enclosing query's current row: `depth` 1 is the
    /// query immediately around this one.
    Outer {
        depth: usize,
        index: usize,
    },
    Param(usize),
    Unary {
        op: UnOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// IS [NOT] TRUE / FALSE.
    IsBool {
        expr: Box<Expr>,
        value: bool,
        negated: bool,
    },
    IsDistinct {
        left: Box<Expr>,
        right: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        else_: Option<Box<Expr>>,
    },
    Cast {
        expr: Box<Expr>,
        to: DataType,
    },
    Func {
        func: Func,
        args: Vec<Expr>,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
    /// A subquery's single value (NULL if it returns no row; 21000 if more).
    ScalarSubquery {
        plan: Box<Plan>,
        correlated: bool,
    },
    Exists {
        plan: Box<Plan>,
        negated: bool,
        correlated: bool,
    },
    /// `ARRAY(subquery)`: the subquery's single column as an array.
    ArraySubquery {
        plan: Box<Plan>,
        correlated: bool,
    },
    InSubquery {
        expr: Box<Expr>,
        plan: Box<Plan>,
        negated: bool,
        correlated: bool,
    },
    /// `expr op ANY/ALL (subquery)`; `single`: `expr op (subquery)`, the
    /// subquery's one row (none: NULL; more: 21000). An `expr` that is a
    /// row constructor (`Func::RowCtor`) is compared with each of the
    /// subquery's rows as a whole, as PostgreSQL compares rows.
    Quantified {
        expr: Box<Expr>,
        op: BinOp,
        all: bool,
        single: bool,
        plan: Box<Plan>,
        correlated: bool,
    },
}

impl Expr {
    /// The operands of this expression's top-level AND chain, left to
    /// right (the expression itself if it is not an AND); iterative, so a
    /// long chain cannot overflow the stack.
    pub fn conjuncts(&self) -> Vec<&Expr> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::Binary { op: BinOp::And, left, right } => {
                    stack.push(right);
                    stack.push(left);
                }
                other => out.push(other),
            }
        }
        out
    }

    pub fn boxed(self) -> Box<Expr> {
        Box::new(self)
    }

    /// Whether the expression reads the current row's columns at all.
    pub fn columns_used(&self, out: &mut Vec<usize>) {
        self.walk(&mut |e| {
            if let Expr::Column(i) = e {
                out.push(*i);
            }
        });
    }

    /// Whether a subquery appears in the expression (its outer references
    /// read rows beyond the expression's own).
    pub fn has_subquery(&self) -> bool {
        let mut sub = false;
        self.walk(&mut |x| sub |= x.is_subquery());
        sub
    }

    /// Whether this node itself is a subquery (not looking inside).
    pub fn is_subquery(&self) -> bool {
        matches!(
            self,
            Expr::ScalarSubquery { .. }
                | Expr::Exists { .. }
                | Expr::ArraySubquery { .. }
                | Expr::InSubquery { .. }
                | Expr::Quantified { .. }
        )
    }

    /// Visits every node of this expression (not inside subqueries).
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Const(_) | Expr::Column(_) | Expr::Outer { .. } | Expr::Param(_) => {}
            Expr::ScalarSubquery { .. } | Expr::Exists { .. } | Expr::ArraySubquery { .. } => {}
            Expr::Unary { expr, .. }
            | Expr::IsNull { expr, .. }
            | Expr::IsBool { expr, .. }
            | Expr::Cast { expr, .. } => expr.walk(f),
            Expr::InSubquery { expr, .. } | Expr::Quantified { expr, .. } => expr.walk(f),
            Expr::Binary { left, right, .. } | Expr::IsDistinct { left, right, .. } => {
                left.walk(f);
                right.walk(f);
            }
            Expr::InList { expr, list, .. } => {
                expr.walk(f);
                list.iter().for_each(|e| e.walk(f));
            }
            Expr::Between { expr, low, high, .. } => {
                expr.walk(f);
                low.walk(f);
                high.walk(f);
            }
            Expr::Case { operand, whens, else_ } => {
                if let Some(o) = operand {
                    o.walk(f);
                }
                for (w, t) in whens {
                    w.walk(f);
                    t.walk(f);
                }
                if let Some(e) = else_ {
                    e.walk(f);
                }
            }
            Expr::Func { args, .. } => args.iter().for_each(|e| e.walk(f)),
            Expr::Like { expr, pattern, .. } => {
                expr.walk(f);
                pattern.walk(f);
            }
        }
    }

    /// Rewrites every `Column(i)` to `Column(map(i))`.
    pub fn remap_columns(&mut self, map: &dyn Fn(usize) -> usize) {
        self.walk_mut(&mut |e| {
            if let Expr::Column(i) = e {
                *i = map(*i);
            }
        });
    }

    pub fn walk_mut(&mut self, f: &mut dyn FnMut(&mut Expr)) {
        f(self);
        match self {
            Expr::Const(_) | Expr::Column(_) | Expr::Outer { .. } | Expr::Param(_) => {}
            Expr::ScalarSubquery { .. } | Expr::Exists { .. } | Expr::ArraySubquery { .. } => {}
            Expr::Unary { expr, .. }
            | Expr::IsNull { expr, .. }
            | Expr::IsBool { expr, .. }
            | Expr::Cast { expr, .. } => expr.walk_mut(f),
            Expr::InSubquery { expr, .. } | Expr::Quantified { expr, .. } => expr.walk_mut(f),
            Expr::Binary { left, right, .. } | Expr::IsDistinct { left, right, .. } => {
                left.walk_mut(f);
                right.walk_mut(f);
            }
            Expr::InList { expr, list, .. } => {
                expr.walk_mut(f);
                list.iter_mut().for_each(|e| e.walk_mut(f));
            }
            Expr::Between { expr, low, high, .. } => {
                expr.walk_mut(f);
                low.walk_mut(f);
                high.walk_mut(f);
            }
            Expr::Case { operand, whens, else_ } => {
                if let Some(o) = operand {
                    o.walk_mut(f);
                }
                for (w, t) in whens {
                    w.walk_mut(f);
                    t.walk_mut(f);
                }
                if let Some(e) = else_ {
                    e.walk_mut(f);
                }
            }
            Expr::Func { args, .. } => args.iter_mut().for_each(|e| e.walk_mut(f)),
            Expr::Like { expr, pattern, .. } => {
                expr.walk_mut(f);
                pattern.walk_mut(f);
            }
        }
    }
}
