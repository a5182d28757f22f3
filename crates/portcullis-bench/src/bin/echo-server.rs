//! The `echo` benchmark servers. Both parse the same urlencoded body
//! (`projectId=…&name=…`) into the same struct and return it as JSON.
//!
//! ```text
//! echo-server bare ADDR         bare axum: Form<Echo> -> Json, no middleware
//! echo-server portcullis ADDR   the full pipeline: POST /_action/{id}, a public
//!                               action with a generous per-ip limit; prints
//!                               `ACTION_ID <id>` on stdout once listening;
//!                               served with `ServeConfig::from_env`, so
//!                               `PORTCULLIS_HTTP2=off` measures the
//!                               HTTP/1-only accept path
//! ```
#![forbid(unsafe_code)]

use axum::routing::post;
use axum::{Form, Json, Router};
use portcullis::prelude::*;
use portcullis::{Config, MasterSecret, Portcullis};
use portcullis_bench::{Echo, EchoDto};
use tokio::net::TcpListener;

/// The benchmarked action.
const ECHO: ActionRef<Echo, EchoDto> = ActionRef::new("bench.echo");

async fn bare(Form(input): Form<Echo>) -> Json<EchoDto> {
    Json(EchoDto {
        project_id: input.project_id,
        name: input.name,
    })
}

async fn echo(_cx: Cx<()>, _viewer: MaybeViewer, input: Valid<Echo>) -> Outcome<EchoDto> {
    let input = input.into_inner();
    Ok(EchoDto {
        project_id: input.project_id,
        name: input.name,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, addr) = match args.as_slice() {
        [mode, addr] => (mode.as_str(), addr.as_str()),
        _ => return Err("usage: echo-server bare|portcullis ADDR".into()),
    };
    let listener = TcpListener::bind(addr).await?;
    match mode {
        "bare" => {
            println!("LISTENING {}", listener.local_addr()?);
            let router = Router::new().route("/echo", post(bare));
            axum::serve(listener, router).await?;
        }
        "portcullis" => {
            let app = Portcullis::new(Config::new(MasterSecret::generate()), ())
                .actions(|a| {
                    a.add(
                        action(ECHO)
                            .public()
                            // Generous: the limiter stage runs on every request
                            // but never refuses during a benchmark.
                            .limit(per_ip(1_000_000_000).per_second())
                            .handler(echo),
                    );
                })
                .build(tower_sessions::MemoryStore::default())?;
            let path = app.action_path(ECHO).ok_or("no id")?;
            let id = path
                .strip_prefix(portcullis::wire::ACTION_PREFIX)
                .ok_or("unexpected action path")?;
            println!("LISTENING {}", listener.local_addr()?);
            println!("ACTION_ID {id}");
            let serve = portcullis::app::ServeConfig::from_env(app.config())?;
            portcullis::app::serve_with(
                listener,
                app.router(),
                serve,
                portcullis::app::shutdown_signal(),
            )
            .await?;
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
