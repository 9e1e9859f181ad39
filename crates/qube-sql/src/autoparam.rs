//! Statements sent as text that differ only in their numbers share one
//! parsed statement and one bound plan (`Session::prepare_simple`, used by
//! the wire protocol's simple query).
//!
//! pgbench's simple protocol, and any client that writes values into the
//! text, sends `SELECT abalance FROM pgbench_accounts WHERE aid = 48213`
//! with a new number each time; parsing and binding it again cost more
//! than running it. So:
//!
//! 1. `scan` reads the text once, byte by byte: it finds the numeric
//!    literals and builds the text's *key*, the text with each number
//!    replaced by a class marker (`\u{1}i` fits int4, `\u{1}l` int8,
//!    `\u{1}n` numeric, the types PostgreSQL and our binder give such a
//!    literal). Strings, quoted names and comments stay in the key as
//!    they are. Texts the scanner does not fully understand (dollar
//!    quotes, `$n` parameters, backslashes, `E'…'`-style prefixed strings,
//!    numbers glued to names) are not keyed at all and take the ordinary
//!    path.
//! 2. On a miss the text is parsed as usual. If it is one SELECT, INSERT,
//!    UPDATE or DELETE, `parameterize` replaces the numbers found in
//!    *value positions* — operands of operators, BETWEEN bounds and IN
//!    lists in WHERE, HAVING and JOIN … ON conditions, UPDATE's SET values
//!    and the rows of VALUES — by `CAST($k AS <class>)`, which binds and
//!    computes exactly as the literal would. A number under unary minus
//!    there (`abalance + -2637`, as pgbench writes a negative value) is
//!    one too, with the negative value: the binder folds `-literal` into
//!    one constant, whose class is that of the negative text (`-2147483648`
//!    is an int4, as in PostgreSQL), so the entry remembers that class and
//!    a later text whose negative number has another class is a miss.
//!    Numbers anywhere else (ORDER BY 1, LIMIT 10, type modifiers, function
//!    arguments) stay literal, and the entry remembers their text: a later
//!    text with the same key reuses the entry only if those numbers are
//!    the same.
//! 3. On a hit nothing is parsed: the entry's statement runs with the
//!    text's numbers as parameter values, under the entry's prepared id,
//!    so its bound plan (the session's plan cache) is reused too.
//!
//! Errors keep their meaning: the values are the literal's own type, and
//! a statement that fails reports positions against the text that was
//! sent (names are searched in it, as for any statement).

use sqlparser::ast;

/// Texts longer than this are not keyed.
pub const MAX_TEXT: usize = 8 * 1024;

/// What `scan` found in a text.
pub struct Scan {
    /// The text with its numbers replaced by class markers.
    pub key: String,
    pub numbers: Vec<Number>,
    /// Whether the text holds a string literal (`'…'`).
    pub strings: bool,
}

/// One numeric literal of the text.
pub struct Number {
    /// Byte range in the text.
    pub start: usize,
    pub end: usize,
    pub class: Class,
}

impl Scan {
    /// A hash of the key: the same for texts that differ only in their
    /// numbers (the wire protocol remembers per shape whether a statement
    /// ran short). Multiply-rotate over 8-byte words, as the executor's
    /// `FastHasher`.
    pub fn shape(&self) -> u64 {
        use std::hash::Hasher;
        let mut h = crate::exec::FastHasher::default();
        h.write(self.key.as_bytes());
        h.finish()
    }
}

/// Line and column (1-based, in characters) of each number's first
/// character, as the parser's spans give them: needed only when a text
/// is parsed (`parameterize`), so `scan` leaves them out.
fn positions(sql: &str, numbers: &[Number]) -> Vec<(u64, u64)> {
    let (mut line, mut column) = (1u64, 1u64);
    let mut pos = 0;
    let mut out = Vec::with_capacity(numbers.len());
    for n in numbers {
        for &c in &sql.as_bytes()[pos..n.start] {
            if c == b'\n' {
                line += 1;
                column = 1;
            } else if c & 0xC0 != 0x80 {
                column += 1;
            }
        }
        pos = n.start;
        out.push((line, column));
    }
    out
}

/// The type a numeric literal has (the binder's `number`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Int4,
    Int8,
    Numeric,
}

impl Class {
    pub fn of(text: &str) -> Class {
        if !text.contains(['.', 'e', 'E']) {
            if text.parse::<i32>().is_ok() {
                return Class::Int4;
            }
            if text.parse::<i64>().is_ok() {
                return Class::Int8;
            }
        }
        Class::Numeric
    }

    fn marker(self) -> &'static str {
        match self {
            Class::Int4 => "\u{1}i",
            Class::Int8 => "\u{1}l",
            Class::Numeric => "\u{1}n",
        }
    }

    fn data_type(self) -> ast::DataType {
        match self {
            Class::Int4 => ast::DataType::Integer(None),
            Class::Int8 => ast::DataType::BigInt(None),
            Class::Numeric => ast::DataType::Numeric(ast::ExactNumberInfo::None),
        }
    }
}

/// Bytes that continue a name or number: ASCII letters and digits, `_`,
/// and every byte of a multi-byte character (a table: the scanner asks
/// for every byte of the text).
static IDENT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        i += 1;
    }
    t
};

fn ident_byte(b: u8) -> bool {
    IDENT[usize::from(b)]
}

/// Where the string or quoted name opening at `b[start]` ends (just past
/// its closing quote; a doubled quote is one quote inside), None if open.
fn quoted_end(b: &[u8], start: usize) -> Option<usize> {
    let q = b[start];
    let mut i = start + 1;
    loop {
        match b.get(i) {
            None => return None,
            Some(&c) if c == q && b.get(i + 1) == Some(&q) => i += 2,
            Some(&c) if c == q => return Some(i + 1),
            Some(_) => i += 1,
        }
    }
}

/// Scans `sql` (see the module doc); None if it is not to be keyed.
pub fn scan(sql: &str) -> Option<Scan> {
    let b = sql.as_bytes();
    if b.len() > MAX_TEXT {
        return None;
    }
    let mut key = String::with_capacity(b.len());
    let mut numbers = Vec::new();
    let mut strings = false;
    let mut i = 0;
    // Where the text copied verbatim into the key starts.
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'$' | b'\\' => return None,
            b'\'' | b'"' => {
                if c == b'\'' && i > 0 && ident_byte(b[i - 1]) {
                    // E'…', B'…', X'…', U&'…' and the like.
                    return None;
                }
                strings |= c == b'\'';
                i = quoted_end(b, i)?;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                loop {
                    match (b.get(i), b.get(i + 1)) {
                        (None, _) => return None,
                        (Some(b'/'), Some(b'*')) => {
                            depth += 1;
                            i += 2;
                        }
                        (Some(b'*'), Some(b'/')) => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => i += 1,
                    }
                }
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && !(i > 0 && (ident_byte(b[i - 1]) || b[i - 1] == b'"')) =>
            {
                // `.5`: leave such texts to the ordinary path.
                return None;
            }
            b'0'..=b'9' if i == 0 || !ident_byte(b[i - 1]) => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if b.get(i) == Some(&b'.') && b.get(i + 1).is_none_or(|&c| c != b'.') {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if matches!(b.get(i), Some(b'e' | b'E')) {
                    let mut j = i + 1;
                    if matches!(b.get(j), Some(b'+' | b'-')) {
                        j += 1;
                    }
                    if b.get(j).is_some_and(u8::is_ascii_digit) {
                        i = j;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                }
                if b.get(i).is_some_and(|&c| ident_byte(c) || c == b'.') {
                    // 1abc, 1_000, 0x1F, 1.2.3: not ours to read.
                    return None;
                }
                let class = Class::of(&sql[start..i]);
                key.push_str(&sql[copied..start]);
                key.push_str(class.marker());
                copied = i;
                numbers.push(Number { start, end: i, class });
            }
            _ if ident_byte(c) => {
                while i < b.len() && ident_byte(b[i]) {
                    i += 1;
                }
                if b.get(i) == Some(&b'\'') {
                    return None;
                }
            }
            _ => i += 1,
        }
    }
    if numbers.is_empty() {
        return None;
    }
    key.push_str(&sql[copied..]);
    Some(Scan { key, numbers, strings })
}

/// Replaces the numbers of `stmt` in value positions by parameters (see
/// the module doc). Returns, for each of `numbers` (the text's, in order),
/// its parameter's index if it became one.
/// Which numbers of the text became parameters (`parameterize`).
pub struct Params {
    /// For each number of the text: its parameter, or None if it stayed
    /// literal.
    pub params: Vec<Option<usize>>,
    /// For each number: the class of its negative value if it became a
    /// parameter under unary minus (the parameter's value is then `-N`).
    pub negated: Vec<Option<Class>>,
}

pub fn parameterize(stmt: &mut ast::Statement, sql: &str, numbers: &[Number]) -> Params {
    let mut w = Walker {
        numbers,
        at: positions(sql, numbers),
        params: vec![None; numbers.len()],
        negated: vec![None; numbers.len()],
        next: 0,
    };
    match stmt {
        ast::Statement::Query(q) => w.query(q),
        ast::Statement::Insert(ins) => {
            if let Some(q) = ins.source.as_deref_mut() {
                w.query(q);
            }
        }
        ast::Statement::Update(u) => {
            for a in &mut u.assignments {
                w.expr(&mut a.value);
            }
            if let Some(e) = u.selection.as_mut() {
                w.expr(e);
            }
        }
        ast::Statement::Delete(d) => {
            if let Some(e) = d.selection.as_mut() {
                w.expr(e);
            }
        }
        _ => {}
    }
    Params { params: w.params, negated: w.negated }
}

struct Walker<'a> {
    numbers: &'a [Number],
    /// Each number's line and column (`positions`).
    at: Vec<(u64, u64)>,
    params: Vec<Option<usize>>,
    negated: Vec<Option<Class>>,
    next: usize,
}

impl Walker<'_> {
    fn query(&mut self, q: &mut ast::Query) {
        if q.with.is_some() {
            return;
        }
        self.set_expr(&mut q.body);
    }

    fn set_expr(&mut self, s: &mut ast::SetExpr) {
        match s {
            ast::SetExpr::Select(sel) => {
                for t in &mut sel.from {
                    for j in &mut t.joins {
                        if let Some(ast::JoinConstraint::On(e)) =
                            join_constraint(&mut j.join_operator)
                        {
                            self.expr(e);
                        }
                    }
                }
                if let Some(e) = sel.selection.as_mut() {
                    self.expr(e);
                }
                if let Some(e) = sel.having.as_mut() {
                    self.expr(e);
                }
            }
            ast::SetExpr::Values(v) => {
                for row in &mut v.rows {
                    for e in &mut row.content {
                        self.expr(e);
                    }
                }
            }
            ast::SetExpr::Query(q) => self.query(q),
            ast::SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            _ => {}
        }
    }

    fn expr(&mut self, e: &mut ast::Expr) {
        use ast::Expr as E;
        match e {
            E::Value(v) => {
                if let ast::Value::Number(..) = v.value {
                    self.number(e);
                }
            }
            E::BinaryOp { left, right, .. } => {
                self.expr(left);
                self.expr(right);
            }
            E::Nested(inner) => self.expr(inner),
            E::UnaryOp { op: ast::UnaryOperator::Not, expr } => self.expr(expr),
            E::UnaryOp { op: ast::UnaryOperator::Minus, expr } => {
                if let E::Value(v) = expr.as_ref()
                    && let ast::Value::Number(..) = v.value
                {
                    self.negative_number(e);
                }
            }
            E::Between { expr, low, high, .. } => {
                self.expr(expr);
                self.expr(low);
                self.expr(high);
            }
            E::In { expr, target: ast::InTarget::List(list), .. } => {
                self.expr(expr);
                for e in list {
                    self.expr(e);
                }
            }
            E::IsDistinctFrom(a, b) | E::IsNotDistinctFrom(a, b) => {
                self.expr(a);
                self.expr(b);
            }
            _ => {}
        }
    }

    /// `e` is a number literal: a parameter, if the scanner saw it.
    fn number(&mut self, e: &mut ast::Expr) {
        let ast::Expr::Value(v) = e else { return };
        let Some(i) = self.seen(v) else { return };
        let class = self.numbers[i].class;
        self.replace(e, i, class);
    }

    /// `e` is `-literal`: a parameter of the negative value, if the
    /// scanner saw the number, of the class the binder's folding gives it.
    fn negative_number(&mut self, e: &mut ast::Expr) {
        let ast::Expr::UnaryOp { expr, .. } = e else { return };
        let ast::Expr::Value(v) = expr.as_ref() else { return };
        let ast::Value::Number(text, _) = &v.value else { return };
        let class = Class::of(&format!("-{text}"));
        let Some(i) = self.seen(v) else { return };
        self.negated[i] = Some(class);
        self.replace(e, i, class);
    }

    /// The index of the scanner's number at `v`, if it is not a
    /// parameter yet.
    fn seen(&self, v: &ast::ValueWithSpan) -> Option<usize> {
        let start = v.span.start;
        let i = self.at.iter().position(|&at| at == (start.line, start.column))?;
        self.params[i].is_none().then_some(i)
    }

    /// Replaces `e` by the next parameter, for number `i`.
    fn replace(&mut self, e: &mut ast::Expr, i: usize, class: Class) {
        let k = self.next;
        self.next += 1;
        self.params[i] = Some(k);
        *e = ast::Expr::Cast {
            kind: ast::CastKind::Cast,
            expr: Box::new(ast::Expr::value(ast::Value::Placeholder(format!("${}", k + 1)))),
            data_type: class.data_type(),
            format: None,
        };
    }
}

fn join_constraint(op: &mut ast::JoinOperator) -> Option<&mut ast::JoinConstraint> {
    use ast::JoinOperator as J;
    match op {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sql: &str) -> Option<String> {
        scan(sql).map(|s| s.key)
    }

    #[test]
    fn numbers_are_masked_by_class_and_the_rest_kept() {
        assert_eq!(
            key("SELECT a FROM t1 WHERE id = 42 AND x > 3.5").as_deref(),
            Some("SELECT a FROM t1 WHERE id = \u{1}i AND x > \u{1}n")
        );
        assert_eq!(key("SELECT 1"), key("SELECT 2"));
        assert_ne!(key("SELECT 1"), key("SELECT 3000000000"));
        assert_ne!(key("SELECT 1 WHERE 'a1' = '2'"), key("SELECT 1 WHERE 'a1' = '3'"));
        assert_eq!(
            key("SELECT \"col 7\", 8 -- 9\n/* 10 /* 11 */ */").as_deref(),
            Some("SELECT \"col 7\", \u{1}i -- 9\n/* 10 /* 11 */ */")
        );
        let sql = "SELECT\n  x = 12,\n y = 1e5";
        let s = scan(sql).unwrap();
        let classes: Vec<_> = s.numbers.iter().map(|n| n.class).collect();
        assert_eq!(classes, [Class::Int4, Class::Numeric]);
        assert_eq!(positions(sql, &s.numbers), [(2, 7), (3, 6)]);
        // Characters, not bytes: `é` is two bytes and one column.
        let sql = "SELECT 'é', 5";
        assert_eq!(positions(sql, &scan(sql).unwrap().numbers), [(1, 13)]);
    }

    #[test]
    fn texts_the_scanner_does_not_read_fully_are_not_keyed() {
        for sql in [
            "SELECT $1 + 1",
            "SELECT $$a$$, 1",
            "SELECT E'\\n', 1",
            "SELECT 1_000",
            "SELECT .5",
            "SELECT 0x1F",
            "SELECT 'open, 1",
            "SELECT 1 /* open",
            "SELECT 'no numbers'",
        ] {
            assert!(scan(sql).is_none(), "{sql}");
        }
    }

    fn params_of(sql: &str) -> (Vec<Option<usize>>, String) {
        let s = scan(sql).unwrap();
        let mut stmts = crate::session::parse(sql).unwrap();
        let p = parameterize(&mut stmts[0], sql, &s.numbers);
        (p.params, stmts[0].to_string())
    }

    #[test]
    fn negative_numbers_take_the_class_of_their_negative_text() {
        let s =
            scan("SELECT 1 FROM t WHERE a = -2147483648 AND b = -2147483649 AND c > -2.5").unwrap();
        let mut stmts = crate::session::parse(
            "SELECT 1 FROM t WHERE a = -2147483648 AND b = -2147483649 AND c > -2.5",
        )
        .unwrap();
        let p = parameterize(
            &mut stmts[0],
            "SELECT 1 FROM t WHERE a = -2147483648 AND b = -2147483649 AND c > -2.5",
            &s.numbers,
        );
        // `SELECT 1`: not a value position.
        assert_eq!(p.params, [None, Some(0), Some(1), Some(2)]);
        assert_eq!(p.negated, [None, Some(Class::Int4), Some(Class::Int8), Some(Class::Numeric)]);
        // The scanner's class is the unsigned text's.
        let classes: Vec<_> = s.numbers.iter().map(|n| n.class).collect();
        assert_eq!(classes, [Class::Int4, Class::Int8, Class::Int8, Class::Numeric]);
        let text = stmts[0].to_string();
        assert!(text.contains("a = CAST($1 AS INTEGER) AND b = CAST($2 AS BIGINT)"), "{text}");
    }

    #[test]
    fn only_numbers_in_value_positions_become_parameters() {
        let (p, text) =
            params_of("SELECT a, 1 FROM t WHERE id = 5 AND b IN (6, 7) ORDER BY 1 LIMIT 8");
        assert_eq!(p, [None, Some(0), Some(1), Some(2), None, None]);
        assert!(text.contains("id = CAST($1 AS INTEGER)"), "{text}");
        let (p, text) = params_of("UPDATE t SET v = v + 3 WHERE id = -4 AND w = 9");
        assert_eq!(p, [Some(0), Some(1), Some(2)]);
        assert!(text.contains("id = CAST($2 AS INTEGER)"), "{text}");
        // Under a minus that is not the number's own (`-(5)`, `- -6`), or
        // outside value positions, a number stays literal.
        let (p, _) = params_of("SELECT 1 FROM t WHERE a = -(5) AND b = - -6 AND c = abs(-7)");
        assert_eq!(p, [None, None, None, None]);
        let (p, _) = params_of("INSERT INTO t VALUES (1, 2.5, 3000000000, abs(4))");
        assert_eq!(p, [Some(0), Some(1), Some(2), None]);
        let (p, _) = params_of("DELETE FROM t WHERE id BETWEEN 1 AND 2");
        assert_eq!(p, [Some(0), Some(1)]);
        let (p, _) = params_of("SELECT * FROM t JOIN u ON u.id = t.id + 1 WHERE t.x = 2");
        assert_eq!(p, [Some(0), Some(1)]);
        let (p, _) = params_of("CREATE TABLE t (a varchar(10) DEFAULT 5)");
        assert_eq!(p, [None, None]);
    }
}
