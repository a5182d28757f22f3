//! Validation messages for people, in their language.
//!
//! garde reports a failed rule as a developer's sentence ("length is lower
//! than 2", "not set", "not a valid email: missing '@'"), in English only,
//! and with no error kind beside it. Users of a form should read "Must be
//! at least 2 characters long." in the language their browser asks for.
//! So a garde message is first read back into the [`Rule`] that produced it
//! (the table below follows garde 0.22's wording; `tests` runs every rule
//! through garde itself, so a garde upgrade that rewords one fails there,
//! not in front of a user), and the rule is then rendered from a catalog
//! keyed by rule ([`Rule::key`]) in the [`Lang`] chosen from the request's
//! `Accept-Language` ([`Lang::from_accept_language`]; English when nothing
//! listed is supported).
//!
//! Only the message text changes: the envelope keeps its shape and its keys
//! (`code: "invalid_input"`, `fieldErrors` keyed by wire field name), so a
//! client that keys on the code and the field is unaffected. A custom
//! validator's own message is the app's text and is passed through as is.
//!
//! The catalog is static data in this file: nobody writes it at run time,
//! and the language is a closed enum, so a request's header can only pick
//! one of the entries, never add one.

use std::fmt::Write as _;

/// A language the catalog has messages in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lang {
    /// English, the default.
    #[default]
    En,
    /// French.
    Fr,
    /// German.
    De,
}

impl Lang {
    /// Every supported language.
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Fr, Lang::De];

    /// The language's primary subtag (`en`, `fr`, `de`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
            Lang::De => "de",
        }
    }

    fn from_primary(primary: &str) -> Option<Lang> {
        Lang::ALL
            .into_iter()
            .find(|l| l.tag().eq_ignore_ascii_case(primary))
    }

    /// The most preferred supported language of an `Accept-Language` value
    /// (RFC 9110 §12.5.4): ranges ordered by q-value (default 1, ties in
    /// the order given), `q=0` meaning "not this one", region subtags
    /// ignored (`fr-CA` is French), `*` and anything unsupported or
    /// unreadable falling through to the next range, and English when none
    /// is left. At most the first 32 ranges are read, so a long header costs
    /// no more than a short one.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut ranges: Vec<(u16, &str)> = header
            .split(',')
            .take(32)
            .filter_map(|item| {
                let mut parts = item.split(';');
                let range = parts.next()?.trim();
                if range.is_empty() {
                    return None;
                }
                let mut q = 1000;
                for param in parts {
                    let (name, value) = param.split_once('=')?;
                    if name.trim().eq_ignore_ascii_case("q") {
                        q = parse_qvalue(value.trim())?;
                    }
                }
                (q > 0).then_some((q, range))
            })
            .collect();
        // Stable: equal q-values keep the client's order.
        ranges.sort_by_key(|r| std::cmp::Reverse(r.0));
        ranges
            .into_iter()
            .find_map(|(_, range)| {
                let primary = range.split('-').next().unwrap_or(range);
                Lang::from_primary(primary)
            })
            .unwrap_or_default()
    }

    /// The language of a request's headers (`Accept-Language`).
    pub fn of_headers(headers: &http::HeaderMap) -> Lang {
        headers
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(Lang::from_accept_language)
            .unwrap_or_default()
    }
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths; `None` if malformed.
fn parse_qvalue(value: &str) -> Option<u16> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    let q = whole + thousandths;
    (q <= 1000).then_some(q)
}

/// The garde rule a message came from, with what the message needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `length(min = n)` failed.
    LengthMin(String),
    /// `length(max = n)` failed.
    LengthMax(String),
    /// `range(min = n)` failed.
    RangeMin(String),
    /// `range(max = n)` failed.
    RangeMax(String),
    /// `required` (an `Option` that is `None`).
    Required,
    /// `email`.
    Email,
    /// `url`.
    Url,
    /// `ip`, `ipv4`, `ipv6`.
    Ip,
    /// `pattern(..)`.
    Pattern,
    /// `matches(other)`.
    Matches,
    /// `prefix("p")`.
    Prefix(String),
    /// `suffix("s")`.
    Suffix(String),
    /// `contains("c")`.
    Contains(String),
    /// `phone_number`.
    PhoneNumber,
    /// `credit_card`.
    CreditCard,
    /// `ascii`.
    Ascii,
    /// `alphanumeric`.
    Alphanumeric,
    /// `custom(..)` or anything else: the app's own message, kept.
    Custom(String),
}

impl Rule {
    /// Reads a garde 0.22 message back into its rule.
    pub fn of_garde(message: &str) -> Rule {
        let quoted = |rest: &str| rest.trim_matches('"').to_owned();
        if let Some(n) = message.strip_prefix("length is lower than ") {
            Rule::LengthMin(n.to_owned())
        } else if let Some(n) = message.strip_prefix("length is greater than ") {
            Rule::LengthMax(n.to_owned())
        } else if let Some(n) = message.strip_prefix("lower than ") {
            Rule::RangeMin(n.to_owned())
        } else if let Some(n) = message.strip_prefix("greater than ") {
            Rule::RangeMax(n.to_owned())
        } else if message == "not set" {
            Rule::Required
        } else if message.starts_with("not a valid email") {
            Rule::Email
        } else if message.starts_with("not a valid url") {
            Rule::Url
        } else if message.starts_with("not a valid phone number") {
            Rule::PhoneNumber
        } else if message.starts_with("not a valid credit card number") {
            Rule::CreditCard
        } else if message.starts_with("not a valid ") && message.ends_with(" address") {
            Rule::Ip
        } else if message.starts_with("does not match pattern") {
            Rule::Pattern
        } else if message.starts_with("does not match ") && message.ends_with(" field") {
            Rule::Matches
        } else if let Some(p) = message.strip_prefix("value does not begin with ") {
            Rule::Prefix(quoted(p))
        } else if let Some(p) = message.strip_prefix("does not end with ") {
            Rule::Suffix(quoted(p))
        } else if let Some(p) = message.strip_prefix("does not contain ") {
            Rule::Contains(quoted(p))
        } else if message == "not ascii" {
            Rule::Ascii
        } else if message == "not alphanumeric" {
            Rule::Alphanumeric
        } else {
            Rule::Custom(message.to_owned())
        }
    }

    /// The catalog key: garde's name for the rule (`length`, `range`,
    /// `required`, `email`, `url`, `ip`, `pattern`, `matches`, `prefix`,
    /// `suffix`, `contains`, `phone_number`, `credit_card`, `ascii`,
    /// `alphanumeric`, `custom`).
    pub fn key(&self) -> &'static str {
        match self {
            Rule::LengthMin(_) | Rule::LengthMax(_) => "length",
            Rule::RangeMin(_) | Rule::RangeMax(_) => "range",
            Rule::Required => "required",
            Rule::Email => "email",
            Rule::Url => "url",
            Rule::Ip => "ip",
            Rule::Pattern => "pattern",
            Rule::Matches => "matches",
            Rule::Prefix(_) => "prefix",
            Rule::Suffix(_) => "suffix",
            Rule::Contains(_) => "contains",
            Rule::PhoneNumber => "phone_number",
            Rule::CreditCard => "credit_card",
            Rule::Ascii => "ascii",
            Rule::Alphanumeric => "alphanumeric",
            Rule::Custom(_) => "custom",
        }
    }

    /// The message for people, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        use Lang::{De, En, Fr};
        let mut out = String::new();
        // `write!` to a String cannot fail.
        let _ = match (self, lang) {
            (Rule::LengthMin(n), En) if n == "1" => write!(out, "Must not be empty."),
            (Rule::LengthMin(n), Fr) if n == "1" => write!(out, "Ne doit pas être vide."),
            (Rule::LengthMin(n), De) if n == "1" => write!(out, "Darf nicht leer sein."),
            (Rule::LengthMin(n), En) => write!(out, "Must be at least {n} characters long."),
            (Rule::LengthMin(n), Fr) => write!(out, "Doit contenir au moins {n} caractères."),
            (Rule::LengthMin(n), De) => write!(out, "Muss mindestens {n} Zeichen lang sein."),
            (Rule::LengthMax(n), En) => write!(out, "Must be at most {n} characters long."),
            (Rule::LengthMax(n), Fr) => write!(out, "Doit contenir au plus {n} caractères."),
            (Rule::LengthMax(n), De) => write!(out, "Darf höchstens {n} Zeichen lang sein."),
            (Rule::RangeMin(n), En) => write!(out, "Must be at least {n}."),
            (Rule::RangeMin(n), Fr) => write!(out, "Doit être supérieur ou égal à {n}."),
            (Rule::RangeMin(n), De) => write!(out, "Muss mindestens {n} sein."),
            (Rule::RangeMax(n), En) => write!(out, "Must be at most {n}."),
            (Rule::RangeMax(n), Fr) => write!(out, "Doit être inférieur ou égal à {n}."),
            (Rule::RangeMax(n), De) => write!(out, "Darf höchstens {n} sein."),
            (Rule::Required, En) => write!(out, "This field is required."),
            (Rule::Required, Fr) => write!(out, "Ce champ est obligatoire."),
            (Rule::Required, De) => write!(out, "Dieses Feld ist erforderlich."),
            (Rule::Email, En) => write!(out, "Enter a valid email address."),
            (Rule::Email, Fr) => write!(out, "Saisissez une adresse e-mail valide."),
            (Rule::Email, De) => write!(out, "Geben Sie eine gültige E-Mail-Adresse ein."),
            (Rule::Url, En) => write!(out, "Enter a valid URL."),
            (Rule::Url, Fr) => write!(out, "Saisissez une URL valide."),
            (Rule::Url, De) => write!(out, "Geben Sie eine gültige URL ein."),
            (Rule::Ip, En) => write!(out, "Enter a valid IP address."),
            (Rule::Ip, Fr) => write!(out, "Saisissez une adresse IP valide."),
            (Rule::Ip, De) => write!(out, "Geben Sie eine gültige IP-Adresse ein."),
            (Rule::Pattern, En) => write!(out, "Has an invalid format."),
            (Rule::Pattern, Fr) => write!(out, "Le format n'est pas valide."),
            (Rule::Pattern, De) => write!(out, "Das Format ist ungültig."),
            (Rule::Matches, En) => write!(out, "The values do not match."),
            (Rule::Matches, Fr) => write!(out, "Les valeurs ne correspondent pas."),
            (Rule::Matches, De) => write!(out, "Die Werte stimmen nicht überein."),
            (Rule::Prefix(p), En) => write!(out, "Must begin with “{p}”."),
            (Rule::Prefix(p), Fr) => write!(out, "Doit commencer par « {p} »."),
            (Rule::Prefix(p), De) => write!(out, "Muss mit „{p}“ beginnen."),
            (Rule::Suffix(p), En) => write!(out, "Must end with “{p}”."),
            (Rule::Suffix(p), Fr) => write!(out, "Doit se terminer par « {p} »."),
            (Rule::Suffix(p), De) => write!(out, "Muss mit „{p}“ enden."),
            (Rule::Contains(p), En) => write!(out, "Must contain “{p}”."),
            (Rule::Contains(p), Fr) => write!(out, "Doit contenir « {p} »."),
            (Rule::Contains(p), De) => write!(out, "Muss „{p}“ enthalten."),
            (Rule::PhoneNumber, En) => write!(out, "Enter a valid phone number."),
            (Rule::PhoneNumber, Fr) => write!(out, "Saisissez un numéro de téléphone valide."),
            (Rule::PhoneNumber, De) => write!(out, "Geben Sie eine gültige Telefonnummer ein."),
            (Rule::CreditCard, En) => write!(out, "Enter a valid card number."),
            (Rule::CreditCard, Fr) => write!(out, "Saisissez un numéro de carte valide."),
            (Rule::CreditCard, De) => write!(out, "Geben Sie eine gültige Kartennummer ein."),
            (Rule::Ascii, En) => write!(out, "Use ASCII characters only."),
            (Rule::Ascii, Fr) => write!(out, "Utilisez uniquement des caractères ASCII."),
            (Rule::Ascii, De) => write!(out, "Nur ASCII-Zeichen verwenden."),
            (Rule::Alphanumeric, En) => write!(out, "Use letters and digits only."),
            (Rule::Alphanumeric, Fr) => {
                write!(out, "Utilisez uniquement des lettres et des chiffres.")
            }
            (Rule::Alphanumeric, De) => write!(out, "Nur Buchstaben und Ziffern verwenden."),
            (Rule::Custom(message), _) => write!(out, "{message}"),
        };
        out
    }
}

/// garde's message in `lang`, for people.
pub fn humanize(garde_message: &str, lang: Lang) -> String {
    Rule::of_garde(garde_message).message(lang)
}

#[cfg(test)]
mod tests {
    use super::*;
    use garde::Validate;

    #[derive(garde::Validate)]
    struct Every {
        #[garde(length(min = 2))]
        short: String,
        #[garde(length(max = 3))]
        long: String,
        #[garde(range(min = 1))]
        low: i64,
        #[garde(range(max = 10))]
        high: i64,
        #[garde(required)]
        missing: Option<String>,
        #[garde(email)]
        email: String,
        #[garde(pattern(r"^[a-z]+$"))]
        pattern: String,
        #[garde(prefix("ab"))]
        prefix: String,
        #[garde(suffix("yz"))]
        suffix: String,
        #[garde(contains("mm"))]
        contains: String,
        #[garde(ascii)]
        ascii: String,
        #[garde(alphanumeric)]
        alnum: String,
        #[garde(ip)]
        ip: String,
        #[garde(matches(long))]
        again: String,
        #[garde(custom(never))]
        custom: String,
    }

    fn never(_: &str, _: &()) -> garde::Result {
        Err(garde::Error::new("is already taken"))
    }

    /// Every rule, failed through garde itself, is read back into its rule:
    /// a garde upgrade that rewords a message fails here.
    #[test]
    fn garde_messages_map_to_their_rules() {
        let report = Every {
            short: "x".into(),
            long: "xxxx".into(),
            low: 0,
            high: 11,
            missing: None,
            email: "nope".into(),
            pattern: "A1".into(),
            prefix: "zz".into(),
            suffix: "zz".into(),
            contains: "zz".into(),
            ascii: "é".into(),
            alnum: "a b".into(),
            ip: "999.1".into(),
            again: "other".into(),
            custom: "x".into(),
        }
        .validate()
        .unwrap_err();
        let got: std::collections::BTreeMap<String, Rule> = report
            .iter()
            .map(|(path, e)| (path.to_string(), Rule::of_garde(e.message())))
            .collect();
        let want = [
            ("short", Rule::LengthMin("2".into())),
            ("long", Rule::LengthMax("3".into())),
            ("low", Rule::RangeMin("1".into())),
            ("high", Rule::RangeMax("10".into())),
            ("missing", Rule::Required),
            ("email", Rule::Email),
            ("pattern", Rule::Pattern),
            ("prefix", Rule::Prefix("ab".into())),
            ("suffix", Rule::Suffix("yz".into())),
            ("contains", Rule::Contains("mm".into())),
            ("ascii", Rule::Ascii),
            ("alnum", Rule::Alphanumeric),
            ("ip", Rule::Ip),
            ("again", Rule::Matches),
            ("custom", Rule::Custom("is already taken".into())),
        ];
        for (field, rule) in want {
            assert_eq!(got.get(field), Some(&rule), "{field}: {got:?}");
        }
        assert_eq!(got.len(), 15, "{got:?}");
    }

    #[test]
    fn every_rule_has_a_message_in_every_language() {
        let rules = [
            Rule::LengthMin("2".into()),
            Rule::LengthMax("3".into()),
            Rule::RangeMin("1".into()),
            Rule::RangeMax("10".into()),
            Rule::Required,
            Rule::Email,
            Rule::Url,
            Rule::Ip,
            Rule::Pattern,
            Rule::Matches,
            Rule::Prefix("ab".into()),
            Rule::Suffix("yz".into()),
            Rule::Contains("mm".into()),
            Rule::PhoneNumber,
            Rule::CreditCard,
            Rule::Ascii,
            Rule::Alphanumeric,
        ];
        for rule in &rules {
            let en = rule.message(Lang::En);
            for lang in [Lang::Fr, Lang::De] {
                let m = rule.message(lang);
                assert!(!m.is_empty() && m != en, "{rule:?} in {lang:?}: {m}");
            }
        }
        assert_eq!(
            humanize("length is lower than 2", Lang::En),
            "Must be at least 2 characters long."
        );
        assert_eq!(
            humanize("length is lower than 2", Lang::Fr),
            "Doit contenir au moins 2 caractères."
        );
        assert_eq!(humanize("is already taken", Lang::De), "is already taken");
    }

    #[test]
    fn accept_language_respects_q_values_and_falls_back_to_english() {
        let l = Lang::from_accept_language;
        assert_eq!(l("fr"), Lang::Fr);
        assert_eq!(l("fr-CA,fr;q=0.9,en;q=0.8"), Lang::Fr);
        assert_eq!(l("de-DE"), Lang::De);
        assert_eq!(l("en;q=0.5, de;q=0.9"), Lang::De);
        assert_eq!(l("fr;q=0, de;q=0.1"), Lang::De);
        assert_eq!(l("xx, fr;q=0.2"), Lang::Fr);
        assert_eq!(l("xx"), Lang::En);
        assert_eq!(l("*"), Lang::En);
        assert_eq!(l(""), Lang::En);
        assert_eq!(l("fr;q=2"), Lang::En);
        assert_eq!(l("fr;q=abc, de"), Lang::De);
        assert_eq!(l("DE;Q=1.000"), Lang::De);
        // Ties keep the client's order.
        assert_eq!(l("de, fr"), Lang::De);
        assert_eq!(l("fr, de"), Lang::Fr);
    }
}
