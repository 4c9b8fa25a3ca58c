//! Writes every hostile fixture to DIR/<name>.mender (fuzz corpus seeds, manual checks).

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "hostile".into());
    std::fs::create_dir_all(&dir)?;
    for f in aloft_testkit::hostile::all() {
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{}.mender", f.name)),
            &f.bytes,
        )?;
    }
    Ok(())
}
