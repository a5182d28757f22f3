//! `cargo run` serves the app; `cargo run -- manifest --json` prints every
//! action for `portcullis audit`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use portcullis::Config;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let dir = PathBuf::from(std::env::var("PORTCULLIS_DATA_DIR").unwrap_or_else(|_| "data".into()));
    std::fs::create_dir_all(&dir)?;
    let (config, notes) = Config::from_env(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let app = {{crate}}::build(config, {{crate}}::connect(&url).await?).await?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args == ["manifest", "--json"] {
        println!("{}", serde_json::to_string_pretty(&app.manifest())?);
        return Ok(());
    }
    for note in notes {
        eprintln!("{note}");
    }
    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    portcullis::serve(listener, app.router()).await?;
    Ok(())
}
