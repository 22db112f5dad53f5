//! `swarmctl`: the command-line client of swarmd. All of it is the
//! `swarm-ctl` crate; the binary lives here beside `swarmd` so the
//! end-to-end tests run both (this binary links `swarm-ctl` only).

fn main() -> std::process::ExitCode {
    swarm_ctl::main()
}
