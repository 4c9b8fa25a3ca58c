//! Inventory filters: which predicates a search or a saved filter (a dynamic group) may
//! hold. The store turns checked predicates into SQL.

use serde_json::Value;

use crate::store::Filter;

/// The scopes an attribute may live in.
pub const SCOPES: [&str; 5] = ["inventory", "identity", "system", "tags", "monitor"];
/// The operators a predicate may use.
pub const OPERATORS: [&str; 9] = [
    "$eq", "$ne", "$in", "$nin", "$exists", "$gt", "$gte", "$lt", "$lte",
];
/// Most predicates in one query or saved filter.
pub const MAX_FILTERS: usize = 64;
/// Most values over all of a query's predicates (and most device ids in one query).
pub const MAX_QUERY_VALUES: usize = 10_000;
/// Longest attribute name a predicate may name.
const MAX_ATTRIBUTE: usize = 1024;

/// Why `filters` cannot be searched for, or nothing.
pub fn check(filters: &[Filter]) -> Result<(), String> {
    if filters.len() > MAX_FILTERS {
        return Err(format!("too many filters (at most {MAX_FILTERS})"));
    }
    let mut values = 0usize;
    for f in filters {
        if !SCOPES.contains(&f.scope.as_str()) {
            return Err(format!("unknown scope {:?}", f.scope));
        }
        if f.attribute.is_empty() || f.attribute.len() > MAX_ATTRIBUTE {
            return Err(format!(
                "an attribute name must have 1 to {MAX_ATTRIBUTE} characters"
            ));
        }
        if !OPERATORS.contains(&f.op.as_str()) {
            return Err(format!(
                "unknown operator {:?} (use one of {})",
                f.op,
                OPERATORS.join(", ")
            ));
        }
        values += match (f.op.as_str(), &f.value) {
            ("$in" | "$nin", Value::Array(items)) => items.len(),
            ("$in" | "$nin", _) => return Err(format!("{} needs a list value", f.op)),
            ("$exists", Value::Bool(_)) => 1,
            ("$exists", _) => return Err("$exists needs true or false".into()),
            (_, Value::Array(_) | Value::Object(_) | Value::Null) => {
                return Err(format!("{} needs a single text or number value", f.op));
            }
            _ => 1,
        };
    }
    if values > MAX_QUERY_VALUES {
        return Err(format!(
            "too many filter values (at most {MAX_QUERY_VALUES})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{MAX_FILTERS, check};
    use crate::store::Filter;

    fn term(scope: &str, attribute: &str, op: &str, value: Value) -> Filter {
        Filter {
            scope: scope.into(),
            attribute: attribute.into(),
            op: op.into(),
            value,
        }
    }

    #[test]
    fn predicates_are_checked_before_any_search() {
        let ok = |f: Filter| (vec![f], true);
        let bad = |f: Filter| (vec![f], false);
        let table = [
            ok(term("inventory", "site", "$eq", json!("oslo"))),
            ok(term("tags", "ring", "$in", json!(["a", "b"]))),
            ok(term("inventory", "cpus", "$gte", json!(4))),
            ok(term("identity", "mac", "$exists", json!(true))),
            ok(term("system", "group", "$nin", json!([]))),
            bad(term("attic", "site", "$eq", json!("oslo"))),
            bad(term("inventory", "", "$eq", json!("oslo"))),
            bad(term("inventory", "site", "$regex", json!("os.*"))),
            bad(term("inventory", "site", "$in", json!("oslo"))),
            bad(term("inventory", "site", "$exists", json!("yes"))),
            bad(term("inventory", "site", "$eq", json!(["oslo"]))),
            bad(term("inventory", "site", "$eq", Value::Null)),
            (
                vec![term("inventory", "site", "$eq", json!("x")); MAX_FILTERS],
                true,
            ),
            (
                vec![term("inventory", "site", "$eq", json!("x")); MAX_FILTERS + 1],
                false,
            ),
            (
                vec![term("inventory", "id", "$in", json!(vec![1; 10_001]))],
                false,
            ),
        ];
        for (filters, want) in table {
            assert_eq!(check(&filters).is_ok(), want, "{:?}", filters.first());
        }
    }
}
