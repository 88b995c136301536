//! The data directory and the files holding secrets: the data directory is
//! created `0700`, a SQLite database `0600` (created empty here, so SQLite
//! and its `-wal`/`-shm` files inherit the mode), the key file is `0600`
//! (see [`crate::secret_box`]); at startup anything readable by group or
//! others is reported, so an operator sees a copy made with a wide umask.
//! On non-Unix systems the modes do not apply and nothing is reported.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// The mode of the data directory Trueup creates.
pub const DATA_DIR_MODE: u32 = 0o700;

/// The mode of the database and key files Trueup creates.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// Creates the data directory (`0700`) and an empty SQLite database file
/// (`0600`) when missing, then returns one warning per path that group or
/// others may read or write: the data directory, the SQLite database, the
/// key file and `config_file`.
///
/// # Errors
/// What could not be created, and where.
pub fn prepare(config: &Config, config_file: Option<&Path>) -> Result<Vec<String>, String> {
    create_dir(&config.data_dir)?;
    let database = sqlite_file(&config.store_url());
    if let Some(database) = &database {
        create_file(database)?;
    }
    let mut checked: Vec<(&str, PathBuf)> = vec![("the data directory", config.data_dir.clone())];
    if let Some(database) = database {
        checked.push(("the database", database));
    }
    checked.push((
        "the secret key file",
        config.data_dir.join(crate::secret_box::KEY_FILE),
    ));
    if let Some(file) = config_file {
        checked.push(("the configuration file", file.to_owned()));
    }
    Ok(checked
        .iter()
        .filter_map(|(what, path)| too_wide(what, path))
        .collect())
}

/// The file of a `sqlite://` URL (without its query), if it is one.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

#[cfg(unix)]
fn create_dir(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(path)
        .map_err(|e| format!("cannot create the data directory {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn create_dir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path)
        .map_err(|e| format!("cannot create the data directory {}: {e}", path.display()))
}

#[cfg(unix)]
fn create_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SECRET_FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        // Created meanwhile by another process: its mode is checked below.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!(
            "cannot create the database {}: {e}",
            path.display()
        )),
    }
}

#[cfg(not(unix))]
fn create_file(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// A warning if `path` exists and group or others have any access to it.
#[cfg(unix)]
fn too_wide(what: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    let wanted = if path.is_dir() {
        DATA_DIR_MODE
    } else {
        SECRET_FILE_MODE
    };
    (mode & 0o077 != 0).then(|| {
        format!(
            "{what} {} has mode {mode:o}: others on this machine may read it; run chmod {wanted:o} {}",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn too_wide(_what: &str, _path: &Path) -> Option<String> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    /// Issue 17 (8): a fresh data directory is 0700 and the database 0600;
    /// wider modes are reported with the chmod that fixes them.
    #[test]
    fn the_data_dir_and_database_are_private_and_wide_modes_are_reported() {
        let root = tempfile::tempdir().expect("tempdir");
        let data = root.path().join("data");
        let config = Config {
            data_dir: data.clone(),
            ..Config::default()
        };
        let warnings = prepare(&config, None).expect("prepared");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(mode(&data), 0o700);
        let database = data.join("trueup.db");
        assert_eq!(mode(&database), 0o600);

        let config_file = root.path().join("trueup.toml");
        std::fs::write(&config_file, "").expect("config");
        std::fs::set_permissions(&config_file, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let warnings = prepare(&config, Some(&config_file)).expect("prepared");
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(warnings[0].starts_with("the data directory") && warnings[0].contains("chmod 700"));
        assert!(warnings[1].starts_with("the database") && warnings[1].contains("chmod 600"));
        assert!(warnings[2].starts_with("the configuration file"));
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/trueup/trueup.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/trueup/trueup.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://localhost/trueup"), None);
    }
}
