//! Production refuses development defaults; the deploy check lists them.
//!
//! Why: a development default that reaches production is a public secret —
//! the demo's billing webhook once fell back to a secret printed in its own
//! source, so anyone could sign a plan change. Like Django's
//! `check --deploy`, every such setting is a [`Finding`] that names the
//! variable, says what is wrong and how to fix it (for secrets:
//! `openssl rand -base64 32`). In production mode the app does not start
//! while any finding stands:
//!
//! * [`crate::Config::from_lookup`] refuses the framework's own settings
//!   ([`framework_findings`]): `PORTCULLIS_SECRET` missing, not base64,
//!   shorter than 32 bytes, equal to the development secret stored under the
//!   data dir, or an obvious placeholder (few distinct bytes); the same for
//!   `PORTCULLIS_SECRET_PREVIOUS` when set; `PORTCULLIS_SECURE_COOKIES` off;
//!   an `http://` origin in `PORTCULLIS_ALLOWED_ORIGINS`.
//! * [`crate::Portcullis::build`] refuses every webhook whose secret is one
//!   of these ([`crate::routes::webhook::Webhook::from_env`] records where its secret
//!   came from, so a development fallback cannot pass as configured).
//!
//! [`check`] is the report an app's `check --deploy` prints: all of the
//! above for the current environment, plus "not in production mode".

use std::path::Path;

use crate::keys::MasterSecret;

/// How to make a secret, in every message about one.
pub const GENERATE: &str = "generate one with `openssl rand -base64 32`";

/// Fewest bytes a webhook or master secret may have in production.
pub const MIN_SECRET_BYTES: usize = 32;

/// One insecure setting.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The environment variable to change.
    pub var: String,
    /// What is wrong with it.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; {}", self.var, self.problem, self.fix)
    }
}

/// Several findings, as one error message (one per line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings(pub Vec<Finding>);

impl std::fmt::Display for Findings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "production mode refuses to start with development settings:"
        )?;
        for finding in &self.0 {
            write!(f, "\n  - {finding}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Findings {}

fn finding(var: &str, problem: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        var: var.to_owned(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// A secret an app reads from the environment, with the development value
/// it falls back to (never acceptable in production).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvSecret {
    /// The environment variable's name.
    pub var: &'static str,
    /// The value used when it is unset in development; production refuses
    /// it.
    pub dev_default: &'static str,
}

/// Raw bytes that are too weak for production, and why.
fn weak_bytes(bytes: &[u8]) -> Option<String> {
    if bytes.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "is {} bytes; at least {MIN_SECRET_BYTES} are required",
            bytes.len()
        ));
    }
    let mut seen = [false; 256];
    for b in bytes {
        seen[*b as usize] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    // 32 random bytes have ~30 distinct values; fewer than 12 is a pattern
    // (`aaaa…`, a repeated word), not randomness.
    (distinct < 12).then(|| {
        format!(
            "looks like a placeholder (only {distinct} distinct byte values), not a random value"
        )
    })
}

/// The problem with an app secret's value in production, if any.
pub fn secret_problem(value: Option<&str>, dev_default: Option<&str>) -> Option<String> {
    let value = value.map(str::trim).filter(|v| !v.is_empty());
    let Some(value) = value else {
        return Some("is not set; production refuses the development default".into());
    };
    if dev_default.is_some_and(|d| d == value) {
        return Some("is the public development default".into());
    }
    weak_bytes(value.as_bytes())
}

/// The problem with a master secret (base64) in production, if any.
fn master_problem(var: &str, value: &str, data_dir: &Path) -> Option<Finding> {
    let fix = format!("set {var} to a new random value: {GENERATE}");
    let secret = match MasterSecret::from_base64(value) {
        Ok(s) => s,
        Err(e) => return Some(finding(var, e.to_string(), fix)),
    };
    let dev_file = data_dir.join("dev-secret");
    if let Ok(dev) = std::fs::read_to_string(&dev_file)
        && let Ok(dev) = MasterSecret::from_base64(&dev)
        && dev.to_base64() == secret.to_base64()
    {
        return Some(finding(
            var,
            format!(
                "is the development secret generated in {}",
                dev_file.display()
            ),
            fix,
        ));
    }
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.to_base64())
        .unwrap_or_default();
    weak_bytes(&bytes).map(|p| finding(var, p, fix))
}

/// The framework's own settings that production refuses (empty = fine).
/// Read through `get` like [`crate::Config::from_lookup`].
pub fn framework_findings(get: &impl Fn(&str) -> Option<String>, data_dir: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let set = |var: &str| get(var).filter(|v| !v.trim().is_empty());
    match set("PORTCULLIS_SECRET") {
        None => out.push(finding(
            "PORTCULLIS_SECRET",
            "is not set; production refuses to start without it",
            format!("set it to a random value: {GENERATE}"),
        )),
        Some(v) => out.extend(master_problem("PORTCULLIS_SECRET", &v, data_dir)),
    }
    if let Some(v) = set("PORTCULLIS_SECRET_PREVIOUS") {
        out.extend(master_problem("PORTCULLIS_SECRET_PREVIOUS", &v, data_dir));
    }
    if let Some(v) = set("PORTCULLIS_SECURE_COOKIES")
        && matches!(v.trim(), "0" | "false" | "no" | "off")
    {
        out.push(finding(
            "PORTCULLIS_SECURE_COOKIES",
            "is off: the session cookie would be sent over plain HTTP",
            "unset it (production turns it on) and serve the app over HTTPS",
        ));
    }
    for origin in set("PORTCULLIS_ALLOWED_ORIGINS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|o| o.to_ascii_lowercase().starts_with("http://"))
    {
        out.push(finding(
            "PORTCULLIS_ALLOWED_ORIGINS",
            format!("lists `{origin}`: a plain-HTTP origin can be impersonated on the network"),
            "list only https:// origins",
        ));
    }
    out
}

/// The finding for one app secret (webhook secrets and the like), if any.
pub fn env_secret_finding(
    get: &impl Fn(&str) -> Option<String>,
    secret: &EnvSecret,
) -> Option<Finding> {
    secret_problem(get(secret.var).as_deref(), Some(secret.dev_default)).map(|problem| {
        finding(
            secret.var,
            problem,
            format!("set it to the secret your provider gave you, or {GENERATE}"),
        )
    })
}

/// The deploy check: every finding for the environment `get` describes, as
/// production would see it, plus one when it is not production at all.
/// Empty means a correct production configuration.
pub fn check(
    get: &impl Fn(&str) -> Option<String>,
    data_dir: &Path,
    app_secrets: &[EnvSecret],
) -> Vec<Finding> {
    let mut out = Vec::new();
    let env = get("PORTCULLIS_ENV").unwrap_or_default();
    if !matches!(env.trim(), "production" | "prod") {
        out.push(finding(
            "PORTCULLIS_ENV",
            format!(
                "is `{}`: development mode generates secrets and sends cookies without Secure",
                if env.trim().is_empty() {
                    "development"
                } else {
                    env.trim()
                }
            ),
            "set PORTCULLIS_ENV=production",
        ));
    }
    out.extend(framework_findings(get, data_dir));
    out.extend(
        app_secrets
            .iter()
            .filter_map(|s| env_secret_finding(get, s)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pc-deploy-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const HOOK: EnvSecret = EnvSecret {
        var: "BILLING_WEBHOOK_SECRET",
        dev_default: "dev-billing-webhook-secret",
    };

    fn good() -> String {
        MasterSecret::generate().to_base64()
    }

    #[test]
    fn a_correct_production_environment_has_no_findings() {
        let (s, h) = (good(), good());
        let get = lookup(&[
            ("PORTCULLIS_ENV", "production"),
            ("PORTCULLIS_SECRET", &s),
            ("BILLING_WEBHOOK_SECRET", &h),
            ("PORTCULLIS_ALLOWED_ORIGINS", "https://app.example.com"),
        ]);
        assert_eq!(check(&get, &dir(), &[HOOK]), vec![]);
    }

    #[test]
    fn a_development_environment_lists_every_finding() {
        let get = lookup(&[
            ("PORTCULLIS_SECURE_COOKIES", "0"),
            (
                "PORTCULLIS_ALLOWED_ORIGINS",
                "https://ok.example,http://plain.example",
            ),
        ]);
        let vars: Vec<String> = check(&get, &dir(), &[HOOK])
            .into_iter()
            .map(|f| f.var)
            .collect();
        assert_eq!(
            vars,
            [
                "PORTCULLIS_ENV",
                "PORTCULLIS_SECRET",
                "PORTCULLIS_SECURE_COOKIES",
                "PORTCULLIS_ALLOWED_ORIGINS",
                "BILLING_WEBHOOK_SECRET"
            ]
        );
    }

    /// Each refused secret, with the variable named and the fix in the text.
    #[test]
    fn each_weak_secret_is_refused_with_an_actionable_message() {
        let data = dir();
        let dev = MasterSecret::generate();
        std::fs::write(data.join("dev-secret"), dev.to_base64()).unwrap();
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let cases: Vec<(&str, String, &str)> = vec![
            ("PORTCULLIS_SECRET", String::new(), "is not set"),
            (
                "PORTCULLIS_SECRET",
                "not base64!!".into(),
                "not valid base64",
            ),
            ("PORTCULLIS_SECRET", b64(b"short"), "at least 32"),
            ("PORTCULLIS_SECRET", dev.to_base64(), "development secret"),
            ("PORTCULLIS_SECRET", b64(&[7; 32]), "placeholder"),
            ("PORTCULLIS_SECRET_PREVIOUS", b64(b"short"), "at least 32"),
            (
                "PORTCULLIS_SECRET_PREVIOUS",
                dev.to_base64(),
                "development secret",
            ),
        ];
        for (var, value, why) in cases {
            let s = good();
            let mut pairs = vec![("PORTCULLIS_SECRET", s.as_str())];
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, value.as_str()));
            let found = framework_findings(&lookup(&pairs), &data);
            assert_eq!(found.len(), 1, "{var}={value}: {found:?}");
            let text = found[0].to_string();
            assert!(text.starts_with(var), "{text}");
            assert!(text.contains(why), "{text}");
            assert!(text.contains("openssl rand -base64 32"), "{text}");
        }
        for (value, why) in [
            ("", "is not set"),
            ("dev-billing-webhook-secret", "public development default"),
            ("too-short-but-random-9f8e", "at least 32"),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "placeholder"),
        ] {
            let f = env_secret_finding(&lookup(&[("BILLING_WEBHOOK_SECRET", value)]), &HOOK)
                .unwrap_or_else(|| panic!("`{value}` accepted"));
            let text = f.to_string();
            assert!(text.starts_with("BILLING_WEBHOOK_SECRET"), "{text}");
            assert!(
                text.contains(why) && text.contains("openssl rand"),
                "{text}"
            );
        }
    }
}
