//! Approver groups: named sets of a tenant's approvers ("security",
//! "operations"), so that a rule can require one approval from each of
//! several groups as well as a number of approvals.
//!
//! A group's members are principals, or whoever holds a role at a scope
//! (an `Owner` or `LockboxApprover` assignment at that scope or one above
//! it). Membership is read when an approver approves: an approval records
//! the required groups its approver could count for then (or the one they
//! chose). A request needs, besides its number of approvals, an assignment
//! of distinct approvals to its groups that gives each group one
//! ([`groups_met`]): an approver in two groups counts once, for one of
//! them; nobody counts twice.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::id::{PrincipalId, shorten};
use crate::principal::{Role, RoleAssignment};
use crate::resource::Scope;

/// The most groups a tenant may have.
pub const MAX_GROUPS: usize = 20;
/// The most members one group may list.
pub const MAX_MEMBERS: usize = 100;
/// The most groups one rule may require.
pub const MAX_REQUIRED_GROUPS: usize = 10;

/// A group's name: a letter, then up to 63 letters, digits, `.`, `_` or
/// `-` (it appears in URLs). Case-sensitive.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupName(Box<str>);

impl GroupName {
    /// Parses a name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let bad = |why: &str| {
            Err(DomainError::invalid(format!(
                "invalid group name `{}`: {why}",
                shorten(s)
            )))
        };
        if s.is_empty() || s.len() > 64 {
            return bad("it must be 1 to 64 characters");
        }
        if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return bad("it must start with a letter");
        }
        if s.chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return bad("use letters, digits, `.`, `_` and `-`");
        }
        Ok(Self(s.into()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupName {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse(&s)
    }
}

impl From<GroupName> for String {
    fn from(n: GroupName) -> String {
        n.0.into()
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Who belongs to a group: one principal, or whoever holds `role` at
/// `scope` or at a scope above it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MemberFields", into = "MemberFields")]
pub enum Member {
    /// This principal.
    Principal(PrincipalId),
    /// Holders of an approving role covering the scope.
    Role {
        /// `Owner` or `LockboxApprover`.
        role: Role,
        /// Where.
        scope: Scope,
    },
}

/// A member as written: `{"principal": "olivia"}` or `{"role":
/// "LockboxApprover", "scope": "/subscriptions/sub-1"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<PrincipalId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<Scope>,
}

impl TryFrom<MemberFields> for Member {
    type Error = DomainError;
    fn try_from(f: MemberFields) -> Result<Self, DomainError> {
        match (f.principal, f.role, f.scope) {
            (Some(p), None, None) => Ok(Self::Principal(p)),
            (None, Some(role), Some(scope)) => {
                if !role.approves() {
                    return Err(DomainError::invalid(format!(
                        "a group's role member must be Owner or LockboxApprover (who approve), not {}",
                        role.as_str()
                    )));
                }
                Ok(Self::Role { role, scope })
            }
            _ => Err(DomainError::invalid(
                "a group member is either {\"principal\": ID} or {\"role\": ROLE, \"scope\": SCOPE}",
            )),
        }
    }
}

impl From<Member> for MemberFields {
    fn from(m: Member) -> Self {
        match m {
            Member::Principal(p) => Self {
                principal: Some(p),
                role: None,
                scope: None,
            },
            Member::Role { role, scope } => Self {
                principal: None,
                role: Some(role),
                scope: Some(scope),
            },
        }
    }
}

/// A named group of a tenant's approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverGroup {
    /// Unique within the tenant.
    pub name: GroupName,
    /// Who belongs (1 to [`MAX_MEMBERS`]).
    pub members: Vec<Member>,
}

impl ApproverGroup {
    /// Checks the group's own shape.
    pub fn check(&self) -> Result<(), DomainError> {
        if self.members.is_empty() || self.members.len() > MAX_MEMBERS {
            return Err(DomainError::invalid(format!(
                "group `{}` must list 1 to {MAX_MEMBERS} members, not {}",
                self.name,
                self.members.len()
            )));
        }
        Ok(())
    }

    /// Whether `principal`, holding `assignments`, belongs to the group.
    #[must_use]
    pub fn includes(&self, principal: &PrincipalId, assignments: &[RoleAssignment]) -> bool {
        self.members.iter().any(|m| match m {
            Member::Principal(p) => p == principal,
            Member::Role { role, scope } => assignments.iter().any(|a| {
                &a.principal == principal && a.role == *role && a.scope.contains_scope(scope)
            }),
        })
    }
}

/// Checks a tenant's groups: at most [`MAX_GROUPS`], names unique, each
/// well formed.
pub fn check_groups(groups: &[ApproverGroup]) -> Result<(), DomainError> {
    if groups.len() > MAX_GROUPS {
        return Err(DomainError::invalid(format!(
            "approver_groups lists {} groups; at most {MAX_GROUPS}",
            groups.len()
        )));
    }
    for (i, g) in groups.iter().enumerate() {
        g.check()?;
        if groups.iter().take(i).any(|h| h.name == g.name) {
            return Err(DomainError::invalid(format!(
                "two groups are named `{}`; names must be unique",
                g.name
            )));
        }
    }
    Ok(())
}

/// Which of `required` a set of approvals covers: for each required group,
/// the index of the approval that counts for it, in an assignment that
/// gives as many groups as possible one approval each, no approval
/// counting for two. `eligible[i]` lists the groups approval `i` may count
/// for. (A maximum bipartite matching, by augmenting paths: a few groups
/// and approvals at most.)
#[must_use]
pub fn groups_met(required: &[GroupName], eligible: &[&[GroupName]]) -> Vec<Option<usize>> {
    let mut holder: Vec<Option<usize>> = vec![None; required.len()];
    for approval in 0..eligible.len() {
        let mut seen = vec![false; required.len()];
        augment(approval, required, eligible, &mut holder, &mut seen);
    }
    holder
}

/// Tries to give `approval` a group, moving others along if that frees
/// one; whether it found one.
fn augment(
    approval: usize,
    required: &[GroupName],
    eligible: &[&[GroupName]],
    holder: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    let Some(groups) = eligible.get(approval) else {
        return false;
    };
    for (g, name) in required.iter().enumerate() {
        if !groups.contains(name) || seen.get(g).copied().unwrap_or(true) {
            continue;
        }
        if let Some(s) = seen.get_mut(g) {
            *s = true;
        }
        let current = holder.get(g).copied().flatten();
        let free = match current {
            None => true,
            Some(other) => augment(other, required, eligible, holder, seen),
        };
        if free {
            if let Some(h) = holder.get_mut(g) {
                *h = Some(approval);
            }
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &[&str]) -> Vec<GroupName> {
        s.iter().map(|n| GroupName::parse(n).unwrap()).collect()
    }

    #[test]
    fn an_approver_in_two_groups_counts_for_the_one_that_completes_the_request() {
        let required = names(&["security", "operations"]);
        let both = names(&["security", "operations"]);
        let security = names(&["security"]);
        // Both-groups first, then security only: both-groups moves to
        // operations so that each group has one.
        let met = groups_met(&required, &[&both, &security]);
        assert_eq!(met, vec![Some(1), Some(0)]);
        // One person in both groups is one approval, never two.
        let met = groups_met(&required, &[&both]);
        assert_eq!(met.iter().flatten().count(), 1);
        // Nobody in operations: it stays missing.
        let met = groups_met(&required, &[&security, &security]);
        assert_eq!(met, vec![Some(0), None]);
        assert_eq!(groups_met(&[], &[&both]), Vec::<Option<usize>>::new());
    }

    #[test]
    fn names_and_members_are_checked() {
        for bad in ["", "1st", "a b", "x/y", &"a".repeat(65)] {
            assert!(GroupName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(GroupName::parse("security-emea_2").is_ok());
        let member = |v: serde_json::Value| serde_json::from_value::<Member>(v);
        assert!(member(serde_json::json!({"principal": "olivia"})).is_ok());
        assert!(
            member(serde_json::json!({"role": "LockboxApprover", "scope": "/subscriptions/sub-1"}))
                .is_ok()
        );
        for bad in [
            serde_json::json!({"role": "Reader", "scope": "/"}),
            serde_json::json!({"role": "Owner"}),
            serde_json::json!({"principal": "olivia", "role": "Owner", "scope": "/"}),
            serde_json::json!({}),
            serde_json::json!({"who": "olivia"}),
        ] {
            assert!(member(bad.clone()).is_err(), "{bad}");
        }
    }
}
