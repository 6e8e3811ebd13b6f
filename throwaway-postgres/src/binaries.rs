//! Finding a PostgreSQL installation: the highest version under `/usr/lib/postgresql/*/bin`
//! (Debian's layout, several versions side by side), else `pg_ctl` on `PATH`, followed through
//! symbolic links to the folder that holds the rest of that installation.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Where Debian installs each PostgreSQL version (`<root>/<version>/bin`).
pub const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// One PostgreSQL installation's programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// The folder holding `initdb`, `pg_ctl` and `postgres`.
    pub bin_dir: PathBuf,
    /// `psql` from the same installation, or from `PATH` if it has none.
    pub psql: PathBuf,
}

impl Binaries {
    /// The installation's `initdb`.
    pub fn initdb(&self) -> PathBuf {
        self.bin_dir.join("initdb")
    }

    /// The installation's `pg_ctl`.
    pub fn pg_ctl(&self) -> PathBuf {
        self.bin_dir.join("pg_ctl")
    }

    /// The installation to use on this machine: the highest version under [`DEBIAN_ROOT`], else
    /// the one whose `pg_ctl` is on `PATH`.
    pub fn find() -> Result<Self, Error> {
        Self::find_in(Path::new(DEBIAN_ROOT), std::env::var_os("PATH").as_deref())
    }

    /// As [`Binaries::find`], with another root for versions and another `PATH`.
    pub fn find_in(versions_root: &Path, path: Option<&OsStr>) -> Result<Self, Error> {
        let bin_dir = highest_version(versions_root)
            .or_else(|| on_path("pg_ctl", path).and_then(|pg_ctl| installation_of(&pg_ctl)))
            .ok_or(Error::NotInstalled)?;
        let psql = Some(bin_dir.join("psql"))
            .filter(|p| p.is_file())
            .or_else(|| on_path("psql", path))
            .ok_or(Error::NotInstalled)?;
        Ok(Self { bin_dir, psql })
    }
}

/// Whether `dir` holds a server installation's programs.
fn is_installation(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|program| dir.join(program).is_file())
}

/// `<root>/<version>/bin` of the highest version (`15` > `9.6`) that is a whole installation.
fn highest_version(root: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let version: Vec<u32> = name
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let bin = root.join(&name).join("bin");
            is_installation(&bin).then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// The first `program` on `path`.
fn on_path(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The folder of the installation a `pg_ctl` found on `PATH` belongs to: links (such as
/// `/usr/local/bin/pg_ctl` pointing into `/usr/lib/postgresql/15/bin`) are followed, since
/// `initdb` and `postgres` sit beside the real file.
fn installation_of(pg_ctl: &Path) -> Option<PathBuf> {
    let real = pg_ctl.canonicalize().ok()?;
    let dir = real.parent()?.to_path_buf();
    is_installation(&dir).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn install(dir: &Path, programs: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        for program in programs {
            fs::write(dir.join(program), "").unwrap();
        }
    }

    const SERVER: [&str; 4] = ["initdb", "pg_ctl", "postgres", "psql"];

    #[test]
    fn the_highest_whole_version_wins() {
        let root = tempfile::tempdir().unwrap();
        install(&root.path().join("9.6/bin"), &SERVER);
        install(&root.path().join("15/bin"), &SERVER);
        install(&root.path().join("13/bin"), &SERVER);
        // A newer client-only installation (psql, no server) is not a server installation.
        install(&root.path().join("16/bin"), &["psql"]);
        let found = Binaries::find_in(root.path(), None).unwrap();
        assert_eq!(found.bin_dir, root.path().join("15/bin"));
        assert_eq!(found.psql, root.path().join("15/bin/psql"));
        assert_eq!(found.pg_ctl(), root.path().join("15/bin/pg_ctl"));
    }

    #[test]
    fn a_pg_ctl_link_on_path_leads_to_its_installation() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("opt/pg/bin");
        install(&real, &["initdb", "pg_ctl", "postgres"]);
        let client = root.path().join("client");
        install(&client, &["psql"]);
        let links = root.path().join("links");
        fs::create_dir_all(&links).unwrap();
        std::os::unix::fs::symlink(real.join("pg_ctl"), links.join("pg_ctl")).unwrap();
        let path = std::env::join_paths([&links, &client]).unwrap();
        let found = Binaries::find_in(&root.path().join("none"), Some(&path)).unwrap();
        assert_eq!(found.bin_dir, real.canonicalize().unwrap());
        assert_eq!(found.psql, client.join("psql"));
    }

    #[test]
    fn nothing_installed_is_one_line_naming_the_package() {
        let root = tempfile::tempdir().unwrap();
        let err = Binaries::find_in(root.path(), Some(OsStr::new(""))).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::NotInstalled));
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.contains("Debian's `postgresql` package"),
            "{message}"
        );
    }
}
