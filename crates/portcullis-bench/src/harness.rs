//! What each fuzz target in `fuzz/fuzz_targets/` runs, one function per
//! target. The fuzz targets are one-line wrappers around these, and
//! `tests/fuzz_corpus.rs` replays every committed corpus file through the
//! same functions on stable Rust, so CI keeps every input the fuzzer ever
//! found interesting (and every crash, once fixed) as a regression test.
//!
//! Each function must not panic for any input; where a cheap property holds
//! (a round trip, a refusal that must happen) it is asserted too.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use portcullis::__private::body::{BodyKind, BodyLimits};
use portcullis::__private::flash::{self, Flash};
use portcullis::__private::ids::ActionId;
use portcullis::__private::input::{self, InputShape, Opening};
use portcullis::__private::seal::{Binding, MAX_SEALED_LEN, SealError, Sealer};
use portcullis::Rejection;
use portcullis::Sealed;
use portcullis::security::TrustedProxies;
use portcullis::security::{KeyRing, MasterSecret};
use portcullis::security::{OriginPattern, OriginPolicy};
use serde::Deserialize;

/// The boundary the multipart target's inputs use (see the seed corpus).
pub const MULTIPART_BOUNDARY: &str = "fuzzB";
/// The action name seals are bound to in the seal target.
pub const SEAL_ACTION: &str = "fuzz.action";
/// A fixed "now" for the seal target, so replays are deterministic.
pub const SEAL_NOW: u64 = 1_800_000_000;

/// An input type with a bit of everything a decoder can meet: a number, a
/// string, a list, a nested-looking value and a sealed argument.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // fields are only deserialized
pub struct FuzzInput {
    project_id: Option<i64>,
    name: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    flag: Option<bool>,
    sealed: Option<Sealed<i64>>,
}

fn sealer() -> &'static Arc<Sealer> {
    static SEALER: OnceLock<Arc<Sealer>> = OnceLock::new();
    SEALER.get_or_init(|| {
        let secret = MasterSecret::from_bytes(vec![7u8; 32]).expect("32 bytes");
        Arc::new(Sealer::new(&KeyRing::new(&secret, None)))
    })
}

fn shape() -> &'static InputShape {
    static SHAPE: OnceLock<InputShape> = OnceLock::new();
    SHAPE.get_or_init(|| InputShape::of::<FuzzInput>().expect("a struct"))
}

/// Small caps so the fuzzer reaches the cap paths quickly.
pub fn fuzz_limits() -> BodyLimits {
    BodyLimits {
        max_fields: 32,
        max_parts: 16,
        max_depth: 8,
        ..BodyLimits::default()
    }
}

fn run_decode(kind: BodyKind, data: &[u8]) {
    let opening = Opening::new(sealer().clone(), SEAL_ACTION, Binding::Anonymous, SEAL_NOW);
    let limits = fuzz_limits();
    let body = Bytes::copy_from_slice(data);
    let result = futures::executor::block_on(input::decode::<FuzzInput>(
        &kind,
        input::Payload::Bytes(body),
        shape(),
        &limits,
        &opening,
    ));
    if let Err(rejection) = result {
        // Every refusal is a client error with a stable code, never a 500.
        let status = rejection.code.status().as_u16();
        assert!((400..500).contains(&status), "{rejection:?}");
    }
}

/// `fuzz_targets/decode_urlencoded.rs`
pub fn decode_urlencoded(data: &[u8]) {
    run_decode(BodyKind::UrlEncoded, data);
}

/// `fuzz_targets/decode_multipart.rs`
pub fn decode_multipart(data: &[u8]) {
    run_decode(
        BodyKind::Multipart {
            boundary: MULTIPART_BOUNDARY.into(),
        },
        data,
    );
}

/// `fuzz_targets/decode_json.rs`: the depth pre-check and the full decode.
pub fn decode_json(data: &[u8]) {
    let limits = fuzz_limits();
    if input::check_json_depth(data, limits.max_depth).is_ok() {
        // Passing the pre-check must mean serde_json's own recursion guard
        // (128) is never what stops the parse.
        assert!(input::check_json_depth(data, 128).is_ok());
    }
    run_decode(BodyKind::Json, data);
}

/// `fuzz_targets/seal_open.rs`: arbitrary text must not open (and must not
/// panic); and whatever text we seal must open to itself, for the same
/// action and binding only.
pub fn seal_open(data: &[u8]) {
    let sealer = sealer();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ =
            sealer.open_at::<serde_json::Value>(text, SEAL_ACTION, &Binding::Anonymous, SEAL_NOW);
        let _ = sealer.open_at::<i64>(text, SEAL_ACTION, &Binding::session("s"), SEAL_NOW);
    }
    let value = String::from_utf8_lossy(data).into_owned();
    let sealed = match sealer.seal_at(&value, SEAL_ACTION, &Binding::Anonymous, SEAL_NOW + 60) {
        Ok(sealed) => sealed,
        // Refused when sealing because open_at would refuse it (a former
        // fuzz crash: seal_at used to produce seals that never opened).
        Err(SealError::TooLong(n)) => {
            assert!(n > MAX_SEALED_LEN);
            return;
        }
        Err(e) => panic!("a string must seal: {e}"),
    };
    assert!(sealed.len() <= MAX_SEALED_LEN, "{} > cap", sealed.len());
    let opened: String = sealer
        .open_at(&sealed, SEAL_ACTION, &Binding::Anonymous, SEAL_NOW)
        .expect("our own seal opens");
    assert_eq!(opened, value);
    assert!(
        sealer
            .open_at::<String>(&sealed, "other.action", &Binding::Anonymous, SEAL_NOW)
            .is_err()
    );
    assert!(
        sealer
            .open_at::<String>(&sealed, SEAL_ACTION, &Binding::Anonymous, SEAL_NOW + 61)
            .is_err()
    );
}

/// `fuzz_targets/action_id.rs`: a parsed id prints back to the same text
/// (one action has exactly one wire form per epoch).
pub fn action_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = ActionId::parse(text) {
        assert_eq!(id.to_string(), text);
    }
}

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `fuzz_targets/origin.rs`: the input is lines. Line 1 is an allowlist
/// entry; the rest are `name: value` request headers. Parses the entry,
/// builds a policy from it and checks a POST with those headers, directly
/// and through a trusted proxy (so the forwarded-header parsers run too).
pub fn origin(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let entry = lines.next().unwrap_or_default();
    let _ = OriginPattern::parse(entry);
    let policy = OriginPolicy::new([entry], false).unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let direct = TrustedProxies::none();
    let proxied = TrustedProxies::parse(["127.0.0.0/8"]).expect("a CIDR");
    let verdict = policy.check(&Method::POST, &headers, PEER, &direct);
    let _ = policy.check(&Method::POST, &headers, PEER, &proxied);
    let _ = proxied.client_ip(PEER, &headers);
    // Safe methods are never refused; a browser's cross-site POST is, unless
    // its Origin is allowlisted.
    assert!(policy.check(&Method::GET, &headers, PEER, &proxied).is_ok());
    let sfs = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    if matches!(sfs, Some(b"cross-site")) && headers.get(http::header::ORIGIN).is_none() {
        assert!(verdict.is_err(), "cross-site POST without Origin allowed");
    }
}

fn flash_sealer() -> &'static Sealer {
    static SEALER: OnceLock<Sealer> = OnceLock::new();
    SEALER.get_or_init(|| {
        let secret = MasterSecret::from_bytes(vec![9u8; 32]).expect("32 bytes");
        flash::sealer(&KeyRing::new(&secret, None))
    })
}

/// `fuzz_targets/flash.rs`: the no-JS flash cookie, both ways.
///
/// As a `Cookie` header: whatever the browser sends must not open (it was
/// not sealed by us) and must not panic the cookie parser. As the
/// urlencoded body of a failed submission: the flash built from it carries
/// no secret-named or reserved field and no over-long value, always seals to
/// something that fits a cookie header, and opens to itself for the same
/// session only and only until it expires.
pub fn flash(data: &[u8]) {
    let sealer = flash_sealer();
    let session = Binding::session("fuzz-session");
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, value);
        if let Some(text) = flash::cookie_value(&headers, portcullis::wire::cookie::FLASH) {
            assert!(Flash::open(sealer, text, &session, SEAL_NOW).is_err());
        }
    }
    let mut errors = portcullis::FieldErrors::new();
    errors.insert("name".into(), vec!["too short".into()]);
    let rejection = Rejection::invalid(errors, Vec::new());
    let built = Flash::from_rejection("/projects", "projects.rename", 1, &rejection, Some(data));
    for (name, value) in &built.values {
        assert!(flash::carries_value(name), "carried {name:?}");
        assert!(value.chars().count() <= flash::MAX_VALUE_CHARS);
    }
    let sealed = built
        .clone()
        .seal(sealer, &session, SEAL_NOW + 60)
        .expect("a flash always seals (values, then errors, are dropped to fit)");
    assert!(sealed.len() <= flash::MAX_COOKIE_VALUE);
    assert!(HeaderValue::from_str(&sealed).is_ok());
    let opened = Flash::open(sealer, &sealed, &session, SEAL_NOW).expect("our own flash opens");
    // Either all of it, or the values (and maybe errors) dropped to fit.
    if opened.values.is_empty() && !built.values.is_empty() {
        assert_eq!(opened.path, built.path);
    } else {
        assert_eq!(opened, built);
    }
    assert!(Flash::open(sealer, &sealed, &Binding::session("other"), SEAL_NOW).is_err());
    assert!(Flash::open(sealer, &sealed, &Binding::Anonymous, SEAL_NOW).is_err());
    assert!(Flash::open(sealer, &sealed, &session, SEAL_NOW + 61).is_err());
}
