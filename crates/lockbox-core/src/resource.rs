//! Resource ids and scopes in the Azure Resource Manager shape.
//!
//! ```text
//! /subscriptions/{sub}
//! /subscriptions/{sub}/resourceGroups/{rg}
//! /subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}[/{type}/{name}]…
//! /subscriptions/{sub}/providers/{namespace}/{type}/{name}…
//! ```
//!
//! Every one of these is a [`ResourceId`] and also a scope: a role assigned
//! or a grant given at a scope covers everything inside it. [`Scope::Tenant`]
//! (written `/`) is the whole tenant: every subscription it owns.
//!
//! As in ARM, ids compare case-insensitively, and containment is a
//! whole-segment prefix: `/subscriptions/s1` contains
//! `/subscriptions/S1/resourceGroups/rg` but not `/subscriptions/s10`.
//! Parsing normalises the fixed keywords (`resourceGroups`, `providers`) and
//! the subscription id to their canonical case and keeps the rest as given.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::shorten;

/// The longest resource id accepted, in bytes.
pub const MAX_RESOURCE_ID_LEN: usize = 1024;
/// How many `{type}/{name}` pairs may follow the first resource (nesting).
pub const MAX_CHILD_DEPTH: usize = 4;

/// Why a resource id or scope is malformed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ResourceIdError {
    /// The input, shortened for display.
    pub input: String,
    /// The 1-based position of the offending segment (the first segment is
    /// `subscriptions`), if the fault is in one segment.
    pub segment: Option<usize>,
    /// The offending segment's text, if any.
    pub value: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ResourceIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid resource id `{}`: ", self.input)?;
        match (self.segment, &self.value) {
            (Some(n), Some(v)) => write!(f, "segment {n} (`{v}`) {}", self.reason),
            (Some(n), None) => write!(f, "segment {n} {}", self.reason),
            _ => f.write_str(&self.reason),
        }
    }
}

/// A subscription's own id (without the `/subscriptions/` prefix). Stored in
/// lowercase; each subscription belongs to exactly one tenant.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(Box<str>);

impl SubscriptionId {
    /// Parses a subscription id: 1–64 letters, digits, `-`, `_` or `.`,
    /// starting and ending with a letter or digit. Normalised to lowercase.
    pub fn parse(s: &str) -> Result<Self, ResourceIdError> {
        check_subscription(s).map_err(|reason| ResourceIdError {
            input: shorten(s),
            segment: None,
            value: None,
            reason: format!("subscription id {reason}"),
        })?;
        Ok(Self(s.to_ascii_lowercase().into()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The subscription as a scope, `/subscriptions/{id}`.
    #[must_use]
    pub fn to_resource_id(&self) -> ResourceId {
        ResourceId {
            text: format!("/subscriptions/{}", self.0).into(),
            kind: ResourceKind::Subscription,
        }
    }
}

impl std::borrow::Borrow<str> for SubscriptionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubscriptionId({:?})", &*self.0)
    }
}

fn check_subscription(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 64 {
        return Err("is longer than 64 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "contains `{c}`; use letters, digits, `-`, `_` and `.`"
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(s.chars().next()) || !alnum(s.chars().last()) {
        return Err("must start and end with a letter or a digit".into());
    }
    Ok(())
}

fn check_name(s: &str) -> Result<(), String> {
    if s.len() > 260 {
        return Err("is longer than 260 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')' | '~')))
    {
        return Err(format!(
            "contains `{c}`; names use letters, digits, `-`, `_`, `.`, `(`, `)` and `~`"
        ));
    }
    if s.ends_with('.') {
        return Err("must not end with `.`".into());
    }
    Ok(())
}

fn check_namespace(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('.').collect();
    let ok = parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok && s.len() <= 128 {
        Ok(())
    } else {
        Err("is not a resource provider namespace such as `Microsoft.Compute`".into())
    }
}

fn check_type(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && s.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err("is not a resource type such as `virtualMachines` (letters and digits, starting with a letter)".into())
    }
}

/// What a resource id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// `/subscriptions/{sub}`
    Subscription,
    /// `/subscriptions/{sub}/resourceGroups/{rg}`
    ResourceGroup,
    /// A resource under a provider namespace, possibly nested.
    Resource,
}

/// A parsed resource id; also a scope. See the module documentation.
#[derive(Clone)]
pub struct ResourceId {
    text: Box<str>,
    kind: ResourceKind,
}

/// Walks the segments of an id, building the normalised text and noting where
/// each scope ends.
struct Parser<'a> {
    input: &'a str,
    segments: Vec<&'a str>,
    out: String,
    /// Byte lengths of `out` at which a scope ends, and what it names.
    scope_ends: Vec<(usize, ResourceKind)>,
}

impl<'a> Parser<'a> {
    fn error(&self, segment: usize, reason: impl Into<String>) -> ResourceIdError {
        ResourceIdError {
            input: shorten(self.input),
            segment: Some(segment),
            value: self
                .segments
                .get(segment.wrapping_sub(1))
                .map(|v| shorten(v)),
            reason: reason.into(),
        }
    }

    fn whole_error(&self, reason: impl Into<String>) -> ResourceIdError {
        ResourceIdError {
            input: shorten(self.input),
            segment: None,
            value: None,
            reason: reason.into(),
        }
    }

    /// Segment `n` (1-based), or an error saying what was expected there.
    fn need(&self, n: usize, expected: &str) -> Result<&'a str, ResourceIdError> {
        self.segments
            .get(n - 1)
            .copied()
            .ok_or_else(|| self.error(n, format!("is missing: expected {expected}")))
    }

    fn push(&mut self, segment: &str) {
        self.out.push('/');
        self.out.push_str(segment);
    }

    fn end_scope(&mut self, kind: ResourceKind) {
        self.scope_ends.push((self.out.len(), kind));
    }

    fn parse(mut self) -> Result<(String, Vec<(usize, ResourceKind)>), ResourceIdError> {
        let s = self.input;
        if s.is_empty() {
            return Err(self.whole_error("must not be empty"));
        }
        if s.len() > MAX_RESOURCE_ID_LEN {
            return Err(self.whole_error(format!("is longer than {MAX_RESOURCE_ID_LEN} bytes")));
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(self.whole_error("must start with `/subscriptions/`"));
        };
        // One trailing slash is tolerated (pasted from a URL); `//` is not.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(self.whole_error(
                "`/` is the tenant scope, not a resource; a resource id starts with `/subscriptions/`",
            ));
        }
        self.segments = rest.split('/').collect();
        if let Some(n) = self.segments.iter().position(|seg| seg.is_empty()) {
            return Err(self.error(n + 1, "is empty (two `/` in a row)"));
        }

        let keyword = self.need(1, "`subscriptions`")?;
        if !keyword.eq_ignore_ascii_case("subscriptions") {
            return Err(self.error(1, "should be `subscriptions`"));
        }
        let sub = self.need(2, "a subscription id")?;
        check_subscription(sub)
            .map_err(|r| self.error(2, format!("is not a valid subscription id: it {r}")))?;
        self.push("subscriptions");
        self.push(&sub.to_ascii_lowercase());
        self.end_scope(ResourceKind::Subscription);

        let mut n = 3;
        if let Some(&seg) = self.segments.get(n - 1) {
            if seg.eq_ignore_ascii_case("resourceGroups") {
                let rg = self.need(n + 1, "a resource group name after `resourceGroups`")?;
                if rg.len() > 90 {
                    return Err(self.error(
                        n + 1,
                        "is not a valid resource group name: it is longer than 90 characters",
                    ));
                }
                check_name(rg).map_err(|r| {
                    self.error(n + 1, format!("is not a valid resource group name: it {r}"))
                })?;
                self.push("resourceGroups");
                self.push(rg);
                self.end_scope(ResourceKind::ResourceGroup);
                n += 2;
            } else if !seg.eq_ignore_ascii_case("providers") {
                return Err(self.error(n, "should be `resourceGroups` or `providers`"));
            }
        }

        if let Some(&seg) = self.segments.get(n - 1) {
            if !seg.eq_ignore_ascii_case("providers") {
                return Err(self.error(n, "should be `providers`"));
            }
            let ns = self.need(n + 1, "a provider namespace such as `Microsoft.Compute`")?;
            check_namespace(ns).map_err(|r| self.error(n + 1, r))?;
            self.push("providers");
            self.push(ns);
            n += 2;
            let mut depth = 0;
            loop {
                let ty = self.need(n, "a resource type such as `virtualMachines`")?;
                check_type(ty).map_err(|r| self.error(n, r))?;
                let name = self.need(n + 1, &format!("a resource name after type `{ty}`"))?;
                check_name(name).map_err(|r| {
                    self.error(n + 1, format!("is not a valid resource name: it {r}"))
                })?;
                self.push(ty);
                self.push(name);
                self.end_scope(ResourceKind::Resource);
                n += 2;
                if self.segments.len() < n {
                    break;
                }
                depth += 1;
                if depth > MAX_CHILD_DEPTH {
                    return Err(self.error(
                        n,
                        format!("nests deeper than {MAX_CHILD_DEPTH} child resources"),
                    ));
                }
            }
        }
        Ok((self.out, self.scope_ends))
    }
}

/// The normalised text and the scopes it passes through (end offset, kind).
fn parse_parts(s: &str) -> Result<(String, Vec<(usize, ResourceKind)>), ResourceIdError> {
    Parser {
        input: s,
        segments: Vec::new(),
        out: String::with_capacity(s.len()),
        scope_ends: Vec::new(),
    }
    .parse()
}

impl ResourceId {
    /// Parses a resource id. The error names the segment that is wrong and
    /// why.
    pub fn parse(s: &str) -> Result<Self, ResourceIdError> {
        let (text, scopes) = parse_parts(s)?;
        let kind = scopes
            .last()
            .map_or(ResourceKind::Subscription, |&(_, kind)| kind);
        Ok(Self {
            text: text.into(),
            kind,
        })
    }

    /// The normalised id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the id names.
    #[must_use]
    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    /// The subscription the resource lives in, which decides its tenant.
    #[must_use]
    pub fn subscription(&self) -> SubscriptionId {
        SubscriptionId(self.subscription_str().into())
    }

    /// The subscription's id as it appears in this resource id (already
    /// in its canonical lowercase), without allocating.
    #[must_use]
    pub fn subscription_str(&self) -> &str {
        self.text
            .strip_prefix("/subscriptions/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
    }

    /// The resource's type in ARM's spelling, the prefix of its actions:
    /// the provider namespace and each type without the names
    /// (`Microsoft.Compute/virtualMachines`,
    /// `Microsoft.Compute/virtualMachines/extensions`), or
    /// `Microsoft.Resources/subscriptions[/resourceGroups]` for a
    /// subscription or a resource group.
    #[must_use]
    pub fn resource_type(&self) -> String {
        // `/subscriptions/{sub}[/resourceGroups/{rg}]/providers/{ns}/{type}/{name}…`,
        // as parsing normalised it.
        let mut segments = self.text.split('/').skip(3).peekable();
        if segments.peek() == Some(&"resourceGroups") {
            segments.nth(1);
        }
        if segments.next() != Some("providers") {
            return match self.kind {
                ResourceKind::ResourceGroup => "Microsoft.Resources/subscriptions/resourceGroups",
                _ => "Microsoft.Resources/subscriptions",
            }
            .to_owned();
        }
        let mut out = segments.next().unwrap_or_default().to_owned();
        for ty in segments.step_by(2) {
            out.push('/');
            out.push_str(ty);
        }
        out
    }

    /// The lowercase form, for use as a key where ids must compare
    /// case-insensitively.
    #[must_use]
    pub fn canonical(&self) -> String {
        self.text.to_ascii_lowercase()
    }

    /// True when `self` is `other` or a whole-segment prefix of it, ignoring
    /// case.
    #[must_use]
    pub fn contains(&self, other: &ResourceId) -> bool {
        let (outer, inner) = (self.text.as_bytes(), other.text.as_bytes());
        match inner.get(..outer.len()) {
            Some(prefix) if prefix.eq_ignore_ascii_case(outer) => {
                matches!(inner.get(outer.len()), None | Some(b'/'))
            }
            _ => false,
        }
    }

    /// Every scope that contains this id, from its subscription down to the
    /// id itself. Role assignments at any of these (or at the tenant scope)
    /// apply to it.
    #[must_use]
    pub fn ancestors(&self) -> Vec<ResourceId> {
        // The stored text parsed once already; re-walking it cannot fail.
        let Ok((_, scopes)) = parse_parts(&self.text) else {
            return vec![self.clone()];
        };
        scopes
            .into_iter()
            .filter_map(|(end, kind)| {
                self.text.get(..end).map(|t| ResourceId {
                    text: t.into(),
                    kind,
                })
            })
            .collect()
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.text.eq_ignore_ascii_case(&other.text)
    }
}

impl Eq for ResourceId {}

impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.text.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

impl Ord for ResourceId {
    fn cmp(&self, other: &Self) -> Ordering {
        let a = self.text.bytes().map(|b| b.to_ascii_lowercase());
        let b = other.text.bytes().map(|b| b.to_ascii_lowercase());
        a.cmp(b)
    }
}

impl PartialOrd for ResourceId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({:?})", &*self.text)
    }
}

impl FromStr for ResourceId {
    type Err = ResourceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ResourceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where a role applies: the whole tenant (`/`) or a resource id and
/// everything inside it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every subscription of the tenant.
    Tenant,
    /// A subscription, resource group or resource, and everything inside it.
    Resource(ResourceId),
}

impl Scope {
    /// Parses `/` or a resource id.
    pub fn parse(s: &str) -> Result<Self, ResourceIdError> {
        if s == "/" {
            Ok(Self::Tenant)
        } else {
            ResourceId::parse(s).map(Self::Resource)
        }
    }

    /// True when the scope covers `resource` (for the tenant scope: any
    /// resource of the tenant; the caller has established the tenant).
    #[must_use]
    pub fn contains(&self, resource: &ResourceId) -> bool {
        match self {
            Self::Tenant => true,
            Self::Resource(outer) => outer.contains(resource),
        }
    }

    /// True when the scope covers all of `other`.
    #[must_use]
    pub fn contains_scope(&self, other: &Scope) -> bool {
        match (self, other) {
            (Self::Tenant, _) => true,
            (Self::Resource(_), Self::Tenant) => false,
            (Self::Resource(a), Self::Resource(b)) => a.contains(b),
        }
    }

    /// The subscription the scope lies in, if it is not the tenant scope.
    #[must_use]
    pub fn subscription(&self) -> Option<SubscriptionId> {
        match self {
            Self::Tenant => None,
            Self::Resource(r) => Some(r.subscription()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tenant => f.write_str("/"),
            Self::Resource(r) => fmt::Display::fmt(r, f),
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({self})")
    }
}

impl FromStr for Scope {
    type Err = ResourceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl From<ResourceId> for Scope {
    fn from(r: ResourceId) -> Self {
        Self::Resource(r)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn resource_types_are_arm_types() {
        let ty = |s: &str| ResourceId::parse(s).unwrap().resource_type();
        assert_eq!(ty("/subscriptions/s1"), "Microsoft.Resources/subscriptions");
        assert_eq!(
            ty("/subscriptions/s1/resourceGroups/providers"),
            "Microsoft.Resources/subscriptions/resourceGroups"
        );
        assert_eq!(
            ty(
                "/subscriptions/s1/resourceGroups/providers/providers/Microsoft.Compute/virtualMachines/vm"
            ),
            "Microsoft.Compute/virtualMachines"
        );
        assert_eq!(
            ty(
                "/subscriptions/s1/providers/Microsoft.Kubernetes/connectedClusters/c1/namespaces/web"
            ),
            "Microsoft.Kubernetes/connectedClusters/namespaces"
        );
    }

    use super::*;

    const VM: &str = "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01";

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    fn err(s: &str) -> ResourceIdError {
        ResourceId::parse(s).unwrap_err()
    }

    #[test]
    fn parses_every_level_of_the_arm_shape() {
        assert_eq!(
            id("/subscriptions/sub-1").kind(),
            ResourceKind::Subscription
        );
        assert_eq!(
            id("/subscriptions/sub-1/resourceGroups/rg").kind(),
            ResourceKind::ResourceGroup
        );
        assert_eq!(id(VM).kind(), ResourceKind::Resource);
        assert_eq!(
            id("/subscriptions/sub-1/providers/Microsoft.Network/dnsZones/contoso.com").kind(),
            ResourceKind::Resource
        );
        let nested = id(
            "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Sql/servers/db1/databases/orders",
        );
        assert_eq!(nested.kind(), ResourceKind::Resource);
        assert_eq!(nested.subscription().as_str(), "sub-1");
    }

    #[test]
    fn normalises_keywords_and_subscription_case_but_keeps_names() {
        let r = id(
            "/SUBSCRIPTIONS/SUB-1/resourcegroups/RG-Web/PROVIDERS/Microsoft.Compute/virtualMachines/VM-01/",
        );
        assert_eq!(
            r.as_str(),
            "/subscriptions/sub-1/resourceGroups/RG-Web/providers/Microsoft.Compute/virtualMachines/VM-01"
        );
        assert_eq!(r, id(VM), "ids compare case-insensitively");
        assert_eq!(r.canonical(), id(VM).canonical());
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let h = |x: &ResourceId| {
            let mut s = DefaultHasher::new();
            x.hash(&mut s);
            s.finish()
        };
        assert_eq!(h(&r), h(&id(VM)), "equal ids hash alike");
    }

    #[test]
    fn errors_name_the_segment_and_the_reason() {
        let e = err("/subscription/sub-1");
        assert_eq!(
            (e.segment, e.value.as_deref()),
            (Some(1), Some("subscription"))
        );
        assert!(e.reason.contains("`subscriptions`"), "{e}");
        assert!(e.to_string().contains("segment 1 (`subscription`)"), "{e}");

        let e = err("/subscriptions");
        assert_eq!(e.segment, Some(2));
        assert!(
            e.reason.contains("missing: expected a subscription id"),
            "{e}"
        );

        let e = err("/subscriptions/sub 1");
        assert_eq!(e.segment, Some(2));
        assert!(e.reason.contains("contains ` `"), "{e}");

        let e = err("/subscriptions/s/resourceGroup/rg");
        assert_eq!(e.segment, Some(3));
        assert!(e.reason.contains("`resourceGroups` or `providers`"), "{e}");

        let e = err("/subscriptions/s/resourceGroups");
        assert_eq!(e.segment, Some(4));
        assert!(e.reason.contains("resource group name"), "{e}");

        let e = err("/subscriptions/s/resourceGroups/rg/provider/Microsoft.Compute/vm/x");
        assert_eq!(e.segment, Some(5));
        assert!(e.reason.contains("`providers`"), "{e}");

        let e = err("/subscriptions/s/resourceGroups/rg/providers/Compute/virtualMachines/x");
        assert_eq!(e.segment, Some(6));
        assert!(e.reason.contains("namespace"), "{e}");

        let e = err(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtual-machines/x",
        );
        assert_eq!(e.segment, Some(7));
        assert!(e.reason.contains("resource type"), "{e}");

        let e =
            err("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines");
        assert_eq!(e.segment, Some(8));
        assert!(
            e.reason
                .contains("resource name after type `virtualMachines`"),
            "{e}"
        );

        let e = err(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/extensions",
        );
        assert_eq!(e.segment, Some(10));

        let e = err("/subscriptions/s//resourceGroups/rg");
        assert_eq!(e.segment, Some(3));
        assert!(e.reason.contains("two `/` in a row"), "{e}");

        let e = err("/subscriptions/s/resourceGroups/rg./");
        assert!(e.reason.contains("must not end with `.`"), "{e}");
    }

    #[test]
    fn whole_input_errors() {
        assert!(err("").reason.contains("empty"));
        assert!(err("subscriptions/s").reason.contains("must start with"));
        assert!(err("/").reason.contains("tenant scope"));
        assert!(
            err(&format!("/subscriptions/{}", "a".repeat(1100)))
                .reason
                .contains("longer than 1024")
        );
        let deep = format!("{VM}{}", "/children/c".repeat(MAX_CHILD_DEPTH + 1));
        assert!(err(&deep).reason.contains("nests deeper"), "{}", err(&deep));
        let ok = format!("{VM}{}", "/children/c".repeat(MAX_CHILD_DEPTH));
        assert!(ResourceId::parse(&ok).is_ok());
    }

    #[test]
    fn containment_is_whole_segment_and_case_insensitive() {
        let sub = id("/subscriptions/sub-1");
        let rg = id("/subscriptions/sub-1/resourceGroups/rg-web");
        let vm = id(VM);
        assert!(sub.contains(&rg) && sub.contains(&vm) && rg.contains(&vm));
        assert!(vm.contains(&vm), "a scope contains itself");
        assert!(!vm.contains(&rg) && !rg.contains(&sub), "never upwards");
        assert!(!id("/subscriptions/sub-10").contains(&vm));
        assert!(
            !sub.contains(&id("/subscriptions/sub-10")),
            "not a string prefix"
        );
        assert!(!rg.contains(&id("/subscriptions/sub-1/resourceGroups/rg-web2")));
        assert!(id("/SUBSCRIPTIONS/SUB-1/RESOURCEGROUPS/RG-WEB").contains(&vm));
        assert!(!id("/subscriptions/sub-2").contains(&vm));
        assert!(!id(&VM.replace("vm-01", "vm-0")).contains(&vm));
    }

    #[test]
    fn ancestors_run_from_subscription_to_self() {
        let nested = id(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/db1/databases/orders",
        );
        let got: Vec<(String, ResourceKind)> = nested
            .ancestors()
            .into_iter()
            .map(|a| (a.to_string(), a.kind()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/subscriptions/s".to_owned(), ResourceKind::Subscription),
                (
                    "/subscriptions/s/resourceGroups/rg".to_owned(),
                    ResourceKind::ResourceGroup
                ),
                (
                    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/db1"
                        .to_owned(),
                    ResourceKind::Resource
                ),
                (nested.to_string(), ResourceKind::Resource),
            ]
        );
        for a in nested.ancestors() {
            assert!(a.contains(&nested));
        }
    }

    #[test]
    fn scopes() {
        let vm = id(VM);
        assert_eq!(Scope::parse("/").unwrap(), Scope::Tenant);
        assert!(Scope::Tenant.contains(&vm));
        let rg = Scope::parse("/subscriptions/sub-1/resourceGroups/rg-web").unwrap();
        assert!(rg.contains(&vm));
        assert!(Scope::Tenant.contains_scope(&rg));
        assert!(!rg.contains_scope(&Scope::Tenant));
        assert_eq!(rg.subscription().unwrap().as_str(), "sub-1");
        assert_eq!(Scope::Tenant.to_string(), "/");
        let json = serde_json::to_string(&rg).unwrap();
        assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), rg);
        assert!(serde_json::from_str::<Scope>("\"/subscriptions/\"").is_err());
    }

    #[test]
    fn subscription_ids() {
        assert_eq!(SubscriptionId::parse("ABC-1").unwrap().as_str(), "abc-1");
        assert!(SubscriptionId::parse("").is_err());
        assert!(SubscriptionId::parse("a/b").is_err());
        assert_eq!(
            SubscriptionId::parse("s1").unwrap().to_resource_id(),
            id("/subscriptions/S1")
        );
    }
}
