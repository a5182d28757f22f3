//! The checks every adopter should run, on the demo: the attack harness
//! against every registered action, `portcullis audit` over the manifest,
//! the audit log of successful mutations, and the metrics endpoint.

mod common;

use demo::actions::{auth, projects};
use std::collections::BTreeMap;

use common::{PASSWORD, project, start, team_of, user};
use portcullis::testing::attacks::Harness;
use portcullis::wire;
use tower::ServiceExt;

#[tokio::test]
async fn attack_harness_passes_on_every_demo_action() {
    let demo = start().await;
    let report = Harness::new(&demo.app)
        .sign_in(|client| async move {
            let email = format!("harness{}@example.com", rand::random::<u32>());
            let r = client
                .call(
                    auth::SIGN_UP,
                    &[
                        ("email", email.as_str()),
                        ("displayName", "Harness"),
                        ("password", PASSWORD),
                    ],
                )
                .await;
            assert_eq!(r.status, 200, "harness sign-up: {}", r.text());
            // Sign-up signs nobody in (no enumeration): sign in.
            let r = client
                .call(
                    auth::SIGN_IN,
                    &[("email", email.as_str()), ("password", PASSWORD)],
                )
                .await;
            assert_eq!(r.status, 200, "harness sign-in: {}", r.text());
        })
        .run()
        .await;
    println!("{report}");
    report.assert_conclusive_and_clean();
    let actions = demo.app.manifest().actions.len();
    // Every action got at least the origin, field, size, body and id attacks.
    assert!(report.passed() >= actions * 7, "{report}");
}

#[tokio::test]
async fn audit_finds_nothing_in_the_demo() {
    let demo = start().await;
    let json = serde_json::to_string(&demo.app.manifest()).unwrap();
    let manifest = portcullis_cli::Manifest::parse(&json).expect("manifest parses");
    let findings = portcullis_cli::audit(&manifest);
    let open: Vec<_> = findings.iter().filter(|f| f.allowed.is_none()).collect();
    assert!(open.is_empty(), "audit findings on the demo: {open:#?}");
    // The reviewed exceptions are the documented ones.
    let allowed: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| (f.action.as_str(), f.rule))
        .collect();
    assert_eq!(
        allowed,
        [
            ("comments.delete", "destructive-without-recent"),
            ("attachments.delete", "destructive-without-recent"),
            ("teams.set_role", "privileged-field"),
        ]
    );
    // The sealed invite token is visible in the manifest.
    let accept = manifest
        .actions
        .iter()
        .find(|a| a.name == "teams.accept_invite")
        .unwrap();
    assert_eq!(accept.sealed_fields, ["token"]);
}

#[tokio::test]
async fn successful_mutations_are_written_to_the_audit_log() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let team = team_of(&demo, alice_id).await;
    let id = project(&alice, team, "Roadmap").await;
    let r = alice
        .call(
            projects::RENAME,
            &[("projectId", &id.to_string()), ("name", "Roadmap 2")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let request_id = r.header(wire::header::REQUEST_ID).unwrap().to_owned();
    // Refused and failed calls are not audited.
    let r = alice
        .call(
            projects::RENAME,
            &[("projectId", &id.to_string()), ("name", "x")],
        )
        .await;
    assert_eq!(r.status, 422);
    let r = alice
        .call(
            projects::RENAME,
            &[("projectId", "999999"), ("name", "Nope nope")],
        )
        .await;
    assert_eq!(r.status, 404);

    // Rows are written off the request path, in batches.
    demo.audit.flush().await;
    let rows = demo.db.dal().audit_log().recent(10).await.unwrap();
    let got: Vec<(&str, Option<&str>, Option<i64>)> = rows
        .iter()
        .map(|r| (r.action.as_str(), r.record.as_deref(), r.user_id))
        .collect();
    let record = format!("project:{id}");
    assert_eq!(
        got,
        [
            ("projects.rename", Some(record.as_str()), Some(alice_id)),
            ("projects.create", Some(record.as_str()), Some(alice_id)),
            // Sign-in and sign-up run anonymously: no viewer yet, no record
            // named (sign-up signs nobody in, so the helper signs in after).
            ("auth.sign_in", None, None),
            ("auth.sign_up", None, None),
        ]
    );
    assert_eq!(rows[0].request_id.as_deref(), Some(request_id.as_str()));
    assert!(rows[0].created_at > 0);
}

/// `name{labels} value` lines of the Prometheus text, by series.
fn series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_the_requests_sent() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let team = team_of(&demo, alice_id).await;
    let id = project(&alice, team, "Roadmap").await;
    for i in 0..5 {
        let r = alice
            .call(
                projects::RENAME,
                &[
                    ("projectId", &id.to_string()),
                    ("name", &format!("Name {i}")),
                ],
            )
            .await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        let r = alice
            .call(
                projects::RENAME,
                &[("projectId", &id.to_string()), ("name", "x")],
            )
            .await;
        assert_eq!(r.status, 422);
    }
    let anon = demo.client.new_session();
    for _ in 0..2 {
        let r = anon
            .call(
                projects::RENAME,
                &[("projectId", "1"), ("name", "Nope nope")],
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let r = alice
        .post(&format!("{}AAAAAAAAAAAAAAAAAAAAAA", wire::ACTION_PREFIX))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());

    let response = demo
        .app
        .admin_router()
        .oneshot(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let s = series(&text);
    let count = |action: &str, outcome: &str| {
        s.get(&format!(
            "portcullis_action_requests_total{{action=\"{action}\",outcome=\"{outcome}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert_eq!(count("projects.rename", "ok"), 5.0, "{text}");
    assert_eq!(count("projects.rename", "invalid_input"), 3.0, "{text}");
    assert_eq!(count("projects.rename", "unauthenticated"), 2.0, "{text}");
    assert_eq!(count("projects.create", "ok"), 1.0, "{text}");
    assert_eq!(count("auth.sign_up", "ok"), 1.0, "{text}");
    let histogram = s
        .get("portcullis_action_duration_seconds_count{action=\"projects.rename\"}")
        .copied();
    assert_eq!(histogram, Some(10.0), "{text}");
    // Unresolvable ids share one label, whatever the id was.
    assert!(!text.contains("AAAAAAAAAAAAAAAAAAAAAA"), "{text}");
}

/// The typed client checked in under `demo/client/` is what `portcullis ts`
/// generates from the demo's manifest now: a renamed field or a new typed
/// action fails here until the files are regenerated
/// (`UPDATE_TYPED_CLIENT=1 cargo test -p demo --test security_review typed`
/// writes them; so does `portcullis ts --cmd "cargo run -q -p demo -- manifest --json" --out-dir demo/client`).
/// Here rather than in a file of its own: like the audit above, it needs
/// the built app's manifest and the CLI, and one test binary less to link.
#[tokio::test]
async fn the_typed_client_is_current() {
    let demo = start().await;
    let json = serde_json::to_string(&demo.app.manifest()).unwrap();
    let manifest = portcullis_cli::Manifest::parse(&json).expect("manifest parses");
    let generated = portcullis_cli::ts::generate(&manifest).expect("typed client generates");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("client");
    for (file, text) in [
        ("actions.d.ts", &generated.dts),
        ("actions.js", &generated.js),
    ] {
        let path = dir.join(file);
        if std::env::var_os("UPDATE_TYPED_CLIENT").is_some() {
            std::fs::write(&path, text).unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == *text,
            "demo/client/{file} is stale: regenerate it with UPDATE_TYPED_CLIENT=1 cargo test -p demo --test security_review typed"
        );
    }
    // No action id and no action name in what the browser loads.
    for a in &manifest.actions {
        assert!(!generated.js.contains(&a.id), "{} id in actions.js", a.name);
        assert!(
            !generated.js.contains(&a.name),
            "{} name in actions.js",
            a.name
        );
    }
}
