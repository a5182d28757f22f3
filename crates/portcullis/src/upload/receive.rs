//! Stage 6a for actions with upload fields: the multipart body is streamed,
//! part by part, never buffered whole. Text parts become form pairs for the
//! ordinary decoder; file parts are checked (cap, magic bytes) and written
//! to temp files whose [`Staged`] handles the `Upload<R>` fields then take.
//!
//! The order inside a file part is the point: the first [`SNIFF_BYTES`] are
//! held in memory and their type checked *before* a temp file exists, so a
//! file of the wrong type never touches the disk; the byte cap is checked on
//! every chunk, so an oversized stream is cut at its cap, whatever
//! `Content-Length` claimed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{PLAIN_TEXT, Staged, StagedFile, UploadConfig, UploadField, sanitize_file_name};
use crate::body::{BodyLimits, malformed_multipart, too_many_parts};
use crate::error::{ErrorCode, FieldErrors, Rejection};

/// Bytes of a file held in memory for the type check before it is written.
pub const SNIFF_BYTES: usize = 8 * 1024;

/// What a streamed multipart body became.
pub struct Received {
    /// The text pairs, plus `field=<index>.<sha256>` for each file, in
    /// arrival order: the ordinary decoder's input.
    pub pairs: Vec<(String, String)>,
    /// The files, for the request's `Opening`.
    pub staged: Arc<Staged>,
    /// The sanitised file names, in order (part of the fingerprint: the
    /// same bytes under another name are another request).
    pub file_names: Vec<String>,
}

impl Received {
    /// The pairs urlencoded: the idempotency fingerprint of the request
    /// (file contents enter through their SHA-256).
    pub fn fingerprint_body(&self) -> Bytes {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            ser.append_pair(k, v);
        }
        for name in &self.file_names {
            // `_` names are reserved: no client pair can look like these.
            ser.append_pair("_file_name", name);
        }
        Bytes::from(ser.finish())
    }
}

/// The most an upload request to an action may send: its text cap plus
/// every upload field's cap.
pub fn request_cap(text_cap: usize, uploads: &[UploadField]) -> usize {
    uploads
        .iter()
        .fold(text_cap as u64, |sum, u| sum.saturating_add(u.max_bytes))
        .try_into()
        .unwrap_or(usize::MAX)
}

/// Streams `body` (a multipart body with `boundary`) for an action whose
/// input is `shape`, under `text_cap` text bytes, the upload fields' caps,
/// `limits.max_parts` parts and `config.deadline` for the whole request.
/// On any refusal the files received so far are deleted (they drop).
pub async fn receive(
    body: Body,
    boundary: &str,
    input: InputFields<'_>,
    limits: &BodyLimits,
    text_cap: usize,
    config: &UploadConfig,
) -> Result<Received, Rejection> {
    let cap = request_cap(text_cap, input.uploads);
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(cap as u64));
    let multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    match tokio::time::timeout(
        config.deadline,
        read_parts(multipart, input, limits, text_cap, config),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(Rejection::with_message(
            ErrorCode::RequestTimeout,
            format!(
                "The upload did not arrive within {} seconds; nothing was kept. Try again on a faster connection or with a smaller file.",
                config.deadline.as_secs()
            ),
        )),
    }
}

/// What the action's input type declares (from its `InputShape`).
#[derive(Clone, Copy, Debug)]
pub struct InputFields<'a> {
    /// Every top-level wire name.
    pub fields: &'a [&'static str],
    /// The upload fields among them.
    pub uploads: &'a [UploadField],
}

async fn read_parts(
    mut multipart: multer::Multipart<'static>,
    shape: InputFields<'_>,
    limits: &BodyLimits,
    text_cap: usize,
    config: &UploadConfig,
) -> Result<Received, Rejection> {
    let staged = Arc::new(Staged::default());
    let mut pairs = Vec::new();
    let mut parts = 0usize;
    let mut text_bytes = 0usize;
    let mut seen_files: Vec<&'static str> = Vec::new();
    let mut file_names = Vec::new();
    while let Some(mut field) = idle(config, multipart.next_field()).await? {
        parts += 1;
        if parts > limits.max_parts {
            return Err(too_many_parts(limits.max_parts));
        }
        let name = field
            .name()
            .map(str::to_owned)
            .ok_or_else(|| malformed_multipart("a part has no name"))?;
        let upload = shape.uploads.iter().find(|u| u.name == name);
        match (field.file_name().map(str::to_owned), upload) {
            (Some(_), None) if !shape.fields.contains(&name.as_str()) => {
                return Err(unknown_field(&name));
            }
            (Some(_), None) => {
                return Err(field_error(&name, "does not accept a file"));
            }
            (None, Some(_)) => {
                return Err(field_error(&name, super::NEEDS_FILE));
            }
            (Some(raw_name), Some(rules)) => {
                if seen_files.contains(&rules.name) {
                    return Err(field_error(&name, "accepts one file"));
                }
                seen_files.push(rules.name);
                let Some(file) = receive_file(&mut field, &raw_name, rules, config).await? else {
                    // A file input left empty (the browser sends an empty,
                    // nameless part): as if the field were absent.
                    continue;
                };
                let token = format!("{}.{}", staged.len(), file.sha256_hex);
                file_names.push(file.file_name.clone());
                staged.push(rules.name, file);
                pairs.push((name, token));
            }
            (None, None) => {
                let mut value = Vec::new();
                while let Some(chunk) = idle(config, field.chunk()).await? {
                    text_bytes += chunk.len();
                    if text_bytes > text_cap {
                        return Err(crate::body::too_large(text_cap));
                    }
                    value.extend_from_slice(&chunk);
                }
                let value = String::from_utf8(value)
                    .map_err(|_| field_error(&name, "must be UTF-8 text"))?;
                pairs.push((name, value));
            }
        }
    }
    Ok(Received {
        pairs,
        staged,
        file_names,
    })
}

/// One file part: sniff, then stream to a temp file under the field's cap.
/// `None` for an empty part without a file name (a file input left empty).
async fn receive_file(
    field: &mut multer::Field<'static>,
    raw_name: &str,
    rules: &UploadField,
    config: &UploadConfig,
) -> Result<Option<StagedFile>, Rejection> {
    let over = || {
        Rejection::with_message(
            ErrorCode::PayloadTooLarge,
            format!(
                "`{}` accepts files up to {}; this one is larger. Nothing was kept.",
                rules.name,
                human_bytes(rules.max_bytes)
            ),
        )
    };
    let mut hasher = Sha256::new();
    let mut len: u64 = 0;
    let mut head: Vec<u8> = Vec::new();
    let mut pending: Option<Bytes> = None;
    // 1. Hold the first bytes in memory and check the type.
    while head.len() < SNIFF_BYTES {
        match idle(config, field.chunk()).await? {
            Some(chunk) => {
                len += chunk.len() as u64;
                if len > rules.max_bytes {
                    return Err(over());
                }
                let room = SNIFF_BYTES - head.len();
                if chunk.len() <= room {
                    head.extend_from_slice(&chunk);
                } else {
                    head.extend_from_slice(&chunk[..room]);
                    pending = Some(chunk.slice(room..));
                }
            }
            None => break,
        }
    }
    if len == 0 && raw_name.is_empty() {
        return Ok(None);
    }
    let content_type = sniff(&head, rules.types).ok_or_else(|| {
        field_error(
            rules.name,
            &format!(
                "must be {} (judged by the file's contents, not its name)",
                describe_types(rules.types)
            ),
        )
    })?;
    // 2. Only now a temp file: deleted when the `TempPath` drops.
    std::fs::create_dir_all(&config.dir).map_err(|e| Rejection::internal(&e))?;
    let (file, path) = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(&config.dir)
        .map_err(|e| Rejection::internal(&e))?
        .into_parts();
    let mut file = tokio::fs::File::from_std(file);
    hasher.update(&head);
    file.write_all(&head)
        .await
        .map_err(|e| Rejection::internal(&e))?;
    if let Some(rest) = pending {
        hasher.update(&rest);
        file.write_all(&rest)
            .await
            .map_err(|e| Rejection::internal(&e))?;
    }
    // 3. The rest, chunk by chunk, under the cap.
    while let Some(chunk) = idle(config, field.chunk()).await? {
        len += chunk.len() as u64;
        if len > rules.max_bytes {
            return Err(over());
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| Rejection::internal(&e))?;
    }
    file.flush().await.map_err(|e| Rejection::internal(&e))?;
    Ok(Some(StagedFile {
        path,
        file_name: sanitize_file_name(raw_name),
        content_type,
        len,
        sha256_hex: hex(&hasher.finalize()),
    }))
}

/// One read from the body, under the idle timeout: an upload that sends
/// nothing for [`UploadConfig::idle`] is cut (408) and gives its slot back,
/// rather than holding it to the whole-upload deadline.
async fn idle<T>(
    config: &UploadConfig,
    read: impl std::future::Future<Output = Result<T, multer::Error>>,
) -> Result<T, Rejection> {
    match tokio::time::timeout(config.idle, read).await {
        Ok(result) => result.map_err(multipart_error),
        Err(_) => Err(Rejection::with_message(
            ErrorCode::RequestTimeout,
            format!(
                "The upload stalled (nothing arrived for {} seconds); nothing was kept. Try again.",
                config.idle.as_secs()
            ),
        )),
    }
}

/// The declared type the bytes are, if any. Binary types by magic bytes
/// (`infer`); `text/plain` for UTF-8 text without control characters that
/// does not open like markup (`<`), since a browser that ignored `nosniff`
/// would render that.
pub fn sniff(head: &[u8], types: &[&'static str]) -> Option<&'static str> {
    if let Some(found) = infer::get(head) {
        if found.matcher_type() == infer::MatcherType::Text {
            return None;
        }
        return types.iter().copied().find(|t| *t == found.mime_type());
    }
    if types.contains(&PLAIN_TEXT) && is_plain_text(head) {
        return Some(PLAIN_TEXT);
    }
    None
}

fn is_plain_text(head: &[u8]) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // A multi-byte character cut by the sniff window is fine.
        Err(e) if e.error_len().is_none() => match std::str::from_utf8(&head[..e.valid_up_to()]) {
            Ok(t) => t,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    let opening = text.trim_start_matches('\u{feff}').trim_start();
    !opening.starts_with('<')
        && !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

fn describe_types(types: &[&str]) -> String {
    let names: Vec<String> = types
        .iter()
        .map(|t| match *t {
            PLAIN_TEXT => "plain text".to_owned(),
            t => t
                .rsplit('/')
                .next()
                .unwrap_or(t)
                .trim_start_matches("x-")
                .to_ascii_uppercase(),
        })
        .collect();
    match names.as_slice() {
        [] => "a file".to_owned(),
        [one] => format!("a {one} file"),
        [init @ .., last] => format!("a {} or {last} file", init.join(", ")),
    }
}

fn human_bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn field_error(field: &str, message: &str) -> Rejection {
    let mut f = FieldErrors::new();
    f.insert(field.to_owned(), vec![message.to_owned()]);
    Rejection::invalid(f, Vec::new())
}

fn unknown_field(name: &str) -> Rejection {
    let mut f = FieldErrors::new();
    f.insert(
        name.to_owned(),
        vec!["is not accepted by this action".to_owned()],
    );
    Rejection::invalid(
        f,
        vec![format!(
            "Unknown field `{name}` is not accepted by this action."
        )],
    )
}

fn multipart_error(e: multer::Error) -> Rejection {
    match e {
        multer::Error::StreamSizeExceeded { limit } => Rejection::with_message(
            ErrorCode::PayloadTooLarge,
            format!(
                "The upload is larger than this action accepts ({limit} bytes in all). Nothing was kept."
            ),
        ),
        other => malformed_multipart(other),
    }
}

/// How many uploads are received at once: in the process and per caller.
///
/// State: written by the upload stage of every upload request (a slot is
/// taken before the body is read and given back when the request ends,
/// by a guard, also on error, timeout or a dropped connection). Bounded:
/// the map holds an entry per caller and per address only while they hold
/// a slot, so never more than 2 × `slots` entries. Removed: an entry goes
/// when its count returns to zero. Abuse: one account holds at most
/// `slots_per_caller` slots and one address at most `slots_per_address`
/// (429 beyond, before a byte is read), and a slot whose upload sends
/// nothing for [`UploadConfig::idle`] is cut (408); so filling every slot
/// takes `slots / slots_per_address` addresses that keep sending, and it
/// costs other users a 429 they can retry, never disk beyond `slots` ×
/// the largest request cap.
#[derive(Debug)]
pub struct UploadSlots {
    total: usize,
    per_caller: usize,
    per_address: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// Slots held in all.
    total: usize,
    /// Slots held per caller (`u<id>`) and per address (`ip<addr>`).
    by_key: HashMap<String, usize>,
}

/// One held upload slot; given back on drop.
#[derive(Debug)]
pub struct SlotGuard {
    slots: Arc<UploadSlots>,
    keys: Vec<String>,
}

impl UploadSlots {
    /// `total` slots in the process, `per_caller` per signed-in caller,
    /// `per_address` per client address (so many free accounts behind one
    /// address cannot take every slot).
    pub fn new(total: usize, per_caller: usize, per_address: usize) -> Arc<Self> {
        Arc::new(UploadSlots {
            total: total.max(1),
            per_caller: per_caller.max(1),
            per_address: per_address.max(1),
            held: Mutex::new(Held::default()),
        })
    }

    /// Takes a slot for a caller (`Some(user key)` when signed in) at
    /// `address`, or refuses with 429.
    pub fn acquire(
        self: &Arc<Self>,
        caller: Option<String>,
        address: String,
    ) -> Result<SlotGuard, Rejection> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = |key: &str| held.by_key.get(key).copied().unwrap_or(0);
        if let Some(caller) = &caller {
            let mine = count(caller);
            if mine >= self.per_caller {
                return Err(busy(format!(
                    "You already have {mine} uploads in progress; wait for one to finish."
                )));
            }
        }
        // An anonymous caller is its address: the tighter of the two caps.
        let address_cap = if caller.is_some() {
            self.per_address
        } else {
            self.per_address.min(self.per_caller)
        };
        if count(&address) >= address_cap {
            return Err(busy(
                "Too many uploads are in progress from your network; wait for one to finish."
                    .to_owned(),
            ));
        }
        if held.total >= self.total {
            return Err(busy(
                "The server is receiving as many uploads as it can; try again in a moment."
                    .to_owned(),
            ));
        }
        held.total += 1;
        let keys: Vec<String> = caller.into_iter().chain([address]).collect();
        for key in &keys {
            *held.by_key.entry(key.clone()).or_insert(0) += 1;
        }
        Ok(SlotGuard {
            slots: Arc::clone(self),
            keys,
        })
    }

    /// Slots held now (all callers).
    pub fn in_use(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Callers and addresses holding a slot now.
    pub fn callers(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .len()
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total = held.total.saturating_sub(1);
        for key in &self.keys {
            if let Some(n) = held.by_key.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    held.by_key.remove(key);
                }
            }
        }
    }
}

fn busy(message: String) -> Rejection {
    Rejection::with_message(ErrorCode::RateLimited, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

    #[test]
    fn types_come_from_bytes() {
        assert_eq!(sniff(PNG, &["image/png"]), Some("image/png"));
        assert_eq!(sniff(PNG, &["application/pdf"]), None);
        assert_eq!(
            sniff(b"%PDF-1.7\n", &["application/pdf"]),
            Some("application/pdf")
        );
        assert_eq!(sniff(b"hello\nworld", &[PLAIN_TEXT]), Some(PLAIN_TEXT));
        // Markup is never plain text, whatever it is declared as.
        assert_eq!(
            sniff(b"<svg onload=alert(1)>", &[PLAIN_TEXT, "image/png"]),
            None
        );
        assert_eq!(sniff(b"  \n<html><script>", &[PLAIN_TEXT]), None);
        assert_eq!(sniff(b"\0\x01binary", &[PLAIN_TEXT]), None);
        // A character cut by the sniff window is still text.
        assert_eq!(
            sniff(
                "caf\u{e9}".as_bytes().split_last().unwrap().1,
                &[PLAIN_TEXT]
            ),
            Some(PLAIN_TEXT)
        );
    }

    #[test]
    fn slots_are_bounded_per_caller_and_in_all() {
        let slots = UploadSlots::new(3, 2, 3);
        let user = |u: &str| Some(u.to_owned());
        let a1 = slots.acquire(user("a"), "ip1".into()).unwrap();
        let _a2 = slots.acquire(user("a"), "ip1".into()).unwrap();
        let refused = slots.acquire(user("a"), "ip2".into()).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        let _b1 = slots.acquire(user("b"), "ip2".into()).unwrap();
        let refused = slots.acquire(user("c"), "ip3".into()).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        drop(a1);
        let _c1 = slots.acquire(user("c"), "ip3".into()).unwrap();
        assert_eq!(slots.in_use(), 3);
        // a, b, c and their three addresses.
        assert_eq!(slots.callers(), 6);
    }

    #[test]
    fn many_accounts_behind_one_address_cannot_take_every_slot() {
        let slots = UploadSlots::new(16, 2, 4);
        let held: Vec<_> = (0..4)
            .map(|i| slots.acquire(Some(format!("u{i}")), "ip9".into()).unwrap())
            .collect();
        // A fifth account at the same address: refused, though it has none.
        let refused = slots.acquire(Some("u5".into()), "ip9".into()).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(
            refused.message.contains("your network"),
            "{}",
            refused.message
        );
        // Anonymous callers are held to the per-caller cap per address.
        let _x = slots.acquire(None, "ip7".into()).unwrap();
        let _y = slots.acquire(None, "ip7".into()).unwrap();
        assert!(slots.acquire(None, "ip7".into()).is_err());
        drop(held);
        assert_eq!(slots.in_use(), 2);
    }

    #[test]
    fn a_flood_of_callers_leaves_no_entries_behind() {
        let slots = UploadSlots::new(16, 2, 4);
        for i in 0..10_000 {
            let guard = slots.acquire(Some(format!("u{i}")), format!("ip{i}"));
            drop(guard);
        }
        assert_eq!(slots.callers(), 0);
        assert_eq!(slots.in_use(), 0);
    }

    #[test]
    fn type_lists_read_as_words() {
        assert_eq!(describe_types(&["image/png"]), "a PNG file");
        assert_eq!(
            describe_types(&["image/png", "image/jpeg", "application/pdf"]),
            "a PNG, JPEG or PDF file"
        );
    }
}
