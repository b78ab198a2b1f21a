//! Keyset pagination.

/// The most items one page may hold.
pub const MAX_PAGE: u32 = 500;
/// Items per page when the caller does not say.
pub const DEFAULT_PAGE: u32 = 50;

/// Which page: at most `limit` items after the `cursor` (the last id of the
/// previous page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items, 1 to [`MAX_PAGE`].
    pub limit: u32,
    /// Where the previous page ended.
    pub cursor: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: DEFAULT_PAGE,
            cursor: None,
        }
    }
}

impl PageRequest {
    /// The first page of `limit` items (clamped to 1..=[`MAX_PAGE`]).
    #[must_use]
    pub fn first(limit: u32) -> Self {
        Self {
            limit: limit.clamp(1, MAX_PAGE),
            cursor: None,
        }
    }

    /// The page after `cursor`.
    #[must_use]
    pub fn after(limit: u32, cursor: impl Into<String>) -> Self {
        Self {
            limit: limit.clamp(1, MAX_PAGE),
            cursor: Some(cursor.into()),
        }
    }

    /// The limit as the database wants it, asking for one extra row to learn
    /// whether another page follows.
    pub(crate) fn fetch_limit(&self) -> i64 {
        i64::from(self.limit.clamp(1, MAX_PAGE)) + 1
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass this to get the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Cuts the extra row fetched by [`PageRequest::fetch_limit`] and sets
    /// the cursor from the last item kept.
    pub(crate) fn from_rows(
        mut items: Vec<T>,
        page: &PageRequest,
        cursor_of: impl Fn(&T) -> String,
    ) -> Self {
        let limit = usize::try_from(page.limit.clamp(1, MAX_PAGE)).unwrap_or(usize::MAX);
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = if more {
            items.last().map(cursor_of)
        } else {
            None
        };
        Self { items, next_cursor }
    }
}
