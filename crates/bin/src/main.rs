//! `regmesh`: run a registry center (`serve`), talk to one (`agent ...`),
//! print the effective configuration (`config show`).

mod demo;
mod diagnose;
mod init;
mod log_filter;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use hyper::{Method, StatusCode};
use regmesh_node::client::{Client, Reply};
use regmesh_node::Config;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "regmesh",
    version,
    about = "A federated registry: registry centers that keep agent records and sync them over a peer mesh."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a registry center.
    Serve(ServeArgs),
    /// Register, read, list, renew and remove agents at a running center.
    Agent {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        cmd: AgentCmd,
    },
    /// Write a local mesh of N centers: CA, keys, certificates, configs.
    Init {
        /// How many centers (c1 … cN).
        #[arg(long)]
        centers: usize,
        /// How they peer.
        #[arg(long, value_enum, default_value = "full")]
        topology: init::Topology,
        /// Folder to write into.
        #[arg(long)]
        out: PathBuf,
        /// Client API port of c1; center i uses P + 10·(i−1), and the next port for peers.
        #[arg(long, default_value_t = 17700)]
        base_port: u16,
        /// Optional fronts to configure (comma-separated): `rd` serves CoAP on P + 10·(i−1) + 2;
        /// `rpki` makes c1 the RPKI console (RTR on P + 3, TALs in <out>/tals) and the others sync nodes.
        #[arg(long, value_enum, value_delimiter = ',')]
        fronts: Vec<init::InitFront>,
    },
    /// Start a local three-center mesh, register sample agents at each, and
    /// show them arriving everywhere. A second run reuses the mesh in --dir.
    Demo {
        /// Folder for the mesh's keys, certificates, configs and data.
        #[arg(long, default_value = "./regmesh-demo")]
        dir: PathBuf,
        /// Client API port of c1 (c2, c3 follow in steps of 10).
        #[arg(long, default_value_t = 27700)]
        base_port: u16,
        /// Keep the mesh running afterwards until Ctrl-C.
        #[arg(long)]
        keep: bool,
        /// Start over: delete the mesh an earlier demo left in --dir (its
        /// keys, configs and data) instead of reusing it.
        #[arg(long)]
        fresh: bool,
    },
    /// Print the token (JWT) this center would send to a peer, for
    /// reproducing DRiP requests by hand with curl.
    Token {
        /// The center's config (its key is `[peer].key`).
        #[arg(long)]
        config: PathBuf,
        /// The peer the token is for (its `aud`).
        #[arg(long)]
        to: String,
        /// Lifetime in seconds (at most 300).
        #[arg(long, default_value_t = 60)]
        ttl: u64,
    },
    /// Load agents into a stopped center from a JSON Lines file, one agent
    /// per line with its "id" (bulk registration or migration). Every line
    /// is checked before anything is written. Imported creates skip the
    /// mesh-wide vote; peers pull them once the center runs.
    Import {
        /// The center's config.
        #[arg(long)]
        config: PathBuf,
        /// JSON Lines file: {"id": "...", "addresses": [...], ...} per line.
        file: PathBuf,
    },
    /// Explain why a record differs across centers, or how the mesh stands.
    Diagnose {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        cmd: diagnose::DiagnoseCmd,
    },
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// TOML configuration file (see README "Configuration").
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Center id, [A-Za-z0-9._-]{1,64} [default: the host name].
    #[arg(long)]
    id: Option<String>,
    /// Client API listen address [default: 127.0.0.1:7700].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (identity key and database) [default: ./regmesh-data].
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the effective configuration (file + flags + defaults) as TOML.
    Show(ServeArgs),
}

#[derive(Args)]
struct ConnArgs {
    /// Center to talk to.
    #[arg(long, global = true, env = "REGMESH_SERVER", default_value = "http://127.0.0.1:7700")]
    server: String,
    /// Bearer token, if the center requires one.
    #[arg(long, global = true, env = "REGMESH_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Create or replace an agent. The JSON document (--json, --file, or
    /// standard input with --file -) is merged with the flags.
    Put {
        /// Agent id, e.g. did:web:example.com:a1
        id: String,
        /// Agent JSON document.
        #[arg(long, conflicts_with = "file")]
        json: Option<String>,
        /// File with the agent JSON document ("-" for standard input).
        #[arg(long)]
        file: Option<PathBuf>,
        /// IPv6 or IPv4 address (repeatable).
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// Endpoint as PROTOCOL=URL, e.g. a2a=https://a1.example.com/a2a (repeatable).
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
        /// Capability name (repeatable).
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        /// online, offline or unknown.
        #[arg(long)]
        status: Option<String>,
        /// Lease in seconds; renew with `agent beat`.
        #[arg(long)]
        lease: Option<u64>,
        /// Only replace if the current version is this one.
        #[arg(long)]
        if_version: Option<String>,
    },
    /// Show one agent.
    Get {
        id: String,
        /// local (this center's copy) or mesh (also ask every peer).
        #[arg(long)]
        scope: Option<String>,
    },
    /// List agents, optionally filtered.
    Ls {
        #[arg(long)]
        capability: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        origin: Option<String>,
        /// Page size.
        #[arg(long)]
        limit: Option<usize>,
        /// Continue from a previous page's next_cursor.
        #[arg(long)]
        cursor: Option<String>,
        /// Follow next_cursor until the end.
        #[arg(long)]
        all: bool,
        /// local (this center's copy) or mesh (also ask every peer; one page).
        #[arg(long)]
        scope: Option<String>,
    },
    /// Delete an agent.
    Rm { id: String },
    /// Heartbeat: renew the lease and mark online.
    Beat { id: String },
    /// Mark agent ID an alias of agent OF (at ID's origin center), show
    /// the alias (without OF), or remove it (--remove).
    Alias {
        id: String,
        of: Option<String>,
        #[arg(long, conflicts_with = "of")]
        remove: bool,
    },
}

fn effective_config(a: &ServeArgs) -> Result<Config> {
    let mut cfg = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(id) = &a.id {
        cfg.id = id.clone();
    }
    if let Some(l) = a.listen {
        cfg.api.listen = l;
    }
    if let Some(d) = &a.data {
        cfg.data_dir = d.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<std::process::ExitCode> {
    match cli.cmd {
        Cmd::Serve(a) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_new(log_filter::directives(
                        std::env::var("REGMESH_LOG").ok().as_deref(),
                    ))
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter::directives(None))),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let cfg = effective_config(&a)?;
            let running = regmesh_node::NodeBuilder::new(cfg)
                .front(regmesh_front_agent::AgentFront::new())
                .front(regmesh_front_rd::RdFront::new())
                .front(regmesh_front_rpki::RpkiFront::new())
                .front(regmesh_front_dns::DnsFront::new())
                .start()
                .await?;
            // Machine-readable line for scripts and tests: the bound address.
            println!("listening on http://{}", running.addr);
            wait_for_signal().await;
            tracing::info!("shutting down");
            running.shutdown().await;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Config {
            cmd: ConfigCmd::Show(a),
        } => {
            print!("{}", effective_config(&a)?.to_toml_redacted());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Agent { conn, cmd } => agent(conn, cmd).await,
        Cmd::Diagnose { conn, cmd } => diagnose::run(&Client::new(&conn.server, conn.token)?, cmd).await,
        Cmd::Demo {
            dir,
            base_port,
            keep,
            fresh,
        } => {
            demo::run(&dir, base_port, keep, fresh).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Token { config, to, ttl } => {
            let cfg = Config::load(&config)?;
            cfg.validate()?;
            let p = cfg
                .peer
                .as_ref()
                .context("this config has no [peer] section (not in a mesh)")?;
            if !cfg.peers.iter().any(|x| x.id == to) {
                bail!("{to:?} is not a peer of {}", cfg.id);
            }
            let pem = std::fs::read_to_string(&p.key).with_context(|| p.key.display().to_string())?;
            let identity = regmesh_core::Identity::from_pkcs8_pem(&pem)?;
            let mut jti = [0u8; 16];
            getrandom::fill(&mut jti).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            println!("{}", regmesh_core::jwt::issue(&identity, &cfg.id, &to, now, ttl, jti));
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Import { config, file } => import(&config, &file).await,
        Cmd::Init {
            centers,
            topology,
            out,
            base_port,
            fronts,
        } => {
            init::run(centers, topology, &out, base_port, &fronts)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// Lines of an import file: `(line number, id, body)`, each checked.
fn import_lines(
    file: &std::path::Path,
    kind: &std::sync::Arc<dyn regmesh_core::Kind>,
    mut each: impl FnMut(usize, String, regmesh_core::Prepared) -> Result<()>,
) -> Result<usize> {
    use std::io::BufRead;
    let f = std::fs::File::open(file).with_context(|| file.display().to_string())?;
    let mut n = 0;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", file.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut v: Value =
            serde_json::from_str(&line).with_context(|| format!("{}: line {} is not JSON", file.display(), i + 1))?;
        let id = v
            .as_object_mut()
            .and_then(|o| o.remove("id"))
            .and_then(|id| id.as_str().map(String::from))
            .with_context(|| format!("{}: line {} has no \"id\" string", file.display(), i + 1))?;
        let prepared = kind
            .prepare(&id, v)
            .map_err(|e| anyhow::anyhow!("{}: line {} ({id}): {e}", file.display(), i + 1))?;
        each(i + 1, id, prepared)?;
        n += 1;
    }
    Ok(n)
}

async fn import(config: &std::path::Path, file: &std::path::Path) -> Result<std::process::ExitCode> {
    let cfg = Config::load(config)?;
    cfg.validate()?;
    let center = regmesh_node::center::Center::open_with(&cfg, regmesh_front_agent::kinds(), None)
        .context("cannot open the center's data (stop `regmesh serve` for it first)")?;
    let kind = center.kinds().get("agent").context("agent kind")?.clone();
    // Pass 1: check every line; nothing is written if one is bad.
    let n = import_lines(file, &kind, |_, _, _| Ok(()))?;
    // Pass 2: write, many in flight so the writer commits in large groups.
    let t0 = std::time::Instant::now();
    let mut inflight = tokio::task::JoinSet::new();
    let mut refused = 0usize;
    let mut note = |r: Result<(usize, String, Result<(), String>), tokio::task::JoinError>| {
        if let Ok((line, id, Err(e))) = r {
            eprintln!("line {line} ({id}): refused: {e}");
            refused += 1;
        }
    };
    let mut progress = regmesh_node::progress::Progress::stderr("import", Some(n as u64));
    // The file is read on its own thread while the writes are in flight.
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    let reader = {
        let (file, kind) = (file.to_path_buf(), kind.clone());
        std::thread::spawn(move || import_lines(&file, &kind, |line, id, p| Ok(tx.blocking_send((line, id, p))?)))
    };
    while let Some((line, id, prepared)) = rx.recv().await {
        if inflight.len() >= 2048 {
            note(inflight.join_next().await.expect("not empty"));
            progress.add(1);
        }
        let c = center.clone();
        inflight.spawn(async move {
            let r = c
                .write(
                    "agent",
                    &id,
                    regmesh_node::center::WriteOp::Put {
                        prepared,
                        if_version: None,
                        above: None,
                    },
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            (line, id, r)
        });
    }
    reader.join().map_err(|_| anyhow::anyhow!("import reader panicked"))??;
    while let Some(r) = inflight.join_next().await {
        note(r);
        progress.add(1);
    }
    progress.finish();
    center.close();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "imported {} of {n} agents in {secs:.1} s ({:.0}/s)",
        n - refused,
        n as f64 / secs.max(1e-3)
    );
    Ok(if refused == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Prints a reply: JSON bodies pretty on stdout for 2xx, the error message
/// on stderr otherwise. Returns the exit code.
fn report(r: &Reply) -> std::process::ExitCode {
    if r.status.is_success() {
        if !r.body.is_empty() {
            let v = r.json();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        std::process::ExitCode::SUCCESS
    } else {
        let v = r.json();
        let msg = v["error"]["message"].as_str().unwrap_or("");
        let code = v["error"]["code"].as_str().unwrap_or("");
        eprintln!("error: {} {code}: {msg}", r.status.as_u16());
        std::process::ExitCode::FAILURE
    }
}

/// A record id as its path segment: the id itself, never escaped (README,
/// "Record ids"), after the same check the center makes.
fn enc(id: &str) -> Result<&str> {
    regmesh_core::validate_record_id(id).with_context(|| format!("{id:?} is not a valid record id"))?;
    Ok(id)
}

async fn agent(conn: ConnArgs, cmd: AgentCmd) -> Result<std::process::ExitCode> {
    let client = Client::new(&conn.server, conn.token.clone())?;
    let reply = match cmd {
        AgentCmd::Put {
            id,
            json,
            file,
            addresses,
            endpoints,
            capabilities,
            status,
            lease,
            if_version,
        } => {
            let mut doc: Value = match (json, file) {
                (Some(j), _) => serde_json::from_str(&j).context("--json is not valid JSON")?,
                (None, Some(p)) if p.as_os_str() == "-" => {
                    serde_json::from_reader(std::io::stdin()).context("standard input is not valid JSON")?
                }
                (None, Some(p)) => serde_json::from_slice(&std::fs::read(&p).with_context(|| p.display().to_string())?)
                    .with_context(|| format!("{} is not valid JSON", p.display()))?,
                (None, None) => json!({}),
            };
            let Some(obj) = doc.as_object_mut() else {
                bail!("the agent document must be a JSON object")
            };
            let push = |obj: &mut serde_json::Map<String, Value>, key: &str, items: Vec<Value>| {
                if !items.is_empty() {
                    let arr = obj.entry(key).or_insert_with(|| json!([]));
                    if let Some(a) = arr.as_array_mut() {
                        a.extend(items);
                    }
                }
            };
            push(obj, "addresses", addresses.into_iter().map(Value::String).collect());
            let mut eps = Vec::new();
            for e in endpoints {
                let Some((p, u)) = e.split_once('=') else {
                    bail!("--endpoint must be PROTOCOL=URL, got {e:?}")
                };
                eps.push(json!({"protocol": p, "url": u}));
            }
            push(obj, "endpoints", eps);
            push(
                obj,
                "capabilities",
                capabilities.into_iter().map(|c| json!({"name": c})).collect(),
            );
            if let Some(s) = status {
                obj.insert("status".into(), Value::String(s));
            }
            if let Some(l) = lease {
                obj.insert("lease_s".into(), Value::from(l));
            }
            let mut c = client.connect().await?;
            let body = serde_json::to_vec(&doc)?;
            let mut b = c
                .builder(Method::PUT, &format!("/v1/agents/{}", enc(&id)?))
                .header("content-type", "application/json");
            if let Some(v) = if_version {
                b = b.header("if-match", format!("\"{v}\""));
            }
            c.send_raw(b.body(http_body_util::Full::new(body.into()))?).await?
        }
        AgentCmd::Get { id, scope } => {
            let q = scope
                .map(|s| format!("?scope={}", query_escape(&s)))
                .unwrap_or_default();
            client
                .request(Method::GET, &format!("/v1/agents/{}{q}", enc(&id)?), None)
                .await?
        }
        AgentCmd::Rm { id } => {
            let r = client
                .request(Method::DELETE, &format!("/v1/agents/{}", enc(&id)?), None)
                .await?;
            if r.status == StatusCode::NO_CONTENT {
                eprintln!("deleted {id}");
            }
            r
        }
        AgentCmd::Beat { id } => {
            client
                .request(Method::POST, &format!("/v1/agents/{}/heartbeat", enc(&id)?), None)
                .await?
        }
        AgentCmd::Alias { id, of, remove } => {
            let path = format!("/v1/agents/{}/alias", enc(&id)?);
            match (of, remove) {
                (Some(of), _) => {
                    let body = json!({"of": enc(&of)?});
                    client.request(Method::PUT, &path, Some(&body)).await?
                }
                (None, true) => client.request(Method::DELETE, &path, None).await?,
                (None, false) => client.request(Method::GET, &path, None).await?,
            }
        }
        AgentCmd::Ls {
            capability,
            tag,
            status,
            origin,
            limit,
            cursor,
            all,
            scope,
        } => {
            let mut params: Vec<(String, String)> = Vec::new();
            for (k, v) in [
                ("capability", capability),
                ("tag", tag),
                ("status", status),
                ("origin", origin),
                ("cursor", cursor),
                ("scope", scope),
            ] {
                if let Some(v) = v {
                    params.push((k.into(), v));
                }
            }
            if let Some(l) = limit {
                params.push(("limit".into(), l.to_string()));
            }
            let mut c = client.connect().await?;
            let mut items = Vec::new();
            loop {
                let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", query_escape(v))).collect();
                let r = c
                    .request(Method::GET, &format!("/v1/agents?{}", q.join("&")), None)
                    .await?;
                if !r.status.is_success() || !all {
                    return Ok(report(&r));
                }
                let v = r.json();
                items.extend(v["items"].as_array().cloned().unwrap_or_default());
                match v["next_cursor"].as_str() {
                    Some(next) => {
                        params.retain(|(k, _)| k != "cursor");
                        params.push(("cursor".into(), next.to_string()));
                    }
                    None => break,
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"items": items, "next_cursor": null}))?
            );
            return Ok(std::process::ExitCode::SUCCESS);
        }
    };
    Ok(report(&reply))
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
