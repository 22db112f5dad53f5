//! `swarmctl`: the command-line client. Flags are parsed into [`Cli`]; each
//! command is a function from its arguments and a connection to a result;
//! the binary maps [`CtlError`] to exit codes.

pub mod csv;
mod output;

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use swarm_proto::v1 as pb;
use tonic::transport::Channel;

use self::csv::{AzureOptions, BadRow, CsvFormat};
pub use self::output::Output;

/// Swarm control: inspect the cluster, ingest metrics, run rounds, watch decisions.
#[derive(Parser, Debug)]
#[command(
    name = "swarmctl",
    version,
    about,
    after_help = "Examples:\n  swarmctl nodes list\n  swarmctl ingest-csv ../shared/datasets/azure-vm-cpu-2017/vm_cpu_readings.csv --register\n  swarmctl round --dry-run\n  swarmctl decisions watch --from 1\n  swarmctl affinity v000 --output json"
)]
pub struct Cli {
    /// Address of swarmd.
    #[arg(long, global = true, env = "SWARM_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Output format of read commands.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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
    /// Stream a CSV file of samples into swarmd.
    IngestCsv(IngestCsvArgs),
    /// Run a controller round now.
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
    /// Rank physical nodes for a virtual node, with each affinity component.
    Affinity {
        /// The virtual node.
        vnode: String,
    },
}

/// `nodes` subcommands.
#[derive(Subcommand, Debug)]
pub enum NodesAction {
    /// List nodes.
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
    Watch {
        /// Start with the persisted decision of this sequence (0: only new ones).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop after this many decisions.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Print persisted decisions.
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
pub struct IngestCsvArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// File format.
    #[arg(long, value_enum, default_value_t = CsvFormat::Auto)]
    pub format: CsvFormat,
    /// Samples per batch.
    #[arg(long, default_value_t = 20_000)]
    pub batch: usize,
    /// Register unknown entities of the file as virtual nodes first.
    #[arg(long)]
    pub register: bool,
    /// Azure: cores of each VM (CPU percent × cores = cores used); also the
    /// requested cores of registered VMs.
    #[arg(long, default_value_t = 1.0)]
    pub vm_cores: f64,
    /// Azure: epoch ms of trace time 0 [default: so that the trace ends now].
    #[arg(long)]
    pub start_ms: Option<i64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Errors of swarmctl, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Cannot connect.
    #[error("server not reachable at {addr}: {reason}. Is swarmd running? Start it with `swarmd` or pass --server")]
    Unreachable {
        /// Address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server said no.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rpc(#[from] tonic::Status),
    /// A local input problem.
    #[error("{0}")]
    Input(String),
    /// Output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

fn code_name(c: tonic::Code) -> String {
    format!("{c:?}").to_uppercase()
}

impl CtlError {
    /// Process exit code: 2 bad usage/input, 3 server unreachable, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Input(_) => 2,
            CtlError::Rpc(s) if s.code() == tonic::Code::InvalidArgument || s.code() == tonic::Code::NotFound => 2,
            CtlError::Unreachable { .. } => 3,
            CtlError::Rpc(s) if s.code() == tonic::Code::Unavailable => 3,
            _ => 1,
        }
    }
}

impl From<csv::CsvError> for CtlError {
    fn from(e: csv::CsvError) -> Self {
        CtlError::Input(e.to_string())
    }
}

/// Connects to the server.
pub async fn connect(server: &str) -> Result<Channel, CtlError> {
    let endpoint = Channel::from_shared(server.to_owned())
        .map_err(|e| CtlError::Input(format!("--server {server:?} is not a valid URL: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    endpoint.connect().await.map_err(|e| CtlError::Unreachable {
        addr: server.to_owned(),
        reason: std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.to_string()),
    })
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CtlError> {
    let channel = connect(&cli.server).await?;
    let out = cli.output;
    match cli.command {
        Command::Nodes { action: NodesAction::List { virtual_nodes } } => nodes_list(channel, out, virtual_nodes).await,
        Command::IngestCsv(args) => ingest_csv(channel, out, args).await,
        Command::Round { dry_run } => round(channel, out, dry_run).await,
        Command::Decisions { action: DecisionsAction::Watch { from, limit } } => {
            decisions_watch(channel, out, from, limit).await
        }
        Command::Decisions { action: DecisionsAction::List { from, limit } } => {
            decisions_list(channel, out, from, limit).await
        }
        Command::Affinity { vnode } => affinity(channel, out, vnode).await,
    }
}

async fn nodes_list(ch: Channel, out: Output, virtual_nodes: bool) -> Result<(), CtlError> {
    let mut c = pb::topology_client::TopologyClient::new(ch);
    let vnodes = c.list_virtual_nodes(pb::ListVirtualNodesRequest::default()).await?.into_inner().nodes;
    if virtual_nodes {
        return output::virtual_nodes(out, &vnodes);
    }
    let nodes = c.list_physical_nodes(pb::ListPhysicalNodesRequest { include_removed: true }).await?.into_inner().nodes;
    output::physical_nodes(out, &nodes, &vnodes)
}

async fn round(ch: Channel, out: Output, dry_run: bool) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let r = c.run_round(pb::RunRoundRequest { dry_run }).await?.into_inner();
    output::round(out, &r)
}

async fn decisions_list(ch: Channel, out: Output, from: u64, limit: u32) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let r = c.list_decisions(pb::ListDecisionsRequest { from_sequence: from, limit }).await?.into_inner();
    output::decisions(out, &r.decisions)
}

async fn decisions_watch(ch: Channel, out: Output, from: u64, limit: Option<u64>) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let mut stream = c.watch_decisions(pb::WatchDecisionsRequest { from_sequence: from }).await?.into_inner();
    let mut n = 0;
    while let Some(d) = stream.message().await? {
        output::decision_line(out, &d)?;
        n += 1;
        if limit.is_some_and(|l| n >= l) {
            break;
        }
    }
    Ok(())
}

async fn affinity(ch: Channel, out: Output, vnode: String) -> Result<(), CtlError> {
    let mut c = pb::placement_client::PlacementClient::new(ch);
    let r = c
        .get_affinity(pb::GetAffinityRequest { virtual_node_ids: vec![vnode], physical_node_ids: vec![] })
        .await?
        .into_inner();
    output::affinity(out, &r)
}

/// Summary of an import.
#[derive(Debug, Default, serde::Serialize)]
pub struct IngestSummary {
    /// File.
    pub file: String,
    /// Data rows read.
    pub rows: u64,
    /// Rows that could not be parsed.
    pub bad_rows: u64,
    /// The first few bad rows.
    pub bad_row_examples: Vec<(u64, String)>,
    /// Samples sent.
    pub samples_sent: u64,
    /// Accepted by the server.
    pub accepted: u64,
    /// Rejected by the server.
    pub rejected: u64,
    /// The first few rejection reasons.
    pub rejection_examples: Vec<String>,
    /// Virtual nodes registered first.
    pub registered: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

async fn ingest_csv(ch: Channel, out: Output, a: IngestCsvArgs) -> Result<(), CtlError> {
    if a.batch == 0 {
        return Err(CtlError::Input("--batch must be at least 1".into()));
    }
    if !(a.vm_cores.is_finite() && a.vm_cores > 0.0) {
        return Err(CtlError::Input("--vm-cores must be a number > 0".into()));
    }
    let started = std::time::Instant::now();
    let path = a.file.clone();
    let format = a.format;
    let (layout, survey) = tokio::task::spawn_blocking(move || csv::survey(&path, format))
        .await
        .map_err(|e| CtlError::Input(e.to_string()))??;
    let mut summary = IngestSummary { file: a.file.display().to_string(), ..Default::default() };
    if a.register {
        summary.registered = register(ch.clone(), &survey.entities, a.vm_cores).await?;
    }
    // Azure trace time 0 maps so that the last reading lands at "now" (rounded to the 5-minute grid).
    let start_ms = a.start_ms.unwrap_or_else(|| {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        let end = now - now.rem_euclid(300_000);
        end - (survey.max_ts * 1000.0) as i64
    });
    let azure = AzureOptions { vm_cores: a.vm_cores, start_ms };
    let bar = if a.quiet || out == Output::Json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(survey.rows);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} rows ({per_sec}, eta {eta})",
            )
            .expect("valid template"),
        );
        b
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::IngestBatch>(8);
    let path = a.file.clone();
    let batch = a.batch;
    let pbar = bar.clone();
    // Parse on a blocking thread while the stream sends.
    let reader = tokio::task::spawn_blocking(move || -> Result<(u64, u64, Vec<BadRow>, u64), CtlError> {
        let io = |e| CtlError::Input(format!("cannot read {}: {e}", path.display()));
        let file = std::fs::File::open(&path).map_err(io)?;
        let mut lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
        let mut lineno = 0u64;
        if layout.has_header() {
            lines.next();
            lineno = 1;
        }
        let (mut rows, mut bad, mut sent) = (0u64, 0u64, 0u64);
        let mut examples = Vec::new();
        let mut buf = Vec::with_capacity(batch);
        for line in lines {
            let line = line.map_err(io)?;
            lineno += 1;
            if line.trim().is_empty() {
                continue;
            }
            rows += 1;
            if let Err(reason) = layout.parse(&line, &azure, &mut buf) {
                bad += 1;
                if examples.len() < 5 {
                    examples.push(BadRow { line: lineno, reason });
                }
            }
            if buf.len() >= batch {
                sent += buf.len() as u64;
                let b = pb::IngestBatch { samples: std::mem::replace(&mut buf, Vec::with_capacity(batch)) };
                if tx.blocking_send(b).is_err() {
                    break; // the stream failed; its error is reported below
                }
                pbar.set_position(rows);
            }
        }
        if !buf.is_empty() {
            sent += buf.len() as u64;
            let _ = tx.blocking_send(pb::IngestBatch { samples: buf });
        }
        pbar.set_position(rows);
        Ok((rows, bad, examples, sent))
    });
    let mut client = pb::metrics_client::MetricsClient::new(ch).max_encoding_message_size(64 << 20);
    let resp = client.ingest(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    let (rows, bad, examples, sent) = reader.await.map_err(|e| CtlError::Input(e.to_string()))??;
    bar.finish_and_clear();
    let resp = resp?.into_inner();
    summary.rows = rows;
    summary.bad_rows = bad;
    summary.bad_row_examples = examples.into_iter().map(|b| (b.line, b.reason)).collect();
    summary.samples_sent = sent;
    summary.accepted = resp.accepted;
    summary.rejected = resp.rejected;
    summary.rejection_examples = resp
        .rejections
        .iter()
        .take(5)
        .map(|r| format!("batch {} sample {}: {}: {}", r.batch_index, r.sample_index, r.field, r.reason))
        .collect();
    summary.seconds = started.elapsed().as_secs_f64();
    output::ingest_summary(out, &summary)
}

async fn register(ch: Channel, entities: &[String], cores: f64) -> Result<u64, CtlError> {
    let mut c = pb::topology_client::TopologyClient::new(ch);
    let known: std::collections::HashSet<String> = c
        .list_virtual_nodes(pb::ListVirtualNodesRequest::default())
        .await?
        .into_inner()
        .nodes
        .into_iter()
        .map(|v| v.id)
        .collect();
    let new: Vec<pb::VirtualNode> = entities
        .iter()
        .filter(|e| !known.contains(*e))
        .map(|e| pb::VirtualNode {
            id: e.clone(),
            requested: Some(pb::Resources { cpu_cores: cores, ..Default::default() }),
            ..Default::default()
        })
        .collect();
    let mut created = 0;
    for chunk in new.chunks(crate::validate::MAX_NODES_PER_CALL) {
        created +=
            c.upsert_virtual_nodes(pb::UpsertVirtualNodesRequest { nodes: chunk.to_vec() }).await?.into_inner().created
                as u64;
    }
    Ok(created)
}
