//! The `qubedb` binary, run as a user would.

mod check;
mod crash;
mod pgbench;
mod remote;
mod serve;
mod sql;

use std::process::Command;

/// Runs `qubedb ARGS`: exit code, stdout, stderr.
pub fn qubedb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qubedb")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
