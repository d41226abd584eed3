//! The `mirrordns` command line: argument parsing, logging set-up, exit codes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::load::Loaded;

const DEFAULT_CONFIG: &str = crate::config::DEFAULT_PATH;

#[derive(Debug, Parser)]
#[command(
    name = "mirrordns",
    version,
    about = "Authoritative geo-DNS for download mirrors"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// UDP worker threads per listen address (overrides `[server] udp-workers`).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Load config, zones and geo data as `serve` would; print `ok` or every problem.
    Check {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Also show what a reload would change compared with the running server (asked
        /// through its monitoring endpoint).
        #[arg(long)]
        diff: bool,
    },
    /// Explain the answer for a client at IP (as if its subnet came in ECS). Asks the running
    /// server (through `http-listen`) when it serves this config file, so mirror health counts;
    /// otherwise shows the config-only view and says that mirror health is unknown.
    Lookup {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Service name (default: the first service in the config).
        #[arg(long)]
        name: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Do not ask the running server: the config-only view, mirror health unknown.
        #[arg(long)]
        offline: bool,
        /// The client's address.
        ip: IpAddr,
    },
    /// Fetch the release manifests and verify mirrors once, reporting each in the server's
    /// words (ready, lagging, mismatch, down). Exit 0 only if every mirror checked is ready;
    /// 1 if one is not or a manifest cannot be fetched; 2 if there is nothing to verify (every
    /// mirror static or drained, no releases) or the config is unusable.
    Verify {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Verify only this mirror.
        #[arg(long)]
        mirror: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running server to reload config, zones and geo data (as SIGHUP does), through
    /// its monitoring endpoint on loopback; prints the result, or every problem if rejected.
    Reload {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Make a DNSSEC key pair for ZONE in BIND's format (`K<zone>.+<alg>+<tag>.key` and
    /// `.private`), for operators without BIND's `dnssec-keygen`. Prints the `.private` path
    /// (what `[dnssec] keys` lists) and the DNSKEY record. The key is a KSK (flags 257) unless
    /// --zsk: one key alone is a CSK, a KSK that also signs the zone.
    Keygen {
        /// The zone (its apex) the key signs, e.g. example.com.
        zone: String,
        /// Where to write the two files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = KeyAlgorithm::Ecdsap256sha256)]
        algorithm: KeyAlgorithm,
        /// A key-signing key, flags 257 (the default; with one key it signs everything).
        #[arg(long, conflicts_with = "zsk")]
        ksk: bool,
        /// A zone-signing key, flags 256, for a KSK + ZSK pair.
        #[arg(long)]
        zsk: bool,
    },
    /// Print the DS records (SHA-256) of every KSK in `[dnssec] keys`, to give the parent
    /// zone: one line per key, sorted by zone then key tag.
    Ds {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Cluster-wide on-call actions through `[cluster]`'s Redis: drain, force-up, block, pin,
    /// clear, list. Every instance applies them within a second.
    Admin(crate::cluster::command::AdminArgs),
    /// Run the server on the shipped config with a loopback origin and three mirrors (one
    /// good, one corrupted, one lagging) to show what mirrordns does.
    Demo {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: crate::cli_docs::Shell,
    },
    /// Print the manual page (roff) to stdout; with --dir, write it and one page per command
    /// (mirrordns-serve.1, ...) into DIR instead.
    Man {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyAlgorithm {
    /// 13: ECDSA P-256 with SHA-256 (RFC 6605).
    #[value(name = "ecdsap256sha256")]
    Ecdsap256sha256,
    /// 15: Ed25519 (RFC 8080).
    #[value(name = "ed25519")]
    Ed25519,
}

impl KeyAlgorithm {
    fn number(self) -> u8 {
        match self {
            KeyAlgorithm::Ecdsap256sha256 => crate::dnssec::keys::ECDSAP256SHA256,
            KeyAlgorithm::Ed25519 => crate::dnssec::keys::ED25519,
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

/// `default` is the filter when RUST_LOG is unset.
fn init_logging(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR"),
    );
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// Whether log lines get colour codes: only for a person at a terminal, so that a journal, a
/// file or a pipe to grep holds plain text; NO_COLOR set to anything non-empty turns them off
/// everywhere (https://no-color.org).
fn colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// For the server: hickory logs at info for things we report ourselves, so it stays quiet.
const SERVER_LOG: &str = "info,hickory_proto=warn";
/// For one-shot commands: warnings and errors only, so the report stays readable.
const ONESHOT_LOG: &str = "warn";

/// The running server's endpoint address, or the exit code after saying why there is none.
fn endpoint_or_exit(
    config: &std::path::Path,
    instead: &str,
) -> Result<std::net::SocketAddr, ExitCode> {
    match http_listen_of(config) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => {
            eprintln!(
                "error: {}: `server.http-listen` is off; {instead}",
                config.display()
            );
            Err(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Where to reach the running server's endpoint: `[server] http-listen` of a config file
/// (default 127.0.0.1:9153; a wildcard address through loopback; None when turned off).
fn http_listen_of(path: &std::path::Path) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let addr = http_listen_raw(path)?;
    Ok(addr.map(|mut a| {
        if a.ip().is_unspecified() {
            a.set_ip(if a.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        a
    }))
}

fn http_listen_raw(path: &std::path::Path) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let t: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    match t.get("server").and_then(|s| s.get("http-listen")) {
        None => Ok(Some(([127, 0, 0, 1], 9153).into())),
        Some(toml::Value::String(s)) if s.is_empty() => Ok(None),
        Some(toml::Value::String(s)) => s.parse().map(Some).map_err(|_| {
            anyhow::anyhow!(
                "{}: `server.http-listen`: `{s}` is not an address with port",
                path.display()
            )
        }),
        Some(_) => Err(anyhow::anyhow!(
            "{}: `server.http-listen` must be a string",
            path.display()
        )),
    }
}

/// `mirrordns man`: the page to stdout, or every page into a directory.
fn man(dir: Option<&std::path::Path>) -> ExitCode {
    let written = match dir {
        Some(d) => crate::cli_docs::man_pages(d).map_err(|e| format!("{}: {e}", d.display())),
        None => crate::cli_docs::man_page(&mut std::io::stdout().lock()).map_err(|e| e.to_string()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn load_or_report(config: &std::path::Path) -> Result<Loaded, ExitCode> {
    Loaded::from_file(config).map_err(|problems| {
        for p in &problems.0 {
            eprintln!("error: {p}");
        }
        ExitCode::from(1)
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. } | Command::Demo { .. }) {
        default_sigpipe();
    }
    match cli.command {
        Command::Check { config, diff } => match load_or_report(&config) {
            Ok(loaded) if diff => {
                let addr =
                    match endpoint_or_exit(&config, "--diff asks the running server through it") {
                        Ok(a) => a,
                        Err(code) => return code,
                    };
                let rt = match runtime() {
                    Ok(rt) => rt,
                    Err(code) => return code,
                };
                match rt.block_on(crate::diff::diff(&loaded, addr)) {
                    Ok(report) => {
                        println!("ok");
                        print!("{report}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: cannot compare with the running server: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            Ok(loaded) => {
                // The admin state is operator intent (a drain, a block): a file that would be
                // rejected at start must fail the check, not be found out in /status later.
                if let Some(path) = &loaded.config.server.admin_state
                    && let Err(p) = crate::admin::load(path, &loaded.config)
                {
                    eprintln!("{p}");
                    return ExitCode::from(1);
                }
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Lookup {
            config,
            name,
            json,
            offline,
            ip,
        } => lookup(&config, name.as_deref(), json, offline, ip),
        Command::Verify {
            config,
            mirror,
            json,
        } => {
            init_logging(cli.log_format, ONESHOT_LOG);
            // A config that cannot be used is the gate's own problem (2), not a verdict on
            // the mirrors (1).
            let loaded = match load_or_report(&config) {
                Ok(l) => l,
                Err(_) => return ExitCode::from(2),
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(crate::health::oneshot::verify(
                &loaded.config,
                mirror.as_deref(),
            )) {
                Ok(report) => {
                    if json {
                        match serde_json::to_string_pretty(&report) {
                            Ok(s) => println!("{s}"),
                            Err(e) => {
                                eprintln!("error: {e}");
                                return ExitCode::from(2);
                            }
                        }
                        if let Some(why) = &report.nothing_to_verify {
                            eprintln!("error: nothing to verify: {why}");
                        }
                    } else {
                        println!("{report}");
                    }
                    ExitCode::from(report.exit_code())
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Reload { config } => {
            // Only the endpoint's address is read here: the server itself loads and checks the
            // whole config, and reports every problem back if it rejects it.
            let addr = match endpoint_or_exit(&config, "send SIGHUP to the server instead") {
                Ok(a) => a,
                Err(code) => return code,
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            rt.block_on(async {
                crate::health::http::install_crypto();
                let client = match reqwest::Client::builder()
                    .no_proxy()
                    .timeout(std::time::Duration::from_secs(120))
                    .build()
                {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                };
                match client.post(format!("http://{addr}/reload")).send().await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let body = r.text().await.unwrap_or_default();
                        if ok {
                            print!("{body}");
                            ExitCode::SUCCESS
                        } else {
                            eprint!("{body}");
                            ExitCode::from(1)
                        }
                    }
                    Err(e) => {
                        eprintln!("error: cannot reach the server at http://{addr}/: {e}");
                        ExitCode::from(2)
                    }
                }
            })
        }
        Command::Keygen {
            zone,
            dir,
            algorithm,
            ksk: _,
            zsk,
        } => keygen(&zone, &dir, algorithm, !zsk),
        Command::Ds { config } => ds(&config),
        Command::Completions { shell } => {
            crate::cli_docs::completions(shell, &mut std::io::stdout().lock());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Admin(args) => match runtime() {
            Ok(rt) => rt.block_on(crate::cluster::command::run(args)),
            Err(code) => code,
        },
        Command::Demo { config } => {
            init_logging(cli.log_format, SERVER_LOG);
            run_to_exit(crate::demo::run(config))
        }
        Command::Serve { config, threads } => {
            init_logging(cli.log_format, SERVER_LOG);
            let loaded = match crate::config::Config::load(&config).and_then(|mut c| {
                if let Some(t) = threads {
                    c.server.udp_workers = t.clamp(1, 256);
                }
                Loaded::from_config(c)
            }) {
                Ok(l) => l,
                Err(problems) => {
                    for p in &problems.0 {
                        eprintln!("error: {p}");
                    }
                    return ExitCode::from(1);
                }
            };
            tracing::info!(
                geo = %loaded.geo.describe(),
                compile_ms = loaded.compile_time.as_millis() as u64,
                "loaded {}",
                config.display()
            );
            run_to_exit(crate::daemon::serve(loaded))
        }
    }
}

/// `mirrordns lookup`: the running server's answer when it serves `config`, else the
/// config-only view, saying why mirror health is unknown.
fn lookup(
    config: &std::path::Path,
    name: Option<&str>,
    json: bool,
    offline: bool,
    ip: IpAddr,
) -> ExitCode {
    let asked = if offline {
        Err((
            None,
            "--offline: the running server was not asked".to_string(),
        ))
    } else {
        match http_listen_of(config) {
            Ok(Some(addr)) if addr.port() == 0 => Err((
                None,
                format!(
                    "{}: `server.http-listen` has port 0 (a new one at every start), so the running server cannot be found",
                    config.display()
                ),
            )),
            Ok(Some(addr)) => {
                let rt = match runtime() {
                    Ok(rt) => rt,
                    Err(code) => return code,
                };
                rt.block_on(crate::explain::ask_server(addr, config, name, ip))
                    .map_err(|why| (Some(format!("http://{addr}")), why.to_string()))
            }
            Ok(None) => Err((
                None,
                format!(
                    "{}: `server.http-listen` is off, so there is no running server to ask",
                    config.display()
                ),
            )),
            // The load below reports what is wrong with the file, with its line.
            Err(e) => Err((None, e.to_string())),
        }
    };
    let view = match asked {
        Ok(view) => view,
        Err((server, why)) => {
            let loaded = match load_or_report(config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let table = loaded.table(1);
            match crate::explain::explain(&table, &loaded.geo, name, ip) {
                Ok(e) => crate::explain::LookupView::config_only(e, server, why),
                Err(msg) => {
                    eprintln!("error: {msg}");
                    return ExitCode::from(1);
                }
            }
        }
    };
    if json {
        match serde_json::to_string_pretty(&view) {
            Ok(s) => println!("{s}"),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(1);
            }
        }
    } else {
        println!("{view}");
    }
    ExitCode::SUCCESS
}

/// `mirrordns keygen`: writes the pair, prints the `.private` path and the DNSKEY record.
fn keygen(zone: &str, dir: &std::path::Path, algorithm: KeyAlgorithm, ksk: bool) -> ExitCode {
    use crate::dnssec::keys;
    let Some(name) = crate::zone::Name::from_text(zone) else {
        eprintln!("error: `{zone}` is not a domain name");
        return ExitCode::from(2);
    };
    match keys::generate(&name, algorithm.number(), ksk, dir).and_then(|p| keys::load(&p)) {
        Ok(key) => {
            println!("{}", key.file.display());
            println!("{}", key.dnskey_text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `mirrordns ds`: the DS of every KSK, from the config loaded as `serve` loads it (so a key
/// whose zone is not served is a problem here too).
fn ds(config: &std::path::Path) -> ExitCode {
    let loaded = match load_or_report(config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let Some(dnssec) = &loaded.config.dnssec else {
        eprintln!(
            "error: {}: no [dnssec] section, so no keys and nothing to give the parent",
            config.display()
        );
        return ExitCode::from(1);
    };
    let mut ksks: Vec<_> = dnssec.keys.iter().filter(|k| k.is_ksk()).collect();
    ksks.sort_by_key(|k| (k.owner.to_string(), k.tag));
    for k in &ksks {
        println!("{}", k.ds_text());
    }
    // A zone with only ZSKs has nothing a parent can point at: the chain of trust stops.
    let mut without: Vec<String> = dnssec
        .keys
        .iter()
        .filter(|k| !ksks.iter().any(|ksk| ksk.owner == k.owner))
        .map(|k| k.owner.to_string())
        .collect();
    without.sort();
    without.dedup();
    for zone in &without {
        eprintln!(
            "error: {}: `{zone}` has no KSK (flags 257) in `dnssec.keys`, so no DS to give its parent",
            config.display()
        );
    }
    if without.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs a long-lived command on a fresh runtime; an error is printed and exits 1.
fn run_to_exit<E: Into<anyhow::Error>>(
    fut: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `:#` prints the causes too ("reading FILE: No such file or directory").
            let e: anyhow::Error = e.into();
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A command whose output goes into a pipe that closes early (`mirrordns ds | head -1`) ends
/// quietly, as other Unix tools do, instead of panicking in `println!`: Rust ignores SIGPIPE by
/// default, which the servers keep (a client closing a socket must not kill them).
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition, before any thread is started; no
    // handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_at_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(
            colour(true, Some("".into())),
            "an empty NO_COLOR does not count"
        );
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None), "a file or a pipe");
        assert!(!colour(false, Some("1".into())));
    }
}
