//! A tenant with its people, built only through the domain's own functions,
//! and every event it produces sealed into its chain.

use std::collections::BTreeMap;

use chrono::{TimeDelta, TimeZone, Utc};
use lockbox_core::access::ActionSet;
use lockbox_core::audit::verify_chain;
use lockbox_core::case::SupportCase;
use lockbox_core::principal::NewUser;
use lockbox_core::text::{CaseTitle, Description, DisplayName, Email, Justification, Reason};
use lockbox_core::*;

pub const SUB: &str = "/subscriptions/sub-1";
pub const RG: &str = "/subscriptions/sub-1/resourceGroups/rg-web";
pub const VM: &str =
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-01";
pub const OTHER_VM: &str =
    "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-02";
pub const FOREIGN_VM: &str =
    "/subscriptions/sub-9/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-x";
pub const UNOWNED_VM: &str =
    "/subscriptions/sub-404/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-y";

pub const READ: &str = "Microsoft.Compute/virtualMachines/read";
pub const WRITE: &str = "Microsoft.Compute/virtualMachines/write";

pub fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap()
}

pub fn rid(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

pub fn reason(s: &str) -> Reason {
    Reason::parse(s).unwrap()
}

pub fn action(s: &str) -> Action {
    Action::parse(s).unwrap()
}

pub fn hours(h: i64) -> TimeDelta {
    TimeDelta::hours(h)
}

pub fn pid(s: &str) -> PrincipalId {
    PrincipalId::parse(s).unwrap()
}

fn new_user(id: &str) -> NewUser {
    NewUser {
        id: pid(id),
        display_name: DisplayName::parse(&format!("{id} (test)")).unwrap(),
        email: Email::parse(&format!("{id}@example.com")).unwrap(),
        alternate_emails: vec![],
    }
}

/// Everything a test needs, made the way the product makes it.
pub struct World {
    pub now: Timestamp,
    pub tenant: Tenant,
    pub foreign: Tenant,
    pub people: BTreeMap<String, Principal>,
    pub assignments: Vec<RoleAssignment>,
    pub levels: BTreeMap<String, AccessLevel>,
    pub case: SupportCase,
    pub chains: BTreeMap<Chain, (ChainHead, Vec<AuditEvent>)>,
    /// What the store would count open for the next request or emergency
    /// grant (nothing, unless a test says otherwise).
    pub open: OpenCounts,
    seq: u8,
}

impl World {
    /// The contoso tenant with Lockbox enabled:
    /// - `admin`: provider admin; `sam`, `oscar`: operators; `erin`:
    ///   emergency operator; `gate`: gateway
    /// - `alice`: TenantAdmin (no approver role); `olivia`: Owner at SUB;
    ///   `bob`: LockboxApprover at RG; `victor`: Owner at VM only; `dave`:
    ///   LockboxApprover at `/`; `rita`: Reader at `/`
    /// - `fred`: TenantAdmin and Owner of the fabrikam tenant (sub-9)
    /// - an open case about VM, assigned to sam.
    pub fn new() -> World {
        let mut w = World::disabled();
        let cap = w.tenant_admin();
        let ev = w.tenant.set_lockbox(&cap, true, w.now).unwrap().unwrap();
        w.record(vec![ev]);
        w
    }

    /// The same world with Lockbox left off (the default).
    pub fn disabled() -> World {
        let now = t0();
        let admin = Principal {
            id: pid("admin"),
            kind: PrincipalKind::Admin,
            display_name: DisplayName::parse("Provider admin").unwrap(),
            email: None,
            alternate_emails: vec![],
            created_at: now,
            enrolled_at: None,
            disabled_at: None,
        };
        let provider = ProviderAdmin::authorize(&admin).unwrap();
        let mut w = World {
            now,
            tenant: placeholder_tenant("placeholder"),
            foreign: placeholder_tenant("placeholder"),
            people: BTreeMap::new(),
            assignments: vec![],
            levels: BTreeMap::new(),
            case: placeholder_case(),
            chains: BTreeMap::new(),
            open: OpenCounts::default(),
            seq: 0,
        };
        w.people.insert("admin".into(), admin);

        for (name, tenant_id, first) in [
            ("Contoso", "contoso", "alice"),
            ("Fabrikam", "fabrikam", "fred"),
        ] {
            let on = Tenant::onboard(
                &provider,
                TenantId::parse(tenant_id).unwrap(),
                DisplayName::parse(name).unwrap(),
                new_user(first),
                w.ra_id(),
                now,
            );
            w.record(on.events);
            w.people.insert(first.into(), on.admin);
            w.assignments.push(on.assignment);
            if tenant_id == "contoso" {
                w.tenant = on.tenant;
            } else {
                w.foreign = on.tenant;
            }
        }
        for (tenant, sub) in [(w.tenant.clone(), "sub-1"), (w.foreign.clone(), "sub-9")] {
            let ev = tenant
                .add_subscription(&provider, &SubscriptionId::parse(sub).unwrap(), None, now)
                .unwrap()
                .unwrap();
            w.record(vec![ev]);
        }

        let cap = w.tenant_admin();
        for (user, role, scope) in [
            ("olivia", Role::Owner, SUB),
            ("bob", Role::LockboxApprover, RG),
            ("victor", Role::Owner, VM),
            ("dave", Role::LockboxApprover, "/"),
            ("rita", Role::Reader, "/"),
        ] {
            let (p, ev) = Principal::create_user(&cap, new_user(user), now).unwrap();
            w.record(vec![ev]);
            w.people.insert(user.into(), p);
            w.assign(&cap, user, role, scope).unwrap();
        }
        let fred_cap = TenantAdmin::authorize(&w.p("fred"), &w.assignments, &w.foreign.id).unwrap();
        w.assign(&fred_cap, "fred", Role::Owner, "/").unwrap();

        for (id, emergency) in [("sam", false), ("oscar", false), ("erin", true)] {
            let (p, ev) = Principal::register_operator(
                &provider,
                pid(id),
                DisplayName::parse(id).unwrap(),
                Email::parse(&format!("{id}@provider.example")).unwrap(),
                emergency,
                now,
            );
            w.record(vec![ev]);
            w.people.insert(id.into(), p);
        }
        let (gate, ev) = Principal::register_gateway(
            &provider,
            pid("gate"),
            DisplayName::parse("VM gateway").unwrap(),
            &GatewaySettings::default(),
            now,
        );
        w.record(vec![ev]);
        w.people.insert("gate".into(), gate);

        for (name, patterns) in [("Reader", vec!["*/read"]), ("Contributor", vec!["*"])] {
            w.levels.insert(
                name.into(),
                AccessLevel {
                    name: AccessLevelName::parse(name).unwrap(),
                    actions: ActionSet::parse(&patterns).unwrap(),
                    description: Description::parse("test level").unwrap(),
                    ssh: None,
                },
            );
        }

        let (mut case, ev) = SupportCase::open(
            &w.p("olivia"),
            CaseId::from_parts(now, w.random()),
            &w.tenant.id,
            rid(VM),
            Some(&w.tenant.id),
            CaseTitle::parse("VM does not boot").unwrap(),
            Severity::A,
            now,
        )
        .unwrap();
        w.record(vec![ev]);
        let evs = case.assign(&provider, &w.p("sam"), &mut [], now).unwrap();
        w.record(evs);
        w.case = case;
        w
    }

    fn random(&mut self) -> [u8; 10] {
        self.seq = self.seq.wrapping_add(1);
        [self.seq; 10]
    }

    pub fn ra_id(&mut self) -> RoleAssignmentId {
        let r = self.random();
        RoleAssignmentId::from_parts(self.now, r)
    }

    pub fn request_id(&mut self) -> RequestId {
        let r = self.random();
        RequestId::from_parts(self.now, r)
    }

    pub fn case_id(&mut self) -> CaseId {
        let r = self.random();
        CaseId::from_parts(self.now, r)
    }

    /// A principal by name (a clone, so the world stays borrowable).
    pub fn p(&self, name: &str) -> Principal {
        self.people
            .get(name)
            .unwrap_or_else(|| panic!("no principal {name}"))
            .clone()
    }

    pub fn level(&self, name: &str) -> AccessLevel {
        self.levels[name].clone()
    }

    pub fn provider(&self) -> ProviderAdmin {
        ProviderAdmin::authorize(&self.p("admin")).unwrap()
    }

    pub fn tenant_admin(&self) -> TenantAdmin {
        TenantAdmin::authorize(&self.p("alice"), &self.assignments, &self.tenant.id).unwrap()
    }

    /// Which tenant owns the resource's subscription.
    pub fn owner_of(&self, r: &ResourceId) -> Option<TenantId> {
        match r.subscription().as_str() {
            "sub-1" => Some(self.tenant.id.clone()),
            "sub-9" => Some(self.foreign.id.clone()),
            _ => None,
        }
    }

    pub fn assign(
        &mut self,
        cap: &TenantAdmin,
        user: &str,
        role: Role,
        scope: &str,
    ) -> Result<RoleAssignment, DomainError> {
        let scope = Scope::parse(scope).unwrap();
        let owner = scope
            .subscription()
            .and_then(|s| self.owner_of(&s.to_resource_id()));
        let id = self.ra_id();
        let (a, ev) = RoleAssignment::assign(
            cap,
            id,
            &self.p(user),
            role,
            scope,
            owner.as_ref(),
            self.now,
        )?;
        self.record(vec![ev]);
        self.assignments.push(a.clone());
        Ok(a)
    }

    /// Drops the approver roles `user` holds (without going through
    /// `remove`, to model a role taken away between request and decision).
    pub fn strip_roles(&mut self, user: &str) {
        self.assignments
            .retain(|a| a.principal.as_str() != user || !a.role.approves());
    }

    /// Seals events into their chains.
    pub fn record(&mut self, events: Vec<PendingEvent>) {
        for event in events {
            let chain = event.chain.clone();
            let (head, log) = self
                .chains
                .entry(chain.clone())
                .or_insert_with(|| (ChainHead::genesis(chain), Vec::new()));
            log.push(head.seal(event).unwrap().into_event());
        }
    }

    /// The tenant chain's events.
    pub fn log(&self) -> &[AuditEvent] {
        &self.chains[&Chain::Tenant(self.tenant.id.clone())].1
    }

    /// The last `n` events of the tenant chain as (kind, actor, subject).
    pub fn last_events(&self, n: usize) -> Vec<(String, String, String)> {
        let log = self.log();
        log[log.len() - n..]
            .iter()
            .map(|e| (e.kind.clone(), e.actor.to_string(), e.subject.clone()))
            .collect()
    }

    /// Signs every chain's head and verifies every chain against it.
    pub fn verify_chains(&self) {
        let signer = CheckpointSigner::from_secret_bytes(&[7; 32]);
        for (chain, (head, log)) in &self.chains {
            let cp = signer.sign(head, self.now).unwrap();
            let verified = verify_chain(chain.clone(), log, Some(&cp), &[signer.public_key()])
                .unwrap_or_else(|f| panic!("{chain} does not verify: {f}"));
            assert_eq!(verified.events, log.len() as u64);
        }
    }

    pub fn advance(&mut self, by: TimeDelta) {
        self.now += by;
    }

    pub fn draft(&self, resource: &str, level: &str, duration_hours: Option<u32>) -> RequestDraft {
        RequestDraft {
            resource: rid(resource),
            access_level: AccessLevelName::parse(level).unwrap(),
            duration_hours,
            justification: Justification::parse("customer reports the VM does not boot").unwrap(),
            reason_type: ReasonType::default(),
            reference: None,
            starts_at: None,
            source_addresses: Vec::new(),
        }
    }

    /// `requester` asks for `resource` under `case` (the world's case when
    /// `None`), recording the events on success.
    pub fn try_create_as(
        &mut self,
        requester: &str,
        case: Option<&SupportCase>,
        draft: RequestDraft,
    ) -> Result<AccessRequest, DomainError> {
        let id = self.request_id();
        let owner = self.owner_of(&draft.resource);
        let level = self.levels.get(draft.access_level.as_str()).cloned();
        let case = case.cloned().unwrap_or_else(|| self.case.clone());
        let facts = RequestFacts {
            tenant: &self.tenant,
            case: &case,
            access_level: level.as_ref(),
            resource_tenant: owner.as_ref(),
            open: self.open,
        };
        let (req, events) = AccessRequest::create(id, &self.p(requester), draft, facts, self.now)?;
        self.record(events);
        Ok(req)
    }

    pub fn try_create(
        &mut self,
        resource: &str,
        level: &str,
        hours: Option<u32>,
    ) -> Result<AccessRequest, DomainError> {
        let draft = self.draft(resource, level, hours);
        self.try_create_as("sam", None, draft)
    }

    /// sam asks for Reader on the VM for the default duration.
    pub fn request(&mut self) -> AccessRequest {
        self.try_create(VM, "Reader", None).unwrap()
    }

    pub fn approve(
        &mut self,
        req: &mut AccessRequest,
        who: &str,
        hours: Option<u32>,
    ) -> Result<(), DomainError> {
        let policy = self.tenant.policy.clone();
        let events = req.approve(
            &self.p(who),
            &self.assignments,
            reason("ok for this case"),
            hours,
            &policy,
            self.now,
        )?;
        self.record(events);
        Ok(())
    }

    pub fn deny(&mut self, req: &mut AccessRequest, who: &str) -> Result<(), DomainError> {
        let events = req.deny(&self.p(who), &self.assignments, reason("not now"), self.now)?;
        self.record(events);
        Ok(())
    }

    pub fn cancel(&mut self, req: &mut AccessRequest, who: &str) -> Result<(), DomainError> {
        let events = req.cancel(&self.p(who), Some(reason("no longer needed")), self.now)?;
        self.record(events);
        Ok(())
    }

    pub fn revoke(&mut self, req: &mut AccessRequest, who: &str) -> Result<(), DomainError> {
        let events = req.revoke(&self.p(who), &self.assignments, reason("done"), self.now)?;
        self.record(events);
        Ok(())
    }

    pub fn expire(&mut self, req: &mut AccessRequest) -> Result<(), DomainError> {
        let events = req.expire(self.now)?;
        self.record(events);
        Ok(())
    }

    pub fn complete(&mut self, req: &mut AccessRequest) -> Result<(), DomainError> {
        let events = req.complete(self.now)?;
        self.record(events);
        Ok(())
    }

    /// `who` asks to extend `original`'s grant by `hours`.
    pub fn try_extend(
        &mut self,
        original: &mut AccessRequest,
        who: &str,
        hours: u32,
        pending_extension: Option<RequestId>,
    ) -> Result<AccessRequest, DomainError> {
        let id = self.request_id();
        let facts = ExtensionFacts {
            tenant: &self.tenant,
            case: &self.case,
            open: self.open,
            pending_extension,
        };
        let draft = ExtensionDraft {
            hours,
            justification: lockbox_core::text::Justification::parse("the migration runs longer")
                .unwrap(),
            reason_type: None,
        };
        let (ext, events) =
            AccessRequest::extend(id, original, &self.p(who), draft, facts, self.now)?;
        self.record(events);
        Ok(ext)
    }

    /// `who` approves extension `ext` of `original`, as the server does:
    /// the original first.
    pub fn approve_extension(
        &mut self,
        ext: &mut AccessRequest,
        original: &mut AccessRequest,
        who: &str,
        hours: Option<u32>,
    ) -> Result<(), DomainError> {
        let policy = self.tenant.policy.clone();
        let draft = ApprovalDraft {
            reason: reason("ok, finish it"),
            duration_hours: hours,
            group: None,
        };
        let events = ext.approve_extension(
            original,
            &self.p(who),
            &self.assignments,
            draft,
            &policy,
            &[],
            self.now,
        )?;
        self.record(events);
        Ok(())
    }

    /// Replaces the policy through the tenant admin.
    pub fn set_policy(&mut self, f: impl FnOnce(&mut PolicySettings)) {
        let mut s = self.tenant.policy.settings().clone();
        f(&mut s);
        let cap = self.tenant_admin();
        if let Some(ev) = self
            .tenant
            .set_policy(&cap, TenantPolicy::new(s).unwrap(), self.now)
            .unwrap()
        {
            self.record(vec![ev]);
        }
    }
}

fn placeholder_tenant(id: &str) -> Tenant {
    Tenant {
        id: TenantId::parse(id).unwrap(),
        display_name: DisplayName::parse(id).unwrap(),
        created_at: t0(),
        lockbox: LockboxSetting::default(),
        policy: TenantPolicy::default(),
    }
}

fn placeholder_case() -> SupportCase {
    SupportCase::restore(lockbox_core::case::CaseRecord {
        id: CaseId::from_parts(t0(), [0; 10]),
        tenant: TenantId::parse("placeholder").unwrap(),
        resource: rid(VM),
        title: CaseTitle::parse("placeholder").unwrap(),
        severity: Severity::C,
        status: CaseStatus::Open,
        assigned_to: None,
        created_at: t0(),
        created_by: pid("nobody"),
        closed_at: None,
        closed_by: None,
    })
    .unwrap()
}
