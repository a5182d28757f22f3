//! Forms for actions: the markup that carries an action's *current* opaque
//! id, the no-JS return path, the error slots the client runtime fills, the
//! honeypot and proof-of-work attributes, and sealed bound arguments.
//!
//! Why apart from [`crate::render`]: a form needs only the action directory
//! and the sealing keys ([`FormContext`]), not the whole app runtime; cached
//! fragments render forms too ([`crate::RenderCx::form`]), and the fragment
//! engine sits below the runtime that holds it. The `Page` extractor
//! ([`crate::render::Page`]) builds forms with the viewer's session binding.

use std::sync::Arc;

use std::time::Duration;

use maud::{Markup, html};

use crate::directory::Directory;
use crate::flash::FieldState as FlashValue;
use crate::respond;
use crate::seal::{self, Binding, SealFor, Sealer};
use crate::wire;

/// What rendering a form needs from the app: the action directory (ids,
/// idempotency, bot checks), the sealing keys, and where a 401 or a
/// re-authentication sends the browser.
///
/// State: built once by the app builder, read-only afterwards; shared by
/// the runtime and the fragment engine. Holds no per-user data.
pub(crate) struct FormContext {
    pub(crate) directory: Arc<Directory>,
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) login_path: String,
    pub(crate) reauth_path: String,
}

/// A form bound to an action.
#[must_use]
pub struct Form {
    name: &'static str,
    /// Which form of this action on the page (for the no-JS flash).
    ordinal: usize,
    idempotent: bool,
    login: String,
    /// The password-confirmation path, only for an action with a
    /// `.recent(..)` policy (the only one whose policy answers
    /// `reauthentication_required`).
    reauth: Option<String>,
    optimistic_target: Option<String>,
    optimistic_template: Option<String>,
    optimistic_text: Option<(String, String)>,
    reset: bool,
    action: String,
    /// The page the form is on: where a no-JS 422 comes back to.
    page: String,
    return_to: String,
    id: Option<String>,
    class: Option<String>,
    seal: SealFor,
    hidden: Vec<(String, String)>,
    honeypot: bool,
    pow: Option<String>,
    /// `data-result-into` / `data-result-field`: where the client runtime
    /// shows one field of the result.
    result_into: Option<(String, String)>,
    /// A fresh `_idem` key for no-JS double submits (page forms only: a form
    /// inside a cached fragment is shared by renders, so it gets none).
    pub(crate) idempotency_key: Option<String>,
    /// The action has upload fields: the form is sent as
    /// `multipart/form-data` (with and without JavaScript).
    multipart: bool,
    /// One of many alike inside a form group ([`Form::in_group`]).
    grouped: bool,
    /// `false` for a form in a fragment (cached, so it does not know the
    /// page it is shown on): a no-JS 422 then goes back to `return_to`.
    pub(crate) page_known: bool,
}

impl Form {
    /// A form for action `name` whose sealed values bind to `binding`.
    pub(crate) fn for_action(
        forms: &FormContext,
        name: &'static str,
        return_to: String,
        binding: Binding,
    ) -> Form {
        let directory = &forms.directory;
        let action = match directory.action_path(name) {
            Some(p) => p,
            None => {
                tracing::error!(action = name, "form for an unregistered action");
                // Renders, but every submission answers `stale_action`.
                format!(
                    "{}{}",
                    crate::wire::ACTION_PREFIX,
                    "A".repeat(crate::ids::ID_TEXT_LEN)
                )
            }
        };
        Form {
            name,
            ordinal: crate::flash::next_form(name),
            idempotent: directory.idempotent(name),
            login: forms.login_path.clone(),
            reauth: directory
                .needs_reauthentication(name)
                .then(|| forms.reauth_path.clone()),
            optimistic_target: None,
            optimistic_template: None,
            optimistic_text: None,
            reset: false,
            action,
            page: return_to.clone(),
            return_to,
            id: None,
            class: None,
            seal: SealFor::new(forms.sealer.clone(), name, binding),
            hidden: Vec::new(),
            honeypot: !directory.bot_checks(name).is_empty(),
            pow: directory.pow_challenge(name),
            idempotency_key: None,
            result_into: None,
            grouped: false,
            page_known: true,
            multipart: directory
                .meta(name)
                .is_some_and(|m| !m.upload_fields.is_empty()),
        }
    }

    /// Adds a hidden input `name` carrying `value` sealed for this form's
    /// action and the viewer's session, valid for [`seal::DEFAULT_TTL`]. The
    /// action declares the field as `name: Sealed<T>`.
    ///
    /// If `value` refuses to serialize (say it holds a [`crate::Secret`]),
    /// the error is logged and the field carries nothing that opens: every
    /// submission then fails with `invalid_bound_argument`, closed.
    pub fn bind_sealed(self, name: &str, value: impl serde::Serialize) -> Self {
        self.bind_sealed_for(name, value, seal::DEFAULT_TTL)
    }

    /// [`Form::bind_sealed`] with a lifetime other than the default.
    pub fn bind_sealed_for(
        mut self,
        name: &str,
        value: impl serde::Serialize,
        ttl: Duration,
    ) -> Self {
        let target = self.seal.clone().field(name);
        let sealed = seal::seal(&value, &target, ttl).unwrap_or_else(|e| {
            tracing::error!(action = self.seal.action(), field = name, error = %e, "could not seal a bound argument");
            String::new()
        });
        self.hidden.push((name.to_owned(), sealed));
        self
    }

    /// With JavaScript, shows `result[field]` in the element `selector`
    /// after success instead of reloading (e.g. a token shown once).
    pub fn show_result(mut self, selector: &str, field: &str) -> Self {
        self.result_into = Some((selector.to_owned(), field.to_owned()));
        self
    }

    /// Where a successful submission lands, with the client runtime or
    /// without JavaScript (default: the page the form is on), unless the
    /// action calls `cx.redirect(..)`. Only a same-origin path is taken
    /// ([`crate::security::safe_return_path`]); anything else is ignored, so
    /// a sign-in page may pass its `?return=` query value straight in. The
    /// action sees it as [`crate::Cx::return_path`]. A failed no-JS
    /// submission still comes back to the form's own page.
    pub fn return_to(mut self, path: &str) -> Self {
        if let Some(p) = respond::safe_return_path(path) {
            self.return_to = p.to_owned();
        }
        self
    }

    /// The `<form>` element's DOM id (none by default).
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }

    /// The `<form>` element's CSS class (none by default).
    pub fn class(mut self, class: &str) -> Self {
        self.class = Some(class.to_owned());
        self
    }

    /// Optimistic update: on submit, the client runtime clones the
    /// `<template id=template>`, fills every `[data-slot=field]` in it with
    /// that field's value and appends it to `target` (a CSS selector); it is
    /// removed again if the action fails.
    pub fn optimistic_append(mut self, target: &str, template: &str) -> Self {
        self.optimistic_target = Some(target.to_owned());
        self.optimistic_template = Some(template.to_owned());
        self
    }

    /// Optimistic update: on submit, the text of `target` (a CSS selector)
    /// becomes the value of `field`; restored if the action fails.
    pub fn optimistic_text(mut self, target: &str, field: &str) -> Self {
        self.optimistic_text = Some((target.to_owned(), field.to_owned()));
        self
    }

    /// One form of many alike (a row of a list) inside a form group
    /// ([`form_group`], [`crate::RenderCx::form_group`]): it carries no error
    /// region and no sign-in paths of its own; the client runtime shows its
    /// errors in the group's one region and takes the paths from the group.
    /// Without JavaScript a failed submission's errors still render here,
    /// form and field errors together (nothing else of the form has a slot).
    /// Saves ~140 bytes per form: a list of 100 rows carries one region,
    /// not 100.
    pub fn in_group(mut self) -> Self {
        self.grouped = true;
        self
    }

    /// Clear the form after a successful call from the client runtime.
    pub fn reset_on_success(mut self) -> Self {
        self.reset = true;
        self
    }

    /// Renders the form around `body`.
    pub fn body(self, body: Markup) -> Markup {
        // The return path rides in the query so that refusals raised before
        // the body is read (401, 429, …) can still link back.
        let mut action = format!(
            "{}?{}={}",
            self.action,
            wire::field::RETURN,
            form_urlencoded::byte_serialize(self.return_to.as_bytes()).collect::<String>()
        );
        if self.page_known && self.page != self.return_to {
            // Success lands on `return_to`; a no-JS 422 comes back here.
            action.push_str(&format!(
                "&{}={}",
                wire::field::BACK,
                form_urlencoded::byte_serialize(self.page.as_bytes()).collect::<String>()
            ));
        }
        // (Not for a fragment's form: it is cached, so its ordinal among the
        // page's forms is whatever it was when it rendered.)
        if self.page_known && self.ordinal > 0 {
            // Which of the page's forms for this action (no-JS flash target).
            action.push_str(&format!("&{}={}", wire::field::FORM, self.ordinal));
        }
        let pow_bits = self.pow.as_deref().map(crate::botcheck::challenge_bits);
        let form_errors = if self.grouped {
            crate::flash::all_errors(self.name, self.ordinal)
        } else {
            crate::flash::form_errors(self.name, self.ordinal)
        };
        // A grouped form takes these from its group.
        let (login, reauth) = if self.grouped {
            (None, None)
        } else {
            (Some(self.login.as_str()), self.reauth.as_deref())
        };
        let (text_target, text_field) = match &self.optimistic_text {
            Some((t, f)) => (Some(t.as_str()), Some(f.as_str())),
            None => (None, None),
        };
        html! {
            form method="post" action=(action) data-portcullis
                enctype=[self.multipart.then_some("multipart/form-data")]
                id=[self.id.as_deref()] class=[self.class.as_deref()]
                data-idempotent[self.idempotent]
                data-login=[login] data-reauth=[reauth]
                data-optimistic-target=[self.optimistic_target.as_deref()]
                data-optimistic-template=[self.optimistic_template.as_deref()]
                data-optimistic-text=[text_target] data-optimistic-field=[text_field]
                data-reset[self.reset]
                data-pow=[self.pow.as_deref()] data-pow-bits=[pow_bits]
                data-result-into=[self.result_into.as_ref().map(|r| r.0.as_str())]
                data-result-field=[self.result_into.as_ref().map(|r| r.1.as_str())] {
                @if !self.grouped || !form_errors.is_empty() {
                    (error_region(&form_errors))
                }
                @for (name, value) in &self.hidden {
                    input type="hidden" name=(name) value=(value);
                }
                @if let Some(key) = &self.idempotency_key {
                    input type="hidden" name=(wire::field::IDEMPOTENCY_KEY) value=(key);
                }
                @if self.honeypot {
                    // Off-screen rather than `display:none` (which some bots skip),
                    // by the `pc-honeypot` class of the framework's stylesheet
                    // (no `style=`: the CSP allows no inline styles); hidden
                    // from assistive technology and the tab order.
                    div.pc-honeypot aria-hidden="true" {
                        label { "Leave this field empty"
                            input type="text" name=(wire::field::HONEYPOT) value=""
                                tabindex="-1" autocomplete="off";
                        }
                    }
                }
                (body)
            }
        }
    }
}

/// The form-level error region (a live region the client runtime fills).
fn error_region(errors: &[String]) -> Markup {
    html! {
        div.form-errors role="alert" aria-live="assertive" data-form-errors tabindex="-1" {
            @for e in errors { p { (e) } }
        }
    }
}

/// A group of forms alike (the rows of a list, each made with
/// [`Form::in_group`]) around `body`: one error region and one copy of the
/// sign-in paths for all of them, instead of one per form. `login` and
/// `reauth` are the app's paths ([`crate::Config::login_path`],
/// [`crate::Config::reauth_path`]); [`crate::RenderCx::form_group`] and
/// [`crate::Page::form_group`] fill them in. (The group does not know its
/// forms' actions, so it carries the re-authentication path whatever their
/// policies; a form outside a group carries it only for a `.recent(..)`
/// action.)
pub fn form_group(login: &str, reauth: &str, body: Markup) -> Markup {
    html! {
        div data-login=(login) data-reauth=(reauth) {
            (error_region(&[]))
            (body)
        }
    }
}

/// A labelled input with an error slot: `field("name").label("Name")`.
#[must_use]
pub struct Field {
    name: String,
    label: String,
    kind: &'static str,
    value: Option<String>,
    required: bool,
    autocomplete: Option<&'static str>,
    id: Option<String>,
}

/// A text field for the input field `name` (its wire name), labelled with
/// `name` until [`Field::label`] says otherwise.
pub fn field(name: &str) -> Field {
    Field {
        name: name.to_owned(),
        label: name.to_owned(),
        kind: "text",
        value: None,
        required: false,
        autocomplete: None,
        id: None,
    }
}

impl Field {
    /// The visible label text (escaped).
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.to_owned();
        self
    }
    /// `text` (default), `email`, `password`, `textarea`, `hidden`, …
    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }
    /// The initial value. After a failed no-JS submission the submitted
    /// value is shown instead, except in password fields.
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }
    /// Marks the field `required` for the browser only; the server enforces
    /// what the input type's validation says.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// The HTML `autocomplete` token, e.g. `"email"` or
    /// `"current-password"` (none by default).
    pub fn autocomplete(mut self, v: &'static str) -> Self {
        self.autocomplete = Some(v);
        self
    }
    /// DOM id (default `f-<name>`); set it when two forms share a field name.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }
}

impl maud::Render for Field {
    fn render(&self) -> Markup {
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| format!("f-{}", self.name));
        let err = format!("{id}-error");
        if self.kind == "hidden" {
            return html! { input type="hidden" name=(self.name) value=[self.value.as_deref()]; };
        }
        // A no-JS submission of this form failed: its errors and values.
        let flash = crate::flash::field_state(&self.name);
        let (errors, focus) = match &flash {
            Some(f) => (f.errors.as_slice(), f.focus),
            None => (&[][..], false),
        };
        let value = match &flash {
            Some(FlashValue { value: Some(v), .. }) if self.kind != "password" => Some(v.as_str()),
            _ => self.value.as_deref(),
        };
        let invalid = (!errors.is_empty()).then_some("true");
        html! {
            div.field {
                label for=(id) { (self.label) }
                @if self.kind == "textarea" {
                    textarea id=(id) name=(self.name) required[self.required]
                        aria-invalid=[invalid] autofocus[focus]
                        aria-describedby=(err) { (value.unwrap_or("")) }
                } @else {
                    input id=(id) name=(self.name) type=(self.kind) value=[value]
                        required[self.required] autocomplete=[self.autocomplete]
                        aria-invalid=[invalid] autofocus[focus]
                        aria-describedby=(err);
                }
                p.field-error id=(err) data-error-for=(self.name) aria-live="polite" {
                    (errors.join(" "))
                }
            }
        }
    }
}

/// A submit button.
pub fn submit(label: &str) -> Markup {
    html! { button type="submit" { (label) } }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::keys::{KeyRing, MasterSecret};

    /// maud needs attribute names as literals, so this module spells them;
    /// this pins them to [`crate::wire`]: a form with every option renders
    /// exactly the listed attributes and reserved names.
    #[test]
    fn a_form_renders_exactly_the_wire_names() {
        let keys = KeyRing::new(&MasterSecret::generate(), None);
        let form = Form {
            name: "a",
            ordinal: 1,
            idempotent: true,
            login: "/login".into(),
            reauth: Some("/reauth".into()),
            optimistic_target: Some("#list".into()),
            optimistic_template: Some("row".into()),
            optimistic_text: Some(("#title".into(), "name".into())),
            reset: true,
            action: format!("{}x", wire::ACTION_PREFIX),
            page: "/page".into(),
            return_to: "/next".into(),
            id: None,
            class: None,
            seal: SealFor::new(Arc::new(Sealer::new(&keys)), "a", Binding::Anonymous),
            hidden: Vec::new(),
            honeypot: true,
            pow: Some("challenge".into()),
            result_into: Some(("#out".into(), "token".into())),
            idempotency_key: Some("k".into()),
            grouped: false,
            page_known: true,
            multipart: true,
        };
        let html = form.body(html! { (field("name")) }).into_string();
        let attrs: BTreeSet<&str> = html
            .split(|c: char| c.is_whitespace() || c == '<')
            .filter(|t| t.starts_with("data-"))
            .map(|t| t.split(['=', '>']).next().unwrap_or(t))
            .collect();
        let expected: BTreeSet<&str> = wire::attr::RENDERED
            .iter()
            .copied()
            .filter(|a| *a != wire::attr::FRAGMENT)
            .collect();
        assert_eq!(attrs, expected, "{html}");
        for reserved in wire::field::QUERY {
            assert!(html.contains(&format!("{reserved}=")), "{reserved}: {html}");
        }
        for input in [wire::field::IDEMPOTENCY_KEY, wire::field::HONEYPOT] {
            assert!(
                html.contains(&format!("name=\"{input}\"")),
                "{input}: {html}"
            );
        }
    }
}
