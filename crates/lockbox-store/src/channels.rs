//! A tenant's notification channels.

use lockbox_core::channel::{Channel, ChannelTarget, WebhookFormat, WebhookSecret, WebhookUrl};
use lockbox_core::text::Email;
use lockbox_core::{ChannelId, TenantId};
use sqlx::any::AnyRow;

use crate::codec::{RowExt as _, micros};
use crate::error::StoreError;
use crate::page::{Page, PageRequest};
use crate::query::tenant_page;
use crate::tx::Tx;

const COLUMNS: &str =
    "id, tenant_id, kind, url, secret, format, address, created_at_us, created_by";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(format!("channel {what}: {e}"))
}

fn channel_of(row: &AnyRow) -> Result<Channel, StoreError> {
    let target = match row.text("kind")?.as_str() {
        "webhook" => {
            let text = |col: &str| -> Result<String, StoreError> {
                row.opt_text(col)?
                    .ok_or_else(|| corrupt(col, "missing for a webhook"))
            };
            ChannelTarget::Webhook {
                url: WebhookUrl::parse(&text("url")?).map_err(|e| corrupt("url", e))?,
                secret: WebhookSecret::parse(&text("secret")?).map_err(|e| corrupt("secret", e))?,
                format: WebhookFormat::parse(&text("format")?).map_err(|e| corrupt("format", e))?,
            }
        }
        "email" => ChannelTarget::Email {
            address: Email::parse(
                &row.opt_text("address")?
                    .ok_or_else(|| corrupt("address", "missing for an e-mail channel"))?,
            )
            .map_err(|e| corrupt("address", e))?,
        },
        other => return Err(corrupt("kind", other)),
    };
    Ok(Channel {
        id: row.parsed("id")?,
        tenant: row.parsed("tenant_id")?,
        target,
        created_at: row.time("created_at_us")?,
        created_by: row.parsed("created_by")?,
    })
}

/// Storing channels.
impl Tx {
    /// Adds a channel (with its `channel.created` event in the same commit).
    pub async fn insert_channel(&mut self, c: &Channel) -> Result<(), StoreError> {
        self.audited_write()?;
        let (url, secret, format, address) = match &c.target {
            ChannelTarget::Webhook {
                url,
                secret,
                format,
            } => (
                Some(url.as_str().to_owned()),
                Some(secret.expose().to_owned()),
                Some(format.as_str()),
                None,
            ),
            ChannelTarget::Email { address } => {
                (None, None, None, Some(address.as_str().to_owned()))
            }
        };
        self.run(
            sqlx::query(
                "INSERT INTO channels (id, tenant_id, kind, url, secret, format, address, created_at_us, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(c.id.to_string())
            .bind(c.tenant.as_str().to_owned())
            .bind(c.target.kind())
            .bind(url)
            .bind(secret)
            .bind(format)
            .bind(address)
            .bind(micros(c.created_at))
            .bind(c.created_by.as_str().to_owned()),
        )
        .await?;
        Ok(())
    }

    /// A channel.
    pub async fn channel(&mut self, id: &ChannelId) -> Result<Option<Channel>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM channels WHERE id = $1");
        let row = self
            .optional(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()))
            .await?;
        row.as_ref().map(channel_of).transpose()
    }

    /// A tenant's channels, in id order (ids are time-ordered).
    pub async fn channels(
        &mut self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<Channel>, StoreError> {
        let rows = self
            .all(tenant_page(tenant, page).query(&format!("SELECT {COLUMNS} FROM channels")))
            .await?;
        let items = rows.iter().map(channel_of).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, page, |c| c.id.to_string()))
    }

    /// Removes a channel.
    pub async fn delete_channel(&mut self, id: &ChannelId) -> Result<(), StoreError> {
        self.audited_write()?;
        let n = self
            .run(sqlx::query("DELETE FROM channels WHERE id = $1").bind(id.to_string()))
            .await?;
        if n == 0 {
            return Err(StoreError::not_found("channel", id));
        }
        Ok(())
    }
}
