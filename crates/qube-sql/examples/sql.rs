//! Runs SQL from the command line against an in-memory database:
//! `cargo run -p qube-sql --example sql -- "SELECT 1"`.
fn main() {
    let db = qube_sql::Database::memory().expect("open");
    let mut s = db.session().expect("session");
    for sql in std::env::args().skip(1) {
        match s.execute(&sql) {
            Ok(results) => {
                for r in results {
                    let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
                    if !names.is_empty() {
                        println!("{}", names.join(" | "));
                    }
                    for row in &r.rows {
                        let vals: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                        println!("{}", vals.join(" | "));
                    }
                    println!("({})", r.tag);
                }
            }
            Err(e) => println!("ERROR {}: {e}", e.sqlstate()),
        }
    }
}
