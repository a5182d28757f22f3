//! The page shell: head, navigation, footer. All text goes through maud,
//! which escapes it; there is no `PreEscaped` of user data anywhere.

use maud::{DOCTYPE, Markup, Render, html};

/// Renders nothing; reserves room for `.0` more bytes in the output. Put
/// first in an `html!` that embeds a large piece (a fragment list, a page
/// body): maud starts from a small estimate and grows the string by
/// doubling, which copied a 37 KB page about four times over.
pub struct Reserve(pub usize);

impl Reserve {
    /// Room for a piece of `len` bytes and the markup around it (a page's
    /// layout, a list's heading and form).
    pub fn around(len: usize) -> Reserve {
        Reserve(len + 2048)
    }
}

impl Render for Reserve {
    fn render_to(&self, buffer: &mut String) {
        buffer.reserve(self.0);
    }
}

/// Who the nav shows as signed in.
pub struct Nav<'a> {
    pub display_name: Option<&'a str>,
    pub sign_out: Option<Markup>,
}

pub fn page(title: &str, nav: Nav<'_>, body: Markup) -> Markup {
    html! {
        (Reserve::around(body.0.len()))
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Portcullis demo" }
                link rel="stylesheet" href="/assets/app.css";
                // The framework's own styles (the honeypot's off-screen class).
                link rel="stylesheet" href=(portcullis::render::style_path());
                // The client runtime: progressive enhancement of every action
                // form; each form still works without it.
                script type="module" src=(portcullis::render::script_path()) {}
            }
            body {
                header.top {
                    a.brand href="/" { "▦ Portcullis" }
                    nav {
                        @if let Some(name) = nav.display_name {
                            a href="/projects" { "Projects" }
                            a href="/settings" { "Settings" }
                            span.who { (name) }
                            @if let Some(form) = nav.sign_out { (form) }
                        } @else {
                            a href="/login" { "Sign in" }
                            a href="/signup" { "Sign up" }
                        }
                        a href="/contact" { "Contact" }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#f5f6f8;color:#1c2230}
a{color:#2753c9;text-decoration:none}a:hover{text-decoration:underline}
header.top{display:flex;flex-wrap:wrap;gap:.75rem;align-items:center;justify-content:space-between;padding:.75rem 1.25rem;background:#fff;border-bottom:1px solid #e3e6ec}
.brand{font-weight:700;color:#1c2230}
header nav{display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header nav form{margin:0;padding:0;background:none;box-shadow:none}
.who{color:#5b6475;font-size:.9rem}
main{max-width:56rem;margin:1.5rem auto;padding:0 1rem}
h1{font-size:1.6rem;margin:.25rem 0 1rem}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
.card,form.card{background:#fff;border:1px solid #e3e6ec;border-radius:10px;padding:1rem 1.25rem;margin:0 0 1rem}
.field{margin:0 0 .75rem}
label{display:block;font-weight:600;font-size:.9rem;margin-bottom:.25rem}
input,textarea,select{width:100%;font:inherit;padding:.5rem .6rem;border:1px solid #c9ceda;border-radius:6px;background:#fff}
textarea{min-height:6rem}
input:focus,textarea:focus,select:focus{outline:2px solid #2753c9;outline-offset:1px}
button{font:inherit;font-weight:600;padding:.45rem .9rem;border:0;border-radius:6px;background:#2753c9;color:#fff;cursor:pointer}
button.secondary,ul.list form button{background:#e8ebf2;color:#1c2230}button.danger{background:#c62f3b}
button:disabled{opacity:.6;cursor:progress}
form[aria-busy=true]{opacity:.75}
form[data-pending] button[type=submit]:not(.secondary){background-image:linear-gradient(90deg,#2753c9 0,#5b7fe0 50%,#2753c9 100%);background-size:200% 100%;animation:pc-busy 1s linear infinite}
@keyframes pc-busy{to{background-position:-200% 0}}
[data-optimistic]{opacity:.55}
[aria-invalid=true]{border-color:#b42331;background:#fff8f8}
.form-errors p{margin:0}.form-errors p+p{margin-top:.25rem}
.form-errors:focus{outline:none}
header nav form button{padding:.3rem .7rem;font-size:.9rem}
#comments:has(.comment) #no-comments{display:none}
.comment strong{font-size:.9rem}
.field-error{color:#b42331;font-size:.85rem;margin:.25rem 0 0;min-height:0}
.field-error:empty{display:none}
.form-errors:empty{display:none}
.form-errors{background:#fdecee;color:#8d1b27;border-radius:6px;padding:.5rem .75rem;margin-bottom:.75rem}
.notice{background:#e9f6ee;color:#14532d;border-radius:6px;padding:.5rem .75rem;margin-bottom:1rem}
ul.list{list-style:none;margin:0;padding:0}
ul.list li{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;padding:.6rem 0;border-bottom:1px solid #eef0f4}
ul.list>li:last-child,ul.list>:last-child>li{border-bottom:0}
ul.list li form{margin-left:auto}ul.list form input{flex:1}
.inline,ul.list form{display:flex;gap:.5rem;align-items:flex-start;margin:0}
.inline .field{margin:0;flex:1}.inline label{position:absolute;left:-9999px}
.muted{color:#6b7385;font-size:.9rem}
.badge{display:inline-block;font-size:.75rem;padding:.05rem .45rem;border-radius:99px;background:#eef0f4;color:#414a5c}
.comment{padding:.6rem 0;border-bottom:1px solid #eef0f4}.comment:last-child{border-bottom:0}
.comment p{margin:.25rem 0;white-space:pre-wrap;overflow-wrap:anywhere}
@media (max-width:600px){header.top{padding:.6rem .8rem}header nav{gap:.75rem;font-size:.95rem}main{margin-top:1rem}.inline,ul.list form{flex-direction:column}.inline .field{width:100%}}
"#;
