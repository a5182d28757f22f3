//! Stage 6b: validate. A decoded input becomes a [`Valid<T>`] only by passing
//! its `garde` rules; handlers take `Valid<T>`, so an unvalidated input cannot
//! reach one. Failures are 422 `invalid_input` with `fieldErrors` keyed by the
//! same wire names the client sent (garde reports Rust field names; they are
//! mapped back through the serde names learned at registration).

use std::ops::Deref;

use super::shape::InputShape;
use crate::error::{FieldErrors, Rejection};

/// A validated input. Only the pipeline can make one.
#[derive(Debug, Clone)]
pub struct Valid<T>(T);

impl<T> Valid<T> {
    /// The validated input, by value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Valid<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Runs the input's garde rules.
pub fn validate<T>(input: T, shape: &InputShape) -> Result<Valid<T>, Rejection>
where
    T: garde::Validate,
    T::Context: Default,
{
    match input.validate() {
        Ok(()) => Ok(Valid(input)),
        Err(report) => {
            let mut field_errors = FieldErrors::new();
            let mut form_errors = Vec::new();
            for (path, error) in report.iter() {
                let path = path.to_string();
                if path.is_empty() {
                    form_errors.push(error.message().to_owned());
                } else {
                    field_errors
                        .entry(wire_path(&path, shape))
                        .or_default()
                        .push(error.message().to_owned());
                }
            }
            Err(Rejection::invalid(field_errors, form_errors))
        }
    }
}

/// `project_id` → `projectId` (whatever serde named it on the wire).
fn wire_path(path: &str, shape: &InputShape) -> String {
    let end = path.find(['.', '[']).unwrap_or(path.len());
    let (head, rest) = path.split_at(end);
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let head_norm = norm(head);
    match shape.fields.iter().find(|f| norm(f) == head_norm) {
        Some(wire) => format!("{wire}{rest}"),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, garde::Validate)]
    #[serde(rename_all = "camelCase")]
    struct Input {
        #[garde(length(chars, min = 2, max = 80))]
        display_name: String,
        #[garde(range(min = 1))]
        count: u32,
    }

    #[test]
    fn errors_use_wire_names() {
        let shape = InputShape::of::<Input>().unwrap();
        let err = validate(
            Input {
                display_name: "x".into(),
                count: 0,
            },
            &shape,
        )
        .unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::InvalidInput);
        assert!(err.field_errors.contains_key("displayName"), "{err:?}");
        assert!(err.field_errors.contains_key("count"));
        assert!(
            validate(
                Input {
                    display_name: "ok".into(),
                    count: 1
                },
                &shape
            )
            .is_ok()
        );
    }
}
