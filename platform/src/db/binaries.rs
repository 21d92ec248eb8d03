//! Finding the PostgreSQL server binaries (`initdb`, `postgres`) on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest PostgreSQL major version Bulkhead runs on.
pub const MIN_MAJOR_VERSION: u32 = 14;

/// A directory holding a usable `initdb` and `postgres`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    pub bin_dir: PathBuf,
    pub major_version: u32,
}

impl PgBinaries {
    pub fn initdb(&self) -> PathBuf {
        self.bin_dir.join("initdb")
    }

    pub fn postgres(&self) -> PathBuf {
        self.bin_dir.join("postgres")
    }
}

/// Where to look, in order. Split out so the search itself can be tested without
/// depending on what this machine happens to have installed.
#[derive(Debug, Clone, Default)]
pub struct SearchPlan {
    pub candidates: Vec<PathBuf>,
}

impl SearchPlan {
    /// The real search: an explicit directory if given, else `PATH`, `pg_config --bindir`,
    /// Debian's `/usr/lib/postgresql/<ver>/bin`, RHEL's `/usr/pgsql-<ver>/bin`, Homebrew, and
    /// the source-install default `/usr/local/pgsql/bin`. Newer versions come first.
    pub fn for_this_machine(explicit: Option<&Path>) -> Self {
        if let Some(dir) = explicit {
            return Self { candidates: vec![dir.to_path_buf()] };
        }
        let mut candidates: Vec<PathBuf> =
            std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default();
        if let Some(dir) = pg_config_bindir() {
            candidates.push(dir);
        }
        candidates.extend(versioned_dirs(Path::new("/usr/lib/postgresql"), "", "bin"));
        candidates.extend(versioned_dirs(Path::new("/usr"), "pgsql-", "bin"));
        for prefix in ["/opt/homebrew/opt", "/usr/local/opt"] {
            candidates.extend(versioned_dirs(Path::new(prefix), "postgresql@", "bin"));
            candidates.push(Path::new(prefix).join("postgresql/bin"));
        }
        candidates.push(PathBuf::from("/opt/homebrew/bin"));
        candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
        Self { candidates }
    }
}

/// Why no binaries could be used; the message tells a newcomer what to do next.
#[derive(Debug, thiserror::Error)]
#[error(
    "PostgreSQL server binaries (initdb and postgres, version {MIN_MAJOR_VERSION} or newer) were not found.\n\
     Looked in: {searched}.{rejected}\n\
     Either install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install postgresql-server`; \
     macOS: `brew install postgresql@16`) or point BULKHEAD_PG_BIN_DIR at its bin directory, \
     or set DATABASE_URL to use a PostgreSQL server you already run."
)]
pub struct BinariesNotFound {
    searched: String,
    rejected: String,
}

/// Finds the first candidate directory with both server binaries at a supported version.
///
/// # Errors
/// [`BinariesNotFound`] naming every place searched and any too-old version seen.
pub fn find(plan: &SearchPlan) -> Result<PgBinaries, BinariesNotFound> {
    let mut rejected = Vec::new();
    for dir in &plan.candidates {
        let (initdb, postgres) = (dir.join("initdb"), dir.join("postgres"));
        if !is_executable(&initdb) || !is_executable(&postgres) {
            continue;
        }
        // Symlinks such as /usr/local/bin/initdb point into the real install; use that so
        // initdb and postgres always come from the same version.
        let bin_dir = std::fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| dir.clone());
        match server_major_version(&bin_dir.join("postgres")) {
            Some(major) if major >= MIN_MAJOR_VERSION => {
                return Ok(PgBinaries { bin_dir, major_version: major });
            }
            Some(major) => rejected.push(format!("{} is version {major}", bin_dir.display())),
            None => rejected.push(format!("{} did not report a version", bin_dir.display())),
        }
    }
    let searched = if plan.candidates.is_empty() {
        "nowhere (no candidate directories)".to_owned()
    } else {
        plan.candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    };
    let rejected =
        if rejected.is_empty() { String::new() } else { format!("\nFound but unusable: {}.", rejected.join("; ")) };
    Err(BinariesNotFound { searched, rejected })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `<parent>/<prefix><version>/<leaf>` for every version present, newest first.
fn versioned_dirs(parent: &Path, prefix: &str, leaf: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.strip_prefix(prefix)?;
            let major = version.split('.').next()?.parse::<u32>().ok()?;
            Some((major, entry.path().join(leaf)))
        })
        .collect();
    found.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    found.into_iter().map(|(_, path)| path).collect()
}

/// Parses `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into `15`.
fn server_major_version(postgres: &Path) -> Option<u32> {
    let output = Command::new(postgres).arg("--version").output().ok()?;
    parse_major_version(&String::from_utf8_lossy(&output.stdout))
}

pub(crate) fn parse_major_version(text: &str) -> Option<u32> {
    let version = text.split(')').nth(1)?.split_whitespace().next()?;
    version.split(['.', 'b', 'r']).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings_of_common_builds_parse() {
        assert_eq!(parse_major_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), Some(15));
        assert_eq!(parse_major_version("postgres (PostgreSQL) 17.2\n"), Some(17));
        assert_eq!(parse_major_version("postgres (PostgreSQL) 18beta1\n"), Some(18));
        assert_eq!(parse_major_version("garbage"), None);
    }

    #[test]
    fn missing_binaries_give_one_message_saying_what_to_do() {
        let empty = tempfile::tempdir().unwrap();
        let plan = SearchPlan { candidates: vec![empty.path().to_path_buf()] };
        let message = find(&plan).unwrap_err().to_string();
        assert!(message.contains("were not found"), "{message}");
        assert!(message.contains(&empty.path().display().to_string()), "{message}");
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("DATABASE_URL"), "{message}");
    }

    #[test]
    fn the_search_prefers_the_first_usable_directory() {
        let empty = tempfile::tempdir().unwrap();
        let real = SearchPlan::for_this_machine(None);
        let Ok(found) = find(&real) else {
            return; // this machine has no PostgreSQL; the message test above covers that case
        };
        let plan = SearchPlan { candidates: vec![empty.path().to_path_buf(), found.bin_dir.clone()] };
        assert_eq!(find(&plan).unwrap(), found);
        assert!(found.major_version >= MIN_MAJOR_VERSION);
    }
}
