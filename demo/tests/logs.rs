//! No span or log line carries a password, token or session id from the
//! traffic: the server side's whole tracing output (TRACE for the framework,
//! DEBUG otherwise) is captured and searched.

mod common;

use demo::actions::{account, auth, tokens};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use common::{PASSWORD, start, user};
use portcullis::wire;

static LOG: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct LogWriter;
impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.get_or_init(Default::default)
            .lock()
            .unwrap()
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&LOG.get_or_init(Default::default).lock().unwrap()).into_owned()
}

#[tokio::test]
async fn no_span_or_log_line_holds_a_password_or_token() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| LogWriter)
        .with_ansi(false)
        // The test's own HTTP client (reqwest, its cookie store) logs the
        // cookies it receives at DEBUG; that is this process's client side,
        // not the server, so it is filtered out.
        .with_env_filter(
            "debug,portcullis=trace,sqlx=warn,cookie_store=off,reqwest=off,hyper_util::client=off",
        )
        .try_init();
    let demo = start().await;
    let (alice, _) = user(&demo, "Alice").await;
    let api_key = "ak_live_0123456789abcdef_secret";
    let new_password = "an even longer new password";
    let wrong = "wrong-password-guess-42";

    let r = alice
        .call(account::SET_API_KEY, &[("apiKey", api_key)])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = alice
        .call(
            account::CHANGE_PASSWORD,
            &[("currentPassword", PASSWORD), ("newPassword", new_password)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let anon = demo.client.new_session();
    let r = anon
        .call(
            auth::SIGN_IN,
            &[("email", "alice@example.com"), ("password", wrong)],
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.text());
    let r = anon
        .call(
            auth::SIGN_IN,
            &[("email", "alice@example.com"), ("password", new_password)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A personal access token, created and then used against the API.
    let r = alice
        .call(
            tokens::CREATE,
            &[("name", "ci"), ("scope", "write"), ("days", "7")],
        )
        .await;
    let api_token = r.result()["token"].as_str().unwrap().to_owned();
    let r = reqwest::Client::new()
        .get(demo.client.url("/api/projects"))
        .header("authorization", format!("Bearer {api_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let session = anon.cookies().unwrap_or_default();
    let session_id = session
        .split("; ")
        .find_map(|c| c.strip_prefix(wire::cookie::SESSION)?.strip_prefix('='))
        .expect("session cookie")
        .to_owned();

    let log = log_text();
    // The capture works: the action spans are there, with names and outcomes.
    assert!(
        log.contains("action=\"account.set_api_key\"")
            || log.contains("action=account.set_api_key"),
        "{log}"
    );
    assert!(log.contains("outcome"), "{log}");
    for secret in [
        PASSWORD,
        new_password,
        wrong,
        api_key,
        session_id.as_str(),
        api_token.as_str(),
    ] {
        assert!(!log.contains(secret), "log contains `{secret}`:\n{log}");
    }
}
