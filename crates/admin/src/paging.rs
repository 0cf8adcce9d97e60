//! Query strings and paging, shared by every list endpoint.
//!
//! [`Query`] keeps every `key=value` pair in order, because EMQX's filters may repeat
//! (`?clientid=a&clientid=b`), which serde's query deserializer cannot express. [`Page`] is
//! `page` (from 1) and `limit` (default 100, capped at [`MAX_LIMIT`] so that no request builds
//! more than that many rows); [`Page::apply`] counts every matching row (the contract's
//! `meta.count`) but converts only the rows of the page asked for.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;

use crate::error::ApiError;

/// Rows per page unless `limit` says otherwise.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` honoured (a larger one is capped, and `meta.limit` says so).
pub(crate) const MAX_LIMIT: usize = 10_000;

/// The query string's pairs, percent-decoded, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    /// The first value of `key`, if given (an empty value counts as not given).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of `key`.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `key` as a number, 400 when it is not one.
    pub(crate) fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| ApiError::bad_request(format!("`{key}` must be a number")))
            })
            .transpose()
    }

    /// `key` as a boolean (`true`/`false`), 400 otherwise.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(ApiError::bad_request(format!(
                "`{key}` must be true or false"
            ))),
        }
    }

    /// `page` and `limit`.
    pub(crate) fn page(&self) -> Result<Page, ApiError> {
        let page = self.number::<usize>("page")?.unwrap_or(1);
        let limit = self.number::<usize>("limit")?.unwrap_or(DEFAULT_LIMIT);
        if page == 0 {
            return Err(ApiError::bad_request("`page` starts at 1"));
        }
        if limit == 0 {
            return Err(ApiError::bad_request("`limit` must be at least 1"));
        }
        Ok(Page {
            page,
            limit: limit.min(MAX_LIMIT),
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::parse(parts.uri.query()))
    }
}

/// Which rows to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) page: usize,
    pub(crate) limit: usize,
}

/// A list answer: `{"data": [...], "meta": {...}}`.
#[derive(Debug, Serialize)]
pub(crate) struct Paged<U> {
    pub(crate) data: Vec<U>,
    pub(crate) meta: Meta,
}

/// The contract's `meta`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) count: usize,
    pub(crate) limit: usize,
    pub(crate) page: usize,
    pub(crate) hasnext: bool,
}

impl Page {
    /// Counts `rows` and converts those of this page with `f`.
    pub(crate) fn apply<T, U>(
        self,
        rows: impl IntoIterator<Item = T>,
        mut f: impl FnMut(T) -> U,
    ) -> Paged<U> {
        let start = (self.page - 1).saturating_mul(self.limit);
        let end = start.saturating_add(self.limit);
        let mut data = Vec::new();
        let mut count = 0usize;
        for row in rows {
            if (start..end).contains(&count) {
                data.push(f(row));
            }
            count += 1;
        }
        Paged {
            data,
            meta: Meta {
                count,
                limit: self.limit,
                page: self.page,
                hasnext: count > end,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_count_every_row_and_convert_one_page() {
        let p = Page { page: 2, limit: 3 };
        let r = p.apply(0..8, |i| i * 10);
        assert_eq!(r.data, vec![30, 40, 50]);
        assert_eq!(
            r.meta,
            Meta {
                count: 8,
                limit: 3,
                page: 2,
                hasnext: true
            }
        );
        let last = Page { page: 3, limit: 3 }.apply(0..8, |i| i);
        assert_eq!(last.data, vec![6, 7]);
        assert!(!last.meta.hasnext);
        let beyond = Page {
            page: usize::MAX,
            limit: MAX_LIMIT,
        }
        .apply(0..8, |i| i);
        assert!(beyond.data.is_empty());
    }

    #[test]
    fn query_keeps_repeats_and_caps_limit() {
        let q = Query::parse(Some("clientid=a&clientid=b%2Fc&limit=99999&page=2&x="));
        assert_eq!(q.all("clientid"), vec!["a", "b/c"]);
        assert_eq!(q.get("x"), None);
        assert_eq!(
            q.page().ok(),
            Some(Page {
                page: 2,
                limit: MAX_LIMIT
            })
        );
        assert!(Query::parse(Some("page=0")).page().is_err());
        assert!(Query::parse(Some("limit=ten")).page().is_err());
    }
}
