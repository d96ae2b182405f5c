//! The development signing key — DEV ONLY. Taken from `JWT_DEV_SECRET`, or generated on first use
//! and kept in the local data folder so that `reservation-api token` and `serve` agree. The `prod`
//! profile refuses to start with it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

pub const FILE_NAME: &str = "jwt-dev-secret";

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The key bytes: `env_secret` if given, else the file's content, else a new random key written there.
pub fn load_or_create(env_secret: Option<&str>, data_dir: &Path) -> Result<Vec<u8>, String> {
    if let Some(s) = env_secret.filter(|s| !s.is_empty()) {
        return Ok(s.as_bytes().to_vec());
    }
    let file = path(data_dir);
    if let Ok(existing) = fs::read_to_string(&file) {
        let key = existing.trim();
        if !key.is_empty() {
            return Ok(key.as_bytes().to_vec());
        }
    }
    fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = hex::encode(bytes);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    f.write_all(key.as_bytes())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(key.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(None, dir.path()).unwrap();
        let b = load_or_create(None, dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(
            load_or_create(Some("explicit"), dir.path()).unwrap(),
            b"explicit"
        );
    }
}
