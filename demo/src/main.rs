//! The demo binary: `cargo run` serves it on embedded SQLite.
//!
//! ```text
//! demo                    serve on PORTCULLIS_ADDR (default 127.0.0.1:3000);
//!                         GET /metrics on PORTCULLIS_ADMIN_ADDR if set (e.g. 127.0.0.1:9090)
//! demo manifest --json    print every action (name, id, policy, limits, fields)
//! demo seed [--bench]     fill the database with a sample world / the bench workload
//! demo check --deploy     list every development setting production would refuse;
//!                         exit 1 if there is one, 0 for a correct production setup
//! ```
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use demo::StartError;
use demo::db::{self, Db};
use portcullis::Config;

/// How long shutdown waits for the database to take the queued audit rows
/// before logging them instead (src/audit.rs).
const AUDIT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

fn data_dir() -> PathBuf {
    std::env::var_os("PORTCULLIS_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("data"))
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr: stdout is for command output (`manifest --json`
    // is piped into `portcullis audit`).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // tower-sessions-core logs every failed store call as an
                // error event; the framework already logs a store outage
                // (once down, a summary a minute, once up), so those
                // per-request duplicates are off.
                .unwrap_or_else(|_| {
                    "info,sqlx=warn,tower_sessions=warn,tower_sessions_core=off".into()
                }),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args == ["check", "--deploy"] {
        return check_deploy();
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `demo check --deploy`: like Django's, one line per finding.
fn check_deploy() -> ExitCode {
    let findings = demo::deploy_check(&|k| std::env::var(k).ok(), &data_dir());
    if findings.is_empty() {
        println!("deploy check: no findings; this environment is configured for production");
        return ExitCode::SUCCESS;
    }
    println!("deploy check: {} finding(s):", findings.len());
    for f in &findings {
        println!("  - {f}");
    }
    ExitCode::FAILURE
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = data_dir();
    let quiet = matches!(args.first(), Some(&"manifest"));
    let (config, notes) = Config::from_env(&dir)?;
    if !quiet {
        for note in &notes {
            tracing::info!("{note}");
        }
    }
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        let _ = std::fs::create_dir_all(&dir);
        db::default_url(&dir)
    });
    match args.as_slice() {
        [] | ["serve"] => serve(config, &url).await,
        ["manifest", rest @ ..] => {
            let db = connect(&url).await?;
            let app = demo::build(config, &db).await?;
            let manifest = app.manifest();
            if rest.contains(&"--json") {
                println!("{}", serde_json::to_string_pretty(&manifest)?);
            } else {
                for a in &manifest.actions {
                    println!("{:<28} {}  {:?}", a.meta.name, a.id, a.meta.policy);
                }
            }
            Ok(())
        }
        ["seed"] => {
            let db = connect(&url).await?;
            for line in demo::seed::sample(&db).await? {
                println!("{line}");
            }
            Ok(())
        }
        ["seed", "--bench"] => {
            let db = connect(&url).await?;
            let sessions = demo::Sessions::choose(&db, &config).await?;
            let name = portcullis::session::cookie_name(&config);
            println!("# cookie\tuser\tproject_id");
            for s in demo::seed::bench(&db, &sessions, name).await? {
                println!("{}\tu{}\t{}", s.cookie, s.user_index + 1, s.project_id);
            }
            Ok(())
        }
        other => Err(format!(
            "unknown arguments {other:?}; usage: demo [serve | manifest [--json] | seed [--bench] | check --deploy]"
        )
        .into()),
    }
}

/// `Db::connect`, its failure named by cause (`StartError::database`).
async fn connect(url: &str) -> Result<Db, StartError> {
    Db::connect(url)
        .await
        .map_err(|e| StartError::database(url, e))
}

/// Binds the address in `var`, a failure naming it.
async fn listen(var: &'static str, addr: &str) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Listen {
            var,
            addr: addr.to_owned(),
            reason: e.to_string(),
        })
}

async fn serve(config: Config, url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let db = connect(url).await?;
    let (app, audit) = demo::build_serving(config, &db).await?;
    let listener = listen("PORTCULLIS_ADDR", &addr).await?;
    tracing::info!(
        "demo listening on http://{} ({} actions, database {:?}, sessions {})",
        listener.local_addr()?,
        app.manifest().actions.len(),
        db.dialect,
        if app.config().redis_url.is_some() {
            "redis"
        } else {
            "database"
        }
    );
    // Metrics live on a separate, private listener, off unless asked for:
    // they name every action and show traffic, so they are not public.
    if let Ok(admin) = std::env::var("PORTCULLIS_ADMIN_ADDR") {
        let admin_listener = listen("PORTCULLIS_ADMIN_ADDR", &admin).await?;
        tracing::info!(
            "admin (GET /metrics) on http://{}",
            admin_listener.local_addr()?
        );
        let admin_router = app.admin_router();
        tokio::spawn(async move {
            if let Err(e) = portcullis::serve(admin_listener, admin_router).await {
                tracing::error!(error = %e, "admin listener stopped");
            }
        });
    }
    // Header-read and idle timeouts, connection caps (PORTCULLIS_* overrides).
    let limits = portcullis::app::ServeConfig::from_env(app.config())?;
    portcullis::app::serve_with(
        listener,
        app.router(),
        limits,
        portcullis::app::shutdown_signal(),
    )
    .await?;
    // Every acknowledged mutation has queued its audit row by now (the
    // server waited for in-flight requests): write them all before exiting.
    audit.shutdown(AUDIT_SHUTDOWN_GRACE).await;
    tracing::info!("audit log flushed; exiting");
    Ok(())
}
