//! `/webhooks/billing`: the payment provider tells us a team's plan changed.
//! It is the only way the `plan` column changes — no action accepts `plan`.
//! Deliveries are cross-origin by nature, so this route authenticates each
//! one by HMAC signature instead (`portcullis::routes::webhook`), with replay
//! protection by event id.

use portcullis::ActionError;
use portcullis::routes::webhook::{Event, Scheme, Webhook};
use portcullis::security::EnvSecret;
use serde::Deserialize;

use crate::AppState;

pub const PATH: &str = "/webhooks/billing";
pub const HEADER: &str = "billing-signature";
/// Development default, public by being here: production refuses it (the
/// app does not start, `demo check --deploy` lists it).
pub const DEV_SECRET: &str = "dev-billing-webhook-secret";
/// `BILLING_WEBHOOK_SECRET`: the HMAC secret the payment provider signs with.
pub const SECRET: EnvSecret = EnvSecret {
    var: "BILLING_WEBHOOK_SECRET",
    dev_default: DEV_SECRET,
};

pub fn webhook() -> Webhook {
    // An operator-configured secret: registered with the taint scanner, so
    // no response can carry it. A low-entropy one is refused there (and
    // logged), and production refuses it anyway (`portcullis::security::check_deployment`).
    if let Some(secret) = std::env::var(SECRET.var)
        .ok()
        .filter(|s| !s.trim().is_empty())
        && let Err(e) = portcullis::unique_value(secret.trim(), "billing webhook secret")
    {
        tracing::warn!(error = %e, "billing webhook secret not registered for taint scanning");
    }
    Webhook::from_env(SECRET, Scheme::Timestamped, HEADER)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlanChanged {
    #[serde(rename = "type")]
    kind: String,
    team_id: i64,
    plan: String,
}

pub async fn receive(state: AppState, event: Event) -> Result<(), ActionError> {
    let e: PlanChanged = event.json()?;
    if e.kind != "plan.changed" {
        return Ok(()); // Acknowledge events we do not handle.
    }
    if !matches!(e.plan.as_str(), "free" | "pro" | "enterprise") {
        return Err(ActionError::field("plan", "is not a known plan"));
    }
    if !state
        .dal
        .teams()
        .set_plan_from_billing(e.team_id, &e.plan)
        .await?
    {
        return Err(ActionError::NotFound);
    }
    Ok(())
}
