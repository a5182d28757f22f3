//! `/webhooks/billing`: the payment provider tells us a team's plan changed.
//! It is the only way the `plan` column changes — no action accepts `plan`.
//! Deliveries are cross-origin by nature, so this route authenticates each
//! one by HMAC signature instead (`portcullis::webhook`), with replay
//! protection by event id.

use portcullis::ActionError;
use portcullis::webhook::{Event, Scheme, Webhook};
use serde::Deserialize;

use crate::AppState;

pub const PATH: &str = "/webhooks/billing";
pub const HEADER: &str = "billing-signature";
/// Development default; set `BILLING_WEBHOOK_SECRET` in production.
pub const DEV_SECRET: &str = "dev-billing-webhook-secret";

pub fn webhook() -> Webhook {
    let secret = std::env::var("BILLING_WEBHOOK_SECRET").unwrap_or_else(|_| DEV_SECRET.to_owned());
    // An operator-configured secret: registered with the taint scanner, so
    // no response can carry it. A low-entropy one is refused there (and
    // logged); the webhook still verifies with it.
    if let Err(e) = portcullis::unique_value(&secret, "billing webhook secret") {
        tracing::warn!(error = %e, "billing webhook secret not registered for taint scanning");
    }
    Webhook::new(secret.into_bytes(), Scheme::Timestamped, HEADER)
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
