//! A tenant's opt-in and policy.
//!
//! The policy also bounds the fan-out of one operator in the tenant
//! ([`OpenCounts`], [`TenantPolicy::admit_request`]): how many of its
//! requests may wait at once, how many may wait under one case, and how
//! many grants it may hold at once. Each request notifies every eligible
//! approver, and each grant is one more entry every check of the holder
//! reads, so one operator could otherwise flood the approvers and slow
//! every check.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::groups::{ApproverGroup, GroupName, check_groups};
use crate::id::{CaseId, PrincipalId, TenantId};
use crate::principal::RoleAssignment;
use crate::reason::{ReasonType, ReferencePattern, RequestRequirements};
use crate::rules::{Effect, Rule, check_rules};
use crate::text::{JustificationKind, TextKind};

/// Whether the tenant has opted in to Lockbox. Off by default: until a
/// tenant admin enables it, requests are approved by the system at once (and
/// recorded as such).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LockboxSetting {
    /// Whether approvals are required.
    pub enabled: bool,
    /// When it last changed (`None`: never, still the default).
    pub changed_at: Option<Timestamp>,
    /// Who last changed it.
    pub changed_by: Option<PrincipalId>,
}

/// What a tenant admin sets; checked by [`TenantPolicy::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// How long a request waits for a decision before it expires.
    pub request_ttl_hours: u32,
    /// The grant duration when the request names none.
    pub default_access_hours: u32,
    /// The longest grant that can be requested or approved.
    pub max_access_hours: u32,
    /// How many distinct approvers must approve.
    pub required_approvals: u32,
    /// Whether emergency operators may use break-glass access.
    pub emergency_access: bool,
    /// The longest emergency grant.
    pub emergency_max_minutes: u32,
    /// How many pending requests one operator may have in the tenant.
    /// (Absent from policies stored before it existed: the default.)
    #[serde(default = "defaults::max_pending_requests_per_operator")]
    pub max_pending_requests_per_operator: u32,
    /// How many pending requests one case may have.
    #[serde(default = "defaults::max_pending_requests_per_case")]
    pub max_pending_requests_per_case: u32,
    /// How many active grants one operator may hold in the tenant.
    #[serde(default = "defaults::max_active_grants_per_holder")]
    pub max_active_grants_per_holder: u32,
    /// The fewest characters a request's justification may have.
    #[serde(default = "defaults::min_justification_length")]
    pub min_justification_length: u32,
    /// The reason types a request may give (sorted, without repeats).
    #[serde(default = "defaults::allowed_reason_types")]
    pub allowed_reason_types: Vec<ReasonType>,
    /// What every request's reference must match whole; `None`: no
    /// reference is required.
    #[serde(default)]
    pub reference_pattern: Option<ReferencePattern>,
    /// Approval rules, in order: the first that matches a request decides
    /// what it needs ([`crate::rules`]).
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// The longest a grant may last with its extensions, from its start to
    /// its end; `None`: the default, [`DEFAULT_MAX_TOTAL_HOURS`] or
    /// `max_access_hours` if that is longer.
    #[serde(default)]
    pub max_total_hours: Option<u32>,
    /// Named groups of the tenant's approvers, which rules may require one
    /// approval from each of ([`crate::groups`]).
    #[serde(default)]
    pub approver_groups: Vec<ApproverGroup>,
}

/// The defaults of the fan-out limits, for policies stored without them.
mod defaults {
    pub(super) fn max_pending_requests_per_operator() -> u32 {
        10
    }
    pub(super) fn max_pending_requests_per_case() -> u32 {
        5
    }
    pub(super) fn max_active_grants_per_holder() -> u32 {
        20
    }
    pub(super) fn min_justification_length() -> u32 {
        1
    }
    pub(super) fn allowed_reason_types() -> Vec<super::ReasonType> {
        super::ReasonType::ALL.to_vec()
    }
}

impl Default for PolicySettings {
    /// The defaults of Azure Customer Lockbox: requests wait 4 days, access
    /// lasts 8 hours, one approval, no break-glass; and an operator may
    /// have 10 requests waiting in the tenant (5 under one case) and hold
    /// 20 grants there; any reason type, any justification, no reference
    /// required.
    fn default() -> Self {
        Self {
            request_ttl_hours: 96,
            default_access_hours: 8,
            max_access_hours: 8,
            required_approvals: 1,
            emergency_access: false,
            emergency_max_minutes: 60,
            max_pending_requests_per_operator: defaults::max_pending_requests_per_operator(),
            max_pending_requests_per_case: defaults::max_pending_requests_per_case(),
            max_active_grants_per_holder: defaults::max_active_grants_per_holder(),
            min_justification_length: defaults::min_justification_length(),
            allowed_reason_types: defaults::allowed_reason_types(),
            reference_pattern: None,
            rules: Vec::new(),
            max_total_hours: None,
            approver_groups: Vec::new(),
        }
    }
}

/// Upper bounds that keep a policy meaningful: 30 days for a request to wait
/// or a grant to last, 10 approvals, a day of break-glass.
pub const MAX_REQUEST_TTL_HOURS: u32 = 720;
/// See [`MAX_REQUEST_TTL_HOURS`].
pub const MAX_ACCESS_HOURS: u32 = 720;
/// See [`MAX_REQUEST_TTL_HOURS`].
pub const MAX_REQUIRED_APPROVALS: u32 = 10;
/// See [`MAX_REQUEST_TTL_HOURS`].
pub const MAX_EMERGENCY_MINUTES: u32 = 1440;
/// The longest a grant may last with its extensions: 90 days.
pub const MAX_TOTAL_HOURS: u32 = 2160;
/// How long a grant may last with its extensions when the policy does not
/// say (or `max_access_hours`, if that is longer).
pub const DEFAULT_MAX_TOTAL_HOURS: u32 = 24;
/// The highest any fan-out limit may be set: a bound that still bounds.
pub const MAX_FAN_OUT_LIMIT: u32 = 1000;

/// A validated policy. Only [`TenantPolicy::new`] makes one, so every policy
/// in the system has at least one required approval, positive durations, and
/// a default no longer than the maximum.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "PolicySettings", into = "PolicySettings")]
pub struct TenantPolicy(PolicySettings);

impl TenantPolicy {
    /// Checks `settings`.
    pub fn new(settings: PolicySettings) -> Result<Self, DomainError> {
        let mut s = settings;
        let range = |name: &str, value: u32, max: u32, unit: &str| {
            if value == 0 || value > max {
                Err(DomainError::invalid(format!(
                    "{name} must be between 1 and {max} {unit}, not {value}"
                )))
            } else {
                Ok(())
            }
        };
        range(
            "request_ttl_hours",
            s.request_ttl_hours,
            MAX_REQUEST_TTL_HOURS,
            "hours",
        )?;
        range(
            "default_access_hours",
            s.default_access_hours,
            MAX_ACCESS_HOURS,
            "hours",
        )?;
        range(
            "max_access_hours",
            s.max_access_hours,
            MAX_ACCESS_HOURS,
            "hours",
        )?;
        range(
            "required_approvals",
            s.required_approvals,
            MAX_REQUIRED_APPROVALS,
            "approvals",
        )?;
        range(
            "emergency_max_minutes",
            s.emergency_max_minutes,
            MAX_EMERGENCY_MINUTES,
            "minutes",
        )?;
        range(
            "max_pending_requests_per_operator",
            s.max_pending_requests_per_operator,
            MAX_FAN_OUT_LIMIT,
            "requests",
        )?;
        range(
            "max_pending_requests_per_case",
            s.max_pending_requests_per_case,
            MAX_FAN_OUT_LIMIT,
            "requests",
        )?;
        range(
            "max_active_grants_per_holder",
            s.max_active_grants_per_holder,
            MAX_FAN_OUT_LIMIT,
            "grants",
        )?;
        range(
            "min_justification_length",
            s.min_justification_length,
            u32::try_from(JustificationKind::MAX_CHARS).unwrap_or(u32::MAX),
            "characters",
        )?;
        s.allowed_reason_types.sort_unstable();
        s.allowed_reason_types.dedup();
        if s.allowed_reason_types.is_empty() {
            return Err(DomainError::invalid(format!(
                "allowed_reason_types must name at least one of {}",
                ReasonType::names()
            )));
        }
        check_rules(&s.rules)?;
        check_groups(&s.approver_groups)?;
        for rule in &s.rules {
            if let Effect::RequireApprovals { groups, .. } = &rule.effect
                && let Some(missing) = groups
                    .iter()
                    .find(|g| !s.approver_groups.iter().any(|a| &a.name == *g))
            {
                return Err(DomainError::invalid(format!(
                    "rule `{}` requires group `{missing}`, which approver_groups does not define",
                    rule.name
                )));
            }
        }
        if let Some(total) = s.max_total_hours {
            range("max_total_hours", total, MAX_TOTAL_HOURS, "hours")?;
            if total < s.max_access_hours {
                return Err(DomainError::invalid(format!(
                    "max_total_hours ({total}) must be at least max_access_hours ({}): it bounds a grant with its extensions",
                    s.max_access_hours
                )));
            }
        }
        if s.default_access_hours > s.max_access_hours {
            return Err(DomainError::invalid(format!(
                "default_access_hours ({}) must not exceed max_access_hours ({})",
                s.default_access_hours, s.max_access_hours
            )));
        }
        Ok(Self(s))
    }

    /// What the tenant admin set.
    #[must_use]
    pub fn settings(&self) -> &PolicySettings {
        &self.0
    }

    /// What a request's reasons must meet.
    #[must_use]
    pub fn requirements(&self) -> RequestRequirements<'_> {
        RequestRequirements {
            min_justification_length: self.0.min_justification_length,
            allowed_reason_types: &self.0.allowed_reason_types,
            reference_pattern: self.0.reference_pattern.as_ref(),
        }
    }

    /// How long a request waits for a decision.
    #[must_use]
    pub fn request_ttl_hours(&self) -> u32 {
        self.0.request_ttl_hours
    }

    /// The grant duration when the request names none.
    #[must_use]
    pub fn default_access_hours(&self) -> u32 {
        self.0.default_access_hours
    }

    /// The longest grant.
    #[must_use]
    pub fn max_access_hours(&self) -> u32 {
        self.0.max_access_hours
    }

    /// The groups `principal`, holding `assignments`, belongs to now.
    #[must_use]
    pub fn groups_of(
        &self,
        principal: &PrincipalId,
        assignments: &[RoleAssignment],
    ) -> Vec<GroupName> {
        self.0
            .approver_groups
            .iter()
            .filter(|g| g.includes(principal, assignments))
            .map(|g| g.name.clone())
            .collect()
    }

    /// The longest a grant may last with its extensions, from its start.
    #[must_use]
    pub fn max_total_hours(&self) -> u32 {
        self.0
            .max_total_hours
            .unwrap_or(DEFAULT_MAX_TOTAL_HOURS.max(self.0.max_access_hours))
    }

    /// How many distinct approvals are needed.
    #[must_use]
    pub fn required_approvals(&self) -> u32 {
        self.0.required_approvals
    }

    /// Whether break-glass is allowed.
    #[must_use]
    pub fn emergency_access(&self) -> bool {
        self.0.emergency_access
    }

    /// The longest emergency grant.
    #[must_use]
    pub fn emergency_max_minutes(&self) -> u32 {
        self.0.emergency_max_minutes
    }

    /// Refuses a new request of `operator` under `case` when it would take
    /// any of the tenant's fan-out limits past its maximum: the operator's
    /// pending requests, the case's, or the operator's active grants
    /// (checked first: a request that could not become a grant is pointless
    /// to approve). `open` is what exists now, counted in the transaction
    /// that would create the request.
    pub fn admit_request(
        &self,
        tenant: &TenantId,
        operator: &PrincipalId,
        case: CaseId,
        open: OpenCounts,
    ) -> Result<(), DomainError> {
        self.admit_grant(tenant, operator, open)?;
        self.admit_pending(tenant, operator, case, open)
    }

    /// Refuses a new request of `operator` under `case` that would take the
    /// operator's or the case's pending requests past the policy's limits
    /// (an extension, which makes no new grant, meets only these).
    pub fn admit_pending(
        &self,
        tenant: &TenantId,
        operator: &PrincipalId,
        case: CaseId,
        open: OpenCounts,
    ) -> Result<(), DomainError> {
        let s = &self.0;
        if open.pending_by_operator >= u64::from(s.max_pending_requests_per_operator) {
            return Err(DomainError::LimitReached {
                limit: "max_pending_requests_per_operator",
                max: s.max_pending_requests_per_operator,
                detail: format!(
                    "{operator} has {} pending requests in tenant {tenant}",
                    open.pending_by_operator
                ),
                advice: "wait for a decision on one, or cancel one",
            });
        }
        if open.pending_in_case >= u64::from(s.max_pending_requests_per_case) {
            return Err(DomainError::LimitReached {
                limit: "max_pending_requests_per_case",
                max: s.max_pending_requests_per_case,
                detail: format!("case {case} has {} pending requests", open.pending_in_case),
                advice: "wait for a decision on one, or cancel one",
            });
        }
        Ok(())
    }

    /// Refuses a new grant of `holder` (emergency access, or a request
    /// that would become one) when the holder already has as many active
    /// grants in the tenant as the policy allows.
    pub fn admit_grant(
        &self,
        tenant: &TenantId,
        holder: &PrincipalId,
        open: OpenCounts,
    ) -> Result<(), DomainError> {
        let max = self.0.max_active_grants_per_holder;
        if open.active_grants >= u64::from(max) {
            return Err(DomainError::LimitReached {
                limit: "max_active_grants_per_holder",
                max,
                detail: format!(
                    "{holder} holds {} active grants in tenant {tenant}",
                    open.active_grants
                ),
                advice: "one must end or be revoked first",
            });
        }
        Ok(())
    }
}

/// What an operator has open in a tenant when it asks for more: counted by
/// the store in the transaction that would add to it, under a lock that
/// keeps two of the operator's creations from both counting below a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenCounts {
    /// The operator's requests in the tenant still pending (and not past
    /// their TTL).
    pub pending_by_operator: u64,
    /// The case's requests still pending (0 when there is no case, as for
    /// emergency access).
    pub pending_in_case: u64,
    /// The operator's grants in the tenant not revoked, ended or run out.
    pub active_grants: u64,
}

impl TryFrom<PolicySettings> for TenantPolicy {
    type Error = DomainError;
    fn try_from(s: PolicySettings) -> Result<Self, DomainError> {
        Self::new(s)
    }
}

impl From<TenantPolicy> for PolicySettings {
    fn from(p: TenantPolicy) -> Self {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_azures() {
        let p = TenantPolicy::default();
        assert_eq!(p.request_ttl_hours(), 96);
        assert_eq!(p.default_access_hours(), 8);
        assert_eq!(p.max_access_hours(), 8);
        assert_eq!(p.required_approvals(), 1);
        assert!(!p.emergency_access());
        assert_eq!(p.emergency_max_minutes(), 60);
        assert_eq!(TenantPolicy::new(PolicySettings::default()).unwrap(), p);
        assert!(
            !LockboxSetting::default().enabled,
            "Lockbox is off by default"
        );
    }

    #[test]
    fn max_total_hours_is_bounded_and_never_below_max_access_hours() {
        let with = |max_access_hours, total| {
            TenantPolicy::new(PolicySettings {
                max_access_hours,
                max_total_hours: total,
                ..PolicySettings::default()
            })
        };
        assert_eq!(with(8, None).unwrap().max_total_hours(), 24);
        assert_eq!(with(48, None).unwrap().max_total_hours(), 48);
        assert_eq!(with(8, Some(8)).unwrap().max_total_hours(), 8);
        assert_eq!(
            with(8, Some(MAX_TOTAL_HOURS)).unwrap().max_total_hours(),
            MAX_TOTAL_HOURS
        );
        for (max_access, total) in [(8, 0), (8, MAX_TOTAL_HOURS + 1), (8, 7), (48, 24)] {
            let err = with(max_access, Some(total)).unwrap_err();
            assert!(err.to_string().contains("max_total_hours"), "{err}");
        }
    }

    #[test]
    fn validation_refuses_each_bad_setting_with_its_name() {
        let base = PolicySettings::default();
        let cases: Vec<(PolicySettings, &str)> = vec![
            (
                PolicySettings {
                    required_approvals: 0,
                    ..base.clone()
                },
                "required_approvals",
            ),
            (
                PolicySettings {
                    request_ttl_hours: 0,
                    ..base.clone()
                },
                "request_ttl_hours",
            ),
            (
                PolicySettings {
                    default_access_hours: 0,
                    ..base.clone()
                },
                "default_access_hours",
            ),
            (
                PolicySettings {
                    max_access_hours: 0,
                    ..base.clone()
                },
                "max_access_hours",
            ),
            (
                PolicySettings {
                    emergency_max_minutes: 0,
                    ..base.clone()
                },
                "emergency_max_minutes",
            ),
            (
                PolicySettings {
                    default_access_hours: 9,
                    ..base.clone()
                },
                "must not exceed max_access_hours",
            ),
            (
                PolicySettings {
                    required_approvals: 11,
                    ..base.clone()
                },
                "required_approvals",
            ),
            (
                PolicySettings {
                    max_access_hours: 721,
                    ..base.clone()
                },
                "max_access_hours",
            ),
            (
                PolicySettings {
                    min_justification_length: 0,
                    ..base.clone()
                },
                "min_justification_length",
            ),
            (
                PolicySettings {
                    min_justification_length: 2001,
                    ..base.clone()
                },
                "min_justification_length",
            ),
            (
                PolicySettings {
                    allowed_reason_types: vec![],
                    ..base.clone()
                },
                "allowed_reason_types",
            ),
        ];
        for (settings, needle) in cases {
            let err = TenantPolicy::new(settings).unwrap_err();
            assert_eq!(err.kind(), "invalid_input");
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
        assert!(
            TenantPolicy::new(PolicySettings {
                required_approvals: 2,
                max_access_hours: 24,
                ..base.clone()
            })
            .is_ok()
        );
    }

    #[test]
    fn deserializing_validates_and_rejects_unknown_fields() {
        let ok = r#"{"request_ttl_hours":96,"default_access_hours":4,"max_access_hours":8,"required_approvals":2,"emergency_access":true,"emergency_max_minutes":30}"#;
        let p: TenantPolicy = serde_json::from_str(ok).unwrap();
        assert_eq!(p.required_approvals(), 2);
        let bad = ok.replace("\"required_approvals\":2", "\"required_approvals\":0");
        assert!(serde_json::from_str::<TenantPolicy>(&bad).is_err());
        let unknown = ok.replace("}", ",\"extra\":1}");
        assert!(serde_json::from_str::<TenantPolicy>(&unknown).is_err());
        // A policy stored before the fan-out limits existed reads with
        // their defaults, and is written with them.
        assert_eq!(p.settings().max_pending_requests_per_operator, 10);
        assert_eq!(p.settings().max_pending_requests_per_case, 5);
        assert_eq!(p.settings().max_active_grants_per_holder, 20);
        // So do the reason requirements: any reason, no reference.
        assert_eq!(p.settings().min_justification_length, 1);
        assert_eq!(p.settings().allowed_reason_types, ReasonType::ALL);
        assert_eq!(p.settings().reference_pattern, None);
        assert_eq!(p.settings().max_total_hours, None);
        let now = ok.replace(
            "}",
            ",\"max_pending_requests_per_operator\":10,\"max_pending_requests_per_case\":5,\"max_active_grants_per_holder\":20}",
        );
        let written = now.replace(
            "}",
            ",\"min_justification_length\":1,\"allowed_reason_types\":[\"customer_initiated_support\",\"provider_initiated_service\",\"provider_review\",\"legal_request\",\"production_alert\"],\"reference_pattern\":null,\"rules\":[],\"max_total_hours\":null,\"approver_groups\":[]}",
        );
        // Without max_total_hours: 24 hours, or max_access_hours if longer.
        assert_eq!(
            p.max_total_hours(),
            DEFAULT_MAX_TOTAL_HOURS.max(p.max_access_hours())
        );
        assert_eq!(serde_json::to_string(&p).unwrap(), written);
        let limited = now.replace(
            "\"max_pending_requests_per_case\":5",
            "\"max_pending_requests_per_case\":0",
        );
        let err = serde_json::from_str::<TenantPolicy>(&limited).unwrap_err();
        assert!(
            err.to_string().contains("max_pending_requests_per_case"),
            "{err}"
        );
    }

    #[test]
    fn reason_types_are_kept_sorted_and_once_and_a_bad_pattern_is_refused_on_read() {
        let p = TenantPolicy::new(PolicySettings {
            allowed_reason_types: vec![
                ReasonType::ProductionAlert,
                ReasonType::CustomerInitiatedSupport,
                ReasonType::ProductionAlert,
            ],
            ..PolicySettings::default()
        })
        .unwrap();
        assert_eq!(
            p.settings().allowed_reason_types,
            [
                ReasonType::CustomerInitiatedSupport,
                ReasonType::ProductionAlert
            ]
        );
        let stored = r#"{"request_ttl_hours":96,"default_access_hours":4,"max_access_hours":8,"required_approvals":2,"emergency_access":true,"emergency_max_minutes":30,"reference_pattern":"INC-[0-9"}"#;
        let err = serde_json::from_str::<TenantPolicy>(stored).unwrap_err();
        assert!(err.to_string().contains("reference_pattern"), "{err}");
        let stored = stored.replace("INC-[0-9", "INC-[0-9]+");
        let p: TenantPolicy = serde_json::from_str(&stored).unwrap();
        assert!(
            p.settings()
                .reference_pattern
                .as_ref()
                .unwrap()
                .matches("INC-7")
        );
    }

    fn tid() -> TenantId {
        TenantId::parse("contoso").unwrap()
    }

    fn sam() -> PrincipalId {
        PrincipalId::parse("sam").unwrap()
    }

    fn case() -> CaseId {
        CaseId::from_parts(Timestamp::UNIX_EPOCH, [1; 10])
    }

    fn limited(per_operator: u32, per_case: u32, grants: u32) -> TenantPolicy {
        TenantPolicy::new(PolicySettings {
            max_pending_requests_per_operator: per_operator,
            max_pending_requests_per_case: per_case,
            max_active_grants_per_holder: grants,
            ..PolicySettings::default()
        })
        .unwrap()
    }

    #[test]
    fn a_limit_admits_up_to_its_value_and_names_its_key_past_it() {
        let p = limited(3, 2, 1);
        let open = |pending_by_operator, pending_in_case, active_grants| OpenCounts {
            pending_by_operator,
            pending_in_case,
            active_grants,
        };
        assert!(
            p.admit_request(&tid(), &sam(), case(), open(2, 1, 0))
                .is_ok()
        );
        for (counts, key, detail) in [
            (
                open(3, 0, 0),
                "max_pending_requests_per_operator = 3",
                "sam has 3 pending requests in tenant contoso",
            ),
            (
                open(0, 2, 0),
                "max_pending_requests_per_case = 2",
                "has 2 pending requests",
            ),
            (
                open(0, 0, 1),
                "max_active_grants_per_holder = 1",
                "sam holds 1 active grants in tenant contoso",
            ),
            (
                open(9, 9, 9),
                "max_active_grants_per_holder = 1",
                "holds 9 active grants",
            ),
        ] {
            let err = p.admit_request(&tid(), &sam(), case(), counts).unwrap_err();
            assert_eq!(err.kind(), "limit_reached");
            let text = err.to_string();
            assert!(text.contains(key) && text.contains(detail), "{text}");
        }
        assert!(
            p.admit_grant(&tid(), &sam(), open(99, 99, 0)).is_ok(),
            "only grants count for a grant"
        );
        assert!(p.admit_grant(&tid(), &sam(), open(0, 0, 1)).is_err());
    }
}
