//! A query builder that numbers its placeholders `$1, $2, …`, which `SQLite` and `PostgreSQL`
//! both read. (sqlx's own builder writes `?` under the `Any` driver, which `PostgreSQL` refuses.)

use std::fmt::{Display, Write as _};

use sqlx::any::{Any, AnyArguments};
use sqlx::query::{Query, QueryScalar};
use sqlx::{Arguments as _, Encode, Type};

use super::{StoreError, StoreResult};

/// SQL text with its bound values.
#[derive(Default)]
pub struct Qb {
    sql: String,
    args: AnyArguments<'static>,
    binds: usize,
    error: Option<String>,
}

impl Qb {
    /// Starts with `sql`.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            ..Self::default()
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, sql: impl Display) -> &mut Self {
        let _ = write!(self.sql, "{sql}");
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'static + Send + Encode<'static, Any> + Type<Any>,
    {
        self.binds += 1;
        let _ = write!(self.sql, "${}", self.binds);
        if let Err(e) = self.args.add(value)
            && self.error.is_none()
        {
            self.error = Some(e.to_string());
        }
        self
    }

    /// Appends `(v1, v2, …)` as placeholders; an empty list becomes `(NULL)`, which matches
    /// nothing, so `x IN ()` never reaches the database as a syntax error.
    pub fn push_list<T>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self
    where
        T: 'static + Send + Encode<'static, Any> + Type<Any>,
    {
        self.push("(");
        let mut first = true;
        for v in values {
            if !first {
                self.push(", ");
            }
            first = false;
            self.push_bind(v);
        }
        if first {
            self.push("NULL");
        }
        self.push(")")
    }

    /// The statement, ready to run.
    pub fn build(&mut self) -> StoreResult<Query<'_, Any, AnyArguments<'_>>> {
        if let Some(e) = self.error.take() {
            return Err(StoreError::Backend(format!("binding a value: {e}")));
        }
        Ok(sqlx::query_with(&self.sql, std::mem::take(&mut self.args)))
    }

    /// The statement, returning one column.
    pub fn build_scalar<O>(&mut self) -> StoreResult<QueryScalar<'_, Any, O, AnyArguments<'_>>>
    where
        (O,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        if let Some(e) = self.error.take() {
            return Err(StoreError::Backend(format!("binding a value: {e}")));
        }
        Ok(sqlx::query_scalar_with(
            &self.sql,
            std::mem::take(&mut self.args),
        ))
    }

    /// The SQL text (tests).
    #[cfg(test)]
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

#[cfg(test)]
mod tests {
    use super::Qb;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut q = Qb::new("SELECT 1 WHERE a = ");
        q.push_bind(1_i64)
            .push(" AND b IN ")
            .push_list(["x".to_owned(), "y".to_owned()]);
        q.push(" AND c IN ").push_list(Vec::<String>::new());
        assert_eq!(
            q.sql(),
            "SELECT 1 WHERE a = $1 AND b IN ($2, $3) AND c IN (NULL)"
        );
    }
}
