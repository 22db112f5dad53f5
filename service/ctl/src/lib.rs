//! `swarmctl`: the command-line client. Flags are parsed into [`Cli`]; each
//! command is a function from its arguments and a connection to a result;
//! [`main`] maps [`CtlError`] to exit codes.
//!
//! Layout: [`Cli`] and [`run`] (flags and dispatch) here; `output` renders
//! results as tables, JSON or CSV; `chart` draws forecasts in a terminal;
//! [`forecast`], [`heatmap`], [`reconfigure`] and [`replay`] are the larger
//! commands, one module each.
//!
//! Why a crate: touching how a table prints must rebuild the CLI, not the
//! server; and the CLI must reach swarmd only through `swarm-client`, the
//! way any other client does.

#![deny(missing_docs)]

mod chart;
pub mod forecast;
pub mod heatmap;
mod output;
mod policy;
pub mod reconfigure;
pub mod replay;
mod views;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use swarm_client::{ClientOptions, Conn};
use swarm_proto::v1 as pb;

pub use self::output::Output;
use swarm_datasets::import::{self as importer, Format};

use swarm_client::agent::{self, AgentConfig, Faults};

/// Swarm control: inspect the cluster, ingest metrics, run rounds, watch decisions.
#[derive(Parser, Debug)]
#[command(
    name = "swarmctl",
    version,
    about,
    after_help = "Examples:
  swarmctl nodes list
  swarmctl ingest-csv ../shared/datasets/azure-vm-cpu-2017/vm_cpu_readings.csv --register
  swarmctl round --dry-run
  swarmctl decisions watch
  swarmctl affinity v000
  swarmctl forecast v000 --horizon 30m
  swarmctl heatmap --top 20
  swarmctl replay --trace ../shared/datasets/azure-vm-cpu-2017/vm_cpu_readings.csv --report replay.md
  swarmctl completions bash > ~/.local/share/bash-completion/completions/swarmctl

Every command takes --output table|json|csv (csv: the command's table) and
--server (or SWARM_SERVER). Exit codes: 0 ok, 1 failed, 2 bad input or
unknown id, 3 swarmd not reachable, 4 refused (token missing or not allowed)."
)]
pub struct Cli {
    /// Address of swarmd.
    #[arg(long, global = true, env = "SWARM_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Output format: table for people, json or csv for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Bearer token for a swarmd started with --admin-token-file (prefer SWARM_TOKEN or --token-file: flags show in `ps`).
    #[arg(long, global = true, env = "SWARM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token (first line).
    #[arg(long, global = true, env = "SWARM_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate to trust for an https:// --server (default: the system's roots).
    #[arg(long, global = true, env = "SWARM_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Colour: auto (when stdout is a terminal and NO_COLOR is unset), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// How output looks on this terminal: resolved once from the flags and the
/// environment, then passed to what renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours.
    pub color: bool,
    /// Columns to fit (`COLUMNS`, else 100).
    pub width: usize,
}

impl Style {
    /// Resolves `--color` against the terminal and `NO_COLOR`, and the width from `COLUMNS`.
    pub fn resolve(choice: ColorChoice) -> Style {
        use std::io::IsTerminal;
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        let width = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&w| w >= 40).unwrap_or(100);
        Style { color, width }
    }
}

/// Commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Physical and virtual nodes.
    Nodes {
        /// What to do with nodes.
        #[command(subcommand)]
        action: NodesAction,
    },
    /// Stream a trace file (CSV or Parquet) of samples into swarmd.
    IngestCsv(IngestCsvArgs),
    /// Run a controller round now.
    #[command(
        after_help = "Examples:\n  swarmctl round --dry-run\n  swarmctl round --output json | jq '.decisions[].reason'"
    )]
    Round {
        /// Compute decisions without persisting or publishing them.
        #[arg(long)]
        dry_run: bool,
    },
    /// The decision log.
    Decisions {
        /// What to do with decisions.
        #[command(subcommand)]
        action: DecisionsAction,
    },
    /// Rank physical nodes for a virtual node: each affinity component, and
    /// what the controller's rules and cost function say about moving there.
    #[command(
        after_help = "Examples:\n  swarmctl affinity v000\n  swarmctl affinity v000 --output json | jq .would_move_to"
    )]
    Affinity {
        /// The virtual node.
        vnode: String,
    },
    /// A node's forecast from the server's model, with its interval, against
    /// recent history and its threshold: a table and a chart.
    Forecast(forecast::ForecastArgs),
    /// Replay a trace in virtual time through the controller and compare
    /// policies (none, reactive, proactive, oracle). Runs locally; needs no server.
    Replay(Box<replay::ReplayArgs>),
    /// Migrations carrying decisions out: list, show one with its history, abort.
    Migrations {
        /// What to do with migrations.
        #[command(subcommand)]
        action: MigrationsAction,
    },
    /// Run the reference orchestrator: carry migrations out on a simulated
    /// cluster (shadow, verify, cut over), with optional fault injection.
    Agent(AgentArgs),
    /// The risk-aware rule's settings now, the operator's bounds, and the
    /// self-tuner's runs: when and why the settings changed, and the table
    /// of candidates that chose them.
    #[command(after_help = "Examples:\n  swarmctl policy\n  swarmctl policy --output json | jq .last_run.rows")]
    Policy,
    /// The affinity heatmap: coloured in the terminal, or an SVG/PNG file.
    Heatmap(heatmap::HeatmapArgs),
    /// Plan and apply configuration changes with minimal movement (nodes
    /// joining, draining or leaving; group spreading rules).
    Reconfigure {
        /// What to do.
        #[command(subcommand)]
        action: reconfigure::ReconfigureAction,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  swarmctl completions bash > ~/.local/share/bash-completion/completions/swarmctl\n  swarmctl completions zsh > ~/.zfunc/_swarmctl\n  swarmctl completions fish > ~/.config/fish/completions/swarmctl.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `migrations` subcommands.
#[derive(Subcommand, Debug)]
pub enum MigrationsAction {
    /// List migrations, newest first.
    #[command(
        after_help = "Examples:\n  swarmctl migrations list --live\n  swarmctl migrations list --vnode v000 --output csv"
    )]
    List {
        /// Only live (unfinished) ones.
        #[arg(long)]
        live: bool,
        /// Only those of this virtual node.
        #[arg(long)]
        vnode: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One migration with every transition, its time and cause.
    #[command(after_help = "Examples:\n  swarmctl migrations show m42")]
    Show {
        /// Migration id (m<decision sequence>).
        id: String,
    },
    /// Abort a live migration: the new instance is rolled back, the old one keeps serving.
    #[command(after_help = "Examples:\n  swarmctl migrations abort m42 --reason \"maintenance window\"")]
    Abort {
        /// Migration id.
        id: String,
        /// Why (recorded in the history).
        #[arg(long, default_value = "aborted with swarmctl")]
        reason: String,
    },
}

/// `agent` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  swarmctl agent\n  swarmctl agent --id agent-b --drop-reports 0.2 --unhealthy-shadow 0.1 --exit-when-idle 5s"
)]
pub struct AgentArgs {
    /// Orchestrator id; a new id takes over live migrations with a new epoch (default: agent-<pid>).
    #[arg(long)]
    pub id: Option<String>,
    /// Most migrations driven at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Time to start a shadow instance.
    #[arg(long, default_value = "500ms", value_parser = swarm_core::duration::parse)]
    pub shadow_start: Duration,
    /// Time between health reports while shadowing.
    #[arg(long, default_value = "500ms", value_parser = swarm_core::duration::parse)]
    pub report_every: Duration,
    /// Time a cutover takes.
    #[arg(long, default_value = "200ms", value_parser = swarm_core::duration::parse)]
    pub cutover: Duration,
    /// Simulate copying state at this rate, bytes/s (e.g. 5e8): after the shadow starts, wait state_size / rate before shadowing (default: no wait).
    #[arg(long)]
    pub transfer_rate: Option<f64>,
    /// Fault: probability that a report is lost (it is re-sent later with the same request id).
    #[arg(long, default_value_t = 0.0)]
    pub drop_reports: f64,
    /// Fault: probability that a report is sent twice.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_reports: f64,
    /// Fault: probability that a shadow never comes up (Swarm times it out).
    #[arg(long, default_value_t = 0.0)]
    pub stall_shadow: f64,
    /// Fault: probability that a shadow reports a 20 % error rate (Swarm orders a roll-back).
    #[arg(long, default_value_t = 0.0)]
    pub unhealthy_shadow: f64,
    /// Fault: probability that the agent rejects a migration.
    #[arg(long, default_value_t = 0.0)]
    pub reject: f64,
    /// Fault: die (exit 137, no clean-up) after sending this many reports.
    #[arg(long)]
    pub crash_after_reports: Option<u64>,
    /// Seed of the fault dice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop once nothing has been in progress for this long (default: run until Ctrl-C).
    #[arg(long, value_parser = swarm_core::duration::parse)]
    pub exit_when_idle: Option<Duration>,
}

impl AgentArgs {
    /// Resolves the flags into the agent's configuration.
    pub fn resolve(&self) -> Result<AgentConfig, CtlError> {
        for (name, p) in [
            ("--drop-reports", self.drop_reports),
            ("--duplicate-reports", self.duplicate_reports),
            ("--stall-shadow", self.stall_shadow),
            ("--unhealthy-shadow", self.unhealthy_shadow),
            ("--reject", self.reject),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(CtlError::Input(format!("{name} is a probability in [0, 1], got {p}")));
            }
        }
        if let Some(r) = self.transfer_rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(CtlError::Input(format!("--transfer-rate is bytes per second, > 0; got {r}")));
        }
        if self.drop_reports > 0.95 {
            return Err(CtlError::Input("--drop-reports above 0.95 would never get a report through".into()));
        }
        let mut c = AgentConfig {
            concurrency: self.concurrency.max(1),
            shadow_start: self.shadow_start,
            report_every: self.report_every,
            cutover: self.cutover,
            transfer_rate: self.transfer_rate,
            faults: Faults {
                drop_reports: self.drop_reports,
                duplicate_reports: self.duplicate_reports,
                stall_shadow: self.stall_shadow,
                unhealthy_shadow: self.unhealthy_shadow,
                reject: self.reject,
                crash_after_reports: self.crash_after_reports,
            },
            seed: self.seed,
            exit_when_idle: self.exit_when_idle,
            ..AgentConfig::default()
        };
        if let Some(id) = &self.id {
            swarm_core::domain::NodeId::parse(id).map_err(|r| CtlError::Input(format!("--id {r}")))?;
            c.orchestrator_id = id.clone();
        }
        Ok(c)
    }
}

/// `nodes` subcommands.
#[derive(Subcommand, Debug)]
pub enum NodesAction {
    /// List nodes.
    #[command(
        after_help = "Examples:\n  swarmctl nodes list\n  swarmctl nodes list --virtual --output csv > placement.csv"
    )]
    List {
        /// List virtual nodes (with placement) instead of physical ones.
        #[arg(long = "virtual")]
        virtual_nodes: bool,
    },
}

/// `decisions` subcommands.
#[derive(Subcommand, Debug)]
pub enum DecisionsAction {
    /// Follow decisions as they are made (Ctrl-C to stop).
    #[command(
        after_help = "Examples:\n  swarmctl decisions watch\n  swarmctl decisions watch --from 1 --limit 10\n  swarmctl decisions watch --output json | jq -c '{vnode: .virtual_node_id, to: .to_node_id}'"
    )]
    Watch {
        /// Start with the persisted decision of this sequence (0: only new ones).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop after this many decisions.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// One decision and what its move achieved: verdict, and the window
    /// before and after the cutover (source and target utilisation, latency,
    /// throughput) against what was expected.
    #[command(
        after_help = "Examples:\n  swarmctl decisions show 42\n  swarmctl decisions show 42 --output json | jq .outcome.verdict"
    )]
    Show {
        /// Decision sequence.
        sequence: u64,
    },
    /// Print persisted decisions, each with its outcome's verdict
    /// (pending, helped, neutral, hurt, not moved).
    #[command(
        after_help = "Examples:\n  swarmctl decisions list --from 1 --limit 20\n  swarmctl decisions list --output csv"
    )]
    List {
        /// First sequence.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// `ingest-csv` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  swarmctl ingest-csv ../shared/datasets/azure-vm-cpu-2017/vm_cpu_readings.csv --register --vm-cores 4\n  swarmctl ingest-csv samples.csv --format long-csv"
)]
pub struct IngestCsvArgs {
    /// The file: Azure V1 VM CPU readings, Alibaba 2018 machine usage, or
    /// Swarm's long CSV (`timestamp,entity,metric,value`, ms) or Parquet.
    pub file: PathBuf,
    /// File format: auto, azure-v1, alibaba, long-csv or parquet.
    #[arg(long, default_value = "auto")]
    pub format: importer::FormatChoice,
    /// Samples per batch.
    #[arg(long, default_value_t = 20_000)]
    pub batch: usize,
    /// Register unknown entities of the file first (as virtual nodes; as
    /// physical nodes for Alibaba machine traces).
    #[arg(long)]
    pub register: bool,
    /// Azure: cores of each VM (CPU percent × cores / 100 = cores used); also
    /// the requested cores of registered VMs.
    #[arg(long, default_value_t = 1.0)]
    pub vm_cores: f64,
    /// Alibaba: cores of each machine.
    #[arg(long, default_value_t = 96.0)]
    pub machine_cores: f64,
    /// Alibaba: memory of each machine, bytes.
    #[arg(long, default_value_t = 512 << 30)]
    pub machine_memory_bytes: u64,
    /// Traces with relative time: epoch ms of trace time 0 [default: so that the trace ends now].
    #[arg(long)]
    pub start_ms: Option<i64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Errors of swarmctl, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Cannot connect (the message says what to do).
    #[error(transparent)]
    Connect(#[from] swarm_client::ConnectError),
    /// The server said no.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rpc(#[from] tonic::Status),
    /// A local input problem.
    #[error("{0}")]
    Input(String),
    /// swarmd went away while a long-running command (the agent) used it.
    #[error("{0}")]
    Unreachable(String),
    /// A failure of swarmctl itself (a task that panicked): not the input's fault.
    #[error("internal error: {0}")]
    Internal(String),
    /// Output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

/// The canonical gRPC name of a status code (`NOT_FOUND`, ...).
fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

impl CtlError {
    /// Process exit code: 2 bad usage/input, 3 server unreachable, 4
    /// refused by authentication, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Input(_) => 2,
            CtlError::Rpc(s) if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => 4,
            CtlError::Rpc(s) if s.code() == tonic::Code::InvalidArgument || s.code() == tonic::Code::NotFound => 2,
            CtlError::Connect(swarm_client::ConnectError::Input(_) | swarm_client::ConnectError::Tls { .. }) => 2,
            CtlError::Connect(swarm_client::ConnectError::Unreachable { .. }) | CtlError::Unreachable(_) => 3,
            CtlError::Rpc(s) if s.code() == tonic::Code::Unavailable => 3,
            _ => 1,
        }
    }
}

impl From<importer::ImportError> for CtlError {
    fn from(e: importer::ImportError) -> Self {
        CtlError::Input(e.to_string())
    }
}

impl Cli {
    /// Resolves the connection flags: the token from --token or --token-file.
    pub fn client_options(&self) -> Result<ClientOptions, CtlError> {
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => return Err(CtlError::Input("give --token or --token-file, not both".into())),
            (Some(t), None) => Some(t.clone()),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| CtlError::Input(format!("cannot read --token-file {}: {e}", f.display())))?;
                let first = swarm_client::tokens::token_lines(&text).next();
                Some(
                    first
                        .ok_or_else(|| CtlError::Input(format!("--token-file {} holds no token", f.display())))?
                        .to_owned(),
                )
            }
            (None, None) => None,
        };
        Ok(ClientOptions { token, ca_cert: self.ca_cert.clone() })
    }
}

/// Connects to the server.
pub async fn connect(server: &str, opts: &ClientOptions) -> Result<Conn, CtlError> {
    Ok(swarm_client::connect(server, opts).await?)
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CtlError> {
    let style = Style::resolve(cli.color);
    if cli.output == Output::Csv {
        let not_a_table = match &cli.command {
            Command::IngestCsv(_) => Some("ingest-csv"),
            Command::Replay(_) => Some("replay"),
            Command::Agent(_) => Some("agent"),
            Command::Heatmap(_) => Some("heatmap"),
            Command::Completions { .. } => Some("completions"),
            _ => None,
        };
        if let Some(cmd) = not_a_table {
            return Err(CtlError::Input(format!(
                "--output csv is for commands that print a table; use --output json with {cmd}"
            )));
        }
    }
    if let Command::Completions { shell } = cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "swarmctl", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::Replay(args) = cli.command {
        let report = tokio::task::spawn_blocking(move || replay::replay(*args))
            .await
            .map_err(|e| CtlError::Internal(format!("the replay task failed: {e}")))??;
        return output::replay(cli.output, &report);
    }
    let channel = connect(&cli.server, &cli.client_options()?).await?;
    let out = cli.output;
    match cli.command {
        Command::Nodes { action: NodesAction::List { virtual_nodes } } => nodes_list(channel, out, virtual_nodes).await,
        Command::IngestCsv(args) => ingest_csv(channel, out, args).await,
        Command::Round { dry_run } => round(channel, out, dry_run).await,
        Command::Decisions { action: DecisionsAction::Watch { from, limit } } => {
            decisions_watch(channel, out, style, from, limit).await
        }
        Command::Decisions { action: DecisionsAction::List { from, limit } } => {
            decisions_list(channel, out, from, limit).await
        }
        Command::Decisions { action: DecisionsAction::Show { sequence } } => {
            decision_show(channel, out, sequence).await
        }
        Command::Affinity { vnode } => affinity(channel, out, vnode).await,
        Command::Forecast(args) => forecast::run(channel, out, style, args).await,
        Command::Replay(_) | Command::Completions { .. } => unreachable!("handled before connecting"),
        Command::Migrations { action } => migrations(channel, out, action).await,
        Command::Reconfigure { action } => reconfigure::run(channel, out, action).await,
        Command::Heatmap(args) => heatmap::run(channel, out, args).await,
        Command::Policy => policy::run(channel, out).await,
        Command::Agent(args) => {
            let cfg = args.resolve()?;
            tracing::info!(id = %cfg.orchestrator_id, "agent started");
            let summary = agent::run(channel, cfg, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| match e {
                agent::AgentError::Rpc(s) => CtlError::Rpc(s),
                e @ agent::AgentError::Connect { .. } => CtlError::Unreachable(e.to_string()),
            })?;
            output::agent_summary(&summary)
        }
    }
}

async fn migrations(ch: Conn, out: Output, action: MigrationsAction) -> Result<(), CtlError> {
    let mut c = pb::migrations_client::MigrationsClient::new(ch);
    match action {
        MigrationsAction::List { live, vnode, limit } => {
            let r = c
                .list_migrations(pb::ListMigrationsRequest {
                    live_only: live,
                    virtual_node_id: vnode.unwrap_or_default(),
                    limit,
                })
                .await?
                .into_inner();
            output::migrations(out, &r.migrations)
        }
        MigrationsAction::Show { id } => {
            let m = c.get_migration(pb::GetMigrationRequest { id }).await?.into_inner().migration.unwrap_or_default();
            output::migration(out, &m)
        }
        MigrationsAction::Abort { id, reason } => {
            let m = c
                .abort_migration(pb::AbortMigrationRequest { id, reason })
                .await?
                .into_inner()
                .migration
                .unwrap_or_default();
            output::migration(out, &m)
        }
    }
}

async fn nodes_list(ch: Conn, out: Output, virtual_nodes: bool) -> Result<(), CtlError> {
    let mut c = pb::topology_client::TopologyClient::new(ch);
    let vnodes = c.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await?.into_inner().nodes;
    if virtual_nodes {
        return output::virtual_nodes(out, &vnodes);
    }
    let nodes = c.list_physical_nodes(pb::ListPhysicalNodesRequest { include_removed: true }).await?.into_inner().nodes;
    output::physical_nodes(out, &nodes, &vnodes)
}

async fn round(ch: Conn, out: Output, dry_run: bool) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let r = c.run_round(pb::RunRoundRequest { dry_run }).await?.into_inner();
    output::round(out, &r)
}

async fn decisions_list(ch: Conn, out: Output, from: u64, limit: u32) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let r = c.list_decisions(pb::ListDecisionsRequest { from_sequence: from, limit }).await?.into_inner();
    output::decisions(out, &r.decisions)
}

async fn decision_show(ch: Conn, out: Output, seq: u64) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let r = c.list_decisions(pb::ListDecisionsRequest { from_sequence: seq, limit: 1 }).await?.into_inner();
    match r.decisions.first() {
        Some(d) if d.sequence == seq => output::decision_detail(out, d),
        _ => Err(CtlError::Rpc(tonic::Status::not_found(format!(
            "decision {seq} is not in the log (its newest is {}; older ones may have passed retention)",
            r.last_sequence
        )))),
    }
}

async fn decisions_watch(ch: Conn, out: Output, style: Style, from: u64, limit: Option<u64>) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let mut stream = c.watch_decisions(pb::WatchDecisionsRequest { from_sequence: from }).await?.into_inner();
    let mut n = 0;
    while let Some(d) = stream.message().await? {
        output::decision_line(out, style, &d, n == 0)?;
        n += 1;
        if limit.is_some_and(|l| n >= l) {
            break;
        }
    }
    Ok(())
}

async fn affinity(ch: Conn, out: Output, vnode: String) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let r = c
        .get_affinity(pb::GetAffinityRequest {
            virtual_node_ids: vec![vnode],
            physical_node_ids: vec![],
            assess_moves: true,
        })
        .await?
        .into_inner();
    output::affinity(out, &r)
}

/// Summary of an import.
#[derive(Debug, Default, serde::Serialize)]
pub struct IngestSummary {
    /// File.
    pub file: String,
    /// Format read.
    pub format: String,
    /// Data rows read.
    pub rows: u64,
    /// Rows that could not be parsed.
    pub bad_rows: u64,
    /// The first few bad rows (line, reason).
    pub bad_row_examples: Vec<(u64, String)>,
    /// Values dropped by a format rule.
    pub bad_values: u64,
    /// Header columns the format does not read.
    pub ignored_columns: Vec<String>,
    /// Values of metrics Swarm has no counterpart for (e.g. Alibaba `mkpi`).
    pub skipped_values: u64,
    /// Samples sent.
    pub samples_sent: u64,
    /// Accepted by the server.
    pub accepted: u64,
    /// Rejected by the server.
    pub rejected: u64,
    /// The first few rejection reasons.
    pub rejection_examples: Vec<String>,
    /// Nodes registered first.
    pub registered: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// How a source metric becomes a Swarm metric: (metric, multiplier).
fn swarm_metric(format: Format, source: &str, a: &IngestCsvArgs) -> Option<(pb::Metric, f64)> {
    let m = |name: &str| {
        swarm_core::metric::Metric::from_name(name).and_then(|m| pb::Metric::try_from(m.code() as i32).ok())
    };
    match format {
        Format::AzureV1 => match source {
            "avg_cpu" => Some((pb::Metric::CpuUsage, a.vm_cores / 100.0)),
            "max_cpu" => Some((pb::Metric::CpuPeak, a.vm_cores / 100.0)),
            _ => None,
        },
        Format::Alibaba => match source {
            "cpu_util_percent" => Some((pb::Metric::CpuUsage, a.machine_cores / 100.0)),
            "mem_util_percent" => Some((pb::Metric::MemoryBytes, a.machine_memory_bytes as f64 / 100.0)),
            _ => None,
        },
        Format::LongCsv | Format::Parquet => m(source).map(|m| (m, 1.0)),
    }
}

async fn ingest_csv(ch: Conn, out: Output, a: IngestCsvArgs) -> Result<(), CtlError> {
    if a.batch == 0 {
        return Err(CtlError::Input("--batch must be at least 1".into()));
    }
    for (flag, v) in [("--vm-cores", a.vm_cores), ("--machine-cores", a.machine_cores)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(CtlError::Input(format!("{flag} must be a number > 0")));
        }
    }
    let started = std::time::Instant::now();
    let path = a.file.clone();
    let format = a.format.0;
    let imported = tokio::task::spawn_blocking(move || importer::import(&path, format))
        .await
        .map_err(|e| CtlError::Internal(format!("the import task failed: {e}")))??;
    let format = imported.format;
    let frame = &imported.frame;
    let col = |n: &str| frame.column(n).map_err(|e| CtlError::Input(e.to_string()));
    let ts: Vec<i64> =
        col("timestamp")?.i64().map_err(|e| CtlError::Input(e.to_string()))?.into_no_null_iter().collect();
    let ents = col("entity")?.str().map_err(|e| CtlError::Input(e.to_string()))?.clone();
    let metrics = col("metric")?.str().map_err(|e| CtlError::Input(e.to_string()))?.clone();
    let vals: Vec<f64> = col("value")?.f64().map_err(|e| CtlError::Input(e.to_string()))?.into_no_null_iter().collect();
    let mut summary = IngestSummary {
        file: a.file.display().to_string(),
        format: format.name().to_owned(),
        rows: imported.rows,
        bad_rows: imported.bad_rows,
        bad_row_examples: imported.bad_examples.iter().map(|b| (b.line, b.reason.clone())).collect(),
        bad_values: imported.bad_values,
        ignored_columns: imported.ignored_columns.clone(),
        ..Default::default()
    };
    let physical_trace = format == Format::Alibaba;
    let mut entities: Vec<String> = Vec::new();
    {
        let mut seen = std::collections::HashSet::new();
        for e in ents.iter().flatten() {
            if seen.insert(e) {
                entities.push(e.to_owned());
            }
        }
    }
    if a.register {
        summary.registered = register(ch.clone(), &entities, physical_trace, &a).await?;
    }
    let mut topo = pb::topology_client::TopologyClient::new(ch.clone());
    let physical_ids: std::collections::HashSet<String> = topo
        .list_physical_nodes(pb::ListPhysicalNodesRequest::default())
        .await?
        .into_inner()
        .nodes
        .into_iter()
        .map(|n| n.id)
        .collect();
    // Public traces carry time relative to their start: shift them so they end now (5-minute grid).
    let relative = matches!(format, Format::AzureV1 | Format::Alibaba);
    let offset = if relative {
        a.start_ms.unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()
                as i64;
            let end = now - now.rem_euclid(300_000);
            end - ts.iter().copied().max().unwrap_or(0)
        })
    } else {
        0
    };
    let bar = if a.quiet || out == Output::Json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(frame.height() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} values ({per_sec}, eta {eta})",
            )
            .expect("valid template"),
        );
        b
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::IngestBatch>(8);
    let mut client = pb::metrics_client::MetricsClient::new(ch).max_encoding_message_size(64 << 20);
    let call = tokio::spawn(async move { client.ingest(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    let mut buf = Vec::with_capacity(a.batch);
    for (i, (e, m)) in ents.iter().zip(metrics.iter()).enumerate() {
        let (Some(e), Some(m)) = (e, m) else { continue };
        let Some((metric, scale)) = swarm_metric(format, m, &a) else {
            summary.skipped_values += 1;
            continue;
        };
        let kind =
            if physical_trace || physical_ids.contains(e) { pb::EntityKind::Physical } else { pb::EntityKind::Virtual };
        buf.push(pb::Sample {
            entity_kind: kind as i32,
            entity_id: e.to_owned(),
            metric: metric as i32,
            timestamp_ms: ts[i] + offset,
            value: vals[i] * scale,
            location: String::new(),
        });
        if buf.len() >= a.batch {
            summary.samples_sent += buf.len() as u64;
            let batch = pb::IngestBatch { samples: std::mem::replace(&mut buf, Vec::with_capacity(a.batch)) };
            if tx.send(batch).await.is_err() {
                break; // the call failed; its error is reported below
            }
            bar.set_position(i as u64);
        }
    }
    if !buf.is_empty() {
        summary.samples_sent += buf.len() as u64;
        let _ = tx.send(pb::IngestBatch { samples: buf }).await;
    }
    drop(tx);
    let resp = call.await.map_err(|e| CtlError::Input(e.to_string()))??.into_inner();
    bar.finish_and_clear();
    summary.accepted = resp.accepted;
    summary.rejected = resp.rejected;
    summary.rejection_examples = resp
        .rejections
        .iter()
        .take(5)
        .map(|r| format!("batch {} sample {}: {}: {}", r.batch_index, r.sample_index, r.field, r.reason))
        .collect();
    summary.seconds = started.elapsed().as_secs_f64();
    output::ingest_summary(out, &summary)?;
    // A run that stores nothing from a file that had rows did not work,
    // whatever the transport said: exit 2 with the likely cause.
    if summary.rows > 0 && summary.accepted == 0 {
        let first = summary.rejection_examples.first().cloned().unwrap_or_else(|| "no sample was sent".into());
        let hint = if first.contains("older than the retention window") {
            " (timestamps in seconds instead of milliseconds look like 1970: pass --start-ms, or convert the column)"
        } else {
            ""
        };
        return Err(CtlError::Input(format!(
            "nothing from {} was stored: {} rows read, {} samples sent, all rejected; first: {first}{hint}",
            summary.file, summary.rows, summary.samples_sent
        )));
    }
    Ok(())
}

async fn register(ch: Conn, entities: &[String], physical: bool, a: &IngestCsvArgs) -> Result<u64, CtlError> {
    let mut c = pb::topology_client::TopologyClient::new(ch);
    let known: std::collections::HashSet<String> = if physical {
        c.list_physical_nodes(pb::ListPhysicalNodesRequest { include_removed: true })
            .await?
            .into_inner()
            .nodes
            .into_iter()
            .map(|v| v.id)
            .collect()
    } else {
        c.list_virtual_nodes(pb::ListVirtualNodesRequest::default())
            .await?
            .into_inner()
            .nodes
            .into_iter()
            .map(|v| v.id)
            .collect()
    };
    let new: Vec<&String> = entities.iter().filter(|e| !known.contains(*e)).collect();
    let mut created = 0;
    for chunk in new.chunks(swarm_proto::v1::MAX_NODES_PER_CALL) {
        created += if physical {
            let nodes = chunk
                .iter()
                .map(|e| pb::PhysicalNode {
                    id: (*e).clone(),
                    capacity: Some(pb::Resources {
                        cpu_cores: a.machine_cores,
                        memory_bytes: a.machine_memory_bytes,
                        network_bytes_per_sec: 0,
                    }),
                    ..Default::default()
                })
                .collect();
            c.upsert_physical_nodes(pb::UpsertPhysicalNodesRequest { nodes }).await?.into_inner().created
        } else {
            let nodes = chunk
                .iter()
                .map(|e| pb::VirtualNode {
                    id: (*e).clone(),
                    requested: Some(pb::Resources { cpu_cores: a.vm_cores, ..Default::default() }),
                    ..Default::default()
                })
                .collect();
            c.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes }).await?.into_inner().created
        } as u64;
    }
    Ok(created)
}

/// `swarmctl`'s entry point: parses flags, dispatches, and maps errors to
/// exit codes (2: bad input, 3: server unreachable, 4: refused, 1: other
/// failures).
pub fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
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
        Err(CtlError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarmctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
