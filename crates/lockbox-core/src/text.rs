//! Bounded, trimmed free text: display names, reasons, justifications, case
//! titles, descriptions, and e-mail addresses.
//!
//! Text that people type ends up in the audit log, in notifications and in the
//! portal, so it is bounded in length, trimmed, and free of control
//! characters (newlines and tabs are allowed where a paragraph makes sense).

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
    /// A support case's title.
    CaseTitle, CaseTitleKind, "title", 200
);
text_kind!(
    /// A description (of an access level, say); may be empty.
    Description, DescriptionKind, "description", 500, ALLOW_EMPTY = true, MULTILINE = true
);

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
