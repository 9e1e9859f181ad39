//! EXPLAIN: the plan tree as text, one line per operator, in PostgreSQL's
//! indented style, each with an estimate of its rows (`rows=N`) and, for
//! EXPLAIN ANALYZE, the actual rows, loops and time.
//!
//! There are no statistics yet: a table's size is the span of its rowids
//! (`storage::estimate_rows`: two seeks), and operators scale their inputs by fixed selectivities
//! (a filter keeps a third, an equality on a non-unique index a tenth, a
//! hash join of n and m rows gives the larger, a GROUP BY a tenth). These
//! are rough; plans are chosen at run time by actual sizes, not by them.

use super::{JoinKind, Plan, SetOpKind};

pub fn explain(plan: &Plan, est: &Estimates) -> Vec<String> {
    estimated_lines(plan, est).into_iter().map(|(l, _)| l).collect()
}

/// The tree's lines with their estimates, each paired with its node.
fn estimated_lines(plan: &Plan, est: &Estimates) -> Vec<(String, usize)> {
    let mut lines = Vec::new();
    let mut nodes = Vec::new();
    collect(plan, 0, &mut lines, &mut nodes);
    lines
        .into_iter()
        .zip(nodes)
        .map(|(l, p)| match est.get(&p) {
            Some(r) => (format!("{l}  (rows={})", r.round().max(1.0) as u64), p),
            None => (l, p),
        })
        .collect()
}

/// Estimated rows per node (by address).
pub type Estimates = std::collections::HashMap<usize, f64>;

/// Estimates the rows of `plan` and of every node under it into `out`;
/// `table_rows` gives a table's size.
pub fn estimate(plan: &Plan, table_rows: &mut dyn FnMut(u64) -> f64, out: &mut Estimates) -> f64 {
    let kids: Vec<f64> = children(plan).into_iter().map(|c| estimate(c, table_rows, out)).collect();
    let first = kids.first().copied().unwrap_or(1.0);
    let r = match plan {
        Plan::Values { rows, .. } => rows.len() as f64,
        Plan::Series { .. } | Plan::SetFunction { .. } => 1000.0,
        Plan::System { .. } => 100.0,
        Plan::Scan { table } | Plan::ScanRowids { table } => table_rows(table.id),
        Plan::IndexScan { table, unique, columns, range, .. } => {
            let n = table_rows(table.id);
            if columns.is_empty() && range.is_none() {
                // Every entry, in index order.
                n
            } else if *unique && range.is_none() {
                1.0
            } else if range.is_some() && columns.is_empty() {
                n / 3.0
            } else {
                (n / 10.0).max(1.0)
            }
        }
        Plan::WorkTable { .. } => 100.0,
        Plan::CteScan { .. } => first,
        Plan::Filter { .. } => (first / 3.0).max(1.0),
        Plan::Project { .. } | Plan::Sort { .. } | Plan::Window { .. } => first,
        Plan::Limit { limit, .. } => {
            let n = match limit {
                Some(crate::plan::Expr::Const(v)) => v.as_i64(),
                Some(crate::plan::Expr::Cast { expr, .. }) => match expr.as_ref() {
                    crate::plan::Expr::Const(v) => v.as_i64(),
                    _ => None,
                },
                _ => None,
            };
            n.map_or(first, |l| first.min(l as f64))
        }
        Plan::Aggregate { group_by, sets, .. } => {
            if group_by.is_empty() {
                1.0
            } else {
                (first / 10.0).max(1.0) * sets.len().max(1) as f64
            }
        }
        Plan::Distinct { .. } | Plan::DistinctOn { .. } => (first / 2.0).max(1.0),
        Plan::MultiJoin { conds, .. } => {
            let equi = conds.iter().filter(|c| c.inputs.len() == 2).count();
            let largest = kids.iter().copied().fold(1.0, f64::max);
            if equi + 1 >= kids.len() { largest } else { kids.iter().product::<f64>().max(1.0) }
        }
        Plan::Join { .. } => kids.iter().copied().fold(1.0, f64::max),
        Plan::Lateral { .. } => first * kids.get(1).copied().unwrap_or(1.0),
        Plan::SetOp { .. } => kids.iter().sum(),
        Plan::RecursiveUnion { .. } => first * 10.0,
    };
    out.insert(plan as *const Plan as usize, r);
    r
}

/// EXPLAIN ANALYZE: the same tree, each line followed by the node's actual
/// rows (per execution, as PostgreSQL prints them), executions and time.
pub fn explain_analyze(
    plan: &Plan,
    est: &Estimates,
    stats: &std::collections::HashMap<usize, crate::exec::NodeStats>,
) -> Vec<String> {
    estimated_lines(plan, est)
        .into_iter()
        .map(|(l, p)| match stats.get(&p) {
            Some(s) => format!(
                "{l} (actual time={:.3} ms rows={} loops={})",
                s.time.as_secs_f64() * 1000.0 / s.loops.max(1) as f64,
                s.rows / s.loops.max(1),
                s.loops
            ),
            None => format!("{l}  (never executed)"),
        })
        .collect()
}

/// The lines of the tree paired with the address of the node each describes.
fn collect(plan: &Plan, depth: usize, lines: &mut Vec<String>, nodes: &mut Vec<usize>) {
    let mut all = Vec::new();
    node(plan, depth, &mut all);
    lines.extend(all.into_iter().take(1));
    nodes.push(plan as *const Plan as usize);
    for child in children(plan) {
        collect(child, depth + 1, lines, nodes);
    }
}

fn children(plan: &Plan) -> Vec<&Plan> {
    match plan {
        Plan::Values { .. }
        | Plan::Scan { .. }
        | Plan::ScanRowids { .. }
        | Plan::IndexScan { .. }
        | Plan::Series { .. }
        | Plan::SetFunction { .. }
        | Plan::System { .. }
        | Plan::WorkTable { .. } => vec![],
        Plan::Filter { input, .. }
        | Plan::Project { input, .. }
        | Plan::Aggregate { input, .. }
        | Plan::Sort { input, .. }
        | Plan::Limit { input, .. }
        | Plan::Distinct { input }
        | Plan::DistinctOn { input, .. }
        | Plan::Window { input, .. } => vec![input],
        Plan::MultiJoin { inputs, .. } => inputs.iter().map(|i| &i.plan).collect(),
        Plan::Join { left, right, .. }
        | Plan::SetOp { left, right, .. }
        | Plan::Lateral { left, right, .. } => vec![left, right],
        Plan::RecursiveUnion { anchor, recursive, .. } => vec![anchor, recursive],
        Plan::CteScan { input, .. } => vec![input],
    }
}

fn line(depth: usize, text: String, out: &mut Vec<String>) {
    if depth == 0 {
        out.push(text);
    } else {
        out.push(format!("{}->  {text}", "  ".repeat(depth * 3 - 2)));
    }
}

fn node(plan: &Plan, depth: usize, out: &mut Vec<String>) {
    match plan {
        Plan::Values { rows, .. } => line(depth, format!("Values ({} rows)", rows.len()), out),
        Plan::Series { .. } => line(depth, "Function Scan on generate_series".into(), out),
        Plan::SetFunction { func, .. } => {
            line(depth, format!("Function Scan on {}", func.name()), out)
        }
        Plan::WorkTable { .. } => line(depth, "WorkTable Scan".into(), out),
        Plan::CteScan { name, .. } => line(depth, format!("CTE Scan on {name}"), out),
        Plan::System { table, .. } => {
            line(depth, format!("Seq Scan on {}", crate::system::TABLES[*table].name), out)
        }
        Plan::Window { input, calls } => {
            line(depth, format!("WindowAgg ({} functions)", calls.len()), out);
            node(input, depth + 1, out);
        }
        Plan::RecursiveUnion { anchor, recursive, .. } => {
            line(depth, "Recursive Union".into(), out);
            node(anchor, depth + 1, out);
            node(recursive, depth + 1, out);
        }
        Plan::Scan { table } | Plan::ScanRowids { table } => {
            line(depth, format!("Seq Scan on {}", table.name), out)
        }
        Plan::IndexScan { table, index, unique, columns, keys, range, reverse, index_only } => {
            // An expression index's columns are key positions.
            let name = |c: usize| match table.expr_index(*index) {
                Some(x) => x.texts.get(c).cloned().unwrap_or_default(),
                None => table.columns[c].0.clone(),
            };
            let mut cols: Vec<String> = columns
                .iter()
                .zip(keys)
                .map(|(&c, k)| match super::bind::as_key_set(k) {
                    Some(_) => format!("{} = ANY (…)", name(c)),
                    None => format!("{} = …", name(c)),
                })
                .collect();
            if let Some(r) = range {
                cols.push(format!("{} in range", name(r.column)));
            }
            if cols.is_empty() {
                cols.push("every entry, in index order".into());
            }
            line(
                depth,
                format!(
                    "Index {}Scan{} on {} using {}{} ({})",
                    if *index_only { "Only " } else { "" },
                    if *reverse { " Backward" } else { "" },
                    table.name,
                    table.index_name(*index),
                    if *unique { " (unique)" } else { "" },
                    cols.join(", ")
                ),
                out,
            )
        }
        Plan::Filter { input, .. } => {
            line(depth, "Filter".into(), out);
            node(input, depth + 1, out);
        }
        Plan::Project { input, exprs } => {
            line(depth, format!("Project ({} columns)", exprs.len()), out);
            node(input, depth + 1, out);
        }
        Plan::MultiJoin { inputs, conds, .. } => {
            line(
                depth,
                format!(
                    "Join ({} inputs, {} conditions; hash joins on equalities, order at run time)",
                    inputs.len(),
                    conds.len()
                ),
                out,
            );
            for i in inputs {
                node(&i.plan, depth + 1, out);
            }
        }
        Plan::Lateral { left, right, kind, .. } => {
            let k = if *kind == JoinKind::Left { "Left" } else { "Inner" };
            line(depth, format!("Nested Loop {k} Join (lateral)"), out);
            node(left, depth + 1, out);
            node(right, depth + 1, out);
        }
        Plan::Join { left, right, kind, on } => {
            let k = match kind {
                JoinKind::Inner => "Inner",
                JoinKind::Left => "Left",
                JoinKind::Right => "Right",
                JoinKind::Full => "Full",
            };
            let lw = crate::exec::plan_width(left, None);
            let method = crate::exec::binary_join::method_name(on, lw);
            line(depth, format!("{method} {k} Join"), out);
            node(left, depth + 1, out);
            node(right, depth + 1, out);
        }
        Plan::Aggregate { input, group_by, aggs, sets } => {
            let what = if !sets.is_empty() {
                format!("MixedAggregate ({} grouping sets)", sets.len())
            } else if group_by.is_empty() {
                "Aggregate".to_string()
            } else {
                "HashAggregate".to_string()
            };
            line(
                depth,
                format!("{what} ({} keys, {} aggregates)", group_by.len(), aggs.len()),
                out,
            );
            node(input, depth + 1, out);
        }
        Plan::Sort { input, keys } => {
            line(depth, format!("Sort ({} keys)", keys.len()), out);
            node(input, depth + 1, out);
        }
        Plan::Limit { input, .. } => {
            line(depth, "Limit".into(), out);
            node(input, depth + 1, out);
        }
        Plan::Distinct { input } => {
            line(depth, "HashAggregate (distinct)".into(), out);
            node(input, depth + 1, out);
        }
        Plan::DistinctOn { input, .. } => {
            line(depth, "Unique (distinct on)".into(), out);
            node(input, depth + 1, out);
        }
        Plan::SetOp { left, right, kind, all } => {
            let k = match kind {
                SetOpKind::Union => "Union",
                SetOpKind::Intersect => "Intersect",
                SetOpKind::Except => "Except",
            };
            line(depth, format!("{k}{}", if *all { " All" } else { "" }), out);
            node(left, depth + 1, out);
            node(right, depth + 1, out);
        }
    }
}
