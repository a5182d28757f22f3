//! The manifest as the audit reads it: the JSON `Shared::manifest()`
//! serializes, read leniently (missing keys default to the *unsafe* answer,
//! e.g. an action that does not say `inputValidated` is treated as not
//! validated), so a hand-written or older manifest cannot pass by omission.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub epoch: u64,
    pub actions: Vec<Entry>,
    /// The response-header policy; absent in manifests of apps built before
    /// the framework set security headers (nothing to audit then).
    #[serde(default, rename = "securityHeaders")]
    pub security_headers: Option<SecurityHeaders>,
}

/// The `securityHeaders` section: the app-wide policy and per-route overrides.
#[derive(Debug, Clone, Deserialize)]
pub struct SecurityHeaders {
    pub default: HeaderPolicy,
    #[serde(default)]
    pub routes: Vec<HeaderPolicy>,
}

/// One policy; `weakens` lists how it is weaker than the framework default.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderPolicy {
    pub path: String,
    #[serde(default)]
    pub content_security_policy: String,
    #[serde(default)]
    pub weakens: Vec<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

/// One action. Field names follow the library's camelCase manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub name: String,
    #[serde(default)]
    pub id: String,
    pub policy: Policy,
    #[serde(default)]
    pub limits: Vec<serde_json::Value>,
    #[serde(default)]
    pub input_limits: Vec<serde_json::Value>,
    #[serde(default)]
    pub quotas: Vec<serde_json::Value>,
    #[serde(default)]
    pub bot_checks: Vec<serde_json::Value>,
    #[serde(default)]
    pub input_type: String,
    /// `None` when the manifest does not list the fields (raw input).
    #[serde(default)]
    pub input_fields: Option<Vec<String>>,
    #[serde(default)]
    pub sealed_fields: Vec<String>,
    /// Fields of type `Upload<R>`, with their caps and accepted types.
    #[serde(default)]
    pub upload_fields: Vec<UploadEntry>,
    #[serde(default)]
    pub input_validated: bool,
    #[serde(default)]
    pub output_type: String,
    /// `mutates`, `read_only`, or absent.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub effects: Vec<String>,
    #[serde(default)]
    pub idempotent: bool,
    #[serde(default)]
    pub idempotency_declared: bool,
    #[serde(default)]
    pub allow_audit: Vec<Allow>,
    /// Declared `.fail_open()`: runs unlimited while the limiter is down.
    #[serde(default)]
    pub fail_open: bool,
    /// The action's types as TypeScript (registered with `.typescript()`),
    /// for `portcullis ts`.
    #[serde(default)]
    pub typescript: Option<Typescript>,
}

/// An entry's `typescript` member (portcullis `ClientTypes`).
#[derive(Debug, Clone, Deserialize)]
pub struct Typescript {
    /// The stable client key.
    pub key: String,
    /// The input's TypeScript type.
    pub input: String,
    /// The result's TypeScript type.
    pub output: String,
    /// Named types, dependencies first.
    #[serde(default)]
    pub declarations: Vec<Declaration>,
}

/// One named TypeScript type.
#[derive(Debug, Clone, Deserialize)]
pub struct Declaration {
    pub name: String,
    pub declaration: String,
}

/// One upload field of an action.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadEntry {
    pub name: String,
    /// `None` when a (hand-written or foreign) manifest names no cap.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub types: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// `public`, `authenticated`, `role`, `recent`.
    pub kind: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub within_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Allow {
    pub rule: String,
    #[serde(default)]
    pub reason: String,
}

impl Entry {
    pub fn is_public(&self) -> bool {
        self.policy.kind == "public"
    }

    /// Declared `mutates`, or undeclared: a POST endpoint is assumed to change
    /// something until its author says otherwise.
    pub fn is_mutation(&self) -> bool {
        self.kind.as_deref() != Some("read_only")
    }

    pub fn fields(&self) -> &[String] {
        self.input_fields.as_deref().unwrap_or(&[])
    }
}
