//! The few places where `SQLite` and `PostgreSQL` need different SQL: how a write transaction
//! begins, row locks, and the JSON functions of inventory filters. Everything else in
//! [`super::sql`] is written once.

use super::query::Qb;

/// Which database a [`super::sql::SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Embedded, one writer at a time.
    Sqlite,
    /// A server shared by several replicas.
    Postgres,
}

impl Dialect {
    /// The statement that opens a write transaction. `SQLite` takes its write lock at once, so
    /// two writers never deadlock upgrading from read to write.
    pub fn begin(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    /// The suffix that locks the selected rows until the transaction ends. `SQLite` needs none:
    /// its one writer already serialises every write transaction.
    pub fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// The statement that wakes the other replicas' feed listeners when the transaction
    /// commits (`SQLite`: none; one process serves it).
    pub fn notify_feed(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("SELECT pg_notify('aloft_feed', '')"),
        }
    }

    /// The JSON text of a text column (`NULL` stays `NULL`).
    pub fn json_quote(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("json_quote({column})"),
            Self::Postgres => format!("(to_jsonb({column})::text)"),
        }
    }

    /// The JSON text of an array with one `[name, value_json, description, ts]` per
    /// inventory attribute of the device whose id is `device_id` (`[]` when it has none):
    /// a device's inventory as one value, what `devices.inventory_json` keeps.
    pub fn inventory_json(self, device_id: &str) -> String {
        let from =
            format!("FROM attributes a WHERE a.device_id = {device_id} AND a.scope = 'inventory'");
        match self {
            Self::Sqlite => format!(
                "(SELECT json_group_array(json_array(a.name, a.value_json, a.description, a.ts)) {from})"
            ),
            Self::Postgres => format!(
                "(SELECT COALESCE(json_agg(json_build_array(a.name, a.value_json, a.description, a.ts))::text, '[]') {from})"
            ),
        }
    }

    /// The JSON text of an array with one `[id, created_ts, inventory]` per row of the
    /// devices aliased `d` (`[]` for none): a batch of inventories in one row, since a row
    /// costs the driver more than its bytes. The stored inventory texts are joined as they
    /// are, not parsed again.
    pub fn inventories_json(self) -> &'static str {
        match self {
            Self::Sqlite => {
                "'[' || COALESCE(group_concat('[' || json_quote(d.id) || ',' || d.created_ts || ',' || d.inventory_json || ']', ','), '') || ']'"
            }
            Self::Postgres => {
                "'[' || COALESCE(string_agg('[' || to_json(d.id)::text || ',' || d.created_ts || ',' || d.inventory_json || ']', ','), '') || ']'"
            }
        }
    }

    /// Appends `IN (...)` for the texts `values`, bound as one JSON array: a thousand ids
    /// cost one bind, not a thousand.
    pub fn push_in_texts(self, qb: &mut Qb, values: &[String]) {
        let list = serde_json::to_string(values).unwrap_or_else(|_| "[]".into());
        match self {
            Self::Sqlite => qb
                .push(" IN (SELECT value FROM json_each(")
                .push_bind(list)
                .push("))"),
            Self::Postgres => qb
                .push(" IN (SELECT jsonb_array_elements_text(CAST(")
                .push_bind(list)
                .push(" AS jsonb)))"),
        };
    }

    /// The JSON text of member `key` of the JSON object in `column` (`NULL` when absent).
    pub fn push_json_member(self, qb: &mut Qb, column: &str, key: &str) {
        match self {
            Self::Sqlite => {
                qb.push(format!("json_quote(json_extract({column}, "))
                    .push_bind(format!("$.\"{}\"", key.replace('"', "")))
                    .push("))");
            }
            Self::Postgres => {
                qb.push(format!("(({column})::jsonb -> "))
                    .push_bind(key.to_owned())
                    .push(")::text");
            }
        }
    }

    /// Whether the JSON text `expr` is an array that holds the JSON text `value`.
    pub fn push_json_array_holds(self, qb: &mut Qb, expr: &dyn Fn(&mut Qb), value: &str) {
        match self {
            Self::Sqlite => {
                qb.push("EXISTS (SELECT 1 FROM json_each(");
                expr(qb);
                qb.push(") j WHERE json_type(");
                expr(qb);
                qb.push(") = 'array' AND json_quote(j.value) = ")
                    .push_bind(value.to_owned())
                    .push(")");
            }
            Self::Postgres => {
                qb.push("(jsonb_typeof((");
                expr(qb);
                qb.push(")::jsonb) = 'array' AND (");
                expr(qb);
                qb.push(")::jsonb @> jsonb_build_array(CAST(")
                    .push_bind(value.to_owned())
                    .push(" AS jsonb)))");
            }
        }
    }

    /// The JSON text `expr` as a number (`NULL` unless it is one), for comparisons.
    pub fn push_json_number(self, qb: &mut Qb, expr: &dyn Fn(&mut Qb)) {
        self.push_json_scalar(qb, expr, "number", "float8");
    }

    /// The JSON text `expr` as a string (`NULL` unless it is one), for comparisons.
    pub fn push_json_string(self, qb: &mut Qb, expr: &dyn Fn(&mut Qb)) {
        self.push_json_scalar(qb, expr, "string", "text");
    }

    fn push_json_scalar(self, qb: &mut Qb, expr: &dyn Fn(&mut Qb), kind: &str, sql_type: &str) {
        match self {
            Self::Sqlite => {
                let sqlite_kind = if kind == "number" {
                    "('integer','real')"
                } else {
                    "('text')"
                };
                qb.push("(CASE WHEN json_type(");
                expr(qb);
                qb.push(format!(") IN {sqlite_kind} THEN json_extract("));
                expr(qb);
                qb.push(", '$') END)");
            }
            Self::Postgres => {
                qb.push("(CASE WHEN jsonb_typeof((");
                expr(qb);
                qb.push(format!(")::jsonb) = '{kind}' THEN CAST((("));
                expr(qb);
                qb.push(format!(")::jsonb #>> '{{}}') AS {sql_type}) END)"));
            }
        }
    }
}
