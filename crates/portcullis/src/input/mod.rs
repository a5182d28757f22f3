//! Stage 6a–b: a request body becomes a validated input, `Valid<T>`.
//!
//! Why one folder: decoding, the reserved-field table, opening sealed
//! arguments and validation are one job with one direction — bytes in,
//! `Valid<T>` out — and they share state that must not leak elsewhere (the
//! two thread-locals of [`sealed`]). Before, `decode` and `seal` imported
//! each other through those thread-locals, `decode` and `botcheck` each
//! other through the reserved-field names, and `validate` reached back into
//! `decode`. Here the folder imports only leftwards (the wire names, errors,
//! body limits, the seal format), and the rest of the crate sees this
//! interface:
//!
//! * [`InputShape`] (`shape.rs`): what an input type declares, learned at
//!   registration;
//! * [`decode()`] (`decode.rs`): the three decoders, caps, undeclared-field
//!   refusal, reserved fields split off into [`Reserved`] (`reserved.rs`);
//! * [`Sealed`] and [`Opening`] (`sealed.rs`): sealed arguments opened
//!   during deserialization;
//! * [`validate()`] and [`Valid`] (`validate.rs`): garde rules, errors by
//!   wire name;
//! * [`Lang`] and [`Rule`] (`messages.rs`): garde's messages read back into
//!   their rule and rendered for people in the request's language.

mod decode;
mod messages;
mod reserved;
mod sealed;
mod shape;
mod validate;

pub use decode::{Payload, check_json_depth, decode};
pub use messages::{Lang, Rule, humanize};
pub use reserved::Reserved;
pub use sealed::{Opening, Sealed};
pub use shape::{InputShape, ShapeError};
pub use validate::{Valid, validate};
