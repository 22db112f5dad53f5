//! swarmctl on its own, with no swarmd: shell completions, examples in
//! every command's `--help`, and the exit code for an unreachable server.
//! (Also what makes `cargo test --workspace` build the `swarmctl` binary
//! that the end-to-end tests in `tests/` run.)

use std::process::Command;

const SWARMCTL: &str = env!("CARGO_BIN_EXE_swarmctl");

#[test]
fn completions_help_examples_and_unreachable_server() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(SWARMCTL).args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let s = String::from_utf8(out.stdout).unwrap();
        for word in ["swarmctl", "forecast", "affinity", "heatmap", "horizon"] {
            assert!(s.contains(word), "{shell} completion lacks {word}");
        }
    }
    // Every command's --help shows examples.
    let top = String::from_utf8(Command::new(SWARMCTL).arg("--help").output().unwrap().stdout).unwrap();
    assert!(top.contains("Examples:") && top.contains("Exit codes"), "{top}");
    for cmd in [
        vec!["nodes", "list"],
        vec!["ingest-csv"],
        vec!["round"],
        vec!["decisions", "watch"],
        vec!["decisions", "list"],
        vec!["affinity"],
        vec!["forecast"],
        vec!["replay"],
        vec!["migrations", "list"],
        vec!["migrations", "show"],
        vec!["migrations", "abort"],
        vec!["agent"],
        vec!["heatmap"],
        vec!["reconfigure", "plan"],
        vec!["reconfigure", "apply"],
        vec!["reconfigure", "status"],
        vec!["completions"],
    ] {
        let out = Command::new(SWARMCTL).args(&cmd).arg("--help").output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("Examples:\n  swarmctl "), "swarmctl {} --help has no examples:\n{help}", cmd.join(" "));
    }
    // Nothing listens on port 1.
    let out = Command::new(SWARMCTL).args(["--server", "http://127.0.0.1:1", "nodes", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server not reachable at http://127.0.0.1:1") && err.contains("Is swarmd running?"), "{err}");
}
