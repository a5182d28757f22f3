//! The standard attacks, generated for every registered action of an app.
//!
//! Why: the pipeline refuses these requests by construction, but an app can
//! still undo that — a raw axum POST route merged into `.pages(..)` that
//! never passes the pipeline, an origin allowlist that trusts too much, a
//! layer that rewrites headers, a new action nobody wrote a test for. The
//! harness reads the app's manifest, so a newly registered action is
//! attacked without anyone writing a test for it, and asserts the
//! *documented* refusal (status and error code) for each attack:
//!
//! | attack              | sent                                                        | expected                          |
//! |---------------------|-------------------------------------------------------------|-----------------------------------|
//! | `cross_origin`      | signed-in cookies, `Sec-Fetch-Site: cross-site`, foreign `Origin` | 403 `cross_origin_request`   |
//! | `cross_origin_legacy` | foreign `Origin`, no fetch metadata (older browsers)      | 403 `cross_origin_request`        |
//! | `missing_session`   | gated action, no session                                    | 401 `unauthenticated`             |
//! | `unknown_field`     | `isAdmin=true`                                              | 422 `invalid_input` naming it     |
//! | `oversize_body`     | declared body one byte over the action's cap                | 413 `payload_too_large`           |
//! | `malformed_json`    | `application/json` that does not parse                      | 400 `malformed_body`              |
//! | `malformed_multipart` | multipart whose boundary never appears                    | 400 `malformed_body`              |
//! | `sealed_replay`     | a seal minted for another action, in this session           | 400 `invalid_bound_argument`      |
//! | `stale_id`          | the action's id of two epochs ago                           | 409 `stale_action`                |
//! | `malformed_id`      | once per app: `/_action/!!`                                 | 400 `malformed_action_id`         |
//! | `fragment_list_flood` | a 64 KB `Portcullis-Fragments` header naming one key thousands of times, and thousands of distinct keys (with `isAdmin=true`, or the action's `idempotency_sample` input) | no 5xx, response under the re-render cap |
//! | `idempotency_key_reused` | per action given [`Harness::idempotency_sample`]: one key, two different valid bodies | 2xx, then 422 `idempotency_key_reused` |
//! | `slow_headers`      | once per app: half a request's headers, then silence         | connection closed within the header timeout |
//!
//! Raw routes the app serves outside the pipeline (webhooks, legacy form
//! endpoints) are invisible to the manifest; list them with
//! [`Harness::raw_route`] and they get the cross-origin and missing-session
//! attacks too.
//!
//! A response that is a *different refusal* than expected (a 429 because
//! the app's limits are tight, a 401/403 because the signed-in client lacks
//! a role) is reported as *inconclusive*, not as a pass: the attack did not
//! reach the stage it targets. A 2xx, a 5xx or any other refusal where one
//! was expected is a *failure*.
//!
//! ```no_run
//! # async fn demo(app: portcullis::App) {
//! use portcullis::testing::attacks::Harness;
//! let report = Harness::new(&app)
//!     .sign_in(|client| async move {
//!         # const SIGN_IN: portcullis::ActionRef<(), ()> = portcullis::ActionRef::new("auth.sign_in");
//!         client.call(SIGN_IN, &[("email", "a@example.com"), ("password", "…")]).await;
//!     })
//!     .run()
//!     .await;
//! report.assert_clean();
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::app::{App, ManifestEntry};
use crate::policy::Policy;
use crate::seal::unix_now;
use crate::testing::{TestClient, TestResponse};
use crate::wire::ACTION_PREFIX;

/// The foreign origin the attacks come from.
pub const ATTACKER_ORIGIN: &str = "https://attacker.example";

type SignIn = Arc<dyn Fn(TestClient) -> BoxFuture<'static, ()> + Send + Sync>;

/// Builds and runs the attacks; see the module docs.
pub struct Harness {
    app: App,
    sign_in: Option<SignIn>,
    raw_routes: Vec<(String, bool)>,
    samples: Vec<IdempotencySample>,
}

/// Two valid, different inputs for one action (see
/// [`Harness::idempotency_sample`]).
struct IdempotencySample {
    action: String,
    first: Vec<(String, String)>,
    second: Vec<(String, String)>,
}

/// The header-read timeout the harness serves the app with for the
/// `slow_headers` attack (the default is 10 s; the mechanism is the same).
pub const HARNESS_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// What one attack found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The documented refusal came back.
    Pass,
    /// The request was accepted, crashed, or refused for the wrong reason.
    Fail(String),
    /// Refused earlier than the attacked stage (429, or a policy the test
    /// client cannot satisfy): nothing was learned.
    Inconclusive(String),
}

/// One attack against one target.
#[derive(Debug, Clone)]
pub struct Check {
    /// The action name, or the raw route path.
    pub target: String,
    /// The attack's name (the module docs' table).
    pub attack: &'static str,
    /// What the documented refusal is, e.g. `"403 cross_origin_request"`.
    pub expected: String,
    /// The HTTP status that came back (0 for `slow_headers`, which gets no
    /// response).
    pub status: u16,
    /// The error envelope's `error.code`, if the body was one.
    pub code: Option<String>,
    /// What the response means for this attack.
    pub verdict: Verdict,
}

/// Every check the harness ran.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One entry per attack sent, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// The checks whose attack was accepted, crashed the server or was
    /// refused for the wrong reason.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Fail(_)))
            .collect()
    }

    /// The checks refused before the attacked stage (e.g. rate limited):
    /// nothing was learned about the stage they target.
    pub fn inconclusive(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Inconclusive(_)))
            .collect()
    }

    /// How many checks got the documented refusal.
    pub fn passed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.verdict == Verdict::Pass)
            .count()
    }

    /// Panics, listing every failure, if any attack was not refused as documented.
    pub fn assert_clean(&self) {
        let failures = self.failures();
        assert!(
            failures.is_empty(),
            "attack harness found failures:\n{self}"
        );
    }

    /// [`Report::assert_clean`], and no inconclusive attack either.
    pub fn assert_conclusive_and_clean(&self) {
        self.assert_clean();
        assert!(
            self.inconclusive().is_empty(),
            "attack harness could not reach some stages:\n{self}"
        );
    }

    /// Whether some failed check hit `target` with `attack`.
    pub fn failed(&self, target: &str, attack: &str) -> bool {
        self.failures()
            .iter()
            .any(|c| c.target == target && c.attack == attack)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} checks: {} passed, {} failed, {} inconclusive",
            self.checks.len(),
            self.passed(),
            self.failures().len(),
            self.inconclusive().len()
        )?;
        for c in &self.checks {
            let (tag, why) = match &c.verdict {
                Verdict::Pass => continue,
                Verdict::Fail(why) => ("FAIL", why),
                Verdict::Inconclusive(why) => ("INCONCLUSIVE", why),
            };
            writeln!(
                f,
                "  {tag} {} / {}: expected {}, got {} {}: {why}",
                c.target,
                c.attack,
                c.expected,
                c.status,
                c.code.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

/// The expected refusal of one attack.
struct Expect {
    status: u16,
    code: &'static str,
    /// Text the body must contain (e.g. the unknown field's name).
    mentions: Option<&'static str>,
}

impl Harness {
    /// A harness for `app`: every action in its manifest is attacked, as an
    /// anonymous client unless [`Harness::sign_in`] says how to sign in.
    pub fn new(app: &App) -> Self {
        Harness {
            app: app.clone(),
            sign_in: None,
            raw_routes: Vec::new(),
            samples: Vec::new(),
        }
    }

    /// Two valid, different inputs for `action`: the harness sends the
    /// first with an `Idempotency-Key`, then the second with the same key,
    /// and expects 422 `idempotency_key_reused` (not the first result).
    ///
    /// Who sends them: for a gated action, the one client the
    /// [`Harness::sign_in`] closure signed in; for a public action, a fresh
    /// anonymous client. The harness creates no data of its own, so that
    /// client has only what `sign_in` made: an input that names a record
    /// (`noteId=1`) must name one that exists and that this user may
    /// change — create it in the `sign_in` closure (on a fresh test
    /// database its id is predictable), or prefer an action that creates
    /// something. The first input is sent three times in all (twice with the
    /// fragment-list flood, where any answer short of a 5xx passes, then
    /// with the key), the second once; the idempotency check needs the
    /// keyed first call to succeed, else it is reported inconclusive.
    ///
    /// ```no_run
    /// # async fn t(app: portcullis::App) {
    /// # const SIGN_UP: portcullis::ActionRef<(), ()> = portcullis::ActionRef::new("auth.sign_up");
    /// # const CREATE_NOTE: portcullis::ActionRef<(), ()> = portcullis::ActionRef::new("notes.create");
    /// # const UPDATE_NOTE: portcullis::ActionRef<(), ()> = portcullis::ActionRef::new("notes.update");
    /// use portcullis::testing::attacks::Harness;
    /// let report = Harness::new(&app)
    ///     // Called once, before any attack: sign up, and make note 1 hers.
    ///     .sign_in(|client| async move {
    ///         client.call(SIGN_UP, &[("email", "h@example.com"), ("password", "a long password")]).await;
    ///         client.call(CREATE_NOTE, &[("title", "mine")]).await;
    ///     })
    ///     .idempotency_sample(CREATE_NOTE, &[("title", "first")], &[("title", "second")])
    ///     .idempotency_sample(UPDATE_NOTE, &[("noteId", "1"), ("title", "a")], &[("noteId", "1"), ("title", "b")])
    ///     .run()
    ///     .await;
    /// report.assert_conclusive_and_clean();
    /// # }
    /// ```
    pub fn idempotency_sample<In, Out>(
        mut self,
        action: crate::ActionRef<In, Out>,
        first: &[(&str, &str)],
        second: &[(&str, &str)],
    ) -> Self {
        let own = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        self.samples.push(IdempotencySample {
            action: action.name().to_owned(),
            first: own(first),
            second: own(second),
        });
        self
    }

    /// How to turn a fresh client into a signed-in one (with whatever role
    /// and re-authentication the app's gated actions need). Without it,
    /// attacks on gated actions that must pass the policy are inconclusive.
    ///
    /// [`Harness::run`] calls `f` exactly once, on a fresh client (empty
    /// cookie jar) before the first attack, and attacks every gated action
    /// (and gated [`Harness::raw_route`]) with that one signed-in client;
    /// public actions are attacked from fresh anonymous clients. So one
    /// account is enough, and whatever `f` creates (the account, records
    /// the [`Harness::idempotency_sample`] inputs name) is all the data the
    /// attacks see. Each `run` calls it again: use a new address per call
    /// if the app refuses a second sign-up of the same one.
    pub fn sign_in<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(TestClient) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.sign_in = Some(Arc::new(move |c| Box::pin(f(c))));
        self
    }

    /// A POST route the app serves outside the action pipeline; `gated`:
    /// it must refuse anonymous callers.
    pub fn raw_route(mut self, path: &str, gated: bool) -> Self {
        self.raw_routes.push((path.to_owned(), gated));
        self
    }

    /// Starts the app on an ephemeral port and runs every attack.
    pub async fn run(self) -> Report {
        let anonymous = TestClient::start_with(
            &self.app,
            crate::server::ServeConfig {
                header_read_timeout: HARNESS_HEADER_TIMEOUT,
                ..crate::server::ServeConfig::default()
            },
        )
        .await;
        let signed_in = match &self.sign_in {
            Some(f) => {
                let c = anonymous.new_session();
                (f.as_ref())(c.clone()).await;
                Some(c)
            }
            None => None,
        };
        let manifest = self.app.manifest();
        let shared = self.app.runtime().clone();
        let mut report = Report::default();
        let names: Vec<&'static str> = manifest.actions.iter().map(|a| a.meta.name).collect();

        for entry in &manifest.actions {
            let gated = entry.meta.policy != Policy::Public;
            let name = entry.meta.name;
            let path = format!("{ACTION_PREFIX}{}", entry.id);
            // The client an honest caller would be: signed in for gated actions.
            let client = match (&signed_in, gated) {
                (Some(c), true) => c.clone(),
                _ => anonymous.new_session(),
            };
            let mut run = Runner {
                report: &mut report,
                target: name,
                gated,
            };

            let cross = hostile(&client, &path, true).await;
            run.check("cross_origin", &cross, forbidden_cross_origin(), false);
            let legacy = hostile(&client, &path, false).await;
            run.check(
                "cross_origin_legacy",
                &legacy,
                forbidden_cross_origin(),
                false,
            );

            if gated {
                let fresh = anonymous.new_session();
                let r = same_origin(&fresh, &path, "application/x-www-form-urlencoded", "").await;
                run.check(
                    "missing_session",
                    &r,
                    Expect {
                        status: 401,
                        code: "unauthenticated",
                        mentions: None,
                    },
                    false,
                );
            }

            let r = same_origin(
                &client,
                &path,
                "application/x-www-form-urlencoded",
                "isAdmin=true",
            )
            .await;
            run.check(
                "unknown_field",
                &r,
                Expect {
                    status: 422,
                    code: "invalid_input",
                    mentions: Some("isAdmin"),
                },
                true,
            );

            let big = "a".repeat(entry.body_limit + 1);
            let r = same_origin(&client, &path, "application/x-www-form-urlencoded", &big).await;
            run.check("oversize_body", &r, expect(413, "payload_too_large"), true);

            let r = same_origin(&client, &path, "application/json", "{\"isAdmin\":").await;
            run.check("malformed_json", &r, expect(400, "malformed_body"), true);

            let r = same_origin(
                &client,
                &path,
                "multipart/form-data; boundary=portcullis-harness",
                "--not-the-boundary\r\ncontent-disposition: form-data; name=\"x\"\r\n\r\n1\r\n",
            )
            .await;
            run.check(
                "malformed_multipart",
                &r,
                expect(400, "malformed_body"),
                true,
            );

            if let (Some(field), Some(other)) = (
                entry.meta.sealed_fields.first(),
                names.iter().find(|n| **n != name),
            ) {
                let binding = client.seal_binding();
                let forged = shared
                    .sealer()
                    .seal_at(&"1", other, &binding, unix_now() + 600)
                    .expect("seal a value");
                let body = form_urlencoded::Serializer::new(String::new())
                    .append_pair(field, &forged)
                    .finish();
                let r =
                    same_origin(&client, &path, "application/x-www-form-urlencoded", &body).await;
                run.check(
                    "sealed_replay",
                    &r,
                    expect(400, "invalid_bound_argument"),
                    true,
                );
            }

            let stale_path = format!("{ACTION_PREFIX}{}", {
                let ids = &shared.directory().ids;
                ids.id_in_epoch(name, ids.epoch().saturating_sub(2))
            });
            let r = same_origin(
                &client,
                &stale_path,
                "application/x-www-form-urlencoded",
                "",
            )
            .await;
            run.check("stale_id", &r, expect(409, "stale_action"), false);

            // Client-named fragment lists: duplicated and oversized. Sent
            // with a body the action refuses (no side effects), or with the
            // action's sample input when one was given (the success path,
            // where fragments are re-rendered).
            let sample = self.samples.iter().find(|s| s.action == name);
            let body = match sample {
                Some(s) => form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&s.first)
                    .finish(),
                None => "isAdmin=true".to_owned(),
            };
            let one = "x:1 ".repeat(16 * 1024);
            let many: String = (0..8_000).map(|i| format!("x:{i} ")).collect();
            for list in [one, many] {
                let r = client
                    .post(&path)
                    .header("sec-fetch-site", "same-origin")
                    .header("origin", client.origin())
                    .header("accept", "application/json")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header(crate::wire::header::FRAGMENTS, list)
                    .body(body.clone());
                let r =
                    TestResponse::read(r.send().await.expect("request reached the test server"))
                        .await;
                run.check_bounded("fragment_list_flood", &r, MAX_FLOOD_RESPONSE);
            }

            if let Some(sample) = sample {
                let key = format!("harness-{}", rand::random::<u64>());
                let send = |pairs: &[(String, String)]| {
                    let body = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs)
                        .finish();
                    client
                        .post(&path)
                        .header("sec-fetch-site", "same-origin")
                        .header("origin", client.origin())
                        .header("accept", "application/json")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header(crate::wire::header::IDEMPOTENCY_KEY, key.clone())
                        .body(body)
                };
                let first =
                    TestResponse::read(send(&sample.first).send().await.expect("reached")).await;
                if first.status.is_success() {
                    let second =
                        TestResponse::read(send(&sample.second).send().await.expect("reached"))
                            .await;
                    run.check(
                        "idempotency_key_reused",
                        &second,
                        expect(422, "idempotency_key_reused"),
                        true,
                    );
                } else {
                    run.inconclusive(
                        "idempotency_key_reused",
                        &first,
                        "the first sample input was not accepted",
                    );
                }
            }
        }

        let r = same_origin(
            &anonymous,
            &format!("{ACTION_PREFIX}!!"),
            "application/x-www-form-urlencoded",
            "",
        )
        .await;
        Runner {
            report: &mut report,
            target: "(app)",
            gated: false,
        }
        .check(
            "malformed_id",
            &r,
            expect(400, "malformed_action_id"),
            false,
        );

        let slow = slow_headers(anonymous.addr()).await;
        Runner {
            report: &mut report,
            target: "(server)",
            gated: false,
        }
        .push(
            "slow_headers",
            format!("closed within {:?}", HARNESS_HEADER_TIMEOUT * 3),
            0,
            None,
            match slow {
                Ok(()) => Verdict::Pass,
                Err(why) => Verdict::Fail(why),
            },
        );

        for (path, gated) in &self.raw_routes {
            let client = match (&signed_in, *gated) {
                (Some(c), true) => c.clone(),
                _ => anonymous.new_session(),
            };
            let mut run = Runner {
                report: &mut report,
                target: path,
                gated: *gated,
            };
            let r = hostile(&client, path, true).await;
            run.check_status("cross_origin", &r, 403);
            let r = hostile(&client, path, false).await;
            run.check_status("cross_origin_legacy", &r, 403);
            if *gated {
                let r = same_origin(
                    &anonymous.new_session(),
                    path,
                    "application/x-www-form-urlencoded",
                    "",
                )
                .await;
                run.check_status("missing_session", &r, 401);
            }
        }
        report
    }
}

fn expect(status: u16, code: &'static str) -> Expect {
    Expect {
        status,
        code,
        mentions: None,
    }
}

fn forbidden_cross_origin() -> Expect {
    expect(403, "cross_origin_request")
}

/// The largest response a fragment-list flood may produce: the re-render
/// cap plus room for the envelope.
const MAX_FLOOD_RESPONSE: usize = crate::fragment::MAX_AFFECTED_BYTES + 64 * 1024;

/// Sends half a request's headers and waits: the server must close the
/// connection within three header timeouts.
async fn slow_headers(addr: std::net::SocketAddr) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(b"POST /_action/x HTTP/1.1\r\nHost: harness\r\nX-Slow: ")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 1024];
    let started = std::time::Instant::now();
    loop {
        match tokio::time::timeout(HARNESS_HEADER_TIMEOUT * 3, stream.read(&mut buf)).await {
            Err(_) => {
                return Err(format!(
                    "the connection was still open after {:?}",
                    started.elapsed()
                ));
            }
            // Closed (an error page before closing is fine too).
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn hostile(client: &TestClient, path: &str, fetch_metadata: bool) -> TestResponse {
    let mut req = client
        .post(path)
        .header("origin", ATTACKER_ORIGIN)
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("isAdmin=true");
    if fetch_metadata {
        req = req.header("sec-fetch-site", "cross-site");
    }
    TestResponse::read(req.send().await.expect("request reached the test server")).await
}

async fn same_origin(
    client: &TestClient,
    path: &str,
    content_type: &str,
    body: &str,
) -> TestResponse {
    let req = client
        .post(path)
        .header("sec-fetch-site", "same-origin")
        .header("origin", client.origin())
        .header("accept", "application/json")
        .header("content-type", content_type)
        .body(body.to_owned());
    TestResponse::read(req.send().await.expect("request reached the test server")).await
}

struct Runner<'a> {
    report: &'a mut Report,
    target: &'a str,
    gated: bool,
}

impl Runner<'_> {
    /// `past_policy`: the attack targets a stage after the policy, so a
    /// policy refusal means the test client could not get there.
    fn check(&mut self, attack: &'static str, r: &TestResponse, want: Expect, past_policy: bool) {
        let status = r.status.as_u16();
        let code = r.error_code();
        let verdict = if status == want.status && code.as_deref() == Some(want.code) {
            match want.mentions {
                Some(text) if !r.text().contains(text) => {
                    Verdict::Fail(format!("the refusal does not name `{text}`"))
                }
                _ => Verdict::Pass,
            }
        } else if status == 429 {
            Verdict::Inconclusive("rate limited before the attacked stage".into())
        } else if past_policy
            && self.gated
            && matches!(
                code.as_deref(),
                Some("unauthenticated" | "forbidden" | "reauthentication_required")
            )
        {
            Verdict::Inconclusive(
                "the signed-in client does not pass this action's policy (see Harness::sign_in)"
                    .into(),
            )
        } else if (200..300).contains(&status) || (300..400).contains(&status) {
            Verdict::Fail("the attack was accepted".into())
        } else {
            Verdict::Fail("refused, but not as documented".into())
        };
        self.report.checks.push(Check {
            target: self.target.to_owned(),
            attack,
            expected: format!("{} {}", want.status, want.code),
            status,
            code,
            verdict,
        });
    }

    fn push(
        &mut self,
        attack: &'static str,
        expected: String,
        status: u16,
        code: Option<String>,
        verdict: Verdict,
    ) {
        self.report.checks.push(Check {
            target: self.target.to_owned(),
            attack,
            expected,
            status,
            code,
            verdict,
        });
    }

    fn inconclusive(&mut self, attack: &'static str, r: &TestResponse, why: &str) {
        self.push(
            attack,
            "a first accepted call".into(),
            r.status.as_u16(),
            r.error_code(),
            Verdict::Inconclusive(why.into()),
        );
    }

    /// Any non-5xx answer whose body stays under `max` bytes.
    fn check_bounded(&mut self, attack: &'static str, r: &TestResponse, max: usize) {
        let status = r.status.as_u16();
        let verdict = if status >= 500 {
            Verdict::Fail("the server failed".into())
        } else if r.body.len() > max {
            Verdict::Fail(format!("a {}-byte response", r.body.len()))
        } else {
            Verdict::Pass
        };
        self.push(
            attack,
            format!("no 5xx, at most {max} bytes"),
            status,
            r.error_code(),
            verdict,
        );
    }

    /// For raw routes: only the status can be expected.
    fn check_status(&mut self, attack: &'static str, r: &TestResponse, want: u16) {
        let status = r.status.as_u16();
        let verdict = if status == want {
            Verdict::Pass
        } else if status == 429 {
            Verdict::Inconclusive("rate limited".into())
        } else if status < 400 {
            Verdict::Fail("the attack was accepted".into())
        } else {
            Verdict::Fail("refused, but not as documented".into())
        };
        self.report.checks.push(Check {
            target: self.target.to_owned(),
            attack,
            expected: want.to_string(),
            status,
            code: r.error_code(),
            verdict,
        });
    }
}

/// The manifest entries the harness attacks (all of them), for callers
/// that want to report coverage.
pub fn targets(app: &App) -> Vec<ManifestEntry> {
    app.manifest().actions
}
