//! `mirrordns admin`: cluster-wide on-call actions, written to the cluster's Redis and applied
//! by every instance within a second, beside each one's admin-state file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand, ValueEnum};

use super::admin::{self, WriteError};
use super::{AdminKind, AdminRecord, Cluster};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The config whose `[cluster]` names the Redis; mirrors and services are checked
    /// against it.
    #[arg(long, short, global = true, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub action: AdminAction,
}

/// When an entry ends and why it was made.
#[derive(Debug, Args)]
pub struct Terms {
    /// When the entry stops applying: an RFC 3339 time ("2026-12-04T06:00:00Z") or a
    /// duration from now ("2h", "30m"). Default: until cleared.
    #[arg(long)]
    pub until: Option<String>,
    /// Shown in /status beside the entry.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Take a mirror out of every answer on every instance.
    Drain {
        mirror: String,
        #[command(flatten)]
        terms: Terms,
    },
    /// Treat a mirror as routable whatever the probes say, on every instance.
    ForceUp {
        mirror: String,
        #[command(flatten)]
        terms: Terms,
    },
    /// Block a release version: mirrors need not hold it.
    Block {
        version: String,
        #[command(flatten)]
        terms: Terms,
    },
    /// Require RELEASE (a manifest path under the origin) for SERVICE instead of its
    /// configured releases.
    Pin {
        service: String,
        release: String,
        #[command(flatten)]
        terms: Terms,
    },
    /// Remove the cluster entry for a mirror (drain or force-up), a blocked version or a
    /// pinned service.
    Clear {
        #[arg(value_enum)]
        kind: ClearKind,
        target: String,
    },
    /// Print the cluster's entries as Redis holds them (one JSON object per line).
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClearKind {
    /// A drain or force-up of the mirror TARGET.
    Mirror,
    Drain,
    ForceUp,
    Block,
    Pin,
}

/// Why the command failed, and its exit code: 2 for usage and config, 1 for Redis.
fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

fn until_of(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(d) = crate::config::parse_duration(s) {
        return Ok(now + d);
    }
    humantime::parse_rfc3339_weak(s).map_err(|e| {
        format!("--until `{s}` is neither a time such as 2026-12-04T06:00:00Z nor a duration such as 2h: {e}")
    })
}

/// The entry an action writes, checked against the config (a name no instance knows would
/// apply nowhere, silently).
fn entry_of(
    a: &AdminAction,
    cfg: &Config,
    by: &str,
    now: SystemTime,
) -> Result<Option<AdminRecord>, String> {
    let (action, target, release, terms) = match a {
        AdminAction::Drain { mirror, terms } => (AdminKind::Drain, mirror, None, terms),
        AdminAction::ForceUp { mirror, terms } => (AdminKind::ForceUp, mirror, None, terms),
        AdminAction::Block { version, terms } => (AdminKind::Block, version, None, terms),
        AdminAction::Pin {
            service,
            release,
            terms,
        } => (AdminKind::Pin, service, Some(release.clone()), terms),
        AdminAction::Clear { .. } | AdminAction::List => return Ok(None),
    };
    let mut target = target.trim().to_string();
    match action {
        AdminKind::Drain | AdminKind::ForceUp => {
            if !cfg.mirrors.iter().any(|m| m.name == target) {
                return Err(format!(
                    "mirror `{target}` is not in {}",
                    cfg.path.display()
                ));
            }
        }
        AdminKind::Block => {
            if target.is_empty() {
                return Err("the version must not be empty".into());
            }
        }
        AdminKind::Pin => {
            target = target.trim_end_matches('.').to_ascii_lowercase();
            if !cfg.services.iter().any(|s| s.name == target) {
                return Err(format!(
                    "service `{target}` is not in {}",
                    cfg.path.display()
                ));
            }
            if !release
                .as_deref()
                .is_some_and(crate::config::is_safe_relative_path)
            {
                return Err(format!(
                    "`{}` is not a manifest path relative to [origin] base-url",
                    release.unwrap_or_default()
                ));
            }
        }
    }
    let until = match &terms.until {
        Some(u) => {
            let t = until_of(u, now)?;
            if t <= now {
                return Err(format!("--until `{u}` is already past"));
            }
            Some(humantime::format_rfc3339_seconds(t).to_string())
        }
        None => None,
    };
    Ok(Some(AdminRecord {
        action,
        target,
        release,
        until,
        reason: terms.reason.clone(),
        by: by.to_string(),
        at: humantime::format_rfc3339_seconds(now).to_string(),
        mac: None,
    }))
}

fn load(config: &Path) -> Result<(Config, Cluster), ExitCode> {
    let cfg = Config::load(config).map_err(|p| {
        for p in &p.0 {
            eprintln!("error: {p}");
        }
        ExitCode::from(2)
    })?;
    let Some(cc) = &cfg.cluster else {
        return Err(fail(
            2,
            format!(
                "{}: no [cluster] section: cluster-wide entries need one (or use the admin-state file, [server] admin-state)",
                cfg.path.display()
            ),
        ));
    };
    let c = Cluster::new(cc).map_err(|e| fail(2, e))?;
    Ok((cfg, c))
}

pub async fn run(args: AdminArgs) -> ExitCode {
    let (cfg, c) = match load(&args.config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let by = admin::author(c.name());
    let unreachable = |e: WriteError| {
        let why = c
            .state()
            .last_error
            .map(|(_, e)| format!(": {e}"))
            .unwrap_or_default();
        fail(1, format!("{e}{why}"))
    };
    match &args.action {
        AdminAction::List => match admin::list(&c).await {
            Ok(all) => {
                for (_, json) in all {
                    println!("{json}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => unreachable(e),
        },
        AdminAction::Clear { kind, target } => {
            let target = target.trim();
            let field = match kind {
                ClearKind::Mirror | ClearKind::Drain | ClearKind::ForceUp => {
                    AdminKind::Drain.field(target)
                }
                ClearKind::Block => AdminKind::Block.field(target),
                ClearKind::Pin => {
                    AdminKind::Pin.field(&target.trim_end_matches('.').to_ascii_lowercase())
                }
            };
            match admin::clear(&c, std::slice::from_ref(&field)).await {
                Ok(0) => fail(1, format!("no cluster entry `{field}` to clear")),
                Ok(_) => {
                    println!("cleared `{field}`: every instance applies it within a second");
                    ExitCode::SUCCESS
                }
                Err(e) => unreachable(e),
            }
        }
        action => {
            let entry = match entry_of(action, &cfg, &by, SystemTime::now()) {
                Ok(Some(e)) => e,
                Ok(None) => return ExitCode::SUCCESS,
                Err(e) => return fail(2, e),
            };
            match admin::put(&c, &entry).await {
                Ok(()) => {
                    println!(
                        "{} `{}`{}: written to the cluster; every instance applies it within a second",
                        match entry.action {
                            AdminKind::Drain => "drain",
                            AdminKind::ForceUp => "force-up",
                            AdminKind::Block => "block",
                            AdminKind::Pin => "pin",
                        },
                        entry.target,
                        entry
                            .until
                            .as_deref()
                            .map(|u| format!(" until {u}"))
                            .unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => unreachable(e),
            }
        }
    }
}
