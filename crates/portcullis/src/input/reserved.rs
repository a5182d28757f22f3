//! The reserved-field table: the `_` fields the framework splits off a body
//! (any encoding) before the input type sees it ([`crate::wire::field::BODY`]).
//!
//! Why its own file: the decoder fills it, the pipeline reads it (the return
//! path, the idempotency key, the bot-check evidence it hands to
//! [`crate::botcheck`]), and neither of those should need the other's
//! module to name it. Nothing here is validated: each reader checks what it
//! uses.

use crate::wire::field;

/// Framework fields that came with the input.
#[derive(Debug, Default, Clone)]
pub struct Reserved {
    /// `_return`: where a no-JS form wants to land. Unvalidated here.
    pub return_to: Option<String>,
    /// `_hp`: the honeypot; anything but empty means a bot filled it.
    pub honeypot: Option<String>,
    /// `_pow`: a proof-of-work solution (`challenge:counter`).
    pub pow: Option<String>,
    /// `_bot`: a bot-verifier token.
    pub bot_token: Option<String>,
    /// `_idem`: the idempotency key of a no-JS form (the client runtime
    /// sends the `Idempotency-Key` header instead).
    pub idempotency_key: Option<String>,
}

impl Reserved {
    /// Stores `value` if `name` is a reserved field; `false` otherwise.
    pub(super) fn take(&mut self, name: &str, value: impl FnOnce() -> String) -> bool {
        let Some(slot) = self.slot(name) else {
            return false;
        };
        *slot = Some(value());
        true
    }

    pub(super) fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        let slot = match name {
            field::RETURN => &mut self.return_to,
            field::HONEYPOT => &mut self.honeypot,
            field::IDEMPOTENCY_KEY => &mut self.idempotency_key,
            field::POW => &mut self.pow,
            field::BOT_TOKEN => &mut self.bot_token,
            _ => return None,
        };
        Some(slot)
    }

    pub(super) fn is_reserved(name: &str) -> bool {
        field::BODY.contains(&name)
    }
}
