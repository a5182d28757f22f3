//! `cargo run -p example-multi-instance`: two instances of the app on
//! http://127.0.0.1:3001 and http://127.0.0.1:3002, sharing the Redis at
//! `REDIS_URL` (default `redis://127.0.0.1:6379`). In one process for the
//! example; in production each is its own process, or machine, with the
//! same `PORTCULLIS_SECRET` and `REDIS_URL`.

use example_multi_instance::instance;
use portcullis::app::RedisUrl;
use portcullis::{Config, MasterSecret};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Both instances need the same secret: action ids, cookies and seals
    // come from it (`Config::from_env` reads `PORTCULLIS_SECRET`).
    let mut config = Config::new(MasterSecret::generate());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    config.redis_url = Some(RedisUrl(url));
    config.redis_prefix = "example-multi-instance:".into();
    let mut servers = tokio::task::JoinSet::new();
    for (name, addr) in [("a", "127.0.0.1:3001"), ("b", "127.0.0.1:3002")] {
        let app = instance(name, config.clone())?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("instance {name}: http://{addr}");
        servers.spawn(portcullis::serve(listener, app.router()));
    }
    servers.join_next().await.expect("two servers")??;
    Ok(())
}
