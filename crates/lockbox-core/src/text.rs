//! Bounded, trimmed free text: display names, reasons, justifications, case
//! titles, descriptions, and e-mail addresses.
//!
//! Text that people type ends up in the audit log, in notifications and in the
//! portal, so it is bounded in length, trimmed, and free of control
//! characters (newlines and tabs are allowed where a paragraph makes sense)
//! and of invisible format characters ([`FORMAT_CHARACTERS`]): a
//! right-to-left override makes `invoice\u{202E}fdp.exe` display as
//! `invoiceexe.pdf`, and zero-width characters make two names that look
//! alike differ, so an approver would read something other than what was
//! written.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a piece of text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct TextError {
    /// The field (`reason`, `justification`, …).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The rules of one kind of text.
pub trait TextKind {
    /// The field name used in error messages.
    const FIELD: &'static str;
    /// Maximum length in characters, after trimming.
    const MAX_CHARS: usize;
    /// Whether the empty string is acceptable.
    const ALLOW_EMPTY: bool = false;
    /// Whether newlines and tabs are allowed.
    const MULTILINE: bool = false;
}

/// Text that obeys the rules of `K`.
pub struct Text<K: TextKind>(Box<str>, PhantomData<fn() -> K>);

impl<K: TextKind> Text<K> {
    /// Trims `s` and checks it against the rules of `K`.
    pub fn parse(s: &str) -> Result<Self, TextError> {
        let err = |reason: String| TextError {
            field: K::FIELD,
            reason,
        };
        let s = s.trim();
        if s.is_empty() && !K::ALLOW_EMPTY {
            return Err(err("must not be empty".into()));
        }
        let chars = s.chars().count();
        if chars > K::MAX_CHARS {
            return Err(err(format!(
                "is {chars} characters long; the limit is {}",
                K::MAX_CHARS
            )));
        }
        let allowed_control = |c: char| K::MULTILINE && (c == '\n' || c == '\t' || c == '\r');
        if s.chars().any(|c| c.is_control() && !allowed_control(c)) {
            return Err(err("must not contain control characters".into()));
        }
        refuse_format_characters(s).map_err(err)?;
        Ok(Self(s.into(), PhantomData))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Text that Lockbox itself writes (a reason such as `case closed`):
    /// literals that satisfy the rules, which debug builds (and so every
    /// test that reaches them) check.
    pub(crate) fn fixed(s: &'static str) -> Self {
        debug_assert!(Self::parse(s).is_ok(), "fixed text breaks its rules: {s:?}");
        Self(s.into(), PhantomData)
    }
}

impl<K: TextKind> Clone for Text<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<K: TextKind> PartialEq for Text<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K: TextKind> Eq for Text<K> {}

impl<K: TextKind> fmt::Debug for Text<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<K: TextKind> fmt::Display for Text<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<K: TextKind> Serialize for Text<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, K: TextKind> Deserialize<'de> for Text<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

macro_rules! text_kind {
    ($(#[$doc:meta])* $alias:ident, $marker:ident, $field:literal, $max:literal $(, $k:ident = $v:expr)*) => {
        #[doc(hidden)]
        #[derive(Debug)]
        pub enum $marker {}
        impl TextKind for $marker {
            const FIELD: &'static str = $field;
            const MAX_CHARS: usize = $max;
            $(const $k: bool = $v;)*
        }
        $(#[$doc])*
        pub type $alias = Text<$marker>;
    };
}

text_kind!(
    /// A person's or a service's display name.
    DisplayName, DisplayNameKind, "display_name", 200
);
text_kind!(
    /// Why an approver approved, denied or revoked, or why a requester
    /// canceled.
    Reason, ReasonKind, "reason", 1000, MULTILINE = true
);
text_kind!(
    /// Why an operator needs access.
    Justification, JustificationKind, "justification", 2000, MULTILINE = true
);
text_kind!(
    /// A request's reference: the ticket or incident id it is made under
    /// (`INC-123456`).
    Reference, ReferenceKind, "reference", 100
);
text_kind!(
    /// The name of a rule of a tenant's policy.
    RuleName, RuleNameKind, "rule name", 100
);
text_kind!(
    /// A support case's title.
    CaseTitle, CaseTitleKind, "title", 200
);
text_kind!(
    /// A description (of an access level, say); may be empty.
    Description, DescriptionKind, "description", 500, ALLOW_EMPTY = true, MULTILINE = true
);

/// The invisible format characters free text refuses: every character of
/// Unicode's general category Cf (as of Unicode 16), and the line and
/// paragraph separators (U+2028, U+2029), which break lines where a
/// newline is not allowed. Sorted, disjoint, inclusive ranges, each with
/// what it is. (Control characters, category Cc, are refused apart.)
pub const FORMAT_CHARACTERS: &[(char, char, &str)] = &[
    ('\u{00AD}', '\u{00AD}', "soft hyphen"),
    ('\u{0600}', '\u{0605}', "an Arabic number sign"),
    ('\u{061C}', '\u{061C}', "Arabic letter mark"),
    ('\u{06DD}', '\u{06DD}', "Arabic end of ayah"),
    ('\u{070F}', '\u{070F}', "Syriac abbreviation mark"),
    ('\u{0890}', '\u{0891}', "an Arabic currency mark above"),
    ('\u{08E2}', '\u{08E2}', "Arabic disputed end of ayah"),
    ('\u{180E}', '\u{180E}', "Mongolian vowel separator"),
    ('\u{200B}', '\u{200B}', "zero width space"),
    ('\u{200C}', '\u{200C}', "zero width non-joiner"),
    ('\u{200D}', '\u{200D}', "zero width joiner"),
    ('\u{200E}', '\u{200E}', "left-to-right mark"),
    ('\u{200F}', '\u{200F}', "right-to-left mark"),
    ('\u{2028}', '\u{2028}', "line separator"),
    ('\u{2029}', '\u{2029}', "paragraph separator"),
    ('\u{202A}', '\u{202A}', "left-to-right embedding"),
    ('\u{202B}', '\u{202B}', "right-to-left embedding"),
    ('\u{202C}', '\u{202C}', "pop directional formatting"),
    ('\u{202D}', '\u{202D}', "left-to-right override"),
    ('\u{202E}', '\u{202E}', "right-to-left override"),
    ('\u{2060}', '\u{2060}', "word joiner"),
    ('\u{2061}', '\u{2064}', "an invisible mathematical operator"),
    ('\u{2066}', '\u{2066}', "left-to-right isolate"),
    ('\u{2067}', '\u{2067}', "right-to-left isolate"),
    ('\u{2068}', '\u{2068}', "first strong isolate"),
    ('\u{2069}', '\u{2069}', "pop directional isolate"),
    ('\u{206A}', '\u{206F}', "a deprecated format character"),
    ('\u{FEFF}', '\u{FEFF}', "zero width no-break space"),
    (
        '\u{FFF9}',
        '\u{FFFB}',
        "an interlinear annotation character",
    ),
    ('\u{110BD}', '\u{110BD}', "Kaithi number sign"),
    ('\u{110CD}', '\u{110CD}', "Kaithi number sign above"),
    (
        '\u{13430}',
        '\u{1343F}',
        "an Egyptian hieroglyph format control",
    ),
    ('\u{1BCA0}', '\u{1BCA3}', "a shorthand format control"),
    ('\u{1D173}', '\u{1D17A}', "a musical symbol format control"),
    ('\u{E0001}', '\u{E0001}', "language tag"),
    ('\u{E0020}', '\u{E007F}', "a tag character"),
];

/// What `c` is, when it is one of [`FORMAT_CHARACTERS`].
#[must_use]
pub fn format_character(c: char) -> Option<&'static str> {
    // The table is sorted: the last range starting at or before `c`.
    let after = FORMAT_CHARACTERS.partition_point(|&(start, _, _)| start <= c);
    let (_, end, what) = FORMAT_CHARACTERS.get(after.checked_sub(1)?)?;
    (c <= *end).then_some(*what)
}

/// Refuses `s` if it holds a format character, naming the first one.
fn refuse_format_characters(s: &str) -> Result<(), String> {
    match s
        .chars()
        .find_map(|c| format_character(c).map(|what| (c, what)))
    {
        Some((c, what)) => Err(format!(
            "must not contain U+{:04X} ({what}): invisible formatting characters can make text read differently from what it says",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// An e-mail address. Checked for shape only (one `@`, a non-empty local part,
/// a dotted domain, no spaces); delivery is what proves it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(Box<str>);

impl Email {
    /// Parses an address.
    pub fn parse(s: &str) -> Result<Self, TextError> {
        let err = |reason: &str| TextError {
            field: "email",
            reason: format!("`{}` {reason}", crate::id::shorten(s)),
        };
        let s = s.trim();
        if s.len() > 254 {
            return Err(err("is longer than 254 characters"));
        }
        // Named without the address, which would carry the character along.
        refuse_format_characters(s).map_err(|reason| TextError {
            field: "email",
            reason,
        })?;
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("must not contain spaces or control characters"));
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(err("is not an e-mail address (no `@`)"));
        };
        if local.is_empty() || domain.contains('@') {
            return Err(err("is not an e-mail address"));
        }
        let labels_ok = domain.split('.').count() >= 2
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !labels_ok {
            return Err(err("does not have a valid domain"));
        }
        Ok(Self(s.into()))
    }

    /// The address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(
            Reason::parse("  looks fine  ").unwrap().as_str(),
            "looks fine"
        );
        let err = Reason::parse("   ").unwrap_err();
        assert_eq!(err.to_string(), "reason must not be empty");
        assert!(Reason::parse(&"x".repeat(1000)).is_ok());
        let err = Reason::parse(&"x".repeat(1001)).unwrap_err();
        assert!(err.to_string().contains("limit is 1000"), "{err}");
        // Characters, not bytes.
        assert!(DisplayName::parse(&"é".repeat(200)).is_ok());
    }

    #[test]
    fn control_characters_are_refused_except_newlines_where_allowed() {
        assert!(Justification::parse("line one\nline two").is_ok());
        assert!(CaseTitle::parse("line one\nline two").is_err());
        assert!(Reason::parse("bell\u{7}").is_err());
        assert!(Description::parse("").is_ok());
    }

    #[test]
    fn bidirectional_and_other_format_characters_are_refused_naming_the_code_point() {
        // Each bidi override and isolate, and a sample of the other format
        // characters, in every kind of free text and in e-mail addresses.
        let refused = [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{2060}',
            '\u{2061}',
            '\u{2062}',
            '\u{2063}',
            '\u{2064}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{061C}',
            '\u{180E}',
            '\u{206A}',
            '\u{206F}',
            '\u{FFF9}',
            '\u{FFFB}',
            '\u{0600}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{1D173}',
            '\u{13430}',
            '\u{1BCA0}',
            '\u{2028}',
            '\u{2029}',
        ];
        for c in refused {
            let code = format!("U+{:04X}", u32::from(c));
            let text = format!("invoice{c}fdp.exe");
            for err in [
                DisplayName::parse(&text).unwrap_err(),
                Reason::parse(&text).unwrap_err(),
                Justification::parse(&text).unwrap_err(),
                CaseTitle::parse(&text).unwrap_err(),
                Description::parse(&text).unwrap_err(),
                Email::parse(&format!("al{c}ice@contoso.com")).unwrap_err(),
            ] {
                assert!(err.to_string().contains(&code), "{code}: {err}");
            }
        }
        let err = Justification::parse("see \u{202E}gnp.exe").unwrap_err();
        assert_eq!(
            err.to_string(),
            "justification must not contain U+202E (right-to-left override): \
             invisible formatting characters can make text read differently from what it says"
        );
        // What is near them stays allowed: letters of right-to-left
        // scripts, accents, emoji, and the visible punctuation nearby.
        for fine in [
            "مرحبا بالعالم",
            "שלום",
            "Grüße, café",
            "disk full 🔥",
            "a–b — c “quoted” …",
            "\u{2010}\u{2027}\u{2030}",
            "\u{FFFC}\u{FFFD}",
        ] {
            assert!(Justification::parse(fine).is_ok(), "{fine:?}");
            assert!(DisplayName::parse(fine).is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn the_format_table_is_sorted_and_disjoint() {
        for pair in FORMAT_CHARACTERS.windows(2) {
            let [(_, end, _), (start, _, _)] = pair else {
                unreachable!()
            };
            assert!(end < start, "{pair:?}");
        }
        for &(start, end, what) in FORMAT_CHARACTERS {
            assert!(start <= end);
            assert_eq!(format_character(start), Some(what));
            assert_eq!(format_character(end), Some(what));
            // The neighbours outside each range are not in it (they are
            // allowed, or in the next range, whose description differs).
            for outside in [u32::from(start) - 1, u32::from(end) + 1] {
                let c = char::from_u32(outside).unwrap();
                assert_ne!(format_character(c), Some(what), "U+{outside:04X}");
            }
        }
        assert_eq!(format_character('\0'), None);
        assert_eq!(format_character(char::MAX), None);
    }

    #[test]
    fn emails_are_checked_for_shape() {
        assert!(Email::parse("alice@contoso.com").is_ok());
        assert!(Email::parse("alice+ops@mail.contoso.co.uk").is_ok());
        for bad in [
            "alice",
            "@contoso.com",
            "alice@contoso",
            "a b@c.com",
            "a@b@c.com",
            "a@-c.com",
            "a@c..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn text_deserializes_through_the_same_rules() {
        let r: Reason = serde_json::from_str("\" ok \"").unwrap();
        assert_eq!(r.as_str(), "ok");
        assert!(serde_json::from_str::<Reason>("\"\"").is_err());
    }
}
