//! How rows reach PostgreSQL: `Param` as a parameter of the column's type, and which errors are
//! a write's own fault.

use std::error::Error as StdError;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::super::Param;

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let mismatch = |what: &str| -> Box<dyn StdError + Sync + Send> {
            format!("cannot store {what} in a parameter of type {ty}").into()
        };
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)
                    .map_err(|_| mismatch("an integer out of INT4's range"))?
                    .to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)
                    .map_err(|_| mismatch("an integer out of INT2's range"))?
                    .to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(mismatch("an integer")),
            },
            Param::Float(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                #[allow(clippy::cast_possible_truncation)]
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(mismatch("a float")),
            },
            Param::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.as_str().to_sql(ty, out)
                }
                Type::JSON => {
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                Type::JSONB => {
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(mismatch("text")),
            },
            Param::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(mismatch("bytes")),
            },
        }
    }

    /// Every type: whether the value fits is decided per value, in `to_sql`.
    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Whether `e`, from preparing or executing one write's statement, is that write's own fault
/// (it would fail the same way again) rather than the connection's or the transaction's.
pub(super) fn is_write_error(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        if *code == SqlState::IN_FAILED_SQL_TRANSACTION {
            return false;
        }
        let class = &code.code()[..2];
        return matches!(class, "0A" | "21" | "22" | "23" | "42" | "44");
    }
    if e.is_closed() {
        return false;
    }
    // Client-side: a parameter our `ToSql` refused, or the wrong number of parameters.
    let text = e.to_string();
    text.starts_with("error serializing parameter") || text.starts_with("expected ")
}
