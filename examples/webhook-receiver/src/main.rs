//! `cargo run -p example-webhook-receiver`: serves the receiver on
//! http://127.0.0.1:3000 and prints a signed delivery to send with curl
//! (valid for five minutes; send it twice to see the replay protection).

use std::time::{SystemTime, UNIX_EPOCH};

use example_webhook_receiver::{HEADER, Ledger, PATH, app, webhook};
use portcullis::{Config, MasterSecret};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hook = webhook();
    let body = r#"{"id":"evt_1","type":"invoice.paid","customer":"cus_1","amountCents":500}"#;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    // What the provider does: sign the body with the shared secret.
    let signature = hook.sign(body.as_bytes(), now);
    // A fresh secret each start: fine for an example (`Config::from_env` in an app).
    let app = app(
        Config::new(MasterSecret::generate()),
        Ledger::default(),
        hook,
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("curl -H '{HEADER}: {signature}' -d '{body}' {base}{PATH}");
    println!("curl {base}/balance/cus_1");
    portcullis::serve(listener, app.router()).await?;
    Ok(())
}
