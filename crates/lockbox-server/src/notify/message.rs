//! Rendering: the bytes of each message (JSON, Slack, e-mail), fixed when
//! the job is planned.

use lockbox_core::access::{ActionPattern, ActionSet};
use lockbox_core::{AccessRequest, RequestStatus, Timestamp};
use serde_json::{Value, json};

use super::REMINDER_KIND;
use super::plan::Notice;

pub(super) fn time(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn link(portal: &str, r: &AccessRequest) -> String {
    format!("{portal}/requests/{}", r.id)
}

fn request_json(r: &AccessRequest, portal: &str) -> Value {
    json!({
        "id": r.id,
        "case": r.case,
        "resource": r.resource,
        "requester": r.requester,
        "access_level": r.access_level,
        "actions": r.actions,
        "duration_hours": r.duration_hours,
        "justification": r.justification,
        "reason_type": r.reason_type.as_str(),
        "reference": r.reference,
        "starts_at": r.starts_at.as_ref().map(time),
        "extends": r.extends,
        "required_groups": r.required_groups,
        "status": r.status.as_str(),
        "approvals": r.approvals.iter().map(|a| a.approver.to_string()).collect::<Vec<_>>(),
        "expires_at": time(&r.expires_at),
        "link": link(portal, r),
    })
}

/// The `json` format: the event and the request.
pub(super) fn json_body(notice: &Notice, portal: &str) -> Value {
    json!({
        "event": notice.event,
        "request": notice.request.as_ref().map(|r| request_json(r, portal)),
    })
}

/// A sentence for the notice: who did what.
fn headline(notice: &Notice) -> String {
    let actor = &notice.actor;
    let rule = notice.event.pointer("/data/rule").and_then(Value::as_str);
    let extends = notice.request.as_ref().and_then(|r| r.extends);
    match notice.kind.as_str() {
        "request.created" if extends.is_some() => format!(
            "{actor} asks to extend the access of request {}",
            extends.map(|r| r.to_string()).unwrap_or_default()
        ),
        "request.created" => format!("{actor} asks for access"),
        "request.approved" if rule.is_some() => format!(
            "Rule “{}” of the policy approved the request",
            rule.unwrap_or_default()
        ),
        "request.approved" => format!("{actor} approved the request"),
        "request.denied" => format!("{actor} denied the request"),
        "request.expired" => "The request expired unanswered".to_owned(),
        "request.canceled" => format!("{actor} canceled the request"),
        "grant.revoked" => format!("{actor} revoked the access"),
        "grant.ended" => "The access ended".to_owned(),
        "grant.extended" => format!(
            "The access was extended until {}",
            notice
                .event
                .pointer("/data/to")
                .and_then(Value::as_str)
                .unwrap_or("a later time")
        ),
        "emergency.access" => format!("EMERGENCY access by {actor}"),
        REMINDER_KIND => "A request is waiting for a decision and expires soon".to_owned(),
        other => format!("{actor}: {other}"),
    }
}

/// Text for a Slack message: `&`, `<` and `>` escaped, so that what an
/// operator wrote can make no link, mention or formatting of its own.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `slack` format: an incoming-webhook message.
pub(super) fn slack_body(notice: &Notice, portal: &str) -> Value {
    let mut text = format!("*Lockbox* · {}", slack_escape(&headline(notice)));
    if let Some(r) = &notice.request {
        text.push_str(&format!(
            "\n{} access (`{}`) to `{}` for {} h{} (case {}; {}{}): “{}”\n<{}|Open request {}>",
            slack_escape(r.access_level.as_str()),
            slack_escape(&actions_text(&r.actions)),
            slack_escape(&r.resource.to_string()),
            r.duration_hours,
            r.starts_at
                .map(|t| format!(" from {}", time(&t)))
                .unwrap_or_default(),
            r.case,
            r.reason_type.label(),
            r.reference
                .as_ref()
                .map(|x| format!(", {}", slack_escape(x.as_str())))
                .unwrap_or_default(),
            slack_escape(r.justification.as_str()),
            link(portal, r),
            r.id
        ));
    } else if let Some(resource) = &notice.resource {
        text.push_str(&format!("\nResource: `{}`", slack_escape(resource)));
        if let Some((level, actions)) = notice.level() {
            text.push_str(&format!(
                "\n{} access (`{}`)",
                slack_escape(&level),
                slack_escape(&actions)
            ));
        }
    }
    json!({ "text": text })
}

/// The action patterns a level grants, as a notification shows them.
pub(super) fn actions_text(actions: &ActionSet) -> String {
    actions
        .patterns()
        .iter()
        .map(ActionPattern::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Subject, text and HTML of the e-mail for `notice`.
pub(super) fn email_parts(notice: &Notice, portal: &str) -> (String, String, String) {
    let headline = headline(notice);
    let mut rows: Vec<(&str, String)> = Vec::new();
    let subject = match &notice.request {
        Some(r) => {
            rows.extend([
                ("Request", r.id.to_string()),
                ("Operator", r.requester.to_string()),
                ("Case", r.case.to_string()),
                ("Resource", r.resource.to_string()),
                ("Access level", r.access_level.to_string()),
                ("Actions", actions_text(&r.actions)),
                ("Duration", format!("{} hours", r.duration_hours)),
                ("Reason", r.reason_type.label().to_owned()),
                ("Justification", r.justification.to_string()),
                ("Status", r.status.as_str().to_owned()),
            ]);
            if let Some(reference) = &r.reference {
                rows.push(("Reference", reference.to_string()));
            }
            if let Some(start) = &r.starts_at {
                rows.push((
                    "Starts",
                    format!("{} (or when approved, if later)", time(start)),
                ));
            }
            if r.status == RequestStatus::Pending {
                rows.push(("Expires", time(&r.expires_at)));
            }
            if let Some(original) = &r.extends {
                rows.push(("Extends", format!("request {original}")));
            }
            if !r.required_groups.is_empty() {
                rows.push((
                    "Needs",
                    format!(
                        "{} approvals, one from each of {}",
                        r.required_approvals,
                        r.required_groups
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if !r.approvals.is_empty() {
                rows.push((
                    "Approved by",
                    r.approvals
                        .iter()
                        .map(|a| a.approver.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
            rows.push(("Open", link(portal, r)));
            format!("[Lockbox] {headline}: {} on {}", r.id, r.resource)
        }
        None => {
            if let Some(resource) = &notice.resource {
                rows.push(("Resource", resource.clone()));
            }
            if let Some((level, actions)) = notice.level() {
                rows.push(("Access level", level));
                rows.push(("Actions", actions));
            }
            match &notice.resource {
                Some(resource) => format!("[Lockbox] {headline} on {resource}"),
                None => format!("[Lockbox] {headline}"),
            }
        }
    };
    rows.push(("Tenant", notice.tenant.to_string()));
    rows.push(("When", time(&notice.at)));
    let mut text = format!("{headline}.\n\n");
    for (name, value) in &rows {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push_str("\nYou receive this because of your role in Lockbox for this tenant.\n");
    let mut html = format!(
        "<!doctype html><html><body><p><strong>{}</strong></p><table>",
        escape_html(&headline)
    );
    for (name, value) in &rows {
        let shown = if *name == "Open" {
            format!("<a href=\"{0}\">{0}</a>", escape_html(value))
        } else {
            escape_html(value)
        };
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{shown}</td></tr>",
            escape_html(name)
        ));
    }
    html.push_str(
        "</table><p>You receive this because of your role in Lockbox for this tenant.</p></body></html>",
    );
    (subject, text, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_cannot_make_links_or_mentions() {
        assert_eq!(
            slack_escape("<!channel> <https://evil.example|Approve> & more"),
            "&lt;!channel&gt; &lt;https://evil.example|Approve&gt; &amp; more"
        );
    }

    #[test]
    fn an_approval_by_a_rule_is_headlined_as_the_rules() {
        let notice = |data: Value| Notice {
            kind: "request.approved".into(),
            tenant: "contoso".parse().unwrap(),
            at: Timestamp::UNIX_EPOCH,
            actor: "system".into(),
            event: json!({ "data": data }),
            request: None,
            resource: None,
        };
        assert_eq!(
            headline(&notice(json!({"rule": "readers in hours"}))),
            "Rule “readers in hours” of the policy approved the request"
        );
        assert_eq!(
            headline(&notice(json!({"decided_by_system": true}))),
            "system approved the request"
        );
    }
}
