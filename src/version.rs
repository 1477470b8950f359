//! `ktsu version [--json]` (cli-and-ops.md §1.10).

use crate::exit;
use crate::output;
use clap::Args as ClapArgs;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Print `{"version","commit","built"}`.
    #[arg(long)]
    pub json: bool,
}

/// The short commit and build time recorded by build.rs (`unknown` when unavailable).
pub const COMMIT: &str = env!("KTSU_BUILD_COMMIT");
pub const BUILT: &str = env!("KTSU_BUILD_DATE");

pub fn run(args: &Args) -> u8 {
    let version = ktsu_shared::VERSION;
    if args.json {
        output::print_json(
            &serde_json::json!({"version": version, "commit": COMMIT, "built": BUILT}),
        );
    } else {
        println!("Version:  {version}\nCommit:   {COMMIT}\nBuilt:    {BUILT}");
    }
    exit::OK
}
