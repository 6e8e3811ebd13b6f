//! The role Catalog serves as (`--catalog-role`, default `catalog`): its name checked and
//! quoted, and made to exist as a login without a password and without any power but reading
//! the two tables. Idempotent: what it finds as required it leaves, and it says what it did.

use std::fmt;
use std::str::FromStr;

use tokio_postgres::Transaction;

/// The role Catalog signs in as when serving, when neither the URL nor `--catalog-role` says.
pub const DEFAULT_ROLE: &str = "catalog";

/// The tables the role may read, and nothing else.
pub const TABLES: [&str; 2] = ["products", "customers"];

/// The longest name PostgreSQL keeps (NAMEDATALEN - 1): a longer one would be cut silently.
const MAX_NAME_BYTES: usize = 63;

/// Names PostgreSQL reserves for something else.
const RESERVED: [&str; 5] = [
    "public",
    "none",
    "current_user",
    "session_user",
    "current_role",
];

/// A valid role name: letters, digits, `_`, `-` and `.`, starting with a letter or `_`, at most
/// 63 bytes, not `pg_...` nor a reserved name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl FromStr for RoleName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        let first_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let rest_ok = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !first_ok || !rest_ok {
            return Err(format!(
                "{name:?} is not a role name: letters, digits, `_`, `-` and `.`, starting with \
                 a letter or `_`"
            ));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "role name {name:?} is longer than PostgreSQL's {MAX_NAME_BYTES} bytes"
            ));
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("pg_") || RESERVED.contains(&lower.as_str()) {
            return Err(format!("{name:?} is reserved by PostgreSQL"));
        }
        Ok(Self(name.to_owned()))
    }
}

impl RoleName {
    /// The name as PostgreSQL stores it (case kept).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted as an SQL identifier (`"catalog"`), for statements that take no
    /// parameters (CREATE ROLE, GRANT).
    pub fn quoted(&self) -> String {
        quote_identifier(&self.0)
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `name` as an SQL identifier: in double quotes, inner ones doubled.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The attributes the role must have, as `pg_roles` columns and as the keyword that sets each.
const ATTRIBUTES: [(&str, bool, &str); 6] = [
    ("rolcanlogin", true, "LOGIN"),
    ("rolsuper", false, "NOSUPERUSER"),
    ("rolcreatedb", false, "NOCREATEDB"),
    ("rolcreaterole", false, "NOCREATEROLE"),
    ("rolreplication", false, "NOREPLICATION"),
    ("rolbypassrls", false, "NOBYPASSRLS"),
];

/// Privileges the role must not have on the tables.
const WRITES: [&str; 6] = [
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];

/// What [`ensure_role`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleOutcome {
    /// The role did not exist and was created.
    Created,
    /// The role existed; these attributes were set (empty: it was already as required).
    Existed { changed: Vec<&'static str> },
}

/// Why the role cannot be made what it must be.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error(
        "--catalog-role {0} is the role running migrate, which owns the tables: Catalog must \
         serve as a role that can only read them (create the tables as another role)"
    )]
    IsOwner(String),
    #[error(
        "role {role} can still {privilege} {table} (granted to PUBLIC or to a role it is a \
         member of): revoke it"
    )]
    StillWrites {
        role: String,
        privilege: &'static str,
        table: &'static str,
    },
    #[error("role {role} cannot SELECT {table}")]
    CannotRead { role: String, table: &'static str },
    #[error(
        "role {role} is a member of {member_of}: through SET ROLE it could act as them; Catalog's \
         role must be a member of no role (REVOKE {member_of} FROM {role})"
    )]
    Member { role: String, member_of: String },
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// Makes `role` exist as a login with no password, none of the powers in [`ATTRIBUTES`], and
/// only SELECT on [`TABLES`] (plus USAGE on their schema and CONNECT on the database), inside
/// `tx` (migrate's transaction, after the tables exist).
pub async fn ensure_role(tx: &Transaction<'_>, role: &RoleName) -> Result<RoleOutcome, RoleError> {
    let name = role.as_str();
    let owners = tx
        .query(
            "SELECT DISTINCT tableowner::text FROM pg_tables \
             WHERE schemaname = current_schema() AND tablename = ANY($1)",
            &[&TABLES.as_slice()],
        )
        .await?;
    let current: String = tx.query_one("SELECT current_user::text", &[]).await?.get(0);
    if current == name || owners.iter().any(|row| row.get::<_, String>(0) == name) {
        return Err(RoleError::IsOwner(name.to_owned()));
    }
    let columns = ATTRIBUTES.map(|(column, _, _)| column).join(", ");
    let found = tx
        .query_opt(
            &format!("SELECT {columns} FROM pg_roles WHERE rolname = $1"),
            &[&name],
        )
        .await?;
    let outcome = match found {
        None => {
            let attributes = ATTRIBUTES.map(|(_, _, keyword)| keyword).join(" ");
            tx.batch_execute(&format!(
                "CREATE ROLE {} {attributes} PASSWORD NULL",
                role.quoted()
            ))
            .await?;
            RoleOutcome::Created
        }
        Some(row) => {
            let changed: Vec<&'static str> = ATTRIBUTES
                .iter()
                .enumerate()
                .filter(|(i, (_, wanted, _))| row.get::<_, bool>(*i) != *wanted)
                .map(|(_, (_, _, keyword))| *keyword)
                .collect();
            if !changed.is_empty() {
                tx.batch_execute(&format!(
                    "ALTER ROLE {} {}",
                    role.quoted(),
                    changed.join(" ")
                ))
                .await?;
            }
            let mut changed = changed;
            if has_password(tx, name).await? {
                tx.batch_execute(&format!("ALTER ROLE {} PASSWORD NULL", role.quoted()))
                    .await?;
                changed.push("PASSWORD NULL");
            }
            RoleOutcome::Existed { changed }
        }
    };
    grant_read_only(tx, role).await?;
    Ok(outcome)
}

/// Whether the role has a password. Only a superuser may read `pg_authid`; anyone else clears
/// it blindly (allowed to a role with CREATEROLE).
async fn has_password(tx: &Transaction<'_>, name: &str) -> Result<bool, tokio_postgres::Error> {
    let readable: bool = tx
        .query_one("SELECT has_table_privilege('pg_authid', 'SELECT')", &[])
        .await?
        .get(0);
    if !readable {
        return Ok(true);
    }
    let row = tx
        .query_one(
            "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1",
            &[&name],
        )
        .await?;
    Ok(row.get(0))
}

/// SELECT on the tables and nothing else on them; USAGE on their schema, CONNECT on the
/// database; then checks that the role, through PUBLIC or any role it is a member of, has no
/// other privilege on them.
async fn grant_read_only(tx: &Transaction<'_>, role: &RoleName) -> Result<(), RoleError> {
    let tables = TABLES.join(", ");
    let quoted = role.quoted();
    tx.batch_execute(&format!(
        "REVOKE ALL ON TABLE {tables} FROM {quoted}; GRANT SELECT ON TABLE {tables} TO {quoted};"
    ))
    .await?;
    // The schema's and database's names come from the server, quoted there (%I).
    // The role finds the tables where migrate made them, whatever its own search_path.
    for grant in [
        "SELECT format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), $1::text)",
        "SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), $1::text)",
        "SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', $1::text, \
         current_database(), current_schema())",
    ] {
        let statement: String = tx.query_one(grant, &[&role.as_str()]).await?.get(0);
        tx.batch_execute(&statement).await?;
    }
    // A member of another role may SET ROLE to it (even NOINHERIT), and so write where that
    // role may: privileges on the tables alone do not show it.
    let member_of = tx
        .query_opt(
            "SELECT roleid::regrole::text FROM pg_auth_members WHERE member = $1::text::regrole \
             LIMIT 1",
            &[&role.as_str()],
        )
        .await?;
    if let Some(row) = member_of {
        return Err(RoleError::Member {
            role: role.to_string(),
            member_of: row.get(0),
        });
    }
    for table in TABLES {
        let can_read: bool = tx
            .query_one(
                "SELECT has_table_privilege($1::name, $2::text, 'SELECT')",
                &[&role.as_str(), &table],
            )
            .await?
            .get(0);
        if !can_read {
            return Err(RoleError::CannotRead {
                role: role.to_string(),
                table,
            });
        }
        for privilege in WRITES {
            let can: bool = tx
                .query_one(
                    "SELECT has_table_privilege($1::name, $2::text, $3::text)",
                    &[&role.as_str(), &table, &privilege],
                )
                .await?
                .get(0);
            if can {
                return Err(RoleError::StillWrites {
                    role: role.to_string(),
                    privilege,
                    table,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_checked() {
        for good in [
            "catalog",
            "Catalog_2",
            "_shop",
            "catalog-ro",
            "shop.catalog",
        ] {
            assert_eq!(good.parse::<RoleName>().unwrap().as_str(), good);
        }
        for bad in [
            "",
            "2catalog",
            "cat alog",
            "cat\"alog",
            "catalog;drop",
            "pg_monitor",
            "PG_x",
            "public",
            "CURRENT_USER",
            "é",
        ] {
            assert!(bad.parse::<RoleName>().is_err(), "{bad:?} was accepted");
        }
        assert!("a".repeat(63).parse::<RoleName>().is_ok());
        let err = "a".repeat(64).parse::<RoleName>().unwrap_err();
        assert!(err.contains("63 bytes"), "{err}");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("catalog"), "\"catalog\"");
        assert_eq!(quote_identifier("Cat\"x"), "\"Cat\"\"x\"");
        let role: RoleName = "Catalog-ro".parse().unwrap();
        assert_eq!(role.quoted(), "\"Catalog-ro\"");
    }

    #[test]
    fn a_new_role_gets_every_attribute_and_no_power() {
        let keywords = ATTRIBUTES.map(|(_, _, keyword)| keyword);
        assert_eq!(
            keywords,
            [
                "LOGIN",
                "NOSUPERUSER",
                "NOCREATEDB",
                "NOCREATEROLE",
                "NOREPLICATION",
                "NOBYPASSRLS"
            ]
        );
        // Each keyword says what its column must be.
        for (column, wanted, keyword) in ATTRIBUTES {
            assert!(column.starts_with("rol"));
            assert_eq!(wanted, !keyword.starts_with("NO"), "{keyword}");
        }
    }
}
