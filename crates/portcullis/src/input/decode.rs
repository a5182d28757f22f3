//! Stage 6a: decode. urlencoded, multipart and JSON bodies all become the same
//! typed input, and every decoder does one linear, capped pass.
//!
//! The input type's declared field names ([`InputShape`], learned at
//! registration) decide what is accepted: any top-level field the type does
//! not declare is refused with 422 naming the field — so `isAdmin=true`,
//! `ownerId=…` or `userId=…` can never be mass-assigned, even if the author
//! forgot `#[serde(deny_unknown_fields)]`. Type errors become `fieldErrors`
//! by path (via `serde_path_to_error`), never a 500.
//!
//! Field names beginning with `_` are reserved for the framework. Accepted
//! (and split off into [`Reserved`] before the input type sees the body, in
//! every encoding): `_return` (the no-JS return path, see
//! [`crate::respond::safe_return_path`]), `_idem` and the bot-check fields
//! `_hp` (honeypot), `_pow` (proof of work) and `_bot` (verifier token), see
//! [`crate::botcheck`]. Any other `_` field is an unknown field (422).
//!
//! Sealed bound arguments ([`super::Sealed`]) are opened *during*
//! deserialization: the request's [`Opening`] (action, session binding, key
//! ring, clock) is made visible to them only around the synchronous serde
//! call, by a guard that also clears it on error. A seal that fails to open
//! is 400 `invalid_bound_argument`, not a 422 field error.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::reserved::Reserved;
use super::sealed::{self, Opening};
use super::shape::InputShape;
use crate::body::{BodyKind, BodyLimits, malformed_multipart, too_large, too_many_parts};
use crate::error::{ErrorCode, FieldErrors, Rejection};

/// A request body as stage 6a receives it.
pub enum Payload {
    /// Read whole under the action's cap (every action without upload
    /// fields, and upload actions sent a body that is not multipart).
    Bytes(Bytes),
    /// A multipart body already streamed by [`crate::upload::receive`]:
    /// its text pairs and its files.
    Received(crate::upload::Received),
}

/// Decodes `body` into `T`, enforcing field/part/depth caps, refusing
/// undeclared fields and opening sealed fields with `opening`.
pub async fn decode<T: DeserializeOwned>(
    kind: &BodyKind,
    body: Payload,
    shape: &InputShape,
    limits: &BodyLimits,
    opening: &Opening,
) -> Result<(T, Reserved), Rejection> {
    let body = match body {
        Payload::Bytes(bytes) => bytes,
        Payload::Received(received) => {
            // The pairs were screened for files already; screen them like
            // any multipart body (caps, reserved, undeclared, sealed).
            let mut screen = Screen::new(shape, limits, true);
            for (k, v) in received.pairs {
                screen.push(Cow::Owned(k), Cow::Owned(v))?;
            }
            let body = screen.finish(None)?;
            let opening = opening
                .clone()
                .with_fields(std::mem::take(&mut screen.sealed))
                .with_uploads(received.staged);
            let input = from_form(&body, &opening)?;
            return Ok((input, screen.reserved));
        }
    };
    match kind {
        BodyKind::UrlEncoded => {
            let mut screen = Screen::new(shape, limits, false);
            for (k, v) in form_urlencoded::parse(&body) {
                screen.push(k, v)?;
            }
            let body = screen.finish(Some(body))?;
            let opening = opening
                .clone()
                .with_fields(std::mem::take(&mut screen.sealed));
            let input = from_form(&body, &opening)?;
            Ok((input, screen.reserved))
        }
        BodyKind::Multipart { boundary } => {
            let mut screen = Screen::new(shape, limits, true);
            let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
            let mut multipart = multer::Multipart::new(stream, boundary.as_str());
            let mut parts = 0usize;
            while let Some(field) = multipart.next_field().await.map_err(malformed_multipart)? {
                parts += 1;
                if parts > limits.max_parts {
                    return Err(too_many_parts(limits.max_parts));
                }
                let name = field
                    .name()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed_multipart("a part has no name"))?;
                if field.file_name().is_some() {
                    // An action with upload fields streams its multipart
                    // bodies ([`crate::upload::receive`]); this one has none.
                    return Err(Rejection::invalid(
                        one(&name, "file uploads are not accepted by this action"),
                        Vec::new(),
                    ));
                }
                let value = field.text().await.map_err(malformed_multipart)?;
                screen.push(Cow::Owned(name), Cow::Owned(value))?;
            }
            let body = screen.finish(None)?;
            let opening = opening
                .clone()
                .with_fields(std::mem::take(&mut screen.sealed));
            let input = from_form(&body, &opening)?;
            Ok((input, screen.reserved))
        }
        BodyKind::Json => {
            check_json_depth(&body, limits.max_depth)?;
            let keys = serde_json::from_slice::<TopLevelKeys>(&body).map_err(|e| {
                if e.is_syntax() || e.is_eof() {
                    Rejection::with_message(ErrorCode::MalformedBody, "The body is not valid JSON.")
                } else {
                    Rejection::invalid(FieldErrors::new(), vec!["Expected a JSON object.".into()])
                }
            })?;
            if keys.0.len() > limits.max_fields {
                return Err(too_many_fields(limits));
            }
            let has_reserved = keys.0.iter().any(|k| Reserved::is_reserved(k));
            let has_sealed = keys.0.iter().any(|k| shape.sealed.iter().any(|s| s == k));
            let unknown: Vec<String> = keys
                .0
                .into_iter()
                .filter(|k| !shape.declares(k) && !Reserved::is_reserved(k))
                .collect();
            if !unknown.is_empty() {
                return Err(unknown_fields(unknown));
            }
            let mut reserved = Reserved::default();
            // Only an action with sealed fields that the body carries pays
            // for reading their values (their field binding).
            let mut sealed = Vec::new();
            if has_sealed {
                let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
                    .map_err(|_| {
                        Rejection::with_message(
                            ErrorCode::MalformedBody,
                            "The body is not valid JSON.",
                        )
                    })?;
                for (k, v) in map {
                    if let (true, serde_json::Value::String(text)) =
                        (shape.sealed.iter().any(|s| *s == k), v)
                    {
                        sealed.push((k, text));
                    }
                }
            }
            let opening = &opening.clone().with_fields(sealed);
            // Only a body that carries reserved keys pays for a second pass.
            let body = if has_reserved {
                let mut map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&body).map_err(|_| {
                        Rejection::with_message(
                            ErrorCode::MalformedBody,
                            "The body is not valid JSON.",
                        )
                    })?;
                map.retain(|k, v| {
                    !reserved.take(k, || match v {
                        serde_json::Value::String(s) => std::mem::take(s),
                        other => other.to_string(),
                    })
                });
                Bytes::from(serde_json::to_vec(&map).map_err(|e| Rejection::internal(&e))?)
            } else {
                body
            };
            let input = {
                let _sealed = opening.enter();
                with_path_on_failure(
                    || T::deserialize(&mut serde_json::Deserializer::from_slice(&body)),
                    || {
                        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(
                            &body,
                        ))
                    },
                )?
            };
            Ok((input, reserved))
        }
    }
}

fn from_form<T: DeserializeOwned>(body: &[u8], opening: &Opening) -> Result<T, Rejection> {
    let de = || serde_html_form::Deserializer::new(form_urlencoded::parse(body));
    let _sealed = opening.enter();
    with_path_on_failure(
        || T::deserialize(de()),
        || serde_path_to_error::deserialize(de()),
    )
}

/// Deserializes once, plainly; only a body that fails is deserialized a
/// second time through `serde_path_to_error`, for the field path of the 422.
/// The path tracking wraps every visitor and costs about half of a
/// successful decode, which is the common case. Both passes read the same
/// bytes with the same sealed-field context, so the second fails as the
/// first did (opening a seal has no side effect).
fn with_path_on_failure<T, E: std::fmt::Display>(
    plain: impl FnOnce() -> Result<T, E>,
    with_path: impl FnOnce() -> Result<T, serde_path_to_error::Error<E>>,
) -> Result<T, Rejection> {
    match plain() {
        Ok(value) => Ok(value),
        Err(_) => with_path().map_err(serde_failure),
    }
}

/// Screens name/value pairs: counts, splits off reserved fields, collects
/// undeclared names, and re-encodes only when something had to be removed.
///
/// A urlencoded body is kept as sent and, in the rare case a reserved field
/// must come out, parsed a second time in [`Screen::finish`]; only a
/// multipart body (which has no urlencoded original) keeps its declared
/// pairs as they stream past. Copying every pair "just in case" was one
/// allocation per field on the common path.
struct Screen<'s> {
    shape: &'s InputShape,
    limits: &'s BodyLimits,
    count: usize,
    reserved: Reserved,
    unknown: Vec<String>,
    /// Declared pairs, kept only when there is no original body to re-parse.
    pending: Option<Vec<(String, String)>>,
    /// (field, sealed text) of the input's sealed fields, for their field
    /// binding ([`Opening::with_fields`]).
    sealed: Vec<(String, String)>,
    reencode: bool,
}

impl<'s> Screen<'s> {
    /// `from_parts`: the pairs do not come from a urlencoded body (multipart),
    /// so they are collected and always re-encoded.
    fn new(shape: &'s InputShape, limits: &'s BodyLimits, from_parts: bool) -> Self {
        Screen {
            shape,
            limits,
            count: 0,
            reserved: Reserved::default(),
            unknown: Vec::new(),
            pending: from_parts.then(Vec::new),
            sealed: Vec::new(),
            reencode: from_parts,
        }
    }

    fn push(&mut self, k: Cow<'_, str>, v: Cow<'_, str>) -> Result<(), Rejection> {
        self.count += 1;
        if self.count > self.limits.max_fields {
            return Err(too_many_fields(self.limits));
        }
        if let Some(slot) = self.reserved.slot(&k) {
            *slot = Some(v.into_owned());
            self.reencode = true;
            return Ok(());
        }
        if !self.shape.declares(&k) {
            if self.unknown.len() < 16 && !self.unknown.iter().any(|u| *u == k) {
                self.unknown.push(k.into_owned());
            }
            return Ok(());
        }
        if self.shape.sealed.iter().any(|s| *s == k) {
            self.sealed
                .push((k.clone().into_owned(), v.clone().into_owned()));
        }
        if let Some(pending) = &mut self.pending {
            pending.push((k.into_owned(), v.into_owned()));
        }
        Ok(())
    }

    fn finish(&mut self, original: Option<Bytes>) -> Result<Bytes, Rejection> {
        if !self.unknown.is_empty() {
            return Err(unknown_fields(std::mem::take(&mut self.unknown)));
        }
        let mut ser = form_urlencoded::Serializer::new(String::new());
        match (original, self.pending.take()) {
            (Some(body), _) if !self.reencode => return Ok(body),
            // Every undeclared name was refused above, so dropping the
            // reserved ones leaves exactly the declared pairs.
            (Some(body), _) => {
                for (k, v) in form_urlencoded::parse(&body) {
                    if !Reserved::is_reserved(&k) {
                        ser.append_pair(&k, &v);
                    }
                }
            }
            (None, pending) => {
                for (k, v) in pending.unwrap_or_default() {
                    ser.append_pair(&k, &v);
                }
            }
        }
        Ok(Bytes::from(ser.finish()))
    }
}

/// Collects an object's top-level keys, skipping values without building them.
struct TopLevelKeys(Vec<String>);

impl<'de> de::Deserialize<'de> for TopLevelKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevelKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevelKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k.into_owned());
                }
                Ok(TopLevelKeys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// Refuses JSON nested deeper than `max` in one pass over the bytes, before
/// any parser recurses. Hand-written because serde_json's own guard is a fixed
/// 128-level recursion limit that cannot be lowered.
pub fn check_json_depth(body: &[u8], max: usize) -> Result<(), Rejection> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(Rejection::with_message(
                        ErrorCode::MalformedBody,
                        format!("JSON may be nested at most {max} levels deep."),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn one(field: &str, message: &str) -> FieldErrors {
    let mut f = FieldErrors::new();
    f.insert(field.to_owned(), vec![message.to_owned()]);
    f
}

fn too_many_fields(limits: &BodyLimits) -> Rejection {
    let mut r = too_large(limits.body_bytes);
    r.message = format!("At most {} fields are accepted.", limits.max_fields);
    r
}

fn unknown_fields(names: Vec<String>) -> Rejection {
    let form_errors = names
        .iter()
        .map(|n| format!("Unknown field `{n}` is not accepted by this action."))
        .collect();
    let field_errors = names
        .into_iter()
        .map(|n| (n, vec!["is not accepted by this action".to_owned()]))
        .collect();
    Rejection::invalid(field_errors, form_errors)
}

/// Turns a deserialization failure into a 422 with field errors.
fn serde_failure<E: std::fmt::Display>(err: serde_path_to_error::Error<E>) -> Rejection {
    let path = err.path().to_string();
    let message = err.inner().to_string();
    // serde_json appends a position; it means nothing to a form user.
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    if let Some(marker) = sealed::failure_marker(&message) {
        return marker;
    }
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(field) = quoted("missing field `") {
        let field = if path == "." {
            field
        } else {
            format!("{path}.{field}")
        };
        return Rejection::invalid(one(&field, "is required"), Vec::new());
    }
    if let Some(field) = quoted("unknown field `") {
        return unknown_fields(vec![if path == "." {
            field
        } else {
            format!("{path}.{field}")
        }]);
    }
    if path == "." {
        return Rejection::invalid(FieldErrors::new(), vec![message]);
    }
    Rejection::invalid(one(&path, &message), Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Rename {
        project_id: i64,
        name: String,
        note: Option<String>,
    }

    fn shape() -> InputShape {
        InputShape::of::<Rename>().unwrap()
    }

    #[test]
    fn shape_lists_wire_names() {
        assert_eq!(shape().fields, &["projectId", "name", "note"]);
        assert!(shape().sealed.is_empty());
        assert!(InputShape::of::<std::collections::HashMap<String, String>>().is_err());
        assert!(InputShape::of::<String>().is_err());
    }

    fn opening() -> Opening {
        let keys = crate::keys::KeyRing::new(&crate::keys::MasterSecret::generate(), None);
        Opening::new(
            std::sync::Arc::new(crate::seal::Sealer::new(&keys)),
            "test",
            crate::seal::Binding::Anonymous,
            crate::seal::unix_now(),
        )
    }

    async fn run(kind: BodyKind, body: &[u8]) -> Result<(Rename, Reserved), Rejection> {
        decode(
            &kind,
            Payload::Bytes(Bytes::copy_from_slice(body)),
            &shape(),
            &BodyLimits::default(),
            &opening(),
        )
        .await
    }

    #[tokio::test]
    async fn three_encodings_one_type() {
        let want = Rename {
            project_id: 4,
            name: "Apollo".into(),
            note: None,
        };
        let (a, _) = run(BodyKind::UrlEncoded, b"projectId=4&name=Apollo")
            .await
            .unwrap();
        let (b, _) = run(BodyKind::Json, br#"{"projectId":4,"name":"Apollo"}"#)
            .await
            .unwrap();
        let mp = b"--XX\r\nContent-Disposition: form-data; name=\"projectId\"\r\n\r\n4\r\n--XX\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nApollo\r\n--XX--\r\n";
        let (c, _) = run(
            BodyKind::Multipart {
                boundary: "XX".into(),
            },
            mp,
        )
        .await
        .unwrap();
        assert_eq!((&a, &b, &c), (&want, &want, &want));
    }

    #[tokio::test]
    async fn unknown_fields_are_named() {
        for (kind, body) in [
            (
                BodyKind::UrlEncoded,
                &b"projectId=4&name=x&isAdmin=true"[..],
            ),
            (
                BodyKind::Json,
                &br#"{"projectId":4,"name":"x","isAdmin":true}"#[..],
            ),
        ] {
            let err = run(kind, body).await.unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidInput);
            assert!(err.field_errors.contains_key("isAdmin"), "{err:?}");
        }
    }

    #[tokio::test]
    async fn type_errors_become_field_errors() {
        let err = run(BodyKind::UrlEncoded, b"projectId=abc&name=x")
            .await
            .unwrap_err();
        assert!(err.field_errors.contains_key("projectId"), "{err:?}");
        let err = run(BodyKind::Json, br#"{"projectId":4}"#)
            .await
            .unwrap_err();
        assert_eq!(err.field_errors["name"], vec!["is required".to_owned()]);
    }

    #[tokio::test]
    async fn return_field_is_split_off() {
        let (input, reserved) = run(
            BodyKind::UrlEncoded,
            b"projectId=1&name=n&_return=%2Fprojects",
        )
        .await
        .unwrap();
        assert_eq!(input.name, "n");
        assert_eq!(reserved.return_to.as_deref(), Some("/projects"));
    }

    #[tokio::test]
    async fn bot_check_fields_are_reserved_in_every_encoding() {
        let mp = b"--XX\r\nContent-Disposition: form-data; name=\"projectId\"\r\n\r\n1\r\n--XX\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nn\r\n--XX\r\nContent-Disposition: form-data; name=\"_hp\"\r\n\r\nspam\r\n--XX\r\nContent-Disposition: form-data; name=\"_pow\"\r\n\r\nc:1\r\n--XX--\r\n";
        for (kind, body) in [
            (
                BodyKind::UrlEncoded,
                &b"projectId=1&name=n&_hp=spam&_pow=c%3A1"[..],
            ),
            (
                BodyKind::Json,
                &br#"{"projectId":1,"name":"n","_hp":"spam","_pow":"c:1"}"#[..],
            ),
            (
                BodyKind::Multipart {
                    boundary: "XX".into(),
                },
                &mp[..],
            ),
        ] {
            let (input, reserved) = run(kind.clone(), body).await.unwrap();
            assert_eq!(input.name, "n", "{kind:?}");
            assert_eq!(reserved.honeypot.as_deref(), Some("spam"), "{kind:?}");
            assert_eq!(reserved.pow.as_deref(), Some("c:1"), "{kind:?}");
        }
        // Other `_` names stay unknown fields.
        let err = run(BodyKind::UrlEncoded, b"projectId=1&name=n&_admin=1")
            .await
            .unwrap_err();
        assert!(err.field_errors.contains_key("_admin"), "{err:?}");
    }

    #[test]
    fn json_depth_is_capped_linearly() {
        let deep = "[".repeat(10_000);
        assert_eq!(
            check_json_depth(deep.as_bytes(), 32).unwrap_err().code,
            ErrorCode::MalformedBody
        );
        // Brackets inside strings do not count.
        let s = format!("{{\"a\":\"{}\"}}", "[".repeat(100));
        assert!(check_json_depth(s.as_bytes(), 2).is_ok());
        assert!(check_json_depth(br#"{"a":"\"[[[["}"#, 1).is_ok());
    }
}
