//! `cargo run -p example-json-api-tokens`: serves the API on
//! http://127.0.0.1:3000 and prints two tokens of user 1 to try it with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use example_json_api_tokens::{Db, app};
use portcullis::routes::api::Scope;
use portcullis::{Config, MasterSecret};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::default();
    db.add_user(1);
    let in_30_days = SystemTime::now() + Duration::from_secs(30 * 24 * 3600);
    let expires_at = in_30_days.duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let write = db.issue_token(1, Scope::Write, expires_at);
    let read = db.issue_token(1, Scope::Read, expires_at);
    // A fresh secret each start: fine for an example (`Config::from_env` in an app).
    let app = app(Config::new(MasterSecret::generate()), db)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let url = format!("http://{}/api/notes", listener.local_addr()?);
    println!(
        "curl -H 'Authorization: Bearer {write}' -H 'content-type: application/json' -d '{{\"text\":\"hi\"}}' {url}"
    );
    println!("curl -H 'Authorization: Bearer {read}' {url}");
    portcullis::serve(listener, app.router()).await?;
    Ok(())
}
