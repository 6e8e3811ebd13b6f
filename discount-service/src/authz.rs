//! Authorization by identity: which services may call which RPC.
//!
//! A certificate from our CA proves that a caller is one of ours; its URI subjectAltName
//! (`spiffe://shop.local/<service>`) says which one. Discount keeps an allow-list of those
//! identities per RPC, by default only Catalog for every RPC. Health and reflection are open to
//! any caller with a certificate from our CA.

use std::collections::{HashMap, HashSet};
use std::fmt;

use tonic::Status;

/// The identity Catalog's certificate carries.
pub const CATALOG_IDENTITY: &str = "spiffe://shop.local/catalog";

/// The RPCs an allow-list rule may name (`*` stands for all of them).
pub const RPCS: [&str; 4] = [
    "ApplyDiscount",
    "ApplyDiscountBatch",
    "ApplyDiscountGroups",
    "ApplyDiscountPrices",
];

/// Which identities may call which RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    per_rpc: HashMap<&'static str, HashSet<String>>,
}

/// A rule that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid --allow rule {rule:?}: {reason} (expected RPC=IDENTITY[,IDENTITY...], RPC being one of ApplyDiscount, ApplyDiscountBatch, ApplyDiscountGroups, ApplyDiscountPrices or *)"
)]
pub struct RuleError {
    rule: String,
    reason: &'static str,
}

impl Default for AllowList {
    /// Only Catalog, for every RPC.
    fn default() -> Self {
        Self::parse([format!("*={CATALOG_IDENTITY}")]).unwrap_or_else(|_| Self {
            per_rpc: HashMap::new(),
        })
    }
}

impl AllowList {
    /// Builds the list from rules such as `*=spiffe://shop.local/catalog` or
    /// `ApplyDiscount=spiffe://shop.local/catalog,spiffe://shop.local/reports`. Rules add up.
    pub fn parse<S: AsRef<str>>(rules: impl IntoIterator<Item = S>) -> Result<Self, RuleError> {
        let mut per_rpc: HashMap<&'static str, HashSet<String>> = HashMap::new();
        for rule in rules {
            let rule = rule.as_ref().trim();
            let error = |reason| RuleError {
                rule: rule.to_owned(),
                reason,
            };
            let (rpc, identities) = rule.split_once('=').ok_or_else(|| error("no '='"))?;
            let rpcs: Vec<&'static str> = match rpc.trim() {
                "*" => RPCS.to_vec(),
                name => vec![
                    *RPCS
                        .iter()
                        .find(|known| **known == name)
                        .ok_or_else(|| error("unknown RPC"))?,
                ],
            };
            let identities: Vec<String> = identities
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect();
            if identities.is_empty() {
                return Err(error("no identity"));
            }
            if let Some(bad) = identities.iter().find(|id| !id.contains("://")) {
                let _ = bad;
                return Err(error(
                    "identities are URIs such as spiffe://shop.local/catalog",
                ));
            }
            for rpc in rpcs {
                per_rpc
                    .entry(rpc)
                    .or_default()
                    .extend(identities.iter().cloned());
            }
        }
        Ok(Self { per_rpc })
    }

    /// Whether `caller` (the URI SAN of its certificate, if any) may call `rpc`; the refusal
    /// names the caller.
    pub fn check(&self, rpc: &str, caller: Option<&str>) -> Result<(), Status> {
        let Some(caller) = caller else {
            return Err(Status::permission_denied(format!(
                "{rpc}: the client certificate carries no service identity (URI subjectAltName)"
            )));
        };
        let allowed = self
            .per_rpc
            .get(rpc)
            .is_some_and(|identities| identities.contains(caller));
        if allowed {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{caller} is not allowed to call {rpc}"
            )))
        }
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rules: Vec<String> = self
            .per_rpc
            .iter()
            .map(|(rpc, ids)| {
                let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                ids.sort_unstable();
                format!("{rpc}={}", ids.join(","))
            })
            .collect();
        rules.sort();
        f.write_str(&rules.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn default_allows_only_catalog_everywhere() {
        let list = AllowList::default();
        for rpc in RPCS {
            assert!(list.check(rpc, Some(CATALOG_IDENTITY)).is_ok());
            let denied = list
                .check(rpc, Some("spiffe://shop.local/reports"))
                .unwrap_err();
            assert_eq!(denied.code(), Code::PermissionDenied);
            assert!(denied.message().contains("spiffe://shop.local/reports"));
        }
    }

    #[test]
    fn caller_without_identity_is_denied() {
        let denied = AllowList::default()
            .check("ApplyDiscount", None)
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.message().contains("no service identity"));
    }

    #[test]
    fn rules_are_per_rpc_and_add_up() {
        let list = AllowList::parse([
            "*=spiffe://shop.local/catalog",
            "ApplyDiscount=spiffe://shop.local/reports, spiffe://shop.local/audit",
        ])
        .unwrap();
        assert!(
            list.check("ApplyDiscount", Some("spiffe://shop.local/reports"))
                .is_ok()
        );
        assert!(
            list.check("ApplyDiscount", Some("spiffe://shop.local/audit"))
                .is_ok()
        );
        assert!(
            list.check("ApplyDiscountBatch", Some("spiffe://shop.local/reports"))
                .is_err()
        );
        assert!(
            list.check("ApplyDiscountBatch", Some(CATALOG_IDENTITY))
                .is_ok()
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in ["catalog", "Nope=spiffe://x/y", "*=", "*=catalog"] {
            assert!(AllowList::parse([bad]).is_err(), "{bad:?}");
        }
    }
}
