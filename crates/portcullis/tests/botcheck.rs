//! Bot checks on public actions: honeypot, proof of work (forged, wrong
//! action, wrong counter, expired, replayed — on both backends), and a
//! siteverify-style verifier against a local fake server over TLS (a
//! throw-away CA made in the test; plain text, an untrusted certificate and
//! an unreachable service fail closed). Every refusal test asserts the code
//! and that the handler did not run.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::response::Html;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{State, redis_config};
use portcullis::__private::botcheck::{self, BotCheck, BotVerifier, Challenges, HttpVerifier};
use portcullis::prelude::*;
use portcullis::render::Page;
use portcullis::testing::{TestClient, TestResponse};
use portcullis::wire;
use portcullis::{Config, Portcullis};
use serde::Deserialize;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer;
use tower::ServiceExt as _;

fn assert_refused(r: &TestResponse, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "body: {}", r.text());
    assert_eq!(r.error_code().as_deref(), Some(code), "body: {}", r.text());
}

#[derive(Deserialize, garde::Validate)]
pub struct Message {
    #[garde(length(min = 1, max = 200))]
    pub text: String,
}

const BITS: u8 = 10;

/// The fixture's actions: the same handler behind each kind of bot check.
type Contact = ActionRef<Message, ()>;
const HONEYPOT: Contact = ActionRef::new("contact.honeypot");
const POW: Contact = ActionRef::new("contact.pow");
const OTHER_POW: Contact = ActionRef::new("other.pow");
const VERIFIED: Contact = ActionRef::new("contact.verified");

fn register(verifier: Option<HttpVerifier>) -> impl FnOnce(&mut portcullis::Actions<State>) {
    move |actions| {
        let save = |cx: Cx<State>, _: MaybeViewer, input: Valid<Message>| async move {
            cx.state().runs.fetch_add(1, Ordering::SeqCst);
            cx.state().notes.lock().unwrap().push(input.text.clone());
            Ok(())
        };
        actions
            .add(
                action(HONEYPOT)
                    .public()
                    .limit(per_ip(1000).per_minute())
                    .bot_check(BotCheck::Honeypot)
                    .handler(save),
            )
            .add(
                action(POW)
                    .public()
                    .limit(per_ip(1000).per_minute())
                    .bot_check(BotCheck::ProofOfWork { bits: BITS })
                    .handler(save),
            )
            .add(
                action(OTHER_POW)
                    .public()
                    .limit(per_ip(1000).per_minute())
                    .bot_check(BotCheck::ProofOfWork { bits: BITS })
                    .handler(save),
            );
        if let Some(verifier) = verifier {
            actions.add(
                action(VERIFIED)
                    .public()
                    .limit(per_ip(1000).per_minute())
                    .bot_check(BotCheck::verifier(verifier))
                    .handler(save),
            );
        }
    }
}

struct Fx {
    client: TestClient,
    state: State,
}

async fn start(config: Config, verifier: Option<HttpVerifier>) -> Fx {
    let state = State::default();
    let pages = axum::Router::new().route(
        "/contact",
        get(|page: Page| async move {
            Html(
                page.form(POW)
                    .body(maud::html! { input name="text"; })
                    .into_string(),
            )
        }),
    );
    let app = Portcullis::new(config, state.clone())
        .actions(register(verifier))
        .pages(pages)
        .build(tower_sessions::MemoryStore::default())
        .expect("bot fixture builds");
    Fx {
        client: TestClient::start(&app).await,
        state,
    }
}

async fn post_with(
    fx: &Fx,
    action: Contact,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> TestResponse {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = fx
        .client
        .post(&fx.client.path(action))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    TestResponse::read(req.send().await.unwrap()).await
}

// ---------------------------------------------------------------------------
// Honeypot

#[tokio::test]
async fn filled_honeypot_is_refused_in_every_encoding() {
    let fx = start(common::config(), None).await;
    let r = fx
        .client
        .call(
            HONEYPOT,
            &[
                ("text", "buy pills"),
                (wire::field::HONEYPOT, "http://spam.example"),
            ],
        )
        .await;
    assert_refused(&r, 403, "bot_check_failed");
    let r = fx
        .client
        .call_json(
            HONEYPOT,
            &serde_json::json!({"text": "buy pills", (wire::field::HONEYPOT): "x"}),
        )
        .await;
    assert_refused(&r, 403, "bot_check_failed");
    assert_eq!(fx.state.runs(), 0);
    // An empty honeypot passes (`call` sends one, like the rendered form,
    // when the test gives none); no-JS submit gets its 303.
    assert_eq!(
        fx.client
            .call(HONEYPOT, &[("text", "hello"), (wire::field::HONEYPOT, "")])
            .await
            .status,
        200
    );
    assert_eq!(
        fx.client.call(HONEYPOT, &[("text", "hello")]).await.status,
        200
    );
    let r = fx
        .client
        .submit(
            HONEYPOT,
            &[
                ("text", "hi"),
                (wire::field::HONEYPOT, ""),
                (wire::field::RETURN, "/thanks"),
            ],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.header("location")),
        (303, Some("/thanks"))
    );
    assert_eq!(fx.state.runs(), 3);
    assert_eq!(fx.state.notes(), vec!["hello", "hello", "hi"]);
}

#[tokio::test]
async fn missing_honeypot_field_is_refused() {
    let fx = start(common::config(), None).await;
    let same_origin = [("sec-fetch-site", "same-origin")];
    // A script posting only the fields it cares about: urlencoded …
    let r = post_with(&fx, HONEYPOT, &same_origin, &[("text", "buy pills")]).await;
    assert_refused(&r, 403, "bot_check_failed");
    // … JSON …
    let r = fx
        .client
        .post(&fx.client.path(HONEYPOT))
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .json(&serde_json::json!({"text": "buy pills"}))
        .send()
        .await
        .unwrap();
    assert_refused(&TestResponse::read(r).await, 403, "bot_check_failed");
    // … and multipart.
    let body = "--B\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nbuy pills\r\n--B--\r\n";
    let r = fx
        .client
        .post(&fx.client.path(HONEYPOT))
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .header("content-type", "multipart/form-data; boundary=B")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_refused(&TestResponse::read(r).await, 403, "bot_check_failed");
    // Nothing ran, nothing was stored.
    assert_eq!(fx.state.runs(), 0);
    assert!(fx.state.notes().is_empty());
    // The same request with the form's empty field is served.
    let r = post_with(
        &fx,
        HONEYPOT,
        &same_origin,
        &[("text", "hello"), (wire::field::HONEYPOT, "")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fx.state.notes(), vec!["hello"]);
}

// ---------------------------------------------------------------------------
// Proof of work

async fn pow_round_trip(fx: &Fx) {
    let challenge = fx.client.app().pow_challenge(POW).expect("a challenge");
    assert_eq!(botcheck::challenge_bits(&challenge), BITS);
    let solution = botcheck::solve(&challenge);
    let r = post_with(
        fx,
        POW,
        &[(wire::header::POW, &solution)],
        &[("text", "one")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fx.state.runs(), 1);
    // Replay, by header and by field: spent.
    let r = post_with(
        fx,
        POW,
        &[(wire::header::POW, &solution)],
        &[("text", "two")],
    )
    .await;
    assert_refused(&r, 403, "bot_check_failed");
    let r = post_with(
        fx,
        POW,
        &[],
        &[("text", "two"), (wire::field::POW, &solution)],
    )
    .await;
    assert_refused(&r, 403, "bot_check_failed");
    assert_eq!(fx.state.runs(), 1);
    // A second challenge solved via the form field works once.
    let fresh = botcheck::solve(&fx.client.app().pow_challenge(POW).unwrap());
    assert_eq!(
        post_with(
            fx,
            POW,
            &[],
            &[("text", "three"), (wire::field::POW, &fresh)]
        )
        .await
        .status,
        200
    );
    assert_eq!(fx.state.notes(), vec!["one", "three"]);
}

#[tokio::test]
async fn pow_solution_works_once_then_replay_is_refused_in_memory() {
    pow_round_trip(&start(common::config(), None).await).await;
}

#[tokio::test]
async fn pow_solution_works_once_then_replay_is_refused_on_redis() {
    pow_round_trip(&start(redis_config("pow"), None).await).await;
}

#[tokio::test]
async fn pow_replay_is_refused_across_two_instances_sharing_redis() {
    let config = redis_config("pow-two");
    let a = start(config.clone(), None).await;
    let b = start(config, None).await;
    let solution = botcheck::solve(&a.client.app().pow_challenge(POW).unwrap());
    let h = [(wire::header::POW, solution.as_str())];
    assert_eq!(post_with(&a, POW, &h, &[("text", "a")]).await.status, 200);
    assert_refused(
        &post_with(&b, POW, &h, &[("text", "b")]).await,
        403,
        "bot_check_failed",
    );
    assert_eq!((a.state.runs(), b.state.runs()), (1, 0));
}

#[tokio::test]
async fn pow_forged_wrong_nonce_wrong_action_wrong_counter_missing_and_expired_are_refused() {
    let fx = start(common::config(), None).await;
    let challenge = fx.client.app().pow_challenge(POW).unwrap();
    let solution = botcheck::solve(&challenge);
    let (token, counter) = solution.rsplit_once(':').unwrap();

    // Wrong nonce: flip a nonce byte (the MAC no longer matches).
    let mut raw = URL_SAFE_NO_PAD.decode(token).unwrap();
    raw[0] ^= 1;
    let other_nonce = URL_SAFE_NO_PAD.encode(&raw);
    let forged_nonce = botcheck::solve(&other_nonce);
    // Forged easier difficulty.
    let mut raw = URL_SAFE_NO_PAD.decode(token).unwrap();
    raw[16] = 0;
    let easier = format!("{}:0", URL_SAFE_NO_PAD.encode(&raw));
    // A challenge for another action, solved.
    let elsewhere = botcheck::solve(&fx.client.app().pow_challenge(OTHER_POW).unwrap());
    // A counter that does not solve it.
    let n: u64 = counter.parse().unwrap();
    let bad = (n + 1..)
        .find(|c| botcheck::leading_zero_bits(token, *c) < BITS as u32)
        .unwrap();
    let wrong_counter = format!("{token}:{bad}");
    // Expired: minted with the app's own key, solved, but past its expiry.
    let challenges = Challenges::new(common::config().keys);
    let expired = botcheck::solve(&challenges.mint_at(POW.name(), BITS, now_secs() - 1));
    // Signed by another secret.
    let foreign = Challenges::new(portcullis::security::KeyRing::new(
        &portcullis::MasterSecret::from_bytes(vec![1; 32]).unwrap(),
        None,
    ));
    let foreign = botcheck::solve(&foreign.mint(POW.name(), BITS, botcheck::CHALLENGE_TTL));

    for (what, value) in [
        ("wrong nonce", forged_nonce.as_str()),
        ("easier", easier.as_str()),
        ("other action", elsewhere.as_str()),
        ("wrong counter", wrong_counter.as_str()),
        ("expired", expired.as_str()),
        ("foreign key", foreign.as_str()),
        ("garbage", "not-a-challenge:1"),
        ("empty", ""),
    ] {
        let r = post_with(&fx, POW, &[(wire::header::POW, value)], &[("text", "x")]).await;
        assert_refused(&r, 403, "bot_check_failed");
        assert_eq!(fx.state.runs(), 0, "{what}");
    }
    let r = post_with(&fx, POW, &[], &[("text", "x")]).await;
    assert_refused(&r, 403, "bot_check_failed");
    // Honeypot is checked for PoW actions too.
    let r = post_with(
        &fx,
        POW,
        &[(wire::header::POW, &solution)],
        &[("text", "x"), (wire::field::HONEYPOT, "bot")],
    )
    .await;
    assert_refused(&r, 403, "bot_check_failed");
    assert_eq!(fx.state.runs(), 0);
    // The genuine solution was not spent by the failed attempts.
    let r = post_with(
        &fx,
        POW,
        &[(wire::header::POW, &solution)],
        &[("text", "ok")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fx.state.runs(), 1);
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn page_form_carries_honeypot_and_a_solvable_challenge() {
    let fx = start(common::config(), None).await;
    let page = fx.client.get("/contact").await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains(&format!("name=\"{}\"", wire::field::HONEYPOT)),
        "{html}"
    );
    assert!(
        html.contains(&format!("{}=\"{BITS}\"", wire::attr::POW_BITS)),
        "{html}"
    );
    let challenge = html
        .split(&format!("{}=\"", wire::attr::POW))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("data-pow attribute")
        .to_owned();
    let solution = botcheck::solve(&challenge);
    let r = post_with(
        &fx,
        POW,
        &[],
        &[
            ("text", "from page"),
            (wire::field::HONEYPOT, ""),
            (wire::field::POW, &solution),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fx.state.notes(), vec!["from page"]);
}

// ---------------------------------------------------------------------------
// Verifier (HTTPS, against a local fake siteverify)

#[derive(Deserialize, Debug, Clone)]
struct Siteverify {
    secret: String,
    response: String,
    remoteip: String,
}

/// The fake siteverify: vouches for `human-token` sent with secret `s3cret`
/// and records every request it got.
fn siteverify_app(seen: Arc<Mutex<Vec<Siteverify>>>) -> axum::Router {
    axum::Router::new().route(
        "/siteverify",
        post(move |axum::Form(f): axum::Form<Siteverify>| {
            let seen = seen.clone();
            async move {
                let ok = f.secret == "s3cret" && f.response == "human-token";
                seen.lock().unwrap().push(f);
                axum::Json(serde_json::json!({ "success": ok }))
            }
        }),
    )
}

/// A throw-away certificate authority called `ca_name` and a server
/// certificate it issued for `127.0.0.1` and `localhost`.
struct TestPki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn test_pki(ca_name: &str) -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
    .unwrap();
    TestPki {
        ca_pem: ca.as_ref().pem(),
        server: Arc::new(server),
    }
}

/// The fake siteverify over TLS with `pki`'s server certificate.
async fn tls_siteverify(
    pki: &TestPki,
    seen: Arc<Mutex<Vec<Siteverify>>>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    let app = siteverify_app(seen);
    let task = tokio::spawn(async move {
        // Connections live in the server task: aborting it closes them too
        // (the verifier's pooled keep-alive connection included).
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            while connections.try_join_next().is_some() {}
            let (acceptor, app) = (acceptor.clone(), app.clone());
            connections.spawn(async move {
                // A client that does not trust the certificate ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |request| app.clone().oneshot(request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// The same fake siteverify in plain text.
async fn plain_siteverify(
    seen: Arc<Mutex<Vec<Siteverify>>>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = siteverify_app(seen);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

#[tokio::test]
async fn http_verifier_accepts_only_tokens_the_service_vouches_for() {
    let pki = test_pki("portcullis test CA");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (addr, server) = tls_siteverify(&pki, seen.clone()).await;
    let verifier = HttpVerifier::new("fake", format!("https://{addr}/siteverify"), "s3cret")
        .trust_root_pem(pki.ca_pem.as_bytes())
        .expect("the test CA is a PEM certificate");
    let fx = start(common::config(), Some(verifier)).await;

    let r = post_with(
        &fx,
        VERIFIED,
        &[(wire::header::BOT_TOKEN, "human-token")],
        &[("text", "a")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_with(
        &fx,
        VERIFIED,
        &[],
        &[("text", "b"), (wire::field::BOT_TOKEN, "human-token")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].secret, "s3cret");
        assert_eq!(seen[0].response, "human-token");
        assert_eq!(seen[0].remoteip, "127.0.0.1");
    }
    let r = post_with(
        &fx,
        VERIFIED,
        &[(wire::header::BOT_TOKEN, "robot-token")],
        &[("text", "c")],
    )
    .await;
    assert_refused(&r, 403, "bot_check_failed");
    let r = post_with(&fx, VERIFIED, &[], &[("text", "d")]).await;
    assert_refused(&r, 403, "bot_check_failed");
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "a missing token never reaches the service"
    );
    assert_eq!(fx.state.runs(), 2);
    assert_eq!(fx.state.notes(), vec!["a", "b"]);

    // The service unreachable: fail closed.
    server.abort();
    let _ = server.await;
    let r = post_with(
        &fx,
        VERIFIED,
        &[(wire::header::BOT_TOKEN, "human-token")],
        &[("text", "e")],
    )
    .await;
    assert_refused(&r, 403, "bot_check_failed");
    assert_eq!(fx.state.runs(), 2);
}

/// The token the service would accept, sent where the answer cannot be
/// trusted: plain text (the site secret would travel in clear), TLS with a
/// certificate from a CA the verifier does not trust (anyone on the path
/// could answer `success: true`). Each is refused before the secret is sent,
/// the handler does not run, and the reason names the cause.
#[tokio::test]
async fn http_verifier_fails_closed_without_tls_or_a_trusted_certificate() {
    let client_ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (plain, _plain_task) = plain_siteverify(seen.clone()).await;
    let pki = test_pki("portcullis test CA");
    let (tls, _tls_task) = tls_siteverify(&pki, seen.clone()).await;
    let other_ca = test_pki("another test CA").ca_pem;

    let cases: Vec<(&str, HttpVerifier, &str)> = vec![
        (
            "http:// URL",
            HttpVerifier::new("fake", format!("http://{plain}/siteverify"), "s3cret"),
            "scheme",
        ),
        (
            "https:// URL, plain-text server",
            HttpVerifier::new("fake", format!("https://{plain}/siteverify"), "s3cret")
                .trust_root_pem(pki.ca_pem.as_bytes())
                .unwrap(),
            "corrupt message",
        ),
        (
            "certificate from an unknown CA",
            HttpVerifier::new("fake", format!("https://{tls}/siteverify"), "s3cret"),
            "UnknownIssuer",
        ),
        (
            "certificate from another CA than the one trusted",
            HttpVerifier::new("fake", format!("https://{tls}/siteverify"), "s3cret")
                .trust_root_pem(other_ca.as_bytes())
                .unwrap(),
            "UnknownIssuer",
        ),
    ];
    for (case, verifier, reason) in cases {
        let err = verifier
            .verify("human-token", client_ip)
            .await
            .expect_err(case);
        assert!(err.to_string().contains(reason), "{case}: {err}");

        let fx = start(common::config(), Some(verifier)).await;
        let r = post_with(
            &fx,
            VERIFIED,
            &[(wire::header::BOT_TOKEN, "human-token")],
            &[("text", "x")],
        )
        .await;
        assert_refused(&r, 403, "bot_check_failed");
        assert_eq!(fx.state.runs(), 0, "{case}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request reached the service"
    );
}

#[test]
fn http_verifier_refuses_a_root_that_is_not_a_pem_certificate() {
    let v = || HttpVerifier::new("fake", "https://127.0.0.1:1/siteverify", "s3cret");
    assert!(matches!(
        v().trust_root_pem(b"not a certificate"),
        Err(botcheck::HttpVerifierError::NoCertificate)
    ));
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(v().trust_root_pem(garbage.as_bytes()).is_err());
}

#[tokio::test]
async fn manifest_lists_bot_checks_and_limits() {
    let fx = start(common::config(), None).await;
    let manifest = serde_json::to_value(fx.client.app().manifest()).unwrap();
    let pow = manifest["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == POW.name())
        .unwrap()
        .clone();
    assert_eq!(
        pow["botChecks"],
        serde_json::json!([{"kind": "proof_of_work", "bits": BITS}]),
        "{pow}"
    );
    assert_eq!(pow["limits"][0]["key"], "ip", "{pow}");
}
