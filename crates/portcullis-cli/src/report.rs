//! Report formats: a table for people, JSON for scripts, SARIF 2.1.0 for
//! code-scanning UIs. Allowed findings appear in all three (marked, with
//! their reason) so an exception stays visible in review; only unallowed
//! ones fail the run.

use serde_json::{Value, json};

use crate::manifest::Manifest;
use crate::rules::{Finding, RULES};

/// Human-readable: one row per finding, then a summary line.
pub fn table(manifest: &Manifest, findings: &[Finding]) -> String {
    let open = findings.iter().filter(|f| f.allowed.is_none()).count();
    let allowed = findings.len() - open;
    let mut out = String::new();
    if !findings.is_empty() {
        let aw = findings
            .iter()
            .map(|f| f.action.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let rw = findings
            .iter()
            .map(|f| f.rule.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!("{:<aw$}  {:<rw$}  MESSAGE\n", "ACTION", "RULE"));
        for f in findings {
            let msg = match &f.allowed {
                Some(reason) => format!("(allowed: {reason}) {}", f.message),
                None => f.message.clone(),
            };
            out.push_str(&format!("{:<aw$}  {:<rw$}  {msg}\n", f.action, f.rule));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "{open} finding(s), {allowed} allowed, in {} action(s)\n",
        manifest.actions.len()
    ));
    out
}

/// `{ "actions": n, "findings": [...], "open": n, "allowed": n }`.
pub fn json(manifest: &Manifest, findings: &[Finding]) -> String {
    let list: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "rule": f.rule,
                "action": f.action,
                "message": f.message,
                "allowed": f.allowed.is_some(),
                "reason": f.allowed,
            })
        })
        .collect();
    let open = findings.iter().filter(|f| f.allowed.is_none()).count();
    let doc = json!({
        "actions": manifest.actions.len(),
        "open": open,
        "allowed": findings.len() - open,
        "findings": list,
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}

/// A SARIF 2.1.0 log with one run. Actions are *logical* locations (the
/// manifest knows names, not source lines).
pub fn sarif(findings: &[Finding]) -> String {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": { "text": r.title },
                "fullDescription": { "text": r.help },
                "help": { "text": r.help },
                "defaultConfiguration": { "level": "error" },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = RULES.iter().position(|r| r.id == f.rule).unwrap_or(0);
            let mut result = json!({
                "ruleId": f.rule,
                "ruleIndex": index,
                "level": "error",
                "message": { "text": format!("{}: {}", f.action, f.message) },
                "locations": [{
                    "logicalLocations": [{
                        "name": f.action,
                        "fullyQualifiedName": f.action,
                        "kind": "function",
                    }],
                }],
            });
            if let Some(reason) = &f.allowed {
                result["suppressions"] = json!([{ "kind": "inSource", "justification": reason }]);
            }
            result
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "portcullis-audit",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                },
            },
            "results": results,
        }],
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}
