//! EXPLAIN: the plan tree as text, one line per operator, in PostgreSQL's
//! indented style. There are no statistics yet, so no row estimates;
//! EXPLAIN ANALYZE is not built.

use super::{JoinKind, Plan, SetOpKind};

pub fn explain(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    node(plan, 0, &mut out);
    out
}

/// EXPLAIN ANALYZE: the same tree, each line followed by the node's actual
/// rows (per execution, as PostgreSQL prints them), executions and time.
pub fn explain_analyze(
    plan: &Plan,
    stats: &std::collections::HashMap<usize, crate::exec::NodeStats>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut nodes = Vec::new();
    collect(plan, 0, &mut lines, &mut nodes);
    lines
        .into_iter()
        .zip(nodes)
        .map(|(l, p)| match stats.get(&p) {
            Some(s) => format!(
                "{l}  (actual time={:.3} ms rows={} loops={})",
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
        Plan::IndexScan { table, index, unique, columns, range, reverse, .. } => {
            let mut cols: Vec<String> =
                columns.iter().map(|&c| format!("{} = …", table.columns[c].0)).collect();
            if let Some(r) = range {
                cols.push(format!("{} in range", table.columns[r.column].0));
            }
            if cols.is_empty() {
                cols.push("every entry, in index order".into());
            }
            line(
                depth,
                format!(
                    "Index Scan{} on {} using index {index}{} ({})",
                    if *reverse { " Backward" } else { "" },
                    table.name,
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
        Plan::Join { left, right, kind, .. } => {
            let k = match kind {
                JoinKind::Inner => "Inner",
                JoinKind::Left => "Left",
                JoinKind::Right => "Right",
                JoinKind::Full => "Full",
            };
            line(depth, format!("Nested Loop {k} Join"), out);
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
