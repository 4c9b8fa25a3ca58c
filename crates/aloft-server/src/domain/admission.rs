//! Device admission: a device's status from its auth sets, and what each change of an auth set
//! does. The invariant: whenever the key a device is accepted with changes or stops being
//! accepted, every token issued to the device is revoked.

/// A device's status from the statuses of its auth sets (Mender's rule).
pub fn device_status<'a>(sets: impl IntoIterator<Item = &'a str>) -> &'static str {
    let (mut any, mut accepted, mut preauthorized, mut pending) = (false, false, false, false);
    for s in sets {
        any = true;
        match s {
            "accepted" => accepted = true,
            "preauthorized" => preauthorized = true,
            "pending" => pending = true,
            _ => {}
        }
    }
    if accepted {
        "accepted"
    } else if preauthorized {
        "preauthorized"
    } else if pending {
        "pending"
    } else if any {
        "rejected"
    } else {
        "noauth"
    }
}

/// What a change of auth sets must also do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effects {
    /// The device's other accepted set becomes rejected (one accepted key at a time).
    pub reject_other_accepted: bool,
    /// Every token of the device is revoked.
    pub revoke_tokens: bool,
}

/// Why an auth-set change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Preauthorized sets change only when their device authenticates.
    #[error("a preauthorized set cannot change status by hand")]
    Preauthorized,
    /// Not a status an operator may set.
    #[error("invalid status {0:?}: expected accepted, rejected or pending")]
    BadStatus(String),
}

/// An operator sets an auth set from `current` to `new`: `None` when nothing changes.
pub fn set_status(current: &str, new: &str) -> Result<Option<Effects>, Refusal> {
    if !matches!(new, "accepted" | "rejected" | "pending") {
        return Err(Refusal::BadStatus(new.to_owned()));
    }
    if current == new {
        return Ok(None);
    }
    if current == "preauthorized" {
        return Err(Refusal::Preauthorized);
    }
    Ok(Some(Effects {
        reject_other_accepted: new == "accepted",
        revoke_tokens: current == "accepted" || new == "accepted",
    }))
}

/// What an authentication request does with the auth set its key matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnRequest {
    /// A new key: a new pending set.
    AddPending,
    /// A preauthorized key: the set is accepted now.
    Accept(Effects),
    /// A known key: nothing changes; the device learns the set's status.
    Unchanged,
}

/// An authentication request presented a key whose set has status `found` (`None`: unknown).
pub fn on_request(found: Option<&str>) -> OnRequest {
    match found {
        None => OnRequest::AddPending,
        // The device now authenticates with the preauthorized key: the key it was accepted
        // with before (if any) is replaced, so that key's tokens end here.
        Some("preauthorized") => OnRequest::Accept(Effects {
            reject_other_accepted: true,
            revoke_tokens: true,
        }),
        Some(_) => OnRequest::Unchanged,
    }
}

/// An operator deletes an auth set of status `status`.
pub fn on_delete(status: &str) -> Effects {
    Effects {
        reject_other_accepted: false,
        revoke_tokens: status == "accepted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_status_follows_auth_sets() {
        let cases: [(&[&str], &str); 6] = [
            (&[], "noauth"),
            (&["rejected"], "rejected"),
            (&["rejected", "pending"], "pending"),
            (&["pending", "accepted"], "accepted"),
            (&["preauthorized", "pending"], "preauthorized"),
            (&["preauthorized", "accepted", "rejected"], "accepted"),
        ];
        for (sets, want) in cases {
            assert_eq!(device_status(sets.iter().copied()), want, "{sets:?}");
        }
    }

    #[test]
    fn operator_changes_revoke_tokens_when_the_accepted_key_changes() {
        let revoke = |reject| {
            Some(Effects {
                reject_other_accepted: reject,
                revoke_tokens: true,
            })
        };
        let cases = [
            ("pending", "accepted", Ok(revoke(true))),
            ("rejected", "accepted", Ok(revoke(true))),
            ("accepted", "rejected", Ok(revoke(false))),
            ("accepted", "pending", Ok(revoke(false))),
            ("pending", "rejected", Ok(Some(Effects::default()))),
            ("accepted", "accepted", Ok(None)),
            ("preauthorized", "accepted", Err(Refusal::Preauthorized)),
            (
                "pending",
                "preauthorized",
                Err(Refusal::BadStatus("preauthorized".into())),
            ),
            (
                "pending",
                "noauth",
                Err(Refusal::BadStatus("noauth".into())),
            ),
        ];
        for (current, new, want) in cases {
            assert_eq!(set_status(current, new), want, "{current} -> {new}");
        }
    }

    #[test]
    fn a_preauthorized_key_replaces_the_accepted_one_and_its_tokens() {
        assert_eq!(on_request(None), OnRequest::AddPending);
        assert_eq!(
            on_request(Some("preauthorized")),
            OnRequest::Accept(Effects {
                reject_other_accepted: true,
                revoke_tokens: true
            })
        );
        for st in ["pending", "accepted", "rejected"] {
            assert_eq!(on_request(Some(st)), OnRequest::Unchanged, "{st}");
        }
        assert!(on_delete("accepted").revoke_tokens);
        assert!(!on_delete("pending").revoke_tokens);
    }
}
