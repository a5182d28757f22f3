//! `portcullis audit` on a fixture manifest with one planted violation per
//! rule (and clean, allowed, sealed and read-only controls), and its SARIF
//! output against the SARIF 2.1.0 schema (a vendored subset, see the
//! fixture's `$comment`).

use std::collections::BTreeSet;

use portcullis_cli::{Manifest, RULES, audit, report, run};

const FIXTURE: &str = include_str!("fixtures/violations.json");
const SARIF_SCHEMA: &str = include_str!("fixtures/sarif-2.1.0-subset.schema.json");

fn fixture() -> Manifest {
    Manifest::parse(FIXTURE).expect("fixture parses")
}

fn open(m: &Manifest) -> BTreeSet<(String, &'static str)> {
    audit(m)
        .into_iter()
        .filter(|f| f.allowed.is_none())
        .map(|f| (f.action, f.rule))
        .collect()
}

#[test]
fn finds_each_planted_violation_and_nothing_else() {
    let got = open(&fixture());
    let want: BTreeSet<(String, &'static str)> = [
        ("v.raw_input", "unvalidated-input"),
        ("v.identity", "identity-from-payload"),
        ("v.row_out", "server-only-data"),
        ("v.undeclared", "undeclared-kind"),
        ("v.no_effects", "mutation-effects"),
        ("v.public_open", "public-abuse"),
        ("v.privileged", "privileged-field"),
        ("v.delete_thing", "destructive-without-recent"),
        ("v.not_idempotent", "idempotency-undeclared"),
        ("v.fail_open", "fail-open"),
        ("v.upload_uncapped", "upload-without-cap"),
        ("v.bad_allow", "invalid-allow"),
        ("headers /legacy", "weakened-headers"),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_owned(), r))
    .collect();
    assert_eq!(got, want);
    // Every rule has a planted violation.
    let rules: BTreeSet<&str> = got.iter().map(|(_, r)| *r).collect();
    assert_eq!(rules.len(), RULES.len(), "one fixture action per rule");
}

#[test]
fn allowed_findings_are_reported_with_their_reason() {
    let all = audit(&fixture());
    let allowed = all
        .iter()
        .find(|f| f.action == "ok.allowed_role")
        .expect("allowed finding is still listed");
    assert_eq!(allowed.rule, "privileged-field");
    assert!(allowed.allowed.as_deref().unwrap().contains("DAL"));
    // A blank reason does not allow.
    assert!(
        all.iter()
            .any(|f| f.action == "v.bad_allow" && f.rule == "invalid-allow")
    );
}

#[test]
fn exit_code_and_formats() {
    let dir = std::env::temp_dir().join(format!("portcullis-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.json");
    std::fs::write(&path, FIXTURE).unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "audit".into(),
            "--manifest".into(),
            path.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run(&args(&[]), &mut out, &mut err), 1);
    let table = String::from_utf8(out).unwrap();
    assert!(table.contains("v.privileged"), "{table}");
    // The uncapped upload field accepting SVG is two findings.
    assert!(table.contains("declares no byte cap"), "{table}");
    assert!(
        table.contains("`image/svg+xml`, which a browser would run"),
        "{table}"
    );
    assert!(table.contains("14 finding(s), 2 allowed"), "{table}");

    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run(&args(&["--json"]), &mut out, &mut err), 1);
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["open"], 14);
    assert_eq!(json["allowed"], 2);

    // A clean manifest exits 0.
    let clean = r#"{"actions":[{"name":"a.rename","policy":{"kind":"authenticated"},
        "inputFields":["name"],"inputValidated":true,"outputType":"app::Renamed",
        "kind":"mutates","effects":["update_tag:a"],"idempotencyDeclared":true}]}"#;
    std::fs::write(&path, clean).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run(&args(&[]), &mut out, &mut err), 0);

    // Usage errors exit 2.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run(&["audit".into()], &mut out, &mut err), 2);
    // --cmd runs a command and reads its stdout.
    let cmd = vec![
        "audit".to_string(),
        "--cmd".into(),
        format!("cat {}", path.display()),
    ];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(run(&cmd, &mut out, &mut err), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sarif_validates_against_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(SARIF_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let findings = audit(&fixture());
    let sarif: serde_json::Value = serde_json::from_str(&report::sarif(&findings)).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "SARIF invalid: {errors:#?}");
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), findings.len());
    // The allowed finding is an in-source suppression with its reason.
    assert!(
        results
            .iter()
            .any(|r| r["suppressions"][0]["kind"] == "inSource")
    );
    // And the schema is not vacuous: a broken log fails it.
    let mut broken = sarif.clone();
    broken["version"] = "2.0.0".into();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!validator.is_valid(&broken));
}
