//! `photo-pacs`: serve (the default) and the command-line tools. Only wiring lives here.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use photo_pacs::app::App;
use photo_pacs::cli::{self, ConvertRequest};
use photo_pacs::config::{Backend, EnvConfig};
use photo_pacs::pacs::InstanceStatus;
use photo_pacs::{http, outbox, provision, selfcheck, status, supervisor, telemetry};

/// Phone photos into the hospital PACS as DICOM. Configured by PHOTO_PACS_* environment
/// variables and the settings page; see README.md.
#[derive(Parser)]
#[command(name = "photo-pacs", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app and API (what runs when no command is given).
    Serve,
    /// Convert photos into DICOM files, all in one study, with the settings in force.
    Convert(Box<ConvertArgs>),
    /// Test the connection to the PACS with the settings in force.
    Echo,
    /// Send DICOM files this gateway wrote (e.g. kept after a failed delivery) to the PACS.
    Send {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The outbox: studies saved on the box and their delivery. `retry` and `delete` need
    /// the gateway stopped (use the settings page while it runs).
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Save the configuration (settings in force, PHOTO_PACS_* environment, host name, Wi-Fi
    /// and tunnel presence) as a backup file. Secrets only with --include-secrets, then
    /// encrypted with the passphrase in PHOTO_PACS_BACKUP_PASSPHRASE.
    Backup {
        /// Write the file here (mode 0600) instead of to standard output
        #[arg(long)]
        out: Option<PathBuf>,
        /// Include the DICOMweb password and token and the upload PIN (encrypted)
        #[arg(long)]
        include_secrets: bool,
    },
    /// Show what a backup file would change; with --apply, restore it. An encrypted file
    /// needs its passphrase in PHOTO_PACS_BACKUP_PASSPHRASE. A running gateway keeps its
    /// settings in memory: restart it after --apply.
    Restore {
        file: PathBuf,
        /// Write the settings (and the restored environment file) instead of only showing them
        #[arg(long)]
        apply: bool,
    },
    /// Apply the first-boot file (photo-pacs.env on the SD card's boot partition) to the
    /// data partition; the SD-card image runs this at boot. Prints what it did, never a secret.
    Provision {
        /// Where the boot partition is mounted (read-write while this runs)
        #[arg(long, default_value = "/boot/firmware")]
        boot: PathBuf,
        /// Where the data partition is mounted
        #[arg(long, default_value = "/data")]
        data: PathBuf,
        /// Zero at most this many MiB of the boot partition's free space once a secret is removed
        #[arg(long, default_value_t = 1024)]
        wipe_free_mib: u64,
    },
    /// Install a signed system update (a .raucb file or an https:// URL) into the other root
    /// slot through RAUC; reboot afterwards to start it. --status shows the slots.
    Update {
        /// The bundle file or its https:// address
        #[arg(required_unless_present = "status")]
        target: Option<String>,
        /// Install a version older than the running one
        #[arg(long)]
        allow_downgrade: bool,
        /// Do not ask before installing
        #[arg(long)]
        yes: bool,
        /// Show the root slots and what runs
        #[arg(long, conflicts_with_all = ["allow_downgrade", "yes"])]
        status: bool,
    },
    /// Apply the gateway's time request (time zone, NTP servers) as root; the SD-card image
    /// runs this at boot and whenever the gateway rewrites the request.
    ApplyTime {
        /// The request the gateway writes beside settings.ini
        #[arg(long, default_value = "/var/lib/photo-pacs/data/time-request.env")]
        request: PathBuf,
    },
    /// Check a freshly started box, with the gateway's own environment: it answers its
    /// health check; the data folders, settings and outbox can be read and the folders
    /// written. One line per check; exit status 1 naming what failed. Meant for the unit
    /// that marks a newly installed root slot good, run as root.
    SelfCheck {
        /// Seconds to wait for the gateway to answer (it may still be starting)
        #[arg(long, default_value_t = selfcheck::DEFAULT_TIMEOUT.as_secs())]
        timeout: u64,
    },
    /// Ask the running gateway for GET /healthz on PHOTO_PACS_LISTEN (loopback when it
    /// listens on every address): exit status 0 when it answers 200, else 1. The container
    /// image's health check, as the image has no curl.
    Health {
        /// Seconds to wait for the answer
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

/// `photo-pacs convert`: the upload form's fields, for files on disk.
#[derive(clap::Args, Debug)]
struct ConvertArgs {
    #[arg(long)]
    patient_id: String,
    #[arg(long)]
    patient_name: Option<String>,
    /// YYYY-MM-DD
    #[arg(long)]
    birth_date: Option<String>,
    /// M, F, O or U
    #[arg(long)]
    sex: Option<String>,
    /// ISO 8601; default now
    #[arg(long)]
    exam_date_time: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Where on the body, for every photo: a key such as forearm, or a SNOMED CT code
    #[arg(long)]
    body_site: Option<String>,
    /// L, R or B (paired body sites only)
    #[arg(long)]
    laterality: Option<String>,
    /// A short note on the site, for every photo
    #[arg(long)]
    body_site_note: Option<String>,
    /// Directory for the .dcm files
    #[arg(long, default_value = ".")]
    out: PathBuf,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum OutboxAction {
    /// Every study, oldest first, with its state (Patient ID masked).
    List,
    /// Send refused or waiting studies again at the next start, to the PACS set now.
    Retry {
        /// Study IDs (from `list`)
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Every study that is not stored
        #[arg(long)]
        all: bool,
    },
    /// Delete studies and their files for good.
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// An update that did not happen: exit status 1, as the contract with scripts says.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct UpdateFailed(#[from] cli::CliError);

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // A failed check is an answer, not a breakdown: the slot-marking unit tells the two
        // apart by the status (2 is the command itself going wrong).
        Err(e)
            if e.downcast_ref::<selfcheck::Failed>().is_some()
                || e.downcast_ref::<NotHealthy>().is_some() =>
        {
            println!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("photo-pacs: {e:#}");
            if e.downcast_ref::<UpdateFailed>().is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Read per command: `provision` runs before the gateway's environment exists (the file
    // it applies may be what makes it).
    let env = EnvConfig::from_process;
    let command = cli.command.unwrap_or(Command::Serve);
    if !matches!(
        command,
        Command::Provision { .. } | Command::ApplyTime { .. }
    ) {
        // Everything the gateway writes can hold patient data: this user's alone, whatever
        // umask it was started with. (`provision` writes files for others with set modes.)
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
    match command {
        Command::Provision {
            boot,
            data,
            wipe_free_mib,
        } => provision(&boot, &data, wipe_free_mib),
        Command::ApplyTime { request } => apply_time(request),
        Command::Update {
            target,
            allow_downgrade,
            yes,
            status,
        } => update_command(&env()?, target, allow_downgrade, yes, status),
        Command::Serve => serve(env()?),
        Command::SelfCheck { timeout } => self_check(env(), timeout),
        Command::Health { timeout } => health(&env()?, timeout),
        Command::Convert(args) => {
            let ConvertArgs {
                patient_id,
                patient_name,
                birth_date,
                sex,
                exam_date_time,
                description,
                body_site,
                laterality,
                body_site_note,
                out,
                files,
            } = *args;
            let env = env()?;
            let settings = cli::settings_in_force(&env)?;
            let req = ConvertRequest {
                patient_id,
                patient_name,
                birth_date,
                sex,
                exam_date_time,
                exam_description: description,
                body_site,
                laterality,
                body_site_note,
            };
            for path in cli::convert_files(&env, &settings, req, &files, &out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Outbox { action } => outbox_command(&env()?, action),
        Command::Backup {
            out,
            include_secrets,
        } => backup_command(&env()?, out.as_deref(), include_secrets),
        Command::Restore { file, apply } => {
            let env = env()?;
            let passphrase = std::env::var(cli::PASSPHRASE_VAR).ok();
            let report = runtime()?.block_on(cli::restore_file(
                &env,
                &file,
                passphrase.as_deref(),
                apply,
            ))?;
            for line in cli::report_lines(&report) {
                println!("{line}");
            }
            if !report.applied {
                println!("preview only: nothing was changed; add --apply to restore");
            } else {
                println!(
                    "restored into {}; restart the gateway (systemctl restart photo-pacs) so that it uses these settings{}",
                    env.settings_path.display(),
                    if report.restart_needed {
                        " and the restored environment"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        Command::Echo => {
            let env = env()?;
            let settings = cli::settings_in_force(&env)?;
            let line = runtime()?.block_on(cli::echo(&env, &settings))?;
            println!("{line}");
            Ok(())
        }
        Command::Send { files } => {
            let env = env()?;
            let settings = cli::settings_in_force(&env)?;
            let results = runtime()?.block_on(cli::send_files(&env, &settings, &files))?;
            let mut failed = 0;
            for (path, status) in &results {
                match status {
                    InstanceStatus::Success => println!("{}: stored", path.display()),
                    InstanceStatus::Warning(w) => println!("{}: stored, {w}", path.display()),
                    InstanceStatus::Failed(r) => {
                        failed += 1;
                        println!("{}: FAILED, {r}", path.display());
                    }
                }
            }
            anyhow::ensure!(
                failed == 0,
                "{failed} of {} files were not stored",
                results.len()
            );
            Ok(())
        }
    }
}

fn provision(
    boot: &std::path::Path,
    data: &std::path::Path,
    wipe_free_mib: u64,
) -> anyhow::Result<()> {
    let targets = provision::Targets::under(data);
    let now = chrono::Local::now().format("%Y-%m-%d %H:%M %Z").to_string();
    let outcome = runtime()?.block_on(provision::provision(
        boot,
        &targets,
        &now,
        wipe_free_mib.saturating_mul(1024 * 1024),
    ))?;
    for a in &outcome.applied {
        println!("applied: {a}");
    }
    // Problems in the user's file are reported, not a failure: the rest of it still applied.
    for p in &outcome.problems {
        eprintln!("<4>problem in the first-boot file: {p}");
    }
    if outcome.applied.is_empty() && outcome.problems.is_empty() {
        println!("no first-boot file to apply");
    }
    Ok(())
}

fn apply_time(request: PathBuf) -> anyhow::Result<()> {
    use provision::time;
    let paths = time::TimePaths::system(request);
    let now = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let outcome = time::apply_time(&paths, &mut time::System, &now)?;
    for a in &outcome.applied {
        println!("in effect: {a}");
    }
    for p in &outcome.problems {
        eprintln!("<4>time request: {p}");
    }
    if outcome.applied.is_empty() && outcome.problems.is_empty() {
        println!("no time request at {}", paths.request.display());
    }
    Ok(())
}

fn self_check(
    env: Result<EnvConfig, photo_pacs::config::EnvError>,
    timeout: u64,
) -> anyhow::Result<()> {
    let env = match env {
        Ok(env) => env,
        Err(e) => {
            // The gateway would not start with it either: a check that failed, named.
            println!("FAIL config: {e}");
            return Err(selfcheck::Failed(vec!["config"]).into());
        }
    };
    let checks = runtime()?.block_on(selfcheck::run(
        &env,
        std::time::Duration::from_secs(timeout),
    ));
    for check in &checks {
        println!("{}", check.line());
    }
    selfcheck::verdict(&checks)?;
    println!("self-check passed");
    Ok(())
}

fn backup_command(
    env: &EnvConfig,
    out: Option<&std::path::Path>,
    include_secrets: bool,
) -> anyhow::Result<()> {
    let passphrase = if include_secrets {
        let p = std::env::var(cli::PASSPHRASE_VAR).with_context(|| {
            format!(
                "--include-secrets needs the passphrase to encrypt the file with in {}",
                cli::PASSPHRASE_VAR
            )
        })?;
        Some(p)
    } else {
        None
    };
    let (bytes, name) = cli::backup_file(env, passphrase.as_deref())?;
    match out {
        Some(path) => {
            photo_pacs::config::write_atomically(path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "backup written to {} ({} secrets; the settings page would name it {name})",
                path.display(),
                if include_secrets {
                    "with encrypted"
                } else {
                    "without"
                }
            );
        }
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&bytes)
                .and_then(|()| stdout.flush())
                .context("cannot write the backup to standard output")?;
        }
    }
    Ok(())
}

fn outbox_command(env: &EnvConfig, action: OutboxAction) -> anyhow::Result<()> {
    match action {
        OutboxAction::List => {
            let outbox = cli::open_outbox(env, false)?;
            let studies = outbox.list();
            for v in &studies {
                println!("{}", cli::outbox_line(v));
            }
            if studies.is_empty() {
                println!("the outbox is empty");
            }
        }
        OutboxAction::Retry { ids, all } => {
            let outbox = cli::open_outbox(env, true)?;
            let settings = cli::settings_in_force(env)?;
            let current = photo_pacs::pacs::Sender::for_backend(env.backend).destination(&settings);
            let ids = if all {
                outbox
                    .list()
                    .into_iter()
                    .filter(|v| v.state != photo_pacs::outbox::StudyState::Stored)
                    .map(|v| v.id)
                    .collect()
            } else {
                ids
            };
            for id in ids {
                let v = outbox.retry(&id, current.clone())?;
                println!(
                    "{id}: will be sent at the next start, to {}",
                    v.destination.describe()
                );
            }
        }
        OutboxAction::Delete { ids } => {
            let outbox = cli::open_outbox(env, true)?;
            for id in ids {
                let v = outbox.delete(&id)?;
                println!("{id}: deleted ({} image(s))", v.instances.len());
            }
        }
    }
    Ok(())
}

/// `photo-pacs health` found no healthy gateway: status 1, which container engines read as
/// "unhealthy" (2 is reserved there).
#[derive(Debug, thiserror::Error)]
#[error("unhealthy: GET /healthz on {addr} did not answer 200 within {secs} s")]
struct NotHealthy {
    addr: std::net::SocketAddr,
    secs: u64,
}

fn health(env: &EnvConfig, timeout: u64) -> anyhow::Result<()> {
    let addr = supervisor::self_address(env.listen);
    let within = std::time::Duration::from_secs(timeout);
    // One probe on this thread: the health check runs every few seconds for the life of a
    // container, so it should cost as little as a curl would.
    let answered = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(supervisor::answers(addr, within));
    if !answered {
        return Err(NotHealthy {
            addr,
            secs: timeout,
        }
        .into());
    }
    println!("healthy: {addr} answers /healthz");
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(env: EnvConfig) -> anyhow::Result<()> {
    telemetry::init_logging(env.log_level);
    for var in &env.unknown_vars {
        log::warn!("unknown environment variable {var} ignored (check its spelling)");
    }
    let listen = env.listen;
    let app = App::new(env)?;
    for warning in app.warnings(&app.settings.current()) {
        log::warn!("{warning}");
    }
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        log::info!(
            "listening on http://{addr} (backend {}, environment {}, settings {})",
            app.env.backend.as_str(),
            app.env.environment.as_str(),
            app.settings.path().display()
        );
        if app.env.backend == Backend::Mock {
            log::warn!("demo mode: the mock backend accepts uploads but sends nothing to a PACS");
        }
        let status = format!("serving on {addr}, backend {}", app.env.backend.as_str());
        let app = Arc::new(app);
        let settings_of = app.clone();
        tokio::spawn(outbox::run_worker(
            app.outbox.clone(),
            app.sender.clone(),
            move || settings_of.settings.current(),
        ));
        tokio::spawn(status::watch_pacs(app.clone()));
        let outbox_of = app.outbox.clone();
        tokio::spawn(app.updates.clone().run(move || outbox_of.is_sending()));
        let server = tokio::spawn(http::serve(listener, app, shutdown_signal()));
        let probe = supervisor::self_address(addr);
        supervisor::announce_ready(probe, &status).await;
        supervisor::spawn_watchdog(probe);
        server.await.context("the server task failed")?;
        Ok(())
    })
}

/// `photo-pacs update`: judge, show, ask, install with a progress line; never reboots.
fn update_command(
    env: &EnvConfig,
    target: Option<String>,
    allow_downgrade: bool,
    yes: bool,
    status: bool,
) -> anyhow::Result<()> {
    let rt = runtime()?;
    if status {
        for line in rt.block_on(cli::update_status(env)).map_err(UpdateFailed)? {
            println!("{line}");
        }
        return Ok(());
    }
    let target = target.unwrap_or_default();
    let u = cli::updates(env);
    let pending = rt
        .block_on(cli::update_fetch(&u, &target, allow_downgrade))
        .map_err(UpdateFailed)?;
    for line in cli::pending_lines(&pending) {
        println!("{line}");
    }
    if !yes {
        use std::io::Write;
        print!("install {} into the other slot? [y/N] ", pending.version);
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("not installed; the bundle stays pending (the settings page can install it)");
            return Ok(());
        }
    }
    let mut last = String::new();
    let result = rt
        .block_on(cli::update_install(&u, allow_downgrade, |p| {
            let line = format!("[{:>3}%] {}", p.percent, p.message);
            if line != last {
                println!("{line}");
                last = line;
            }
        }))
        .map_err(UpdateFailed)?;
    println!(
        "installed {} into slot {}: reboot to finish (the box keeps running the current version until then)",
        result.version, result.slot
    );
    Ok(())
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            log::error!("cannot watch for SIGTERM ({e}); stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    log::info!("stop signal received");
    supervisor::announce_stopping();
}
