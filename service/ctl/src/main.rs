//! `swarmctl`: the command-line client of swarmd. `main` only dispatches;
//! everything is in the `swarm_ctl` library.

fn main() -> std::process::ExitCode {
    swarm_ctl::main()
}
