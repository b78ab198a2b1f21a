//! A tenant's opt-in and policy.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::id::PrincipalId;

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

/// The numbers a tenant admin sets; checked by [`TenantPolicy::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Default for PolicySettings {
    /// The defaults of Azure Customer Lockbox: requests wait 4 days, access
    /// lasts 8 hours, one approval, no break-glass.
    fn default() -> Self {
        Self {
            request_ttl_hours: 96,
            default_access_hours: 8,
            max_access_hours: 8,
            required_approvals: 1,
            emergency_access: false,
            emergency_max_minutes: 60,
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

/// A validated policy. Only [`TenantPolicy::new`] makes one, so every policy
/// in the system has at least one required approval, positive durations, and
/// a default no longer than the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "PolicySettings", into = "PolicySettings")]
pub struct TenantPolicy(PolicySettings);

impl TenantPolicy {
    /// Checks `settings`.
    pub fn new(settings: PolicySettings) -> Result<Self, DomainError> {
        let s = settings;
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
        if s.default_access_hours > s.max_access_hours {
            return Err(DomainError::invalid(format!(
                "default_access_hours ({}) must not exceed max_access_hours ({})",
                s.default_access_hours, s.max_access_hours
            )));
        }
        Ok(Self(s))
    }

    /// The numbers.
    #[must_use]
    pub fn settings(&self) -> PolicySettings {
        self.0
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
    fn validation_refuses_each_bad_setting_with_its_name() {
        let base = PolicySettings::default();
        let cases: Vec<(PolicySettings, &str)> = vec![
            (
                PolicySettings {
                    required_approvals: 0,
                    ..base
                },
                "required_approvals",
            ),
            (
                PolicySettings {
                    request_ttl_hours: 0,
                    ..base
                },
                "request_ttl_hours",
            ),
            (
                PolicySettings {
                    default_access_hours: 0,
                    ..base
                },
                "default_access_hours",
            ),
            (
                PolicySettings {
                    max_access_hours: 0,
                    ..base
                },
                "max_access_hours",
            ),
            (
                PolicySettings {
                    emergency_max_minutes: 0,
                    ..base
                },
                "emergency_max_minutes",
            ),
            (
                PolicySettings {
                    default_access_hours: 9,
                    ..base
                },
                "must not exceed max_access_hours",
            ),
            (
                PolicySettings {
                    required_approvals: 11,
                    ..base
                },
                "required_approvals",
            ),
            (
                PolicySettings {
                    max_access_hours: 721,
                    ..base
                },
                "max_access_hours",
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
                ..base
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
        assert_eq!(serde_json::to_string(&p).unwrap(), ok);
    }
}
