//! A tenant's approval rules: an ordered list, first match wins.
//!
//! Each [`Rule`] matches a request on its access level, its scope (the
//! request's resource lies within the rule's), its case's severity, its
//! reason type, its operator and the time it is made (days and hours in a
//! time zone); every condition left out matches anything. Its [`Effect`]
//! approves the request at once (decided by the policy, naming the rule),
//! refuses it (with the rule's reason), or sets how many approvals it
//! needs. A request no rule matches gets the tenant's defaults.
//!
//! The rule that applies is found when the request is made and recorded
//! with it: changing the rules later changes nothing for a request already
//! waiting.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::access::AccessLevelName;
use crate::case::Severity;
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::groups::{GroupName, MAX_REQUIRED_GROUPS};
use crate::id::PrincipalId;
use crate::policy::MAX_REQUIRED_APPROVALS;
use crate::reason::ReasonType;
use crate::resource::ResourceId;
use crate::text::{Reason, RuleName};

/// The most rules a policy may hold.
pub const MAX_RULES: usize = 50;
/// The most values one condition may list.
pub const MAX_VALUES: usize = 50;

/// One rule: when it matches, and what happens then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the policy; requests and events name the rule by it.
    pub name: RuleName,
    /// What a request must be for the rule to apply (all of it).
    #[serde(default)]
    pub when: Conditions,
    /// What happens to a request it applies to.
    pub effect: Effect,
}

/// What a request must be for a rule to apply. An empty list or an absent
/// value matches anything; a list matches any of its values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// The access levels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_levels: Vec<AccessLevelName>,
    /// A scope the requested resource must lie within (or be).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ResourceId>,
    /// The case's severities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severities: Vec<Severity>,
    /// The request's reason types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reason_types: Vec<ReasonType>,
    /// The operators asking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<PrincipalId>,
    /// When the request is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
}

/// Days of the week and hours of the day, in a time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// `mon` … `sun`; empty: every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Day>,
    /// The start of the hours, `HH:MM` (included).
    pub from: ClockTime,
    /// Their end, `HH:MM` (excluded); earlier than `from`: the window runs
    /// over midnight, and `days` names the day it starts.
    pub until: ClockTime,
    /// An IANA time zone, such as `Europe/Berlin` or `UTC`.
    pub time_zone: String,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    /// Its name: `mon` … `sun`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mon => "mon",
            Self::Tue => "tue",
            Self::Wed => "wed",
            Self::Thu => "thu",
            Self::Fri => "fri",
            Self::Sat => "sat",
            Self::Sun => "sun",
        }
    }

    fn of(w: jiff::civil::Weekday) -> Self {
        use jiff::civil::Weekday as W;
        match w {
            W::Monday => Self::Mon,
            W::Tuesday => Self::Tue,
            W::Wednesday => Self::Wed,
            W::Thursday => Self::Thu,
            W::Friday => Self::Fri,
            W::Saturday => Self::Sat,
            W::Sunday => Self::Sun,
        }
    }

    fn before(self) -> Self {
        match self {
            Self::Mon => Self::Sun,
            Self::Tue => Self::Mon,
            Self::Wed => Self::Tue,
            Self::Thu => Self::Wed,
            Self::Fri => Self::Thu,
            Self::Sat => Self::Fri,
            Self::Sun => Self::Sat,
        }
    }
}

/// A time of day to the minute, written `HH:MM` (`00:00` to `24:00`, the
/// latter only as a window's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime(u16);

impl ClockTime {
    /// Parses `HH:MM`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let bad = || {
            DomainError::invalid(format!(
                "a time of day is written HH:MM (00:00 to 24:00), not `{}`",
                crate::id::shorten(s)
            ))
        };
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if m > 59 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(Self(h * 60 + m))
    }

    /// Minutes since midnight.
    #[must_use]
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for ClockTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a rule does to a request it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Effect {
    /// Approved at once, by the policy.
    Approve,
    /// Refused, with this reason.
    Deny {
        /// Shown to the operator and recorded.
        reason: Reason,
    },
    /// Waits for this many distinct approvals, among them one from each
    /// of `groups`.
    RequireApprovals {
        /// 1 to [`MAX_REQUIRED_APPROVALS`], and at least as many as
        /// `groups`.
        approvals: u32,
        /// Approver groups of the tenant's policy each of which must give
        /// one of the approvals (an approver counts for one group only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<GroupName>,
    },
}

impl Effect {
    /// Its name: `approve`, `deny` or `require_approvals`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny { .. } => "deny",
            Self::RequireApprovals { .. } => "require_approvals",
        }
    }
}

/// What a rule is matched against.
#[derive(Debug, Clone, Copy)]
pub struct RuleInput<'a> {
    /// The access level asked for.
    pub access_level: &'a AccessLevelName,
    /// The resource or scope asked for.
    pub resource: &'a ResourceId,
    /// The case's severity.
    pub severity: Severity,
    /// The request's reason type.
    pub reason_type: ReasonType,
    /// Who asks.
    pub operator: &'a PrincipalId,
    /// When.
    pub at: Timestamp,
}

impl TimeWindow {
    fn time_zone(&self) -> Result<jiff::tz::TimeZone, DomainError> {
        jiff::tz::TimeZone::get(&self.time_zone).map_err(|_| {
            DomainError::invalid(format!(
                "time_zone `{}` is not a time zone this server knows (an IANA name such as Europe/Berlin or UTC)",
                crate::id::shorten(&self.time_zone)
            ))
        })
    }

    /// Whether `at` falls inside the window.
    fn contains(&self, at: Timestamp) -> Result<bool, DomainError> {
        // The zone was checked when the policy was set; one that has gone
        // from this server since fails closed, never matching silently.
        let tz = self
            .time_zone()
            .map_err(|e| DomainError::corrupt(e.to_string()))?;
        let local = jiff::Timestamp::from_microsecond(at.timestamp_micros())
            .map_err(|e| DomainError::corrupt(format!("time out of range: {e}")))?
            .to_zoned(tz);
        let minute = u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute()))
            .unwrap_or(u16::MAX);
        let day = Day::of(local.weekday());
        let on = |d: Day| self.days.is_empty() || self.days.contains(&d);
        let (from, until) = (self.from.minutes(), self.until.minutes());
        Ok(if from < until {
            on(day) && from <= minute && minute < until
        } else {
            // Over midnight: the evening of a listed day, or the morning
            // after one.
            (on(day) && minute >= from) || (on(day.before()) && minute < until)
        })
    }
}

impl Rule {
    /// Checks what serde cannot: lists within bounds, a window that is not
    /// empty, a zone this server knows, a count of approvals in range.
    fn check(&self) -> Result<(), DomainError> {
        let name = &self.name;
        let w = &self.when;
        let lens = [
            ("access_levels", w.access_levels.len()),
            ("severities", w.severities.len()),
            ("reason_types", w.reason_types.len()),
            ("operators", w.operators.len()),
            (
                "window.days",
                w.window.as_ref().map_or(0, |win| win.days.len()),
            ),
        ];
        for (what, len) in lens {
            if len > MAX_VALUES {
                return Err(DomainError::invalid(format!(
                    "rule `{name}`: {what} lists {len} values; at most {MAX_VALUES}"
                )));
            }
        }
        if let Some(win) = &w.window {
            if win.from == win.until {
                return Err(DomainError::invalid(format!(
                    "rule `{name}`: the window from {} until {} is empty",
                    win.from, win.until
                )));
            }
            win.time_zone()
                .map_err(|e| DomainError::invalid(format!("rule `{name}`: {e}")))?;
        }
        if let Effect::RequireApprovals { approvals, groups } = &self.effect {
            let approvals = *approvals;
            if approvals == 0 || approvals > MAX_REQUIRED_APPROVALS {
                return Err(DomainError::invalid(format!(
                    "rule `{name}`: approvals must be between 1 and {MAX_REQUIRED_APPROVALS}, not {approvals}"
                )));
            }
            if groups.len() > MAX_REQUIRED_GROUPS {
                return Err(DomainError::invalid(format!(
                    "rule `{name}`: at most {MAX_REQUIRED_GROUPS} groups, not {}",
                    groups.len()
                )));
            }
            if groups.len() > usize::try_from(approvals).unwrap_or(usize::MAX) {
                return Err(DomainError::invalid(format!(
                    "rule `{name}`: {approvals} approvals cannot include one from each of {} groups; \
                     require at least {}",
                    groups.len(),
                    groups.len()
                )));
            }
            for (i, g) in groups.iter().enumerate() {
                if groups.iter().take(i).any(|h| h == g) {
                    return Err(DomainError::invalid(format!(
                        "rule `{name}` names group `{g}` twice"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether the rule applies to `input`.
    pub fn matches(&self, input: &RuleInput<'_>) -> Result<bool, DomainError> {
        let w = &self.when;
        let listed = |empty: bool, found: bool| empty || found;
        let plain = listed(
            w.access_levels.is_empty(),
            w.access_levels.contains(input.access_level),
        ) && w
            .scope
            .as_ref()
            .is_none_or(|scope| scope.contains(input.resource))
            && listed(
                w.severities.is_empty(),
                w.severities.contains(&input.severity),
            )
            && listed(
                w.reason_types.is_empty(),
                w.reason_types.contains(&input.reason_type),
            )
            && listed(w.operators.is_empty(), w.operators.contains(input.operator));
        if !plain {
            return Ok(false);
        }
        match &w.window {
            Some(win) => win.contains(input.at),
            None => Ok(true),
        }
    }
}

/// Checks a policy's rules: each valid, at most [`MAX_RULES`], names
/// unique.
pub fn check_rules(rules: &[Rule]) -> Result<(), DomainError> {
    if rules.len() > MAX_RULES {
        return Err(DomainError::invalid(format!(
            "rules lists {} rules; at most {MAX_RULES}",
            rules.len()
        )));
    }
    for (i, rule) in rules.iter().enumerate() {
        rule.check()?;
        if rules.iter().take(i).any(|r| r.name == rule.name) {
            return Err(DomainError::invalid(format!(
                "two rules are named `{}`; names must be unique",
                rule.name
            )));
        }
    }
    Ok(())
}

/// The first rule that applies to `input`, if any.
pub fn first_match<'r>(
    rules: &'r [Rule],
    input: &RuleInput<'_>,
) -> Result<Option<&'r Rule>, DomainError> {
    for rule in rules {
        if rule.matches(input)? {
            return Ok(Some(rule));
        }
    }
    Ok(None)
}

/// What the policy says of a request, before anyone decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'r> {
    /// The tenant has not opted in: the system approves at once.
    NotEnabled,
    /// A rule approves at once.
    Approved(&'r Rule),
    /// A rule refuses, with its reason.
    Denied(&'r Rule, &'r Reason),
    /// It waits for this many distinct approvals: a rule's number, or the
    /// policy's default when no rule matched.
    Waits {
        /// How many.
        approvals: u32,
        /// Groups each of which must give one of them (none when no rule
        /// matched).
        groups: &'r [GroupName],
        /// The rule that said so; `None`: the default.
        rule: Option<&'r Rule>,
    },
}

impl<'r> Outcome<'r> {
    /// The approvals and groups a request it applies to waits for (none
    /// when it is approved or refused at once).
    #[must_use]
    pub fn requirements(&self) -> (u32, Vec<GroupName>) {
        match *self {
            Self::Waits {
                approvals, groups, ..
            } => (approvals, groups.to_vec()),
            Self::NotEnabled | Self::Approved(_) | Self::Denied(..) => (0, Vec::new()),
        }
    }

    /// The rule that applied, if one did.
    #[must_use]
    pub fn rule(&self) -> Option<&'r Rule> {
        match *self {
            Self::NotEnabled => None,
            Self::Approved(r) | Self::Denied(r, _) => Some(r),
            Self::Waits { rule, .. } => rule,
        }
    }

    /// What a request made now would meet under `policy` (whose tenant has
    /// opted in when `enabled`). Rules apply only once a tenant has opted
    /// in.
    pub fn of(
        policy: &'r crate::TenantPolicy,
        enabled: bool,
        input: &RuleInput<'_>,
    ) -> Result<Self, DomainError> {
        if !enabled {
            return Ok(Self::NotEnabled);
        }
        Ok(match first_match(&policy.settings().rules, input)? {
            Some(r) => match &r.effect {
                Effect::Approve => Self::Approved(r),
                Effect::Deny { reason } => Self::Denied(r, reason),
                Effect::RequireApprovals { approvals, groups } => Self::Waits {
                    approvals: *approvals,
                    groups,
                    rule: Some(r),
                },
            },
            None => Self::Waits {
                approvals: policy.required_approvals(),
                groups: &[],
                rule: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: serde_json::Value) -> Rule {
        let r: Rule = serde_json::from_value(json).unwrap();
        r.check().unwrap();
        r
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    struct Ask {
        level: AccessLevelName,
        resource: ResourceId,
        operator: PrincipalId,
    }

    impl Ask {
        fn new(level: &str, resource: &str, operator: &str) -> Self {
            Self {
                level: AccessLevelName::parse(level).unwrap(),
                resource: ResourceId::parse(resource).unwrap(),
                operator: PrincipalId::parse(operator).unwrap(),
            }
        }

        fn input(&self, severity: Severity, reason: ReasonType, at: Timestamp) -> RuleInput<'_> {
            RuleInput {
                access_level: &self.level,
                resource: &self.resource,
                severity,
                reason_type: reason,
                operator: &self.operator,
                at,
            }
        }
    }

    const VM: &str = "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01";

    #[test]
    fn each_condition_narrows_and_an_empty_rule_matches_everything() {
        let ask = Ask::new("Reader", VM, "sam");
        let monday_noon = at("2026-12-07T12:00:00Z");
        let input = ask.input(Severity::B, ReasonType::ProductionAlert, monday_noon);
        let any = rule(serde_json::json!({"name": "any", "effect": {"type": "approve"}}));
        assert!(any.matches(&input).unwrap());
        let cases = [
            (serde_json::json!({"access_levels": ["Reader"]}), true),
            (serde_json::json!({"access_levels": ["Contributor"]}), false),
            (serde_json::json!({"scope": "/subscriptions/sub-1"}), true),
            (serde_json::json!({"scope": "/subscriptions/sub-2"}), false),
            (serde_json::json!({"severities": ["A", "B"]}), true),
            (serde_json::json!({"severities": ["C"]}), false),
            (
                serde_json::json!({"reason_types": ["production_alert"]}),
                true,
            ),
            (
                serde_json::json!({"reason_types": ["legal_request"]}),
                false,
            ),
            (serde_json::json!({"operators": ["sam", "oscar"]}), true),
            (serde_json::json!({"operators": ["oscar"]}), false),
        ];
        for (when, expected) in cases {
            let r =
                rule(serde_json::json!({"name": "r", "when": when, "effect": {"type": "approve"}}));
            assert_eq!(r.matches(&input).unwrap(), expected, "{when}");
        }
    }

    #[test]
    fn a_window_reads_the_clock_in_its_time_zone() {
        let ask = Ask::new("Reader", VM, "sam");
        let hours = rule(serde_json::json!({
            "name": "office hours", "effect": {"type": "approve"},
            "when": {"window": {"days": ["mon", "tue", "wed", "thu", "fri"],
                                "from": "09:00", "until": "17:00", "time_zone": "Europe/Berlin"}}
        }));
        let m = |t: &str| {
            hours
                .matches(&ask.input(Severity::C, ReasonType::default(), at(t)))
                .unwrap()
        };
        // Berlin is UTC+1 in December: 09:00 there is 08:00 UTC.
        assert!(!m("2026-12-07T07:59:00Z"));
        assert!(m("2026-12-07T08:00:00Z"));
        assert!(m("2026-12-07T15:59:00Z"));
        assert!(!m("2026-12-07T16:00:00Z"));
        // In summer, UTC+2.
        assert!(m("2026-07-06T07:00:00Z"));
        assert!(!m("2026-07-06T06:59:00Z"));
        // Saturday.
        assert!(!m("2026-12-05T10:00:00Z"));
        let night = rule(serde_json::json!({
            "name": "friday night", "effect": {"type": "deny", "reason": "change freeze"},
            "when": {"window": {"days": ["fri"], "from": "22:00", "until": "06:00", "time_zone": "UTC"}}
        }));
        let n = |t: &str| {
            night
                .matches(&ask.input(Severity::C, ReasonType::default(), at(t)))
                .unwrap()
        };
        assert!(n("2026-12-11T23:00:00Z"), "Friday evening");
        assert!(n("2026-12-12T05:59:00Z"), "the Saturday morning after");
        assert!(!n("2026-12-12T23:00:00Z"), "Saturday evening");
        assert!(
            !n("2026-12-11T05:00:00Z"),
            "Friday morning (after Thursday)"
        );
    }

    #[test]
    fn bad_rules_are_refused_naming_the_rule() {
        let bad = [
            serde_json::json!({"name": "w", "effect": {"type": "approve"},
                "when": {"window": {"from": "09:00", "until": "09:00", "time_zone": "UTC"}}}),
            serde_json::json!({"name": "z", "effect": {"type": "approve"},
                "when": {"window": {"from": "09:00", "until": "17:00", "time_zone": "Mars/Olympus"}}}),
            serde_json::json!({"name": "n", "effect": {"type": "require_approvals", "approvals": 11}}),
            serde_json::json!({"name": "n", "effect": {"type": "require_approvals", "approvals": 0}}),
        ];
        for json in bad {
            let r: Rule = serde_json::from_value(json.clone()).unwrap();
            let err = r.check().unwrap_err();
            assert_eq!(err.kind(), "invalid_input");
            assert!(
                err.to_string().contains(&format!("rule `{}`", r.name)),
                "{err}"
            );
        }
        for json in [
            serde_json::json!({"name": "t", "effect": {"type": "approve"},
                "when": {"window": {"from": "9:00", "until": "17:00", "time_zone": "UTC"}}}),
            serde_json::json!({"name": "t", "effect": {"type": "approve"},
                "when": {"window": {"from": "24:30", "until": "17:00", "time_zone": "UTC"}}}),
            serde_json::json!({"name": "t", "effect": {"type": "maybe"}}),
            serde_json::json!({"name": "t", "effect": {"type": "approve"}, "when": {"colour": "red"}}),
            serde_json::json!({"name": "", "effect": {"type": "approve"}}),
        ] {
            assert!(
                serde_json::from_value::<Rule>(json.clone()).is_err(),
                "{json}"
            );
        }
        let twice = vec![
            rule(serde_json::json!({"name": "a", "effect": {"type": "approve"}})),
            rule(serde_json::json!({"name": "a", "effect": {"type": "approve"}})),
        ];
        assert!(
            check_rules(&twice)
                .unwrap_err()
                .to_string()
                .contains("unique")
        );
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let ask = Ask::new("Contributor", VM, "sam");
        let rules = vec![
            rule(
                serde_json::json!({"name": "readers", "when": {"access_levels": ["Reader"]},
                "effect": {"type": "approve"}}),
            ),
            rule(
                serde_json::json!({"name": "critical", "when": {"severities": ["A"]},
                "effect": {"type": "require_approvals", "approvals": 1}}),
            ),
            rule(
                serde_json::json!({"name": "the rest", "effect": {"type": "require_approvals", "approvals": 3}}),
            ),
        ];
        let now = at("2026-12-07T12:00:00Z");
        let first = |s| {
            first_match(&rules, &ask.input(s, ReasonType::default(), now))
                .unwrap()
                .map(|r| r.name.to_string())
        };
        assert_eq!(first(Severity::A).as_deref(), Some("critical"));
        assert_eq!(first(Severity::B).as_deref(), Some("the rest"));
        assert_eq!(
            first_match(
                &rules[..2],
                &ask.input(Severity::B, ReasonType::default(), now)
            )
            .unwrap(),
            None
        );
    }
}
