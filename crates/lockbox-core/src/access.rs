//! Access levels: what a grant lets an operator do.
//!
//! The provider defines access levels (`Reader` → `*/read`, `Contributor` →
//! `*`). An [`Action`] is an ARM-style operation such as
//! `Microsoft.Compute/virtualMachines/read`; an [`ActionPattern`] may use `*`
//! for any run of characters (including `/`), as in Azure role definitions.
//! Matching is whole-string and case-insensitive.
//!
//! A request and its grant keep a copy of the level's patterns as they were
//! when the request was made: what the approver saw is what is enforced, even
//! if the provider later redefines the level.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use serde_json::json;

use crate::audit::{Chain, EventKind, PendingEvent};
use crate::authz::ProviderAdmin;
use crate::clock::Timestamp;
use crate::id::{TenantId, shorten};
use crate::ssh::SshAccess;
use crate::text::Description;

/// The most patterns one access level may hold.
pub const MAX_PATTERNS: usize = 64;
const MAX_ACTION_LEN: usize = 256;

/// Why an access level, action or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{value}`: {reason}")]
pub struct AccessError {
    /// What was being parsed.
    pub what: &'static str,
    /// The input, shortened.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

impl AccessError {
    pub(crate) fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            what,
            value: shorten(value),
            reason: reason.into(),
        }
    }
}

/// Checks the shape shared by actions and patterns: `/`-separated non-empty
/// segments of letters, digits, `.`, `_`, `-` (and `*` in patterns).
fn check_action_shape(what: &'static str, s: &str, wildcard: bool) -> Result<(), AccessError> {
    if s.is_empty() {
        return Err(AccessError::new(what, s, "must not be empty"));
    }
    if s.len() > MAX_ACTION_LEN {
        return Err(AccessError::new(
            what,
            s,
            format!("is longer than {MAX_ACTION_LEN} characters"),
        ));
    }
    let allowed = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/') || (wildcard && c == '*')
    };
    if let Some(c) = s.chars().find(|&c| !allowed(c)) {
        let hint = if c == '*' {
            "`*` is only allowed in patterns"
        } else {
            "use letters, digits, `.`, `_`, `-` and `/`"
        };
        return Err(AccessError::new(what, s, format!("contains `{c}`; {hint}")));
    }
    if s.split('/').any(str::is_empty) {
        return Err(AccessError::new(
            what,
            s,
            "has an empty segment (a leading, trailing or doubled `/`)",
        ));
    }
    Ok(())
}

/// One operation on a resource, such as `Microsoft.Compute/virtualMachines/read`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Action(Box<str>);

impl Action {
    /// Parses an action.
    pub fn parse(s: &str) -> Result<Self, AccessError> {
        check_action_shape("action", s, false)?;
        Ok(Self(s.into()))
    }

    /// The action as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A pattern over actions: `*`, `*/read`, `Microsoft.Compute/*`,
/// `Microsoft.Compute/*/read`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ActionPattern(Box<str>);

impl ActionPattern {
    /// Parses a pattern.
    pub fn parse(s: &str) -> Result<Self, AccessError> {
        check_action_shape("action pattern", s, true)?;
        if s.contains("**") {
            return Err(AccessError::new(
                "action pattern",
                s,
                "`**` means nothing more than `*`; write `*`",
            ));
        }
        Ok(Self(s.into()))
    }

    /// The pattern as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the pattern matches the whole action, ignoring case. `*`
    /// matches any run of characters, `/` included.
    #[must_use]
    pub fn matches(&self, action: &Action) -> bool {
        glob_match(self.0.as_bytes(), action.0.as_bytes())
    }
}

/// Wildcard matching with `*` only, case-insensitive, in O(len(p) × len(s))
/// at worst: on a mismatch, retry from the last `*` one character further.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match (pattern.get(p), text.get(t)) {
            (Some(b'*'), _) => {
                star = Some((p, t));
                p += 1;
            }
            (Some(pc), Some(tc)) if pc.eq_ignore_ascii_case(tc) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// The name of an access level: a letter, then up to 63 letters, digits,
/// `.`, `_` or `-` (it appears in URLs). Case-sensitive.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessLevelName(Box<str>);

impl AccessLevelName {
    /// Parses a name.
    pub fn parse(s: &str) -> Result<Self, AccessError> {
        let what = "access level name";
        if s.is_empty() || s.len() > 64 {
            return Err(AccessError::new(what, s, "must be 1 to 64 characters"));
        }
        if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(AccessError::new(what, s, "must start with a letter"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(AccessError::new(
                what,
                s,
                format!("contains `{c}`; use letters, digits, `.`, `_` and `-`"),
            ));
        }
        Ok(Self(s.into()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A named set of action patterns, defined by the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLevel {
    /// The level's name.
    pub name: AccessLevelName,
    /// What it allows; never empty.
    pub actions: ActionSet,
    /// What the level is for, shown to approvers.
    pub description: Description,
    /// What an SSH login under the level is (none: no SSH certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshAccess>,
}

impl AccessLevel {
    /// The provider defines `level`, or redefines the level of its name
    /// (`previous` is its current definition). Redefining changes what new
    /// requests ask for; requests already made keep the patterns (and SSH
    /// login) they were made with. Returns no event when nothing changes.
    #[must_use]
    pub fn define(
        by: &ProviderAdmin,
        level: AccessLevel,
        previous: Option<&AccessLevel>,
        now: Timestamp,
    ) -> (AccessLevel, Option<PendingEvent>) {
        if previous == Some(&level) {
            return (level, None);
        }
        let event = PendingEvent::new(
            Chain::Provider,
            now,
            by.principal().clone(),
            EventKind::AccessLevelChanged,
            &level.name,
            json!({
                "actions": level.actions,
                "description": level.description,
                "ssh": level.ssh,
                "previous_actions": previous.map(|p| &p.actions),
                "previous_ssh": previous.and_then(|p| p.ssh.as_ref()),
            }),
        );
        (level, Some(event))
    }

    /// What a redefinition (from `previous` to `self`) records in the chain
    /// of each of `tenants` — those with a request of the level pending or
    /// a grant of it active: `access_level.changed`, with the actions
    /// before and after. Their requests and grants keep the actions they
    /// were made with; the event lets the customer see that the level
    /// changed under them. Nothing when the level is unchanged.
    #[must_use]
    pub fn changed_in_tenants(
        &self,
        by: &ProviderAdmin,
        previous: &AccessLevel,
        tenants: &[TenantId],
        now: Timestamp,
    ) -> Vec<PendingEvent> {
        if previous == self {
            return Vec::new();
        }
        tenants
            .iter()
            .map(|tenant| {
                PendingEvent::new(
                    Chain::Tenant(tenant.clone()),
                    now,
                    by.principal().clone(),
                    EventKind::AccessLevelChanged,
                    &self.name,
                    json!({
                        "level": self.name,
                        "actions": self.actions,
                        "previous_actions": previous.actions,
                        "description": self.description,
                        "ssh": self.ssh,
                        "previous_ssh": previous.ssh,
                    }),
                )
            })
            .collect()
    }

    /// True when one of the level's patterns matches `action`.
    #[must_use]
    pub fn allows(&self, action: &Action) -> bool {
        self.actions.allows(action)
    }
}

/// A non-empty list of at most [`MAX_PATTERNS`] distinct patterns.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ActionSet(Box<[ActionPattern]>);

impl ActionSet {
    /// Builds a set from patterns, refusing an empty or oversized list and
    /// dropping exact duplicates.
    pub fn new(patterns: Vec<ActionPattern>) -> Result<Self, AccessError> {
        if patterns.is_empty() {
            return Err(AccessError::new(
                "action list",
                "[]",
                "an access level must allow at least one action pattern",
            ));
        }
        if patterns.len() > MAX_PATTERNS {
            return Err(AccessError::new(
                "action list",
                &format!("{} patterns", patterns.len()),
                format!("an access level may hold at most {MAX_PATTERNS} patterns"),
            ));
        }
        let mut unique: Vec<ActionPattern> = Vec::with_capacity(patterns.len());
        for p in patterns {
            if !unique
                .iter()
                .any(|q| q.as_str().eq_ignore_ascii_case(p.as_str()))
            {
                unique.push(p);
            }
        }
        Ok(Self(unique.into()))
    }

    /// Parses each pattern and builds the set.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, AccessError> {
        let parsed = patterns
            .iter()
            .map(|p| ActionPattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(parsed)
    }

    /// True when a pattern matches `action`.
    #[must_use]
    pub fn allows(&self, action: &Action) -> bool {
        self.0.iter().any(|p| p.matches(action))
    }

    /// The patterns.
    #[must_use]
    pub fn patterns(&self) -> &[ActionPattern] {
        &self.0
    }
}

impl fmt::Debug for ActionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Serialize for ActionSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ActionSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let patterns = Vec::<ActionPattern>::deserialize(d)?;
        Self::new(patterns).map_err(serde::de::Error::custom)
    }
}

macro_rules! text_value {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = AccessError;
            fn from_str(s: &str) -> Result<Self, AccessError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_value!(Action);
text_value!(ActionPattern);
text_value!(AccessLevelName);

#[cfg(test)]
mod tests {
    use super::*;

    fn level(patterns: &[&str]) -> AccessLevel {
        AccessLevel {
            name: AccessLevelName::parse("Test").unwrap(),
            actions: ActionSet::parse(patterns).unwrap(),
            description: Description::parse("").unwrap(),
            ssh: None,
        }
    }

    fn action(s: &str) -> Action {
        Action::parse(s).unwrap()
    }

    #[test]
    fn reader_allows_reads_only() {
        let reader = level(&["*/read"]);
        assert!(reader.allows(&action("Microsoft.Compute/virtualMachines/read")));
        assert!(reader.allows(&action(
            "Microsoft.Storage/storageAccounts/blobServices/read"
        )));
        assert!(!reader.allows(&action("Microsoft.Compute/virtualMachines/write")));
        assert!(!reader.allows(&action("Microsoft.Compute/virtualMachines/readSecrets")));
        assert!(
            !reader.allows(&action("read")),
            "`*/read` needs a segment before `/read`"
        );
    }

    #[test]
    fn star_alone_allows_everything() {
        let contributor = level(&["*"]);
        assert!(contributor.allows(&action("Microsoft.Compute/virtualMachines/delete")));
        assert!(contributor.allows(&action("x")));
    }

    #[test]
    fn namespace_patterns_stay_in_their_namespace() {
        let compute = level(&["Microsoft.Compute/*"]);
        assert!(compute.allows(&action("Microsoft.Compute/virtualMachines/start/action")));
        assert!(
            compute.allows(&action("microsoft.compute/virtualmachines/read")),
            "case-insensitive"
        );
        assert!(!compute.allows(&action("Microsoft.ComputeX/virtualMachines/read")));
        assert!(!compute.allows(&action("Microsoft.Storage/storageAccounts/read")));
    }

    #[test]
    fn inner_wildcards_and_several_patterns() {
        let lvl = level(&[
            "Microsoft.Compute/*/read",
            "Microsoft.Network/*/join/action",
        ]);
        assert!(lvl.allows(&action("Microsoft.Compute/disks/read")));
        assert!(lvl.allows(&action(
            "Microsoft.Network/virtualNetworks/subnets/join/action"
        )));
        assert!(!lvl.allows(&action("Microsoft.Compute/disks/write")));
    }

    #[test]
    fn glob_backtracks_correctly() {
        let p = ActionPattern::parse("a*b*c").unwrap();
        assert!(p.matches(&action("abc")));
        assert!(p.matches(&action("aXbYbZc")));
        assert!(!p.matches(&action("aXbYbZ")));
        assert!(!p.matches(&action("XaXbc")));
        let p = ActionPattern::parse("*a/b").unwrap();
        assert!(p.matches(&action("a/a/b")));
        assert!(!p.matches(&action("a/b/c")));
    }

    #[test]
    fn malformed_actions_and_patterns_are_refused_with_reasons() {
        assert!(Action::parse("").unwrap_err().reason.contains("empty"));
        assert!(
            Action::parse("a//b")
                .unwrap_err()
                .reason
                .contains("empty segment")
        );
        assert!(Action::parse("/a").is_err());
        assert!(Action::parse("a/").is_err());
        assert!(
            Action::parse("a/*")
                .unwrap_err()
                .reason
                .contains("only allowed in patterns")
        );
        assert!(Action::parse("a b").is_err());
        assert!(
            ActionPattern::parse("a/**")
                .unwrap_err()
                .reason
                .contains("`**`")
        );
        assert!(Action::parse(&"a".repeat(257)).is_err());
    }

    #[test]
    fn action_sets_are_non_empty_bounded_and_deduplicated() {
        assert!(
            ActionSet::parse::<&str>(&[])
                .unwrap_err()
                .reason
                .contains("at least one")
        );
        let many: Vec<String> = (0..65).map(|i| format!("a/{i}")).collect();
        assert!(ActionSet::parse(&many).is_err());
        let set = ActionSet::parse(&["*/read", "*/READ", "*/write"]).unwrap();
        assert_eq!(set.patterns().len(), 2);
    }

    #[test]
    fn access_level_names() {
        assert!(AccessLevelName::parse("Reader").is_ok());
        assert!(AccessLevelName::parse("vm-operator.v2").is_ok());
        assert!(AccessLevelName::parse("1Reader").is_err());
        assert!(AccessLevelName::parse("Read er").is_err());
        assert!(AccessLevelName::parse("").is_err());
    }
}
