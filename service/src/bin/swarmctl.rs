//! `swarmctl`: command-line client of swarmd. `main` parses flags,
//! dispatches, and maps errors to exit codes (2: bad input, 3: server
//! unreachable, 1: other failures).

use std::process::ExitCode;

use clap::Parser;
use swarm_service::ctl::{Cli, run};

fn main() -> ExitCode {
    // First: a copy of this program started to read one Parquet file
    // answers and exits; otherwise Parquet files are read in such a copy
    // before this process touches them (Polars can abort on corrupt ones).
    swarm_datasets::isolate::serve_or_enable();
    let cli = Cli::parse();
    // Diagnostics (the agent's progress, warnings) go to stderr; results to stdout.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWARM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarmctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`swarmctl ... | head`) is not a failure.
        Err(swarm_service::ctl::CtlError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarmctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
