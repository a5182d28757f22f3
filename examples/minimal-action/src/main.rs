//! `cargo run -p example-minimal-action`, then open http://127.0.0.1:3000.

use portcullis::{Config, MasterSecret};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A fresh secret each start: fine for an example, not for an app
    // (`Config::from_env` reads `PORTCULLIS_SECRET`, or keeps a development
    // secret under the data dir).
    let app = example_minimal_action::app(Config::new(MasterSecret::generate()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("http://{}", listener.local_addr()?);
    portcullis::serve(listener, app.router()).await?;
    Ok(())
}
