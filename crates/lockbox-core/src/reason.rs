//! Why a request is made: its reason type and reference, and what a
//! tenant's policy requires of them.
//!
//! Every request carries a [`ReasonType`] beside its justification, and may
//! carry a [`Reference`] (a ticket or incident id). A tenant's policy can
//! allow only some reason types, require a minimum justification length,
//! and require a reference matching a [`ReferencePattern`]; a request that
//! falls short is refused at creation ([`RequestRequirements::check`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::text::{Justification, Reference};

/// Why the provider needs access, in the categories approvers and auditors
/// sort requests by.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ReasonType {
    /// The customer opened a support case (the default).
    #[default]
    CustomerInitiatedSupport,
    /// The provider is working on the service itself (maintenance, a fix).
    ProviderInitiatedService,
    /// The provider reviews the resource (security or compliance).
    ProviderReview,
    /// A legal request obliges the provider.
    LegalRequest,
    /// An alert in production.
    ProductionAlert,
}

impl ReasonType {
    /// Every reason type, in the order documented.
    pub const ALL: [ReasonType; 5] = [
        Self::CustomerInitiatedSupport,
        Self::ProviderInitiatedService,
        Self::ProviderReview,
        Self::LegalRequest,
        Self::ProductionAlert,
    ];

    /// Its name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerInitiatedSupport => "customer_initiated_support",
            Self::ProviderInitiatedService => "provider_initiated_service",
            Self::ProviderReview => "provider_review",
            Self::LegalRequest => "legal_request",
            Self::ProductionAlert => "production_alert",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                DomainError::invalid(format!(
                    "unknown reason_type `{}`; reason types are {}",
                    crate::id::shorten(s),
                    Self::names()
                ))
            })
    }

    /// Its name in words, for people.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::CustomerInitiatedSupport => "Customer-initiated support",
            Self::ProviderInitiatedService => "Provider-initiated service",
            Self::ProviderReview => "Provider review",
            Self::LegalRequest => "Legal request",
            Self::ProductionAlert => "Production alert",
        }
    }

    /// Parses a name if one is given; none: the default
    /// (`customer_initiated_support`).
    pub fn parse_or_default(s: Option<&str>) -> Result<Self, DomainError> {
        s.map_or(Ok(Self::default()), Self::parse)
    }

    /// Every name, comma-separated.
    #[must_use]
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl fmt::Display for ReasonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest reference pattern a policy may hold.
pub const MAX_PATTERN_CHARS: usize = 200;

/// How large a compiled pattern may grow: enough for any ticket format, and
/// a bound on what one tenant admin's pattern costs every request.
const PATTERN_SIZE_LIMIT: usize = 64 * 1024;

/// A regular expression every reference must match whole (for example
/// `INC-[0-9]{6}`). Compared and stored by its source.
#[derive(Clone)]
pub struct ReferencePattern {
    source: String,
    regex: regex::Regex,
}

impl ReferencePattern {
    /// Compiles `source`, anchored at both ends.
    pub fn parse(source: &str) -> Result<Self, DomainError> {
        if source.is_empty() {
            return Err(DomainError::invalid(
                "reference_pattern must not be empty; leave it out (null) to require no reference",
            ));
        }
        let chars = source.chars().count();
        if chars > MAX_PATTERN_CHARS {
            return Err(DomainError::invalid(format!(
                "reference_pattern is {chars} characters; at most {MAX_PATTERN_CHARS}"
            )));
        }
        let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                DomainError::invalid(format!(
                    "reference_pattern is not a regular expression Lockbox accepts: {}",
                    first_line(&e.to_string())
                ))
            })?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// The pattern as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `reference` matches the whole pattern.
    #[must_use]
    pub fn matches(&self, reference: &str) -> bool {
        self.regex.is_match(reference)
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl PartialEq for ReferencePattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for ReferencePattern {}

impl fmt::Debug for ReferencePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReferencePattern")
            .field(&self.source)
            .finish()
    }
}

impl Serialize for ReferencePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for ReferencePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Self::parse(&source).map_err(serde::de::Error::custom)
    }
}

/// What a tenant's policy requires of a request's reasons (a part of
/// [`crate::PolicySettings`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestRequirements<'a> {
    /// The fewest characters a justification may have.
    pub min_justification_length: u32,
    /// The reason types a request may give.
    pub allowed_reason_types: &'a [ReasonType],
    /// What a reference must match; `None`: no reference is required.
    pub reference_pattern: Option<&'a ReferencePattern>,
}

impl RequestRequirements<'_> {
    /// Refuses (`policy_requirement`) a request whose reasons fall short:
    /// a reason type the policy does not allow, a justification shorter
    /// than its minimum, or a reference missing or not matching its pattern.
    pub fn check(
        &self,
        reason_type: ReasonType,
        justification: &Justification,
        reference: Option<&Reference>,
    ) -> Result<(), DomainError> {
        if !self.allowed_reason_types.contains(&reason_type) {
            return Err(DomainError::PolicyRequirement {
                requirement: "allowed_reason_types",
                detail: format!(
                    "reason_type {reason_type} is not allowed in this tenant; allowed: {}",
                    self.allowed_reason_types
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let length = justification.as_str().chars().count();
        if length < usize::try_from(self.min_justification_length).unwrap_or(usize::MAX) {
            return Err(DomainError::PolicyRequirement {
                requirement: "min_justification_length",
                detail: format!(
                    "the justification is {length} characters; this tenant requires at least {}",
                    self.min_justification_length
                ),
            });
        }
        if let Some(pattern) = self.reference_pattern {
            match reference {
                None => {
                    return Err(DomainError::PolicyRequirement {
                        requirement: "reference_pattern",
                        detail: format!(
                            "this tenant requires a reference (a ticket or incident id) matching `{}`",
                            pattern.as_str()
                        ),
                    });
                }
                Some(r) if !pattern.matches(r.as_str()) => {
                    return Err(DomainError::PolicyRequirement {
                        requirement: "reference_pattern",
                        detail: format!(
                            "reference `{}` does not match `{}`, the form this tenant requires",
                            r.as_str(),
                            pattern.as_str()
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn justification(s: &str) -> Justification {
        Justification::parse(s).unwrap()
    }

    fn reference(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn reason_types_round_trip_by_name_and_refuse_others() {
        for r in ReasonType::ALL {
            assert_eq!(ReasonType::parse(r.as_str()).unwrap(), r);
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
        }
        let err = ReasonType::parse("curiosity").unwrap_err();
        assert_eq!(err.kind(), "invalid_input");
        assert!(err.to_string().contains("production_alert"), "{err}");
    }

    #[test]
    fn a_pattern_matches_the_whole_reference() {
        let p = ReferencePattern::parse("INC-[0-9]{6}").unwrap();
        assert!(p.matches("INC-123456"));
        assert!(!p.matches("INC-12345"));
        assert!(!p.matches("xINC-123456"));
        assert!(!p.matches("INC-1234567"));
        // An alternation is anchored as a whole, not only its ends.
        let p = ReferencePattern::parse("INC-[0-9]+|CHG-[0-9]+").unwrap();
        assert!(p.matches("CHG-1"));
        assert!(!p.matches("INC-1 and more"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in ["", "INC-[0-9", "(a", &"a".repeat(201), "(?:a{1000}){1000}"] {
            let err = ReferencePattern::parse(bad).unwrap_err();
            assert_eq!(err.kind(), "invalid_input", "{bad}: {err}");
            assert!(err.to_string().contains("reference_pattern"), "{err}");
        }
        let json = serde_json::from_str::<ReferencePattern>("\"(\"");
        assert!(json.is_err());
    }

    #[test]
    fn requirements_refuse_each_shortfall_by_name() {
        let pattern = ReferencePattern::parse("INC-[0-9]+").unwrap();
        let req = RequestRequirements {
            min_justification_length: 20,
            allowed_reason_types: &[ReasonType::CustomerInitiatedSupport],
            reference_pattern: Some(&pattern),
        };
        let long = justification("The customer's VM does not boot after the update.");
        let ok = reference("INC-42");
        req.check(ReasonType::CustomerInitiatedSupport, &long, Some(&ok))
            .unwrap();
        let refused = |r: Result<(), DomainError>| match r {
            Err(DomainError::PolicyRequirement { requirement, .. }) => requirement,
            other => panic!("expected a policy requirement, got {other:?}"),
        };
        assert_eq!(
            refused(req.check(ReasonType::ProviderReview, &long, Some(&ok))),
            "allowed_reason_types"
        );
        assert_eq!(
            refused(req.check(
                ReasonType::CustomerInitiatedSupport,
                &justification("too short"),
                Some(&ok)
            )),
            "min_justification_length"
        );
        assert_eq!(
            refused(req.check(ReasonType::CustomerInitiatedSupport, &long, None)),
            "reference_pattern"
        );
        assert_eq!(
            refused(req.check(
                ReasonType::CustomerInitiatedSupport,
                &long,
                Some(&reference("CHG-42"))
            )),
            "reference_pattern"
        );
        // Characters, not bytes: twenty accented letters are enough.
        let accented = justification(&"é".repeat(20));
        req.check(ReasonType::CustomerInitiatedSupport, &accented, Some(&ok))
            .unwrap();
    }
}
