//! A webhook receiver: a payment provider tells the app that an invoice was
//! paid, and the app credits the customer (`POST /webhooks/payments`).
//!
//! Webhooks are the one kind of route that must accept cross-origin POSTs,
//! so portcullis authenticates each delivery another way: an HMAC-SHA256
//! signature over the raw body with the provider's secret, checked before
//! anything parses the body, with a timestamp that must be within five
//! minutes of now; and a delivery whose event id was already applied gets
//! the first answer again without running the handler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use portcullis::axum::extract::{Path, State};
use portcullis::axum::{Router, routing::get};
use portcullis::routes::webhook::{Event, Scheme, Webhook};
use portcullis::security::EnvSecret;
use portcullis::{ActionError, App, BuildError, Config, Portcullis};
use serde::Deserialize;

pub const PATH: &str = "/webhooks/payments";
/// The header the provider puts its signature in: `t=<unix>,v1=<hex>`.
pub const HEADER: &str = "payments-signature";
/// `PAYMENTS_WEBHOOK_SECRET`: the secret the provider signs with. Unset,
/// the development default below is used, and production refuses to start.
pub const SECRET: EnvSecret = EnvSecret {
    var: "PAYMENTS_WEBHOOK_SECRET",
    dev_default: "dev-payments-webhook-secret",
};

/// The verifier, with the secret from the environment.
pub fn webhook() -> Webhook {
    Webhook::from_env(SECRET, Scheme::Timestamped, HEADER)
}

/// Credited cents per customer: what deliveries change. In memory for the
/// example (a real app writes its database). Written only by verified
/// deliveries, so bounded by what the provider sends.
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<HashMap<String, i64>>>);

impl Ledger {
    fn credits(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cents credited to `customer` so far.
    pub fn balance(&self, customer: &str) -> i64 {
        self.credits().get(customer).copied().unwrap_or(0)
    }
}

/// The delivery's JSON. Its `"id"` is the replay key (the framework reads
/// it); fields this app does not need are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    #[serde(rename = "type")]
    kind: String,
    customer: String,
    amount_cents: i64,
}

/// Runs once per event, only after the signature was verified.
async fn receive(ledger: Ledger, event: Event) -> Result<(), ActionError> {
    let delivery: Delivery = event.json()?;
    if delivery.kind != "invoice.paid" {
        return Ok(()); // Acknowledge events this app does not handle.
    }
    if delivery.amount_cents <= 0 {
        return Err(ActionError::field("amountCents", "must be positive"));
    }
    *ledger.credits().entry(delivery.customer).or_default() += delivery.amount_cents;
    Ok(())
}

async fn balance(State(ledger): State<Ledger>, Path(customer): Path<String>) -> String {
    format!("{customer}: {} cents\n", ledger.balance(&customer))
}

/// The app: the webhook and a page that shows a customer's balance.
pub fn app(config: Config, ledger: Ledger, hook: Webhook) -> Result<App, BuildError> {
    let pages = Router::new()
        .route("/balance/{customer}", get(balance))
        .with_state(ledger.clone());
    Portcullis::new(config, ledger)
        .webhook(PATH, hook, receive)
        .pages(pages)
        .accounts(portcullis::NoAccounts) // signs nobody in
        .build(portcullis::tower_sessions::MemoryStore::default())
}
