//! The review checklist as rules over one manifest entry each.
//!
//! Each rule is something a reviewer would otherwise have to remember for
//! every action: the framework enforces the mechanism (validation, session
//! identity, limits, re-authentication) but only the author knows whether an
//! action *should* use a stronger one. The rules flag the cases where the
//! manifest suggests it should and the declaration says otherwise. A finding
//! the author has reviewed is silenced in code, next to the action, with
//! `.allow_audit("rule-id", "reason")`; the reason is mandatory and is shown
//! in every report (SARIF: an `inSource` suppression with justification).
//!
//! Idempotency decision: a mutation must say `.idempotent()` (safe to
//! repeat, the client may send it in parallel) or `.not_idempotent()`
//! (queued); `.read_only()` implies idempotent. There is no silent default,
//! because the wrong default either double-submits or serializes needlessly.

use crate::manifest::Entry;

/// One checklist rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub id: &'static str,
    pub title: &'static str,
    /// What to do about it, including the API that enforces it.
    pub help: &'static str,
}

pub const UNVALIDATED_INPUT: &str = "unvalidated-input";
pub const IDENTITY_FROM_PAYLOAD: &str = "identity-from-payload";
pub const SERVER_ONLY_DATA: &str = "server-only-data";
pub const UNDECLARED_KIND: &str = "undeclared-kind";
pub const MUTATION_EFFECTS: &str = "mutation-effects";
pub const PUBLIC_ABUSE: &str = "public-abuse";
pub const PRIVILEGED_FIELD: &str = "privileged-field";
pub const DESTRUCTIVE_WITHOUT_RECENT: &str = "destructive-without-recent";
pub const IDEMPOTENCY_UNDECLARED: &str = "idempotency-undeclared";
pub const INVALID_ALLOW: &str = "invalid-allow";
pub const FAIL_OPEN: &str = "fail-open";
pub const WEAKENED_HEADERS: &str = "weakened-headers";
pub const UPLOAD_WITHOUT_CAP: &str = "upload-without-cap";

/// Every rule, in report order.
pub const RULES: &[Rule] = &[
    Rule {
        id: UNVALIDATED_INPUT,
        title: "Input is not a validated, typed struct",
        help: "Take a `#[derive(Deserialize, garde::Validate)]` struct with named fields as the handler's `Valid<I>`; never read the raw form or body.",
    },
    Rule {
        id: IDENTITY_FROM_PAYLOAD,
        title: "Identity field in the input",
        help: "Who is acting comes from the session (`Viewer`), never from the payload: drop fields like `userId`/`sessionId` and use `viewer.id()`.",
    },
    Rule {
        id: SERVER_ONLY_DATA,
        title: "Handler returns a data-layer type",
        help: "Return a narrow `#[derive(Dto)]` type with only what the page needs, not a database row or model; keep data access in the server-only DAL.",
    },
    Rule {
        id: UNDECLARED_KIND,
        title: "Mutation or read not declared",
        help: "Say `.mutates(&[effects])` or `.read_only()` on the builder so reviewers and the audit log know whether the action changes state.",
    },
    Rule {
        id: MUTATION_EFFECTS,
        title: "Mutation without declared cache effects",
        help: "Name what the mutation refreshes: `.mutates(&[\"update_tag:projects\"])`, `\"redirect\"`, `\"refresh\"`, `\"session\"`, or `\"none\"` if nothing on a page depends on it.",
    },
    Rule {
        id: PUBLIC_ABUSE,
        title: "Public action without abuse protection",
        help: "A public action needs a rate limit (`.limit(per_ip(..))`) and a bot check (`.bot_check(BotCheck::Honeypot)` or proof of work).",
    },
    Rule {
        id: PRIVILEGED_FIELD,
        title: "Privileged field in the client contract",
        help: "Fields like `role`, `isAdmin`, `ownerId`, `plan`, `price`, `published`, `tenant` let a client choose what the server should decide; derive them server-side, or seal them (`Sealed<T>`), or allow with a reason.",
    },
    Rule {
        id: DESTRUCTIVE_WITHOUT_RECENT,
        title: "Destructive action without re-authentication",
        help: "Delete/remove/transfer/password actions should use `.recent(duration)` (step-up re-authentication).",
    },
    Rule {
        id: IDEMPOTENCY_UNDECLARED,
        title: "Mutation does not declare idempotency",
        help: "Say `.idempotent()` (safe to repeat; may run in parallel) or `.not_idempotent()` (queued by the client).",
    },
    Rule {
        id: FAIL_OPEN,
        title: "Action runs without its limits while the limiter is down",
        help: "`.fail_open()` serves the action unlimited (no rate limits, quotas or spent-challenge checks) whenever Redis is unreachable or slow, so an attacker who can overload Redis switches its limits off. Remove it (the default is 503 `limiter_unavailable`), or allow with the reason this action must stay available.",
    },
    Rule {
        id: WEAKENED_HEADERS,
        title: "Security headers weaker than the default",
        help: "The Content-Security-Policy is relaxed (framing by another origin, report-only, extra script or form-action sources, unsafe keywords or wildcards). Keep the default, or narrow the relaxation to one route with `SecurityHeaders::route(path, RouteHeaders::new()..)` and say why with `.because(reason)`.",
    },
    Rule {
        id: UPLOAD_WITHOUT_CAP,
        title: "Upload field without a byte cap or with an active type",
        help: "Every upload field needs a byte cap and types recognised by their bytes: `Upload<R>` with `impl UploadRules for R { const MAX_BYTES: u64 = …; const TYPES: … }`. HTML, SVG, XML and scripts must never be accepted (serve such content from a separate origin).",
    },
    Rule {
        id: INVALID_ALLOW,
        title: "Audit exception without a reason or for an unknown rule",
        help: "`.allow_audit(rule, reason)` needs a known rule id and a non-empty reason; this finding cannot be allowed.",
    },
];

/// One rule violated by one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub action: String,
    pub message: String,
    /// The reviewed reason, when the action allows this rule.
    pub allowed: Option<String>,
}

pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Lowercase with `_`, `-` and `.` removed: `owner_id`, `ownerId` → `ownerid`.
fn norm(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

const IDENTITY_FIELDS: &[&str] = &[
    "userid",
    "viewerid",
    "actorid",
    "sessionid",
    "currentuser",
    "currentuserid",
    "authorid",
    "createdby",
    "uid",
];

const PRIVILEGED_FIELDS: &[&str] = &[
    "owner",
    "ownerid",
    "role",
    "roles",
    "isadmin",
    "admin",
    "issuperuser",
    "superuser",
    "plan",
    "tier",
    "published",
    "ispublished",
    "price",
    "amount",
    "balance",
    "credits",
    "discount",
    "tenant",
    "tenantid",
    "permissions",
    "scopes",
    "verified",
    "isverified",
    "emailverified",
    "approved",
];

const DESTRUCTIVE_WORDS: &[&str] = &[
    "delete", "remove", "transfer", "password", "destroy", "purge", "wipe",
];

/// Words of an action name: `account.delete_all` → `account`, `delete`, `all`.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.extend(c.to_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The findings for one action, before allows are applied.
fn check(e: &Entry) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !e.input_validated || e.input_fields.is_none() {
        out.push((
            UNVALIDATED_INPUT,
            format!(
                "input `{}` is not a validated struct with declared fields",
                e.input_type
            ),
        ));
    }
    for field in e.fields() {
        let n = norm(field);
        if e.sealed_fields.contains(field) {
            // The server chose the value and sealed it to this action and
            // session: the client cannot pick it.
            continue;
        }
        if IDENTITY_FIELDS.contains(&n.as_str()) {
            out.push((
                IDENTITY_FROM_PAYLOAD,
                format!("input field `{field}` names who is acting; use the session's Viewer"),
            ));
        } else if PRIVILEGED_FIELDS.contains(&n.as_str()) {
            out.push((
                PRIVILEGED_FIELD,
                format!("input field `{field}` lets the client choose a privileged value"),
            ));
        }
    }
    let out_type = e.output_type.as_str();
    let last = out_type.rsplit("::").next().unwrap_or(out_type);
    let last = last.split('<').next().unwrap_or(last);
    if out_type.contains("::dal::")
        || out_type.contains("::db::")
        || out_type.contains("serde_json::value::Value")
        || ["Row", "Record", "Entity", "Model"]
            .iter()
            .any(|s| last.ends_with(s))
    {
        out.push((
            SERVER_ONLY_DATA,
            format!("returns `{out_type}`, which looks like a data-layer type, not a narrow DTO"),
        ));
    }
    match e.kind.as_deref() {
        Some("mutates") => {
            if e.effects.is_empty() {
                out.push((
                    MUTATION_EFFECTS,
                    "mutates but declares no effects (say which tags/paths it refreshes, or \"none\")"
                        .to_string(),
                ));
            }
        }
        Some("read_only") => {}
        _ => out.push((
            UNDECLARED_KIND,
            "declares neither .mutates(..) nor .read_only()".to_string(),
        )),
    }
    if e.is_mutation() && !e.idempotency_declared {
        out.push((
            IDEMPOTENCY_UNDECLARED,
            "mutation declares neither .idempotent() nor .not_idempotent()".to_string(),
        ));
    }
    if e.is_public() {
        let mut missing = Vec::new();
        if e.limits.is_empty() {
            missing.push("rate limit");
        }
        if e.bot_checks.is_empty() {
            missing.push("bot check");
        }
        if !missing.is_empty() {
            out.push((
                PUBLIC_ABUSE,
                format!("public action without {}", missing.join(" and ")),
            ));
        }
    }
    for upload in &e.upload_fields {
        match upload.max_bytes {
            None | Some(0) => out.push((
                UPLOAD_WITHOUT_CAP,
                format!("upload field `{}` declares no byte cap", upload.name),
            )),
            Some(_) => {}
        }
        if upload.types.is_empty() {
            out.push((
                UPLOAD_WITHOUT_CAP,
                format!("upload field `{}` declares no accepted types", upload.name),
            ));
        }
        for ty in &upload.types {
            let t = ty.to_ascii_lowercase();
            if t.contains("html") || t.contains("svg") || t.contains("javascript") || t == "*/*" {
                out.push((
                    UPLOAD_WITHOUT_CAP,
                    format!(
                        "upload field `{}` accepts `{ty}`, which a browser would run",
                        upload.name
                    ),
                ));
            }
        }
    }
    if e.fail_open {
        out.push((
            FAIL_OPEN,
            "declared .fail_open(): runs without its limits, quotas and spent-challenge checks while Redis is down"
                .to_string(),
        ));
    }
    let destructive: Vec<String> = words(&e.name)
        .into_iter()
        .filter(|w| DESTRUCTIVE_WORDS.iter().any(|d| w.starts_with(d)))
        .collect();
    if !destructive.is_empty() && e.policy.kind != "recent" {
        out.push((
            DESTRUCTIVE_WITHOUT_RECENT,
            format!(
                "`{}` looks destructive but its policy is `{}`, not `recent`",
                e.name, e.policy.kind
            ),
        ));
    }
    out
}

/// Audits every action; allowed findings are kept with their reason.
pub fn audit(manifest: &crate::Manifest) -> Vec<Finding> {
    let mut findings = Vec::new();
    for e in &manifest.actions {
        for allow in &e.allow_audit {
            let problem = if rule(&allow.rule).is_none() || allow.rule == INVALID_ALLOW {
                Some(format!("allows unknown rule `{}`", allow.rule))
            } else if allow.reason.trim().is_empty() {
                Some(format!("allows `{}` without a reason", allow.rule))
            } else {
                None
            };
            if let Some(message) = problem {
                findings.push(Finding {
                    rule: INVALID_ALLOW,
                    action: e.name.clone(),
                    message,
                    allowed: None,
                });
            }
        }
        for (rule, message) in check(e) {
            let allowed = e
                .allow_audit
                .iter()
                .find(|a| a.rule == rule && !a.reason.trim().is_empty())
                .map(|a| a.reason.clone());
            findings.push(Finding {
                rule,
                action: e.name.clone(),
                message,
                allowed,
            });
        }
    }
    findings.extend(header_findings(manifest));
    findings
}

/// One finding per policy that weakens the default: the app-wide one (no
/// reason can silence it) and each route override (reviewed when it carries
/// a reason, like `.allow_audit`).
fn header_findings(manifest: &crate::Manifest) -> Vec<Finding> {
    let Some(headers) = &manifest.security_headers else {
        return Vec::new();
    };
    std::iter::once(&headers.default)
        .chain(&headers.routes)
        .filter(|p| !p.weakens.is_empty())
        .map(|p| Finding {
            rule: WEAKENED_HEADERS,
            action: if p.path == "*" {
                "headers (app-wide)".to_owned()
            } else {
                format!("headers {}", p.path)
            },
            message: format!("weakens the default policy: {}", p.weakens.join(", ")),
            allowed: p
                .reason
                .as_ref()
                .filter(|r| !r.trim().is_empty() && p.path != "*")
                .cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weakened_header_policies_are_findings_unless_a_route_says_why() {
        let manifest = crate::Manifest::parse(
            r#"{"actions": [], "securityHeaders": {
                "default": {"path": "*", "weakens": ["report-only (nothing is blocked)"]},
                "routes": [
                    {"path": "/embed/{id}", "weakens": ["frame-ancestors https://p.example"], "reason": "partner widget"},
                    {"path": "/legacy", "weakens": ["script-src 'unsafe-inline'"]},
                    {"path": "/fine", "weakens": []}
                ]}}"#,
        )
        .unwrap();
        let found = audit(&manifest);
        let summary: Vec<(&str, bool)> = found
            .iter()
            .map(|f| (f.action.as_str(), f.allowed.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                ("headers (app-wide)", false),
                ("headers /embed/{id}", true),
                ("headers /legacy", false)
            ]
        );
        assert!(found.iter().all(|f| f.rule == WEAKENED_HEADERS));
    }

    #[test]
    fn words_split_names() {
        assert_eq!(words("account.deleteAll"), ["account", "delete", "all"]);
        assert_eq!(words("teams.remove_member"), ["teams", "remove", "member"]);
        assert_eq!(norm("owner_id"), "ownerid");
        assert_eq!(norm("isAdmin"), "isadmin");
    }
}
