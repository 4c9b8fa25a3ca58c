//! `aloftctl key`: make signing keys and show public keys.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use aloft_artifact::{KeyType, SigningKey};
use anyhow::{Context as _, Result, bail};

use crate::cli::{KeyCommand, KeyKind};

pub(crate) fn run(command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Generate {
            kind,
            output,
            public_out,
            force,
        } => generate(kind, &output, public_out, force),
        KeyCommand::Public { key } => {
            let signing = load_signing_key(&key)?;
            let pem = signing.verifying_key().to_pem()?;
            std::io::stdout().lock().write_all(pem.as_bytes())?;
            Ok(())
        }
    }
}

/// Loads a private key, naming the file in errors and warning about weak keys.
pub(crate) fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let text = fs_err::read_to_string(path)?;
    let key = SigningKey::from_pem(&text)
        .with_context(|| format!("cannot load signing key {}", path.display()))?;
    if let Some(w) = key.verifying_key().weakness() {
        tracing::warn!("{w}");
    }
    Ok(key)
}

/// Loads public keys, naming each file in errors.
pub(crate) fn load_verifying_keys(paths: &[PathBuf]) -> Result<Vec<aloft_artifact::VerifyingKey>> {
    paths
        .iter()
        .map(|path| {
            let text = fs_err::read_to_string(path)?;
            let key = aloft_artifact::VerifyingKey::from_pem(&text)
                .with_context(|| format!("cannot load public key {}", path.display()))?;
            if let Some(w) = key.weakness() {
                tracing::warn!("{w}");
            }
            Ok(key)
        })
        .collect()
}

fn generate(kind: KeyKind, output: &Path, public_out: Option<PathBuf>, force: bool) -> Result<()> {
    let public_out = public_out.unwrap_or_else(|| {
        let mut p = output.as_os_str().to_owned();
        p.push(".pub");
        PathBuf::from(p)
    });
    for p in [output, public_out.as_path()] {
        if p.exists() && !force {
            bail!("{} exists (use --force to overwrite)", p.display());
        }
    }
    let key = SigningKey::generate(match kind {
        KeyKind::Rsa => KeyType::Rsa,
        KeyKind::Ecdsa => KeyType::Ecdsa,
        KeyKind::Ed25519 => KeyType::Ed25519,
    })?;
    write_private(output, key.to_pem()?.as_bytes())?;
    let public = key.verifying_key();
    fs_err::write(&public_out, public.to_pem()?)?;
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "wrote private key {} ({})",
        output.display(),
        key.algorithm()
    )?;
    writeln!(
        err,
        "wrote public key  {} ({})",
        public_out.display(),
        public.fingerprint()
    )?;
    if !key.algorithm().mender_compatible() {
        writeln!(
            err,
            "note: Ed25519 signatures are an aloft extension; Mender tools cannot verify them"
        )?;
    }
    Ok(())
}

/// Writes a secret with mode 0600 from the start, atomically.
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
