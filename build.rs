//! Records the commit and build time for `ktsu version` (cli-and-ops.md §1.10):
//! `KTSU_BUILD_COMMIT`/`KTSU_BUILD_DATE` when set, else `git rev-parse --short HEAD` and now.

use std::process::Command;
use std::time::SystemTime;

fn main() {
    println!("cargo:rerun-if-env-changed=KTSU_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=KTSU_BUILD_DATE");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("KTSU_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".into());
    let built = std::env::var("KTSU_BUILD_DATE")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| humantime::format_rfc3339_micros(SystemTime::now()).to_string());
    println!("cargo:rustc-env=KTSU_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=KTSU_BUILD_DATE={built}");
}
