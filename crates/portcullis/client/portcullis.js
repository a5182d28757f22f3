// portcullis.js: the client runtime for <form data-portcullis> forms.
//
// Why it exists: every form already works without JavaScript (plain POST,
// 303, sealed flash for errors). This script only makes that same form
// faster and friendlier: it posts with fetch, shows the pending state, puts
// field errors next to fields, applies optimistic updates and rolls them
// back, swaps the fragments the server re-rendered and follows redirects.
// One hand-written ES module, no build step, no dependencies: what you read
// here is what the browser runs. The server serves it under a
// content-hashed URL with immutable caching.
//
// Every name below is part of the wire contract (crates/portcullis/src/wire.rs);
// a test there fails if this file uses a data-* attribute, header, reserved
// field or envelope member that wire.rs lacks, or lacks one it lists.
//
// Attributes it reads (rendered by the framework's Form/field/fragments):
//   form[data-portcullis]          enhanced form; its action is the endpoint
//   [data-idempotent]              may run in parallel (else: one queue per page)
//   [data-pow][data-pow-bits]      proof-of-work challenge (and its difficulty)
//                                  to solve first; sent as X-Portcullis-Pow
//   [data-form-errors]             form-level error region (role=alert); a form
//                                  without one uses its nearest enclosing
//                                  group's (a direct child of an ancestor)
//   [data-error-for=name]          field error slot (aria-live=polite)
//   [data-optimistic-target=sel][data-optimistic-template=id]
//                                  append a filled <template> to sel at once;
//                                  in it, [data-slot=field] gets that field's value
//   [data-optimistic-text=sel][data-optimistic-field=name]
//                                  set sel's text to a field's value at once
//   [data-reset]                   clear the form after success
//   [data-result-into=sel][data-result-field=name]
//                                  after success, show result[name] in sel
//                                  (e.g. a token shown once) instead of reloading
//   [data-login] / [data-reauth]   where 401s send the browser (?return=here):
//                                  the form's own, else its nearest ancestor's
//   [data-fragment=key]            fragment roots the server may re-render; their
//                                  keys go out in Portcullis-Fragments
// Attributes it writes:
//   form[data-pending]             while a call is in flight (with aria-busy)
//   [data-pc-disabled]             submit buttons it disabled meanwhile
//   [data-optimistic]              optimistic nodes, until the call succeeds
//   [data-portcullis-notice]       the notice after a stale-page reload
//   html[data-portcullis=ready]    the runtime has loaded
// Headers it sends: Accept, Idempotency-Key (one per submission, reused by
// Retry), Portcullis-Fragments, X-Portcullis-Pow, and Content-Type for the
// JSON of call(). It reads the form's _return (query of its action) and
// Retry-After on a 429.
//
// It also exports call() and actionState(), the typed client's runtime
// (see "The typed client" below), and puts them on globalThis.portcullis.
//
// One submission: request() sends it; the answer goes to onSuccess() or
// onFailure(), which dispatches on the status through onStatus.

const STALE_KEY = "portcullis:stale";
const NOTICE_KEY = "portcullis:notice";
let queue = Promise.resolve();

const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const uuid = () =>
  crypto.randomUUID
    ? crypto.randomUUID()
    : "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
        (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16),
      );

function submitters(form) {
  return $$("button:not([type=button]),input[type=submit]", form);
}

function setPending(form, on) {
  form.toggleAttribute("data-pending", on);
  if (on) form.setAttribute("aria-busy", "true");
  else form.removeAttribute("aria-busy");
  for (const b of submitters(form)) {
    if (on) {
      if (!b.disabled) (b.disabled = true), (b.dataset.pcDisabled = "");
    } else if ("pcDisabled" in b.dataset) {
      b.disabled = false;
      delete b.dataset.pcDisabled;
    }
  }
}

// The form's error region: its own, or (rows of a list share one) the one
// directly inside its nearest enclosing group.
function errorBox(form) {
  const own = form.querySelector("[data-form-errors]");
  if (own) return own;
  for (let el = form.parentElement; el; el = el.parentElement) {
    const box = el.querySelector(":scope > [data-form-errors]");
    if (box) return box;
  }
}

function clearErrors(form) {
  for (const s of $$("[data-error-for]", form)) s.textContent = "";
  for (const i of $$("[aria-invalid]", form)) i.removeAttribute("aria-invalid");
  errorBox(form)?.replaceChildren();
}

function formError(form, message, retry) {
  const box = errorBox(form);
  if (!box) return alert(message);
  const p = document.createElement("p");
  p.textContent = message;
  if (retry) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "Retry";
    b.className = "secondary";
    b.addEventListener("click", retry, { once: true });
    p.append(" ", b);
  }
  box.append(p);
}

function showErrors(form, body) {
  let first = null;
  for (const [name, msgs] of Object.entries(body.fieldErrors || {})) {
    const slot = $$("[data-error-for]", form).find((s) => s.dataset.errorFor === name);
    const input = form.elements.namedItem(name);
    const el = input && input.nodeType ? input : input && input[0];
    if (el && el.type !== "hidden") {
      el.setAttribute("aria-invalid", "true");
      first = first || el;
    }
    if (slot) slot.textContent = msgs.join(" ");
    else formError(form, msgs.join(" "));
  }
  for (const m of body.formErrors || []) formError(form, m);
  if (!first && !(body.formErrors || []).length) {
    formError(form, (body.error && body.error.message) || "Some fields need attention.");
  }
  (first || errorBox(form))?.focus?.();
}

// Optimistic updates: applied before the request, undone if it fails.
function optimistic(form, data) {
  const undo = [];
  const tpl = form.dataset.optimisticTemplate;
  const target = form.dataset.optimisticTarget && document.querySelector(form.dataset.optimisticTarget);
  if (tpl && target) {
    const t = document.getElementById(tpl);
    if (t && t.content) {
      const nodes = Array.from(t.content.cloneNode(true).children);
      for (const n of nodes) {
        n.setAttribute("data-optimistic", "");
        for (const s of [n, ...$$("[data-slot]", n)]) {
          const v = s.dataset && s.dataset.slot && data.get(s.dataset.slot);
          if (v != null) s.textContent = v;
        }
        target.append(n);
      }
      undo.push(() => nodes.forEach((n) => n.remove()));
    }
  }
  const sel = form.dataset.optimisticText;
  if (sel) {
    const v = data.get(form.dataset.optimisticField || "name");
    for (const el of $$(sel)) {
      const old = el.textContent;
      if (v != null) el.textContent = v;
      undo.push(() => (el.textContent = old));
    }
  }
  return {
    rollback: () => undo.forEach((f) => f()),
    commit: () => $$("[data-optimistic]").forEach((n) => n.removeAttribute("data-optimistic")),
  };
}

// Proof of work: find counter with SHA-256(challenge || counter_be64)
// starting with `bits` zero bits; sent as "challenge:counter".
async function solve(challenge, bits) {
  const enc = new TextEncoder().encode(challenge);
  const buf = new Uint8Array(enc.length + 8);
  buf.set(enc);
  const view = new DataView(buf.buffer);
  for (let n = 0; ; n++) {
    view.setUint32(enc.length, Math.floor(n / 2 ** 32));
    view.setUint32(enc.length + 4, n >>> 0);
    const h = new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
    let z = 0;
    for (const byte of h) {
      if (byte === 0) z += 8;
      else {
        z += Math.clz32(byte) - 24;
        break;
      }
      if (z >= bits) break;
    }
    if (z >= bits) return `${challenge}:${n}`;
  }
}

function swapFragments(fragments) {
  for (const [key, html] of Object.entries(fragments || {})) {
    for (const el of $$("[data-fragment]")) {
      if (el.dataset.fragment === key) el.outerHTML = html;
    }
  }
}

// Through the prototype: a control named "action" or "reset" shadows the
// form's own property.
const endpoint = (form) => new URL(form.getAttribute("action") || "", location.href);

function returnPath(form) {
  const back = endpoint(form).searchParams.get("_return");
  return back && back[0] === "/" && back[1] !== "/" && back[1] !== "\\" ? back : null;
}

function withReturn(path) {
  return `${path}?return=${encodeURIComponent(location.pathname + location.search)}`;
}

// A form with files: sent with XMLHttpRequest, the one browser API that
// reports upload progress, into a <progress> in the form. Resolves to a
// fetch Response so the rest of the runtime reads it as usual.
function upload(form, url, headers, data) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    let bar = form.querySelector("progress[data-portcullis-progress]");
    if (!bar) {
      bar = document.createElement("progress");
      bar.setAttribute("data-portcullis-progress", "");
      bar.max = 100;
      bar.value = 0;
      form.append(bar);
    }
    bar.hidden = false;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    };
    const done = () => {
      bar.hidden = true;
    };
    xhr.open("POST", url);
    xhr.withCredentials = true;
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.onload = () => {
      done();
      const h = new Headers();
      for (const line of xhr.getAllResponseHeaders().trim().split(/[\r\n]+/)) {
        const at = line.indexOf(":");
        if (at > 0) h.append(line.slice(0, at).trim(), line.slice(at + 1).trim());
      }
      resolve(new Response(xhr.responseText, { status: xhr.status, headers: h }));
    };
    xhr.onerror = xhr.onabort = () => {
      done();
      reject(new TypeError("network"));
    };
    xhr.send(data);
  });
}

// One POST to an action, with the headers every call sends (forms and
// call()/actionState() alike). Resolves to { res, body }; throws when the
// network failed.
async function post(url, key, payload, pow, json, uploadForm) {
  const headers = { Accept: "application/json", "Idempotency-Key": key };
  const keys = $$("[data-fragment]").map((e) => e.dataset.fragment);
  if (keys.length) headers["Portcullis-Fragments"] = keys.join(" ");
  if (pow) headers["X-Portcullis-Pow"] = await solve(pow[0], +pow[1] || 0);
  if (json) headers["Content-Type"] = "application/json";
  const res = uploadForm
    ? await upload(uploadForm, url, headers, payload)
    : await fetch(url, { method: "POST", credentials: "same-origin", headers, body: payload });
  let body = {};
  try {
    body = await res.json();
  } catch {}
  return { res, body };
}

// Sends one submission. Resolves to { res, body }, or null when the
// network failed (then the form says so and offers Retry with the same key).
async function request(form, submitter, key, data, opt) {
  const multipart = $$("input[type=file]", form).length > 0;
  const pow = form.dataset.pow && [form.dataset.pow, form.dataset.powBits];
  try {
    return await post(
      endpoint(form),
      key,
      multipart ? data : new URLSearchParams(data),
      pow,
      false,
      multipart ? form : null,
    );
  } catch {
    opt.rollback();
    clearErrors(form);
    // Nothing is lost: the fields keep their values; Retry reuses the key.
    formError(form, "Network problem: your input is kept. Check your connection and retry.", () =>
      enqueue(form, submitter, key),
    );
    return null;
  }
}

// The success envelope: { ok, result, fragments?, redirect?, revalidated? }.
function onSuccess(form, body, opt) {
  sessionStorage.removeItem(STALE_KEY);
  opt.commit();
  swapFragments(body.fragments);
  if (body.redirect) return location.assign(body.redirect);
  if ("reset" in form.dataset) HTMLFormElement.prototype.reset.call(form);
  // A form may show one result field in place (e.g. a token shown once).
  const into = form.dataset.resultInto && document.querySelector(form.dataset.resultInto);
  if (into) {
    into.textContent = String((body.result || {})[form.dataset.resultField] ?? "");
    into.hidden = false;
    return;
  }
  // Like the no-JS 303: land on the form's return path (or refresh this
  // page), unless fragments or an optimistic update already show the result.
  const optimisticForm = form.dataset.optimisticTemplate || form.dataset.optimisticText;
  // Fresh fragments already show the write (read-your-own-writes); reload
  // only when the server changed something and sent nothing to swap.
  if (!body.fragments && (body.revalidated || !optimisticForm)) {
    const back = returnPath(form);
    if (back && back !== location.pathname + location.search) return location.assign(back);
    location.reload();
  }
}

// Failure handlers by status. Each gets (form, failure) and returns false
// to fall through to the generic message.
const onStatus = { 409: stale, 422: invalid, 429: tooMany, 401: toLogin };

// The failure envelope: { error: { code, message, digest }, fieldErrors?, formErrors? }.
function onFailure(form, res, body, opt) {
  opt.rollback();
  const code = body.error && body.error.code;
  const message = (body.error && body.error.message) || `Request failed (${res.status}).`;
  const handler = onStatus[res.status];
  if (handler && handler(form, { res, body, code, message }) !== false) return;
  formError(form, code === "internal" && body.error.digest ? `${message} Reference: ${body.error.digest}` : message);
}

// 409 stale_action: a deploy or key rotation changed the action ids: reload
// once, never loop. Other 409s (a duplicate still running) fall through.
function stale(form, f) {
  if (f.code !== "stale_action") return false;
  if (!reloadOnce()) formError(form, f.message);
}

function reloadOnce() {
  const last = +sessionStorage.getItem(STALE_KEY) || 0;
  if (Date.now() - last <= 30000) return false;
  sessionStorage.setItem(STALE_KEY, String(Date.now()));
  sessionStorage.setItem(NOTICE_KEY, "This page was out of date and has been reloaded. Please submit again.");
  location.reload();
  return true;
}

// 422: field and form errors into their slots.
function invalid(form, f) {
  showErrors(form, f.body);
}

function tooMany(form, f) {
  formError(form, tooManyMessage(f.res, f.message));
}

function tooManyMessage(res, message) {
  const after = +res.headers.get("Retry-After");
  return after ? `Too many requests. Try again in ${after} s.` : message;
}

// 401: to sign-in (or the password step), coming back here afterwards.
function toLogin(form, f) {
  const reauth = f.code === "reauthentication_required";
  const from = form.closest(reauth ? "[data-reauth]" : "[data-login]");
  const to = from && (reauth ? from.dataset.reauth : from.dataset.login);
  if (!to) return false;
  location.assign(withReturn(to));
}

async function send(form, submitter, key) {
  const data = new FormData(form, submitter);
  // A new attempt: old messages go (the slots are live regions, so the
  // next answer is announced afresh).
  clearErrors(form);
  const opt = optimistic(form, data);
  const answer = await request(form, submitter, key, data, opt);
  if (!answer) return;
  const { res, body } = answer;
  clearErrors(form);
  if (res.ok && body.ok) onSuccess(form, body, opt);
  else onFailure(form, res, body, opt);
}

function enqueue(form, submitter, key) {
  if (form.hasAttribute("data-pending")) return;
  setPending(form, true);
  const run = () => send(form, submitter, key).finally(() => setPending(form, false));
  if ("idempotent" in form.dataset) return run();
  queue = queue.then(run, run);
}

document.addEventListener("submit", (e) => {
  const form = e.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-portcullis")) return;
  if (e.defaultPrevented) return;
  e.preventDefault();
  enqueue(form, e.submitter, uuid());
});

// ---- The typed client: call() and actionState() ----------------------
// For scripts (a React UI, say) rather than forms; typed by the
// actions.d.ts that `portcullis ts` generates, whose actions.js reaches
// these through globalThis.portcullis. An action is { key }: its stable
// client key. The page maps keys to current endpoints in its
// <script type="application/json" id="portcullis-actions"> data block
// (Page::client_actions), so rotated ids work as for forms. A call takes
// the same path as a form: the same headers, the page's queue unless the
// action is idempotent, fragment swaps, one reload on a stale id, 401 to
// sign-in; it resolves to { ok: true, value } or { ok: false, error },
// error being { status, code, message, digest, fieldErrors, formErrors }.

let clientMap;
function clientAction(key) {
  if (!clientMap) {
    const el = document.getElementById("portcullis-actions");
    clientMap = el ? JSON.parse(el.textContent) : { actions: {} };
  }
  return clientMap.actions[key];
}

const failed = (status, code, message, extra) => ({
  ok: false,
  error: { status, code, message, digest: "", fieldErrors: {}, formErrors: [], ...extra },
});

// Calls `action` with `input` (JSON); options.idempotencyKey retries a
// call whose network failed (its error carries the key it used).
export function call(action, input, options = {}) {
  return settle(action, input || {}, options.idempotencyKey || uuid());
}

// A useActionState-compatible action: (prevState, formData) => next state
// (the call's result), for <form action={…}>.
export function actionState(action) {
  return (prev, data) => settle(action, data, uuid());
}

function settle(action, input, key) {
  const entry = action && clientAction(action.key);
  if (!entry) return Promise.resolve(failed(0, "unknown_action", "This page does not list that action."));
  const run = () => dispatch(entry, input, key).catch(() => failed(0, "network_error", "Network problem.", { idempotencyKey: key }));
  if (entry.idempotent) return run();
  const next = queue.then(run, run);
  queue = next;
  return next;
}

async function dispatch(entry, input, key) {
  const form = input instanceof FormData;
  let payload;
  if (form) {
    const data = new FormData();
    for (const [k, v] of input) data.append(k, v);
    if (entry.honeypot) data.set("_hp", "");
    const files = Array.from(data.values()).some((v) => v instanceof Blob);
    payload = files ? data : new URLSearchParams(data);
  } else {
    payload = JSON.stringify(entry.honeypot ? { ...input, _hp: "" } : input);
  }
  const { res, body } = await post(entry.path, key, payload, entry.pow && [entry.pow, entry.powBits], !form);
  if (res.ok && body.ok) {
    sessionStorage.removeItem(STALE_KEY);
    swapFragments(body.fragments);
    if (body.redirect) location.assign(body.redirect);
    return { ok: true, value: body.result };
  }
  const e = body.error || {};
  const out = failed(res.status, e.code || "internal", e.message || `Request failed (${res.status}).`, {
    digest: e.digest || "",
    fieldErrors: body.fieldErrors || {},
    formErrors: body.formErrors || [],
  });
  if (e.code === "stale_action") reloadOnce();
  if (res.status === 429) out.error.message = tooManyMessage(res, out.error.message);
  if (res.status === 401) {
    const to = e.code === "reauthentication_required" ? clientMap.reauth : clientMap.login;
    if (to) location.assign(withReturn(to));
  }
  return out;
}

globalThis.portcullis = Object.freeze({ call, actionState });

const notice = sessionStorage.getItem(NOTICE_KEY);
if (notice) {
  sessionStorage.removeItem(NOTICE_KEY);
  const p = document.createElement("p");
  p.className = "notice";
  p.setAttribute("role", "status");
  p.setAttribute("data-portcullis-notice", "");
  p.textContent = notice;
  (document.querySelector("main") || document.body).prepend(p);
}
document.documentElement.dataset.portcullis = "ready";
